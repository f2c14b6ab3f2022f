import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

from efficient_sam3 import EfficientSam3Model
from efficient_sam3.checkpoint import load_pretrained
from model_helpers import open_memory_path


def test_round_trip_is_exact(tiny_model, tmp_path):
    with torch.no_grad():
        open_memory_path(tiny_model, 0.3)
    tiny_model.save_pretrained(tmp_path)
    loaded = EfficientSam3Model.from_pretrained(tmp_path)
    assert loaded.config == tiny_model.config
    original, restored = tiny_model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave nothing behind


def test_image_stage_checkpoint_without_memory_modules_loads_and_reports(tiny_model, tmp_path, caplog):
    tiny_model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    state = {k: v for k, v in load_file(str(weights)).items()
             if not k.startswith(("perceiver_resampler.", "memory_cross_attn."))}
    save_file(state, str(weights))
    with caplog.at_level(logging.WARNING):
        result = load_pretrained(tmp_path)
    assert "memory_cross_attn.gate" in result.missing_keys
    assert "perceiver_resampler.latents" in result.missing_keys
    assert all(k.startswith(("perceiver_resampler.", "memory_cross_attn.")) for k in result.missing_keys)
    assert "memory_cross_attn.gate" in caplog.text
    assert not result.model.memory_cross_attn.attn.out_proj.weight.any()  # identity memory path


def test_unexpected_and_missing_keys_are_errors(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    state = load_file(str(weights))
    save_file({**state, "extra.weight": torch.zeros(1)}, str(weights))
    with pytest.raises(ValueError, match="extra.weight"):
        EfficientSam3Model.from_pretrained(tmp_path)
    del state["detr_decoder.query_embed.weight"]
    save_file(state, str(weights))
    with pytest.raises(ValueError, match="detr_decoder.query_embed.weight"):
        EfficientSam3Model.from_pretrained(tmp_path)


def test_bad_checkpoint_directories(tiny_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        EfficientSam3Model.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="malformed JSON"):
        EfficientSam3Model.from_pretrained(tmp_path)
    tiny_model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(ValueError, match="model.safetensors"):
        EfficientSam3Model.from_pretrained(tmp_path)


def test_tokenize_is_offline_clip_bpe(tiny_model):
    input_ids, attention_mask = tiny_model.tokenize(["a photo of a cat", "red circle"])
    assert input_ids.shape == (2, 32) and attention_mask.shape == (2, 32)
    assert input_ids[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert attention_mask[0].sum() == 7


def test_checkpoint_files_get_the_usual_mode(tiny_model, tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        tiny_model.save_pretrained(tmp_path)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"config.json": 0o644, "model.safetensors": 0o644}  # mkstemp's 0600 before


def test_config_errors_name_the_file(tmp_path):
    import json

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "efficient_sam3", "image_size": 504, "no_such_field": 1}))
    with pytest.raises(ValueError, match="no_such_field") as error:
        EfficientSam3Model.from_pretrained(tmp_path)
    assert str(path) in str(error.value)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not an EfficientSAM3 config") as error:
        EfficientSam3Model.from_pretrained(tmp_path)
    assert str(path) in str(error.value)
