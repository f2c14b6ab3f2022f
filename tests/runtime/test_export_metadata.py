"""Export metadata parsing, stored prompts, and model files that do not fit their backend (no export needed)."""

import json

import numpy as np
import pytest

from runtime.backends.base import BackendError
from runtime.backends.metadata import read_export_metadata
from runtime.backends.registry import open_backend


def _metadata(kind: str, **overrides) -> dict:
    data = {"format_version": 1, "backend": kind, "preset": "tiny", "image_size": 504, "context_frames": 8,
            "memory_stride": 4, "num_queries": 32, "max_text_length": 32, "hidden_size": 256,
            "quantization": "none",
            "prompts": [{"text": "Red circle", "input_ids": [1] * 32, "attention_mask": [1] * 4 + [0] * 28,
                         "text_features": np.full((32, 256), 0.25).tolist()}]}
    data.update(overrides)
    return data


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_metadata_gives_model_info_and_stored_prompts(tmp_path):
    meta = read_export_metadata(_write(tmp_path / "metadata.json", _metadata("onnx")), "onnx")
    assert meta.info.context_frames == 8 and meta.info.mask_size == 144 and meta.info.memory_grid == 18
    assert meta.info.fpn_shapes[0] == (1, 256, 144, 144) and meta.info.fpn_shapes[3] == (1, 256, 18, 18)
    prompt = meta.prompt_features("  red   CIRCLE ")
    assert prompt.features.shape == (1, 32, 256) and prompt.features.dtype == np.float32
    assert prompt.mask.dtype == np.int64 and prompt.mask.sum() == 4
    with pytest.raises(ValueError, match=r"'blue square' is not stored.*\['Red circle'\]"):
        meta.prompt_features("blue square")
    with pytest.raises(ValueError, match="empty prompt"):
        meta.prompt_features("")


@pytest.mark.parametrize("change, match", [
    ({"backend": "executorch"}, "for backend 'executorch', not 'onnx'"),
    ({"format_version": 2}, "format_version 2"),
    ({"context_frames": 0}, "context_frames"),
    ({"prompts": [{"text": "x", "attention_mask": [1] * 32, "text_features": [[0.0] * 8]}]}, r"prompts\[0\]"),
])
def test_bad_metadata_is_named(tmp_path, change, match):
    path = _write(tmp_path / "metadata.json", _metadata("onnx", **change))
    with pytest.raises(BackendError, match=match):
        read_export_metadata(path, "onnx")
    (tmp_path / "metadata.json").write_text("{ not json")
    with pytest.raises(BackendError, match="unreadable metadata JSON"):
        read_export_metadata(path, "onnx")


def test_corrupt_model_files_fail_with_a_backend_error(tmp_path):
    onnx_dir = tmp_path / "onnx"
    onnx_dir.mkdir()
    _write(onnx_dir / "metadata.json", _metadata("onnx"))
    with pytest.raises(BackendError, match="encode_frame.onnx: missing"):
        open_backend(onnx_dir)
    (onnx_dir / "encode_frame.onnx").write_bytes(b"\x08garbage")
    (onnx_dir / "decode.onnx").write_bytes(b"\x08garbage")
    with pytest.raises(BackendError, match="encode_frame.onnx: onnxruntime cannot load it"):
        open_backend(onnx_dir, "onnx")

    pte = tmp_path / "model.pte"
    pte.write_bytes(b"not a flatbuffer" * 10)
    with pytest.raises(BackendError, match=r"model.pte.json: export metadata not found"):
        open_backend(pte)
    _write(tmp_path / "model.pte.json", _metadata("onnx"))
    with pytest.raises(BackendError, match="for backend 'onnx', not 'executorch'"):
        open_backend(pte)
    _write(tmp_path / "model.pte.json", _metadata("executorch"))
    with pytest.raises(BackendError, match="ExecuTorch cannot load this program"):
        open_backend(pte)


def test_version_2_metadata_gives_the_pixel_spec_and_version_1_the_defaults(tmp_path):
    from efficient_sam3 import contract

    old = read_export_metadata(_write(tmp_path / "v1.json", _metadata("onnx")), "onnx")
    assert old.info.pixel_mean == contract.PIXEL_MEAN and old.info.pixel_std == contract.PIXEL_STD
    v2 = _metadata("onnx", format_version=2, **contract.contract_fields(504, (0.4, 0.5, 0.6), (0.2, 0.3, 0.4)))
    meta = read_export_metadata(_write(tmp_path / "v2.json", v2), "onnx")
    assert meta.info.pixel_mean == (0.4, 0.5, 0.6) and meta.info.pixel_std == (0.2, 0.3, 0.4)
    with pytest.raises(BackendError, match="'fpn_sizes' is"):
        read_export_metadata(_write(tmp_path / "bad.json", {**v2, "fpn_sizes": [1, 2, 3, 4]}), "onnx")


def test_torch_backend_takes_the_memory_stride_from_the_checkpoint_config(tiny_model):
    import dataclasses

    from runtime.backends.torch_backend import TorchBackend

    assert TorchBackend(tiny_model).info.memory_stride == tiny_model.config.memory.memory_stride == 4
    tiny_model.config = dataclasses.replace(
        tiny_model.config, memory=dataclasses.replace(tiny_model.config.memory, memory_stride=2))
    assert TorchBackend(tiny_model).info.memory_stride == 2
    assert TorchBackend(tiny_model, memory_stride=3).info.memory_stride == 3
