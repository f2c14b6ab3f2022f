import pytest
import torch
from torch import nn

from efficient_sam3 import EfficientSam3Config, MemoryCrossAttention, PerceiverResampler
from efficient_sam3.config import MemoryConfig
from efficient_sam3.memory_attention import PackedCrossAttention
from efficient_sam3.position_encoding import gaussian_locality_bias

MEMORY = MemoryConfig()
QUERY_GRID = 36  # the DETR encoder's 36 x 36 tokens at 504 px


def test_memory_cross_attention_parameter_count_and_identity_at_init():
    module = MemoryCrossAttention(256, MEMORY, QUERY_GRID)
    counts = {name: p.numel() for name, p in module.named_parameters()}
    assert counts["spatial_bias"] == 1296 * 64
    assert sum(v for k, v in counts.items() if k not in ("gate", "spatial_bias")) == 264_192
    assert counts["gate"] == 1
    vision, memory = torch.randn(2, 1296, 256), torch.randn(2, 64, 256)
    out = module(vision, memory, torch.ones(2, dtype=torch.bool))
    assert torch.equal(out, vision)  # out_proj starts at zero
    # ... but the gate is open, so the first step already trains out_proj.
    out.sum().backward()
    assert module.attn.out_proj.weight.grad.abs().sum() > 0


def test_packed_cross_attention_matches_nn_multihead_attention():
    torch.manual_seed(0)
    module = PackedCrossAttention(256, 8)
    reference = nn.MultiheadAttention(256, 8, batch_first=True)
    module.load_state_dict(reference.state_dict())  # MHA-compatible keys
    query, memory = torch.randn(2, 50, 256), torch.randn(2, 64, 256)
    expected = reference(query, memory, memory, need_weights=False)[0]
    assert (module(query, memory) - expected).abs().max() < 1e-5


def test_memory_cross_attention_without_valid_memory_is_identity_per_batch_element():
    torch.manual_seed(0)
    module = MemoryCrossAttention(256, MEMORY, QUERY_GRID)
    nn.init.normal_(module.attn.out_proj.weight, std=0.05)
    vision, memory = torch.randn(2, 1296, 256), torch.randn(2, 64, 256)
    out = module(vision, memory, torch.tensor([True, False]))
    assert torch.equal(out[1], vision[1]) and not torch.equal(out[0], vision[0])


def test_gaussian_locality_bias_peaks_at_the_nearest_cell():
    bias = gaussian_locality_bias(36, 8, sigma=0.75 / 8)  # [1296, 64]
    assert bias.shape == (1296, 64)
    # Vision token (row 0, col 0) is nearest latent 0; token (35, 35) nearest latent 63; token (0, 35) latent 7.
    assert bias[0].argmax() == 0 and bias[1295].argmax() == 63 and bias[35].argmax() == 7
    # One latent cell (1/8 of the image) away: -0.5 / 0.75^2.
    far = gaussian_locality_bias(8, 8, sigma=0.75 / 8)
    assert far[0, 1].item() == pytest.approx(-0.5 / 0.75**2, rel=1e-5)
    assert far[0, 0].item() == 0.0


def test_memory_cross_attention_reads_memory_by_location():
    """At init each vision token reads mostly the latent of its own image cell: a memory that differs
    only in one latent changes the tokens over that cell far more than tokens across the image."""
    torch.manual_seed(0)
    module = MemoryCrossAttention(256, MEMORY, QUERY_GRID)
    nn.init.normal_(module.attn.out_proj.weight, std=0.05)
    vision, memory = torch.randn(1, 1296, 256), torch.randn(1, 64, 256)
    changed = memory.clone()
    changed[0, 0] += 5 * torch.randn(256)  # latent 0 covers the top-left eighth of the image
    has = torch.ones(1, dtype=torch.bool)
    delta = (module(vision, changed, has) - module(vision, memory, has)).norm(dim=-1).view(36, 36)
    assert delta[:4, :4].mean() > 5 * delta[-4:, -4:].mean()


def test_perceiver_resampler_shape_and_parameter_count():
    config = EfficientSam3Config.from_preset("edge")
    perceiver = PerceiverResampler(256, config.memory, config.memory_grid)
    # 1,336,832 Flamingo-style weights + spatial prior [64, 324] + slot bias [8].
    assert sum(p.numel() for p in perceiver.parameters()) == 1_336_832 + 64 * 324 + 8
    out = perceiver(torch.randn(2, 8, 256, 18, 18), torch.ones(2, 8, dtype=torch.bool))
    assert out.shape == (2, 64, 256)


def test_perceiver_slot_order_matters():
    """Slots carry a temporal embedding: the same frames in another order give other tokens."""
    config = EfficientSam3Config.from_preset("tiny")
    perceiver = PerceiverResampler(256, config.memory, config.memory_grid).eval()
    frames = torch.randn(1, 8, 256, 18, 18)
    a = perceiver(frames)
    b = perceiver(frames.flip(1))
    assert (a - b).abs().max() > 1e-4


def test_perceiver_latents_summarise_their_own_image_cell():
    """A change confined to the top-left of the most recent frame moves latent 0 (top-left cell)
    more than latent 63 (bottom-right)."""
    torch.manual_seed(0)
    config = EfficientSam3Config.from_preset("tiny")
    perceiver = PerceiverResampler(256, config.memory, config.memory_grid).eval()
    frames = torch.randn(1, 8, 256, 18, 18)
    changed = frames.clone()
    changed[0, 7, :, :3, :3] += 3 * torch.randn(256, 3, 3)
    delta = (perceiver(changed) - perceiver(frames)).norm(dim=-1)[0]  # [64]
    assert delta[0] > 3 * delta[63]


def test_memory_config_needs_a_square_number_of_latents():
    with pytest.raises(ValueError, match="square"):
        MemoryConfig(num_latents=60)
