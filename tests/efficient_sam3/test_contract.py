"""efficient_sam3.contract: grids, image-size validation, preprocessing, the metadata schema and its versions."""

import json
import textwrap

import cv2
import numpy as np
import pytest

from efficient_sam3 import contract
from efficient_sam3.config import EfficientSam3Config
from torch_blocked import BLOCK_TORCH, REPORT_TORCH_MODULES, run_without_torch


def test_grids_at_504_and_168():
    assert contract.trunk_grid(504) == 36
    assert contract.fpn_sizes(504) == (144, 72, 36, 18)
    assert contract.mask_size(504) == 144 and contract.memory_grid(504) == 18
    assert contract.fpn_sizes(168) == (48, 24, 12, 6)


@pytest.mark.parametrize("size", [500, 14, 0, -28, 504.0, True])
def test_invalid_image_sizes_are_named(size):
    with pytest.raises(ValueError, match="image_size must be"):
        contract.check_image_size(size)
    with pytest.raises(ValueError, match=r"multiple of 28.*nearest valid: 476, 504"):
        contract.check_image_size(500)


def test_config_grids_come_from_the_contract():
    config = EfficientSam3Config()
    assert (config.trunk_grid, config.fpn_sizes, config.mask_size, config.memory_grid) == (36, (144, 72, 36, 18), 144, 18)
    with pytest.raises(ValueError, match="multiple of 28"):
        EfficientSam3Config(image_size=500)


def test_memory_stride_is_in_the_config_and_old_configs_get_the_default():
    config = EfficientSam3Config.from_preset("tiny")
    assert config.memory.memory_stride == contract.DEFAULT_MEMORY_STRIDE == 4
    old = config.to_dict()
    del old["memory"]["memory_stride"]  # a config.json saved before the field existed
    assert EfficientSam3Config.from_dict(old).memory.memory_stride == 4
    changed = config.to_dict()
    changed["memory"]["memory_stride"] = 2
    assert EfficientSam3Config.from_dict(json.loads(json.dumps(changed))).memory.memory_stride == 2
    changed["memory"]["memory_stride"] = 0
    with pytest.raises(ValueError, match="memory_stride must be a positive integer"):
        EfficientSam3Config.from_dict(changed)


def test_preprocess_is_the_sam3_formula_per_channel():
    frame = np.random.default_rng(0).integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    expected = cv2.resize(frame, (56, 56), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    np.testing.assert_array_equal(contract.preprocess_frame(frame, 56), ((expected - 0.5) / 0.5).transpose(2, 0, 1))
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    pixels = contract.preprocess_frame(frame, 56, mean=mean, std=std)
    want = (expected - np.float32(mean)) / np.float32(std)
    np.testing.assert_array_equal(pixels, want.transpose(2, 0, 1))


def _v1() -> dict:
    return {"format_version": 1, "backend": "onnx", "preset": "tiny", "image_size": 504, "context_frames": 8,
            "memory_stride": 4, "num_queries": 32, "max_text_length": 32, "hidden_size": 256, "prompts": []}


def test_version_1_metadata_loads_with_the_contract_defaults():
    data = contract.check_metadata(_v1(), "m.json")
    assert data["format_version"] == contract.METADATA_FORMAT_VERSION == 3
    assert data["max_prompts"] == 1  # decode of a version 1 or 2 export takes one prompt
    assert data["image_mean"] == [0.5] * 3 and data["image_std"] == [0.5] * 3
    assert data["fpn_sizes"] == [144, 72, 36, 18] and data["mask_size"] == 144 and data["memory_grid"] == 18
    assert data["slot_order"] == "oldest_first" and data["color_order"] == "RGB"


def test_version_2_metadata_carries_the_contract_and_is_checked():
    data = {**_v1(), "format_version": 2, **contract.contract_fields(504, (0.4, 0.5, 0.6), (0.2, 0.3, 0.4))}
    assert contract.check_metadata(data, "m.json")["image_mean"] == [0.4, 0.5, 0.6]
    with pytest.raises(ValueError, match=r"m.json: format_version 2 metadata lacks \['image_mean'"):
        contract.check_metadata({**_v1(), "format_version": 2}, "m.json")
    with pytest.raises(ValueError, match="'memory_grid' is 9, this code supports 18"):
        contract.check_metadata({**data, "memory_grid": 9}, "m.json")
    with pytest.raises(ValueError, match="'slot_order' is 'newest_first'"):
        contract.check_metadata({**data, "slot_order": "newest_first"}, "m.json")
    with pytest.raises(ValueError, match="'image_std' must hold 3 numbers"):
        contract.check_metadata({**data, "image_std": [0.5]}, "m.json")
    with pytest.raises(ValueError, match=r"format_version 4 is not supported.*re-export the model"):
        contract.check_metadata({**data, "format_version": 4}, "m.json")
    with pytest.raises(ValueError, match="m.json: image_size must be a multiple of 28"):
        contract.check_metadata({**_v1(), "image_size": 500}, "m.json")


def test_version_3_metadata_states_the_prompts_one_decode_takes():
    data = {**_v1(), "format_version": 3, **contract.contract_fields(504), "max_prompts": 8}
    assert contract.check_metadata(data, "m.json")["max_prompts"] == 8
    assert contract.check_metadata({**data, "format_version": 2}, "m.json")["max_prompts"] == 8  # kept if present
    without = {key: value for key, value in data.items() if key != "max_prompts"}
    with pytest.raises(ValueError, match="m.json: missing field 'max_prompts'"):
        contract.check_metadata(without, "m.json")
    for bad in (0, -2, True, "8"):
        with pytest.raises(ValueError, match="'max_prompts' must be"):
            contract.check_metadata({**data, "max_prompts": bad}, "m.json")


def test_exported_metadata_is_complete_version_3(tiny_model):
    from export.metadata import build_metadata

    names = {name: f"{name}.onnx" for name in contract.ENTRY_POINTS}
    data = build_metadata(tiny_model, "onnx", "/ckpt", "0" * 64, "none", [], names, 4)
    checked = contract.check_metadata(json.loads(json.dumps(data)), "m.json", complete=True)
    assert checked == data and data["format_version"] == 3 and data["max_prompts"] == 4
    assert data["memory_stride"] == tiny_model.config.memory.memory_stride
    assert data["fpn_sizes"] == list(tiny_model.config.fpn_sizes) and data["image_mean"] == [0.5] * 3


def test_contract_imports_and_preprocesses_with_torch_blocked():
    script = BLOCK_TORCH + textwrap.dedent("""
        import numpy as np
        import efficient_sam3.contract as contract
        import efficient_sam3.config
        import efficient_sam3.programs
        import efficient_sam3.memory_ring
        assert contract.preprocess_frame(np.zeros((8, 8, 3), np.uint8), 28).shape == (3, 28, 28)
    """) + REPORT_TORCH_MODULES
    result = run_without_torch(script, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "TORCH_MODULES []" in result.stdout


def test_a_metadata_without_fields_names_the_first_missing_one():
    with pytest.raises(ValueError, match="m.json: missing field 'backend'"):
        contract.check_metadata({"format_version": 1}, "m.json")
    with pytest.raises(ValueError, match="unknown backend 'tflite'"):
        contract.check_metadata({**_v1(), "backend": "tflite"}, "m.json")
