"""benchmarks.module_int8: each top-level module of a frame as its own program, fp32 and int8."""
import pytest
import torch

from benchmarks.module_int8 import ModuleCall, _tensors, measure_modules, module_int8_rows, record_module_calls


def test_every_module_of_a_step_is_recorded_and_replays_exactly(tiny_model):
    model = tiny_model.eval().requires_grad_(False)
    calls = record_module_calls(model, 2, "red circle")
    children = dict(model.named_children())
    # One streaming step runs every per-frame module and no text encoder (the text is precomputed).
    assert {"backbone", "neck", "detr_encoder", "perceiver_resampler", "memory_cross_attn", "detr_decoder",
            "mask_decoder"} <= set(calls)
    assert "text_encoder" not in calls
    for name, recorded in calls.items():
        assert len(recorded) % 2 == 0  # the same number of calls in each of the two steps
        args, kwargs = recorded[0]
        wrapper = ModuleCall(name, children[name], args, kwargs)
        with torch.no_grad():
            expected = children[name](*args, **kwargs)
            replayed = wrapper(*wrapper.inputs(args, kwargs))
        expected = _tensors(expected)
        assert expected and len(replayed) == len(expected), name
        # (inputs are made contiguous for ExecuTorch, which may change the summation order by an ulp)
        assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in zip(replayed, expected)), name


def test_small_modules_time_in_fp32_and_int8_and_rows_add_up(tiny_checkpoint):
    timings = measure_modules(tiny_checkpoint, threads=1, runs=2, show_progress=False,
                              modules=("iou_head", "dot_product_scoring"))
    assert sorted(t.name for t in timings) == ["dot_product_scoring", "iou_head"]
    for t in timings:
        assert t.calls_per_frame >= 1 and t.fp32_ms > 0 and t.int8_ms > 0 and t.gflops > 0
        # the linears are quantized and lowered: none is left outside the delegate
        assert not any(work in op for op in {**t.outside_int8, **t.outside_fp32} for work in ("linear", "mm", "conv"))
    rows = module_int8_rows(timings, frame_int8_ms=50.0, edgetam_ms=1000.0)
    by_name = {row.name: row for row in rows}
    assert sum(by_name[t.name].metrics["share_int8"] for t in timings) == pytest.approx(100.0)
    assert by_name["sum of modules"].metrics["int8_ms"] == pytest.approx(sum(t.int8_ms for t in timings))
    assert by_name["whole frame program, int8 (latency row)"].metrics["int8_ms"] == 50.0
    assert any(row.metrics.get("int8_ms") == pytest.approx(100.0) for row in rows if "EdgeTAM" in row.name)


def test_unknown_module_is_refused(tiny_checkpoint):
    with pytest.raises(ValueError, match="text_encoder"):
        measure_modules(tiny_checkpoint, threads=1, runs=1, show_progress=False, modules=("text_encoder",))
