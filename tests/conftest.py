"""Shared fixtures. The tiny preset's exported programs are built once per test session and shared
by tests/export, tests/runtime and tests/benchmarks (each export takes a minute or more on 2 cores)."""

from pathlib import Path

import pytest
import torch

from efficient_sam3 import EfficientSam3Config, EfficientSam3Model
from model_helpers import open_memory_path

EXPORT_PROMPTS = ("red circle", "blue square")


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
    torch.manual_seed(0)
    model = EfficientSam3Model(EfficientSam3Config.from_preset("tiny")).eval()
    open_memory_path(model, 0.5)
    directory = tmp_path_factory.mktemp("tiny_checkpoint")
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def sav_videos(tmp_path_factory) -> Path:
    """Two synthetic SA-V videos: train/ (calibration) and val/ (held out for parity)."""
    from training.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("sav")
    generate_dataset(root, num_videos=2, seed=0, val_fraction=0.5)
    return root


@pytest.fixture(scope="session")
def executorch_export(tiny_checkpoint, sav_videos, tmp_path_factory):
    """``export.executorch`` of the tiny checkpoint (fp32, parity-gated) -> ExportResult."""
    from export.config import ExecutorchExportConfig
    from export.executorch import export_executorch

    out = tmp_path_factory.mktemp("et") / "tiny.pte"
    config = ExecutorchExportConfig(checkpoint=tiny_checkpoint, out=out, prompts=EXPORT_PROMPTS,
                                    parity_frames=sav_videos / "val", parity_num_frames=1)
    return export_executorch(config)


@pytest.fixture(scope="session")
def onnx_export(tiny_checkpoint, sav_videos, tmp_path_factory):
    """``export.onnx`` of the tiny checkpoint (parity-gated) -> OnnxExportResult."""
    from export.config import OnnxExportConfig
    from export.onnx import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "tiny_onnx"
    config = OnnxExportConfig(checkpoint=tiny_checkpoint, out=out, prompts=EXPORT_PROMPTS,
                              parity_frames=sav_videos / "val", parity_num_frames=1)
    return export_onnx(config)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for the module: on a shared 2-core machine eager torch is several times faster so.
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
