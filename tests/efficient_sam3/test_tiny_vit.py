"""TinyViT 5M/11M/21M against the ORIGINAL code (reference outputs in tests/fixtures/original/tiny_vit.pt,
made by tests/fixtures/original/make_tiny_vit.py) at 1008 and 504 px, before and after BatchNorm folding,
plus checkpoint loading and its ExecuTorch/XNNPACK lowering."""


import pytest
import torch
from torch import nn

from efficient_sam3.backbone import fuse_for_deployment
from efficient_sam3.tiny_vit import (CHECKPOINT_PREFIX, TINY_VIT_VARIANTS, TinyVitBackbone,
                                     state_dict_from_checkpoint)
from original_parity import FIXTURE_DIR, assert_close_to, fixture_script, seeded_weights

TOL = 1e-4
SIZES = (1008, 504)



MAKE = fixture_script("make_tiny_vit")
REFERENCE = torch.load(FIXTURE_DIR / "tiny_vit.pt", weights_only=True)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _seeded_backbone(variant: str) -> TinyVitBackbone:
    entry = REFERENCE["variants"][variant]
    backbone = TinyVitBackbone.from_variant(variant)
    backbone.load_state_dict(seeded_weights(entry["manifest"], entry["seed"]), strict=True)
    return backbone.eval()


def test_fixture_covers_every_variant():
    assert sorted(REFERENCE["variants"]) == sorted(TINY_VIT_VARIANTS)


@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("variant", sorted(REFERENCE["variants"]))
def test_matches_original(variant, size, fused):
    entry = REFERENCE["variants"][variant]
    backbone = _seeded_backbone(variant)
    if fused:
        fuse_for_deployment(backbone)
        assert not any(isinstance(module, nn.BatchNorm2d) for module in backbone.modules())
    with torch.inference_mode():
        trunk = backbone(MAKE.input_image(size, entry["seed"]))
    differences = assert_close_to({"trunk": trunk}, entry["outputs"][str(size)], TOL)
    print(variant, size, "fused" if fused else "unfused", differences)


@pytest.mark.parametrize("variant", sorted(TINY_VIT_VARIANTS))
def test_output_shapes(variant):
    """Shapes for every variant at 504 (and 1008) px, on the meta device: no compute."""
    backbone = TinyVitBackbone.from_variant(variant).to("meta")
    channels = TINY_VIT_VARIANTS[variant]["embed_dims"][-1]
    assert backbone.channels == channels
    for size, side in ((504, 16), (1008, 32)):
        trunk = backbone(torch.empty(2, 3, size, size, device="meta"))
        assert trunk.shape == (2, channels, side, side)


def test_loads_a_published_checkpoint_layout():
    """Prefix strip, other modules ignored, a stored ``attention_bias_idxs`` (older TinyViT) dropped."""
    entry = REFERENCE["variants"]["5m"]
    weights = seeded_weights(entry["manifest"], entry["seed"])
    published = {CHECKPOINT_PREFIX + key: value for key, value in weights.items()}
    published["detector.backbone.vision_backbone.trunk.model.head.weight"] = torch.zeros(1)
    stored_index = CHECKPOINT_PREFIX + "layers.1.blocks.0.attn.attention_bias_idxs"
    published[stored_index] = torch.zeros(49, 49, dtype=torch.long)
    backbone = TinyVitBackbone.from_variant("5m")
    backbone.load_state_dict(state_dict_from_checkpoint(published), strict=True)
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, weights[key]), key
    # The recomputed index table, not the stored one, is what the module uses.
    assert backbone.layers[1].blocks[0].attn.attention_bias_idxs.max() == 48


def test_rejects_inconsistent_stage_lists():
    arguments = {**TINY_VIT_VARIANTS["5m"], "num_heads": (2, 4, 5)}
    with pytest.raises(ValueError, match="one entry per stage"):
        TinyVitBackbone(**arguments)


@pytest.mark.slow  # a minute of lowering; CI lowers a fused TinyViT encode_frame whole and matches eager in
# tests/export/test_backbone_exports.py::test_encode_frame_of_each_backbone_family_lowers_whole_and_matches_eager
def test_fused_backbone_lowers_whole_into_xnnpack():
    """The fused 5M widths with one block per stage (every module kind, and window padding at 504 px in
    stages 2 and 3): export, lower, no heavy op outside the delegate, and the program matches eager."""
    from executorch.extension.pybindings.portable_lib import _load_for_executorch_from_buffer

    from export.lowering import lower_to_xnnpack, ops_outside_delegate

    torch.manual_seed(0)
    backbone = TinyVitBackbone(**{**TINY_VIT_VARIANTS["5m"], "depths": (1, 1, 1, 1)})
    with torch.no_grad():  # random BN statistics and attention biases, so folding and the bias gather matter
        for module in backbone.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
            if hasattr(module, "attention_biases"):
                module.attention_biases.normal_()
    backbone = fuse_for_deployment(backbone.eval())
    pixel_values = torch.randn(1, 3, 504, 504)
    edge = lower_to_xnnpack({"forward": torch.export.export(backbone, (pixel_values,))})
    outside = ops_outside_delegate(edge, "forward")
    assert not outside, f"ops outside the XNNPACK delegate: {dict(outside)}"
    buffer = edge.to_executorch().buffer  # kept alive: the loaded program reads from it
    lowered = _load_for_executorch_from_buffer(buffer).run_method("forward", (pixel_values,))[0]
    with torch.no_grad():
        eager = backbone(pixel_values)
    assert lowered.shape == (1, 320, 16, 16)
    assert (lowered - eager).abs().max() <= TOL
