"""Every student backbone family (RepViT, TinyViT, EfficientViT, each with the students' projection head)
exports ``encode_frame`` to ExecuTorch: BatchNorms folded (export.fuse), rewritten and lowered
(export.lowering), no conv / linear / matmul / softmax left outside the XNNPACK delegate, and the
program's FPN levels equal the eager model's (training form, randomised BatchNorm statistics).

CI-sized: the tiny preset's heads and neck at 504 px, each family's code with one block per stage and
narrow widths. The windows stay the published ones (7, 7, 14, 7), so TinyViT pads its stride-16 and
stride-32 maps at 504 px as the full students do. The full students are exported and benchmarked by
``python -m benchmarks.run --students ...``.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from efficient_sam3 import EfficientSam3Config, EfficientSam3Model
from efficient_sam3.backbone import EfficientSam3Head
from efficient_sam3.config import BackboneConfig
from efficient_sam3.efficient_vit import EfficientVitBackbone
from efficient_sam3.tiny_vit import TinyVitBackbone
from export.config import FP32_TOLERANCE
from export.fuse import deployment_model
from export.lowering import lower_to_xnnpack, ops_outside_delegate, work_ops_outside_delegate
from export.wrappers import EncodeFrame
from model_helpers import randomise_batchnorms

TRUNK_CHANNELS = 64
# Reduced backbones of the two variant-table families (same classes as the students, fewer layers),
# and the channels of their stride-32 map.
REDUCED = {
    "tiny_vit": (lambda: TinyVitBackbone(embed_dims=(16, 32, 48, 64), depths=(1, 1, 1, 1), num_heads=(1, 2, 3, 4),
                                         window_sizes=(7, 7, 14, 7)), 64),
    "efficient_vit": (lambda: EfficientVitBackbone(widths=(8, 16, 32, 64, 96), depths=(1, 1, 1, 1, 1), head_dim=16,
                                                   expand_ratio=4), 96),
}
STUDENT_VARIANT = {"tiny_vit": "5m", "efficient_vit": "b0"}


def reduced_student(kind: str) -> EfficientSam3Model:
    """The tiny preset with a ``kind`` backbone and the students' head (EfficientSam3Head)."""
    if kind == "repvit":
        backbone = BackboneConfig(kind="repvit", embed_dims=(16, 32, 48, 64), depths=(1, 1, 1, 1),
                                  trunk_channels=TRUNK_CHANNELS, projection="efficientsam3")
    else:
        backbone = BackboneConfig(kind=kind, variant=STUDENT_VARIANT[kind], trunk_channels=TRUNK_CHANNELS,
                                  projection="efficientsam3")
    config = dataclasses.replace(EfficientSam3Config.from_preset("tiny"), backbone=backbone)
    torch.manual_seed(0)
    model = EfficientSam3Model(config)
    if kind in REDUCED:  # the variant tables hold only the published sizes: swap in a narrower instance
        build, channels = REDUCED[kind]
        model.backbone = build()
        model.trunk_projection = EfficientSam3Head(channels, TRUNK_CHANNELS, config.trunk_grid)
    model.eval()
    randomise_batchnorms(model, seed=1)
    return model


@pytest.mark.parametrize("kind", ["repvit", "tiny_vit", "efficient_vit"])
def test_encode_frame_of_each_backbone_family_lowers_whole_and_matches_eager(kind):
    from executorch.extension.pybindings.portable_lib import _load_for_executorch_from_buffer

    model = reduced_student(kind)
    assert isinstance(model.trunk_projection, EfficientSam3Head)
    wrapper = EncodeFrame(deployment_model(model)).eval()
    edge = lower_to_xnnpack({"encode_frame": torch.export.export(wrapper, wrapper.example_inputs())})
    assert not work_ops_outside_delegate(edge, "encode_frame"), ops_outside_delegate(edge, "encode_frame")
    assert not ops_outside_delegate(edge, "encode_frame")  # what the full students' exports give too

    pixels = torch.randn(1, 3, model.config.image_size, model.config.image_size,
                         generator=torch.Generator().manual_seed(2))
    buffer = edge.to_executorch().buffer  # kept alive: the loaded program reads from it
    outputs = _load_for_executorch_from_buffer(buffer).run_method("encode_frame", (pixels,))
    with torch.no_grad():
        reference = EncodeFrame(model)(pixels)  # training form: folding and lowering are checked at once
    assert len(outputs) == len(reference)
    for expected, got in zip(reference, outputs):
        assert got.shape == expected.shape
        scale = max(1.0, float(expected.abs().max()))
        assert float((expected - got).abs().max()) <= FP32_TOLERANCE.atol * scale


@pytest.mark.slow
def test_int8_encode_frame_of_tiny_vit_compiles_in_xnnpack():
    """TinyViT pads its windows right after a conv (conv -> flatten -> transpose -> view -> pad); the int8
    recipe keeps that conv fp32, since XNNPACK cannot pad an int8 tensor (es-tv-s's int8 export failed
    to load with "Failed to create StaticConstantPad" before)."""
    from executorch.extension.pybindings.portable_lib import _load_for_executorch_from_buffer

    from export.config import INT8_TOLERANCE
    from export.quantize import quantize_method

    wrapper = EncodeFrame(deployment_model(reduced_student("tiny_vit"))).eval()
    generator = torch.Generator().manual_seed(3)
    calibration = [(torch.randn(1, 3, 504, 504, generator=generator),) for _ in range(2)]
    edge = lower_to_xnnpack({"encode_frame": quantize_method(wrapper, calibration)})
    assert not ops_outside_delegate(edge, "encode_frame")
    buffer = edge.to_executorch().buffer  # kept alive: the loaded program reads from it
    outputs = _load_for_executorch_from_buffer(buffer).run_method("encode_frame", calibration[0])
    with torch.no_grad():
        reference = wrapper(*calibration[0])
    for expected, got in zip(reference, outputs):
        assert 0 < float((expected - got).abs().max()) <= INT8_TOLERANCE.atol  # quantized, yet close


def test_int8_recipe_keeps_tiny_vit_patch_merging_fp32():
    """es-tv-m's int8 export failed parity (mean mask IoU 0.819) until TinyViT's patch-merging convs stayed
    fp32 (export.quantize.modules_kept_fp32); its patch embedding and block linears stay int8."""
    from export.quantize import modules_kept_fp32, quantize_method

    model = deployment_model(reduced_student("tiny_vit"))
    kept = modules_kept_fp32(model.config)
    assert "backbone.layers.1.downsample" in kept and modules_kept_fp32(reduced_student("repvit").config) == ()
    generator = torch.Generator().manual_seed(3)
    calibration = [(torch.randn(1, 3, 504, 504, generator=generator),)]
    program = quantize_method(EncodeFrame(model).eval(), calibration, kept)

    def module_path(node) -> str:
        return next(reversed(node.meta.get("nn_module_stack", {}).values()), ("", None))[0].removeprefix("model.")

    def weight_is_int8(node) -> bool:  # the weight comes through a dequantize op
        weight = node.args[1]
        return "dequantize" in str(getattr(weight, "target", ""))

    layers = [n for n in program.graph.nodes if n.target in (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default)]
    merging = [n for n in layers if ".downsample" in module_path(n)]
    embedding = [n for n in layers if module_path(n).startswith("backbone.patch_embed")]
    blocks = [n for n in layers if ".blocks." in module_path(n) and n.target == torch.ops.aten.linear.default]
    assert merging and embedding and blocks
    assert not any(weight_is_int8(n) for n in merging)
    assert all(weight_is_int8(n) for n in embedding + blocks)
