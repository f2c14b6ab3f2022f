"""Shared, session-scoped export artifacts of the tiny preset (each export runs once per session)."""

from pathlib import Path

import pytest
import torch

from efficient_sam3 import EfficientSam3Config, EfficientSam3Model


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random tiny model with the memory gate opened (at init the memory path is an exact identity,
    which would make every memory case equal)."""
    torch.manual_seed(0)
    model = EfficientSam3Model(EfficientSam3Config.preset("tiny")).eval()
    with torch.no_grad():
        model.memory_cross_attn.gate.fill_(0.5)
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
    from export.config import ExecutorchExportConfig
    from export.executorch import export_executorch

    out = tmp_path_factory.mktemp("et") / "tiny.pte"
    config = ExecutorchExportConfig(checkpoint=tiny_checkpoint, out=out, prompts=("red circle",),
                                    parity_frames=sav_videos / "val", parity_num_frames=1)
    return export_executorch(config)


@pytest.fixture(scope="session")
def onnx_export(tiny_checkpoint, sav_videos, tmp_path_factory):
    from export.config import OnnxExportConfig
    from export.onnx import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "tiny_onnx"
    config = OnnxExportConfig(checkpoint=tiny_checkpoint, out=out, prompts=("red circle",),
                              parity_frames=sav_videos / "val", parity_num_frames=1)
    return export_onnx(config)


def pytest_collection_modifyitems(config, items):
    """Every export test lowers real programs (minutes on 2 shared cores): all are marked slow and run
    with `pytest -m slow`; the default CI command deselects them (see README)."""
    for item in items:
        if "tests/export/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.slow)
