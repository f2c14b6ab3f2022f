"""Shared fixtures. The tiny preset's exported programs are built once per test run and shared by
tests/export, tests/runtime and tests/benchmarks (an ExecuTorch export takes minutes on 2 cores).

The README's test command runs the suite in two pytest-xdist processes (``-n 2 --dist loadfile
--no-loadscope-reorder``): each process gets one torch thread (and its subprocesses one OpenMP thread), the
session fixtures below are built once for both (``built_once``), and the files that take minutes run first
(``MINUTES_LONG_FILES``)."""

import os
import pickle
import tempfile
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from efficient_sam3 import EfficientSam3Config, EfficientSam3Model
from model_helpers import open_memory_path

EXPORT_PROMPTS = ("red circle", "blue square")

# The files that take minutes on 2 cores (process seconds in a CI run at b9bf215), started first and in this
# order: test_export_programs builds the shared ExecuTorch and ONNX exports (about 450 s) while the other
# process runs test_native_runner (which exports its own program), so no file that reads the shared exports
# waits on their lock, and the two processes finish together (the rest are under 2.5 minutes each). xdist
# hands out files in collection order only with --no-loadscope-reorder (else it sorts them by test count).
MINUTES_LONG_FILES = (
    "tests/export/test_export_programs.py",  # 407 s
    "tests/runtime/test_native_runner.py",  # 427 s
    "tests/efficient_sam3/test_original_parity.py",  # 328 s
    "tests/benchmarks/test_benchmarks_quick.py",  # 214 s
)


def pytest_collection_modifyitems(config, items):
    """The MINUTES_LONG_FILES first, in their order; every other file after them as collected."""
    rank = {path: index for index, path in enumerate(MINUTES_LONG_FILES)}
    root = Path(str(config.rootpath))
    items.sort(key=lambda item: rank.get(Path(str(item.path)).relative_to(root).as_posix(), len(rank)))


XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", ... under pytest-xdist, else None
if XDIST_WORKER is not None:  # two processes on two cores: one thread each, or they slow each other down
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def built_once(name: str, tmp_path_factory, build):
    """``build(folder)`` once per test run: without xdist, in a fresh temp folder; under xdist the first
    process to ask builds it while holding a file lock and pickles the result, the others read it."""
    if XDIST_WORKER is None:
        return build(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent  # the run's temp folder, above each worker's own
    result_file = shared / f"{name}.pickle"
    with FileLock(str(shared / f"{name}.lock")):
        if result_file.is_file():
            return pickle.loads(result_file.read_bytes())
        result = build(Path(tempfile.mkdtemp(prefix=f"{name}-", dir=shared)))
        result_file.write_bytes(pickle.dumps(result))
        return result


@pytest.fixture(scope="session")
def tiny_config() -> EfficientSam3Config:
    return EfficientSam3Config.from_preset("tiny")


@pytest.fixture()
def tiny_model(tiny_config) -> EfficientSam3Model:
    torch.manual_seed(0)
    return EfficientSam3Model(tiny_config).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random tiny model with its memory path opened (at init it is an exact identity, which would
    make every memory case equal)."""
    def build(directory: Path) -> Path:
        torch.manual_seed(0)
        model = EfficientSam3Model(EfficientSam3Config.from_preset("tiny")).eval()
        open_memory_path(model, 0.5)
        model.save_pretrained(directory)
        return directory

    return built_once("tiny_checkpoint", tmp_path_factory, build)


@pytest.fixture(scope="session")
def sav_videos(tmp_path_factory) -> Path:
    """Two synthetic SA-V videos: train/ (calibration) and val/ (held out for parity)."""
    from training.synthetic import generate_dataset

    def build(root: Path) -> Path:
        generate_dataset(root, num_videos=2, seed=0, val_fraction=0.5)
        return root

    return built_once("sav", tmp_path_factory, build)


@pytest.fixture(scope="session")
def executorch_export(tiny_checkpoint, sav_videos, tmp_path_factory):
    """``export.executorch`` of the tiny checkpoint (fp32, parity-gated) -> ExportResult."""
    from export.config import ExecutorchExportConfig
    from export.executorch import export_executorch

    return built_once("et", tmp_path_factory, lambda folder: export_executorch(ExecutorchExportConfig(
        checkpoint=tiny_checkpoint, out=folder / "tiny.pte", prompts=EXPORT_PROMPTS,
        parity_frames=sav_videos / "val", parity_num_frames=1)))


@pytest.fixture(scope="session")
def onnx_export(tiny_checkpoint, sav_videos, tmp_path_factory):
    """``export.onnx`` of the tiny checkpoint (parity-gated) -> OnnxExportResult."""
    from export.config import OnnxExportConfig
    from export.onnx import export_onnx

    return built_once("onnx", tmp_path_factory, lambda folder: export_onnx(OnnxExportConfig(
        checkpoint=tiny_checkpoint, out=folder / "tiny_onnx", prompts=EXPORT_PROMPTS,
        parity_frames=sav_videos / "val", parity_num_frames=1)))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for the module: on a shared 2-core machine eager torch is several times faster so.
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
