"""EfficientViT B0/B1/B2 against the ORIGINAL code (reference outputs in tests/fixtures/original/efficient_vit.pt,
made by tests/fixtures/original/make_efficient_vit.py), before and after BatchNorm folding, and its export."""


import pytest
import torch
from torch import nn

from efficient_sam3.efficient_vit import (CHECKPOINT_PREFIX, EFFICIENT_VIT_VARIANTS, EfficientVitBackbone,
                                          state_dict_from_checkpoint)
from original_parity import FIXTURE_DIR, assert_close_to, fixture_script, seeded_weights

TOL = 1e-4



MAKE = fixture_script("make_efficient_vit")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def reference() -> dict:
    return torch.load(FIXTURE_DIR / "efficient_vit.pt", weights_only=True)


def _seeded_backbone(variant: str, entry: dict) -> EfficientVitBackbone:
    backbone = EfficientVitBackbone.from_variant(variant).eval()
    backbone.load_state_dict(seeded_weights(entry["manifest"], entry["seed"]), strict=True)
    return backbone


@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
@pytest.mark.parametrize("variant", sorted(EFFICIENT_VIT_VARIANTS))
def test_matches_original_at_1008_and_504(reference, variant, fused):
    entry = reference[variant]
    backbone = _seeded_backbone(variant, entry)
    if fused:
        backbone.fuse()
        assert not any(isinstance(module, nn.BatchNorm2d) for module in backbone.modules())
    ours = {}
    with torch.inference_mode():
        for size in MAKE.IMAGE_SIZES:
            ours[MAKE.output_name(size)] = backbone(MAKE.seeded_image(entry["image_seed"], size))
    differences = assert_close_to(ours, entry["outputs"], TOL)
    print(variant, "fused" if fused else "unfused", differences)


@pytest.mark.parametrize("variant", sorted(EFFICIENT_VIT_VARIANTS))
def test_output_shape_at_504(variant):
    torch.manual_seed(0)
    backbone = EfficientVitBackbone.from_variant(variant).eval()
    with torch.inference_mode():
        features = backbone(torch.randn(1, 3, 504, 504))
    channels = EFFICIENT_VIT_VARIANTS[variant]["widths"][-1]
    assert backbone.out_channels == channels
    assert features.shape == (1, channels, 16, 16)  # 504 -> 252 -> 126 -> 63 -> 32 -> 16


def test_state_dict_names_match_the_original(reference):
    for variant, entry in reference.items():
        ours = EfficientVitBackbone.from_variant(variant).state_dict()
        assert list(ours) == list(entry["manifest"])
        assert all(list(ours[key].shape) == entry["manifest"][key]["shape"] for key in ours)


def test_published_checkpoint_loads_after_prefix_strip(reference):
    entry = reference["b0"]
    weights = seeded_weights(entry["manifest"], entry["seed"])
    published = {CHECKPOINT_PREFIX + key: value for key, value in weights.items()}
    published["detector.backbone.vision_backbone.convs.0.conv_1x1.weight"] = torch.zeros(1)
    published["tracker.maskmem_tpos_enc"] = torch.zeros(1)
    backbone = EfficientVitBackbone.from_variant("b0")
    backbone.load_state_dict(state_dict_from_checkpoint(published), strict=True)
    assert torch.equal(backbone.stages[3].op_list[1].context_module.main.qkv.conv.weight,
                       weights["stages.3.op_list.1.context_module.main.qkv.conv.weight"])


def test_rejects_maps_too_small_for_linear_attention():
    backbone = EfficientVitBackbone.from_variant("b0").eval()
    with pytest.raises(ValueError, match="LiteMLA needs more than"):
        backbone(torch.zeros(1, 3, 64, 64))  # 2x2 final map: 4 tokens <= head_dim 16


@pytest.mark.slow  # CI lowers the EfficientViT family whole in tests/export/test_backbone_exports.py
def test_fused_b0_lowers_to_xnnpack(reference):
    from executorch.extension.pybindings.portable_lib import _load_for_executorch_from_buffer

    from export.lowering import count_delegates, lower_to_xnnpack, ops_outside_delegate

    entry = reference["b0"]
    backbone = _seeded_backbone("b0", entry).fuse()
    image = MAKE.seeded_image(entry["image_seed"], 504)
    program = torch.export.export(backbone, (image,))
    edge = lower_to_xnnpack({"forward": program})
    outside = ops_outside_delegate(edge, "forward")
    print("delegates:", count_delegates(edge, "forward"), "outside the delegate:", dict(outside))
    assert not outside, outside
    buffer = edge.to_executorch().buffer  # kept alive: the loaded program reads from it
    (lowered,) = _load_for_executorch_from_buffer(buffer).run_method("forward", (image,))
    assert_close_to({MAKE.output_name(504): lowered}, {MAKE.output_name(504): entry["outputs"][MAKE.output_name(504)]},
                    TOL)
