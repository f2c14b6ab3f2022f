import pytest
import torch

from efficient_sam3 import EfficientSam3Model
from export.config import INT8_TOLERANCE, ExecutorchExportConfig
from export.frames import read_frames, to_pixel_values
from export.fuse import deployment_model
from export.wrappers import EncodeFrame


def test_int8_needs_calibration_videos(tmp_path):
    with pytest.raises(ValueError, match="--calibration-videos"):
        ExecutorchExportConfig(checkpoint=tmp_path, out=tmp_path / "m.pte", quantize="int8")
    with pytest.raises(ValueError, match="quantization"):
        ExecutorchExportConfig(checkpoint=tmp_path, out=tmp_path / "m.pte", quantize="int4")


@pytest.mark.slow
def test_int8_encode_frame_is_quantized_and_close_to_fp32(tiny_checkpoint, sav_videos):
    """The quantization recipe on the conv-heavy method, calibrated on real frames (the full int8 export
    of all methods is the test below; this one is its finer, slow-marked check)."""
    from executorch.extension.pybindings.portable_lib import _load_for_executorch_from_buffer

    from export.lowering import lower_to_xnnpack, ops_outside_delegate
    from export.quantize import quantize_method

    model = deployment_model(EfficientSam3Model.from_pretrained(tiny_checkpoint))
    wrapper = EncodeFrame(model)
    calibration = [(p,) for p in to_pixel_values(read_frames(sav_videos / "train", 2, stride=4), 504)]
    program = quantize_method(wrapper, calibration)
    targets = {str(node.target) for node in program.graph.nodes}
    assert any("quantize_per_tensor" in t for t in targets)
    edge = lower_to_xnnpack({"encode_frame": program})
    assert not ops_outside_delegate(edge, "encode_frame")
    buffer = edge.to_executorch().buffer
    (held_out,) = to_pixel_values(read_frames(sav_videos / "val", 1), 504)
    outputs = _load_for_executorch_from_buffer(buffer).run_method("encode_frame", (held_out,))
    with torch.no_grad():
        reference = wrapper(held_out)
    for expected, got in zip(reference, outputs):
        error = float((expected - got).abs().max())
        assert 0 < error <= INT8_TOLERANCE.atol  # quantized (not bit-exact), yet close


def _full_export(checkpoint, videos, out, mode):
    from export.executorch import export_executorch

    config = ExecutorchExportConfig(checkpoint=checkpoint, out=out, prompts=("red circle",), quantize=mode,
                                    calibration_videos=videos / "train", calibration_frames=4,
                                    parity_frames=videos / "val", parity_num_frames=1)
    return export_executorch(config)


@pytest.mark.slow  # about 4 min on 2 cores (lowering the quantized programs); CI keeps int8 in
# tests/benchmarks/test_module_int8.py (quantize_method, lowered and run) and tests/export/test_int4_ffn.py
def test_full_int8_export_stays_within_its_tolerance(tiny_checkpoint, sav_videos, executorch_export, tmp_path):
    from export.metadata import read_metadata

    result = _full_export(tiny_checkpoint, sav_videos, tmp_path / "int8.pte", "int8")
    assert result.parity.passed, result.parity.format()
    assert read_metadata(result.metadata)["quantization"] == "int8"
    assert result.size_bytes < 0.6 * executorch_export.size_bytes
    assert not ops_outside_delegate_kinds(result)


@pytest.mark.slow  # a second full int8 export (minutes on 2 cores); tests/export/test_int4_ffn.py covers the mechanism
def test_full_int8_ffn4_export_passes_its_gate_and_saves_half_a_byte_per_ffn_weight(tiny_checkpoint, sav_videos,
                                                                                     tmp_path):
    from export.metadata import read_metadata
    from export.quantize import int4_weight_modules

    results = {mode: _full_export(tiny_checkpoint, sav_videos, tmp_path / f"{mode}.pte", mode)
               for mode in ("int8", "int8-ffn4")}
    assert results["int8-ffn4"].parity.passed, results["int8-ffn4"].parity.format()
    assert read_metadata(results["int8-ffn4"].metadata)["quantization"] == "int8-ffn4"
    assert not ops_outside_delegate_kinds(results["int8-ffn4"])
    model = EfficientSam3Model.from_pretrained(tiny_checkpoint)
    ffn_weights = sum(model.get_submodule(name).weight.numel() for name in int4_weight_modules(model))
    saved = results["int8"].size_bytes - results["int8-ffn4"].size_bytes
    assert saved == pytest.approx(ffn_weights / 2, rel=0.05)


def ops_outside_delegate_kinds(result) -> set[str]:
    """Dequantize/quantize ops outside the delegate would need kernels the runtime lacks."""
    return {op for ops in result.ops_outside_delegate.values() for op in ops if "quantize" in op}


def test_decode_is_calibrated_on_the_export_prompts_then_generic_ones_in_turn(tiny_model):
    """Frame i's decode calibration input holds prompt i mod P; the generic prompts follow the export's own
    and are none of the prompts parity's batched-decode check uses (that check stays on unseen prompts)."""
    from export.parity import BATCH_FILL_PROMPTS
    from export.quantize import CALIBRATION_PROMPTS, build_calibration_set, calibration_prompts

    assert not set(CALIBRATION_PROMPTS) & set(BATCH_FILL_PROMPTS)
    texts = calibration_prompts(("red circle", "bird"))
    assert texts[:2] == ["red circle", "bird"] and texts.count("bird") == 1
    assert texts[2:] == [p for p in CALIBRATION_PROMPTS if p != "bird"]

    model = tiny_model.eval()
    size = model.config.image_size
    frames = [torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(i)) for i in range(5)]
    with torch.no_grad():
        prompts = [(t.features, t.mask) for t in
                   (model.encode_text(*model.tokenize([text])) for text in texts[:3])]
    calibration = build_calibration_set(model, frames, prompts)
    assert len(calibration.decode) == len(calibration.encode_frame) == 5
    for index, inputs in enumerate(calibration.decode):
        features, mask = prompts[index % 3]
        assert inputs[5] is features and inputs[6] is mask
    assert [bool(m.any()) for m in (inputs[4] for inputs in calibration.decode)] == [False, True, True, True, True]
    with pytest.raises(ValueError, match="at least one prompt"):
        build_calibration_set(model, frames, [])


def test_an_int8_export_calibrates_decode_on_its_prompt_then_the_generic_ones(tiny_checkpoint, sav_videos, tmp_path):
    """export.executorch's calibration inputs (the full int8 exports that use them are slow-marked)."""
    from export.executorch import _calibration_inputs
    from export.quantize import CALIBRATION_PROMPTS

    model = EfficientSam3Model.from_pretrained(tiny_checkpoint).eval()
    config = ExecutorchExportConfig(checkpoint=tiny_checkpoint, out=tmp_path / "m.pte", prompts=("red circle",),
                                    quantize="int8", calibration_videos=sav_videos / "train", calibration_frames=3)
    with torch.no_grad():
        calibration = _calibration_inputs(model, config)
        expected = [model.encode_text(*model.tokenize([text])).features
                    for text in ("red circle", *CALIBRATION_PROMPTS[:2])]
    assert len(calibration.decode) == len(calibration.encode_frame) == 3
    for inputs, features in zip(calibration.decode, expected):
        torch.testing.assert_close(inputs[5], features)
