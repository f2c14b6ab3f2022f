"""Tiny preset exported to ExecuTorch and ONNX once per session (tests/conftest.py)."""

import json
import shutil

import onnx
import pytest
import torch

from efficient_sam3 import EfficientSam3Model
from export.metadata import read_metadata
from export.parity import MEMORY_CASES, ProgramMismatchError, check_parity, main as parity_main, verify_provenance
from efficient_sam3.programs import load_program
from export.wrappers import METHOD_NAMES

# Op kinds that must run inside the XNNPACK delegate (issue 5): convolutions, linears, matmuls,
# softmax and element-wise math. Edge op names are matched by their base name.
MUST_BE_DELEGATED = {
    "convolution", "linear", "addmm", "mm", "bmm", "matmul", "_softmax", "softmax", "add", "sub", "mul", "div",
    "rsub", "exp", "log", "log2", "sigmoid", "tanh", "gelu", "relu", "clamp", "sqrt", "rsqrt", "pow", "sin",
    "cos", "abs", "neg", "sign", "maximum", "minimum", "native_layer_norm", "native_group_norm",
    "upsample_nearest2d", "upsample_bilinear2d", "max_pool2d", "mean",
}


def _base_name(edge_op: str) -> str:
    # "aten.native_layer_norm.default" -> "native_layer_norm"
    parts = edge_op.split(".")
    return parts[1] if len(parts) > 2 else parts[0]


def test_executorch_metadata_follows_the_contract(executorch_export, tiny_checkpoint):
    metadata = read_metadata(executorch_export.metadata)
    assert executorch_export.metadata.name == executorch_export.program.name + ".json"
    assert metadata["backend"] == "executorch" and metadata["quantization"] == "none"
    assert metadata["preset"] == "tiny" and metadata["image_size"] == 504 and metadata["context_frames"] == 8
    assert metadata["memory_stride"] == 4 and metadata["num_queries"] == 32 and metadata["max_text_length"] == 32
    assert metadata["image_mean"] == [0.5, 0.5, 0.5] and metadata["image_std"] == [0.5, 0.5, 0.5]
    assert set(metadata["methods"]) == set(METHOD_NAMES)
    assert metadata["output_names"]["decode"] == ["pred_masks", "pred_boxes", "pred_logits", "presence_logits",
                                                  "iou_scores"]
    assert [prompt["text"] for prompt in metadata["prompts"]] == ["red circle", "blue square"]
    for prompt in metadata["prompts"]:
        assert len(prompt["input_ids"]) == 32 and torch.tensor(prompt["text_features"]).shape == (32, 256)
    assert len(metadata["source_checkpoint_sha256"]) == 64


def test_executorch_program_shapes_follow_the_contract(executorch_export):
    program = load_program(executorch_export.program)
    levels = program.run("encode_frame", (torch.zeros(1, 3, 504, 504),))
    assert [tuple(t.shape) for t in levels] == [(1, 256, 144, 144), (1, 256, 72, 72), (1, 256, 36, 36), (1, 256, 18, 18)]
    text = program.run("encode_text", (torch.ones(1, 32, dtype=torch.long), torch.ones(1, 32, dtype=torch.long)))
    assert tuple(text[0].shape) == (1, 32, 256)
    memory_mask = torch.tensor([[False] * 6 + [True] * 2])
    outputs = program.run("decode", (*levels[:3], torch.randn(1, 8, 256, 18, 18), memory_mask, text[0],
                                     torch.ones(1, 32, dtype=torch.long)))
    assert [tuple(t.shape) for t in outputs] == [(1, 32, 144, 144), (1, 32, 4), (1, 32), (1, 1), (1, 32)]


def test_executorch_parity_on_real_frames_and_memory_cases(executorch_export):
    report = executorch_export.parity
    assert report.passed, report.format()
    cases = {check.case for check in report.checks}
    for case, _ in MEMORY_CASES:  # includes fewer valid memory frames and none
        assert f"frame 0 decode {case}" in cases
    masks = [c for c in report.checks if c.output == "pred_masks"]
    assert masks and all(c.min_mask_iou >= 0.999 for c in masks)
    gated = [c for c in report.checks if c.output in ("pred_logits", "pred_boxes", "presence_logits")]
    assert gated and all(c.max_abs_diff <= 1e-4 for c in gated)


