import json

import pytest

from efficient_sam3.programs import metadata_path
from export.metadata import checkpoint_sha256, read_metadata, write_json_atomic


def _valid_metadata() -> dict:
    return {
        "format_version": 1, "backend": "onnx", "preset": "tiny", "image_size": 504, "context_frames": 8,
        "memory_stride": 4, "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "num_queries": 32,
        "max_text_length": 32, "hidden_size": 256, "source_checkpoint": "/ckpt", "source_checkpoint_sha256": "0" * 64,
        "quantization": "none", "prompts": [],
        "files": {"encode_frame": "encode_frame.onnx", "decode": "decode.onnx", "encode_text": "encode_text.onnx"},
        "output_names": {}, "input_names": {},
    }


def test_metadata_path_convention(tmp_path):
    assert metadata_path(tmp_path / "model.pte") == tmp_path / "model.pte.json"
    assert metadata_path(tmp_path / "onnx_dir") == tmp_path / "onnx_dir" / "metadata.json"


def test_roundtrip_and_validation_errors_name_the_file(tmp_path):
    path = tmp_path / "metadata.json"
    write_json_atomic(path, _valid_metadata())
    assert read_metadata(path)["preset"] == "tiny"
    assert [p.name for p in tmp_path.iterdir()] == ["metadata.json"]  # no temp file left behind

    path.write_text("{not json")
    with pytest.raises(ValueError, match="metadata.json: malformed JSON"):
        read_metadata(path)
    for key, value, message in (("image_size", "504", "must be int"), ("format_version", 7, "not supported"),
                                ("backend", "tflite", "unknown backend"), ("files", {"decode": "d.onnx"}, "'files'"),
                                ("prompts", [{"text": "x"}], "prompts\\[0\\]")):
        path.write_text(json.dumps({**_valid_metadata(), key: value}))
        with pytest.raises(ValueError, match=message):
            read_metadata(path)
    data = _valid_metadata()
    del data["quantization"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="missing field 'quantization'"):
        read_metadata(path)
    with pytest.raises(FileNotFoundError, match="missing export metadata"):
        read_metadata(tmp_path / "absent.json")


def test_checkpoint_sha256_hashes_the_weights_file(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"abc")
    assert checkpoint_sha256(tmp_path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    with pytest.raises(FileNotFoundError, match="missing weights file"):
        checkpoint_sha256(tmp_path / "nowhere")


def test_metadata_gets_the_usual_mode(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "sub" / "model.pte.json", _valid_metadata())
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "sub" / "model.pte.json").stat().st_mode) == 0o644  # mkstemp's 0600 before


def test_a_prompt_over_the_context_is_stored_cut_with_a_warning(tiny_model, caplog):
    from export.metadata import prompt_records

    long_prompt = " ".join(["red"] * 40)
    with caplog.at_level("WARNING", logger="export.metadata"):
        records = prompt_records(tiny_model, ["red circle", long_prompt])
    warnings = [r.getMessage() for r in caplog.records if r.name == "export.metadata"]
    assert len(warnings) == 1 and "42 tokens" in warnings[0] and f"context of {tiny_model.config.text.max_length}" \
        in warnings[0]
    assert sum(records[1]["attention_mask"]) == tiny_model.config.text.max_length