def test_only_copies_and_mask_ops_stay_outside_the_delegate(executorch_export):
    assert executorch_export.delegate_calls["encode_frame"] == 1
    assert not executorch_export.ops_outside_delegate["encode_frame"]
    for method in METHOD_NAMES:
        outside = {_base_name(op) for op in executorch_export.ops_outside_delegate[method]}
        assert not outside & MUST_BE_DELEGATED, f"{method}: {sorted(outside & MUST_BE_DELEGATED)} outside XNNPACK"


def test_ops_outside_the_delegate_take_under_5_percent_of_a_frame(executorch_export, tiny_checkpoint):
    from export.measure import operator_time_share

    share = operator_time_share(tiny_checkpoint, executorch_export.program, num_threads=2, runs=1)
    assert share.frame_ms > 0 and share.delegate_ms <= share.frame_ms
    assert share.outside_share < 0.05, share.outside_ms


def test_onnx_export_is_checker_clean_at_opset_18(onnx_export):
    metadata = read_metadata(onnx_export.directory / "metadata.json")
    assert metadata["backend"] == "onnx" and set(metadata["files"]) == set(METHOD_NAMES)
    for method in METHOD_NAMES:
        model = onnx.load(str(onnx_export.files[method]))
        onnx.checker.check_model(model, full_check=True)
        assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 18
        assert [i.name for i in model.graph.input] == metadata["input_names"][method]
    assert onnx_export.parity.passed, onnx_export.parity.format()


def test_parity_cli_passes_on_onnx_and_rejects_another_checkpoint(onnx_export, tiny_checkpoint, tmp_path, capsys):
    assert parity_main(["--checkpoint", str(tiny_checkpoint), "--program", str(onnx_export.directory),
                        "--num-frames", "1"]) == 0
    other = tmp_path / "other"
    model = EfficientSam3Model.from_pretrained(tiny_checkpoint)
    with torch.no_grad():
        model.iou_head.mlp.layer1.bias.add_(1.0)
    model.save_pretrained(other)
    assert parity_main(["--checkpoint", str(other), "--program", str(onnx_export.directory)]) == 2
    assert "sha256" in capsys.readouterr().err
    with pytest.raises(ProgramMismatchError, match="sha256"):
        check_parity(other, onnx_export.directory)


def test_provenance_check_names_the_differing_field(executorch_export, tiny_checkpoint):
    metadata = read_metadata(executorch_export.metadata)
    model = EfficientSam3Model.from_pretrained(tiny_checkpoint)
    verify_provenance(metadata, tiny_checkpoint, model)
    with pytest.raises(ProgramMismatchError, match="num_queries"):
        verify_provenance({**metadata, "num_queries": 200}, tiny_checkpoint, model)


def test_corrupt_program_is_a_clear_error(executorch_export, tmp_path):
    broken = tmp_path / "broken.pte"
    broken.write_bytes(b"not a program" * 100)
    shutil.copy(executorch_export.metadata, tmp_path / "broken.pte.json")
    with pytest.raises(ValueError, match="broken.pte"):
        load_program(broken)
    (tmp_path / "broken.pte.json").write_text(json.dumps({"format_version": 1}))
    with pytest.raises(ValueError, match="missing field"):
        load_program(broken)


def test_measure_latency_reports_every_backend(executorch_export, onnx_export, tiny_checkpoint):
    from export.measure import host_state_cost, measure_latency

    results = measure_latency(tiny_checkpoint, [executorch_export.program, onnx_export.directory],
                              num_threads=2, runs=1, warmup=0, include_eager=False)
    assert [r.backend.split()[0] for r in results] == ["executorch", "onnx"]
    assert all(r.frame_ms == pytest.approx(r.encode_ms + r.decode_ms) and r.frame_ms > 0 for r in results)
    assert 0 < host_state_cost(repeats=5) < 100


def test_exports_get_the_usual_mode_and_leave_no_temp(executorch_export, onnx_export):
    """The .pte metadata (mkstemp: 0600) and the ONNX folder (mkdtemp: 0700) had private modes before."""
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    mode = lambda path: stat.S_IMODE(path.stat().st_mode)  # noqa: E731
    assert mode(executorch_export.program) == mode(executorch_export.metadata) == 0o666 & ~umask
    assert mode(onnx_export.directory) == 0o777 & ~umask
    assert all(mode(path) == 0o666 & ~umask for path in onnx_export.directory.iterdir())
    assert sorted(p.name for p in executorch_export.program.parent.iterdir()) == sorted(
        [executorch_export.program.name, executorch_export.metadata.name])
    assert [p.name for p in onnx_export.directory.parent.iterdir()] == [onnx_export.directory.name]
