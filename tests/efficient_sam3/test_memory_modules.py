import torch
from torch import nn

from efficient_sam3 import EfficientSam3Config, MemoryCrossAttention, PerceiverResampler


def test_memory_cross_attention_parameter_count_and_identity_at_init():
    module = MemoryCrossAttention(256, 8)
    counts = {name: p.numel() for name, p in module.named_parameters()}
    assert sum(v for k, v in counts.items() if k != "gate") == 264_192
    assert counts["gate"] == 1
    vision, memory = torch.randn(2, 1296, 256), torch.randn(2, 64, 256)
    out = module(vision, memory, torch.ones(2, dtype=torch.bool))
    assert torch.equal(out, vision)


def test_memory_cross_attention_matches_nn_multihead_attention():
    torch.manual_seed(0)
    module = MemoryCrossAttention(256, 8)
    reference = nn.MultiheadAttention(256, 8, batch_first=True)
    module.attn.load_state_dict(reference.state_dict())  # MHA-compatible keys
    with torch.no_grad():
        module.gate.fill_(0.5)
    vision, memory = torch.randn(2, 50, 256), torch.randn(2, 64, 256)
    q, kv = module.norm_query(vision), module.norm_memory(memory)
    expected = vision + torch.tanh(torch.tensor(0.5)) * reference(q, kv, kv, need_weights=False)[0]
    out = module(vision, memory, torch.ones(2, dtype=torch.bool))
    assert (out - expected).abs().max() < 1e-5
    # No valid memory in a batch element: exact identity for that element only.
    out = module(vision, memory, torch.tensor([True, False]))
    assert torch.equal(out[1], vision[1]) and not torch.equal(out[0], vision[0])


def test_perceiver_resampler_shape_and_parameter_count():
    config = EfficientSam3Config.preset("edge")
    perceiver = PerceiverResampler(256, config.memory, config.memory_grid)
    assert sum(p.numel() for p in perceiver.parameters()) == 1_336_832
    out = perceiver(torch.randn(2, 8, 256, 18, 18), torch.ones(2, 8, dtype=torch.bool))
    assert out.shape == (2, 64, 256)


def test_perceiver_slot_order_matters():
    """Slots carry a temporal embedding: the same frames in another order give other tokens."""
    config = EfficientSam3Config.preset("tiny")
    perceiver = PerceiverResampler(256, config.memory, config.memory_grid).eval()
    frames = torch.randn(1, 8, 256, 18, 18)
    a = perceiver(frames)
    b = perceiver(frames.flip(1))
    assert (a - b).abs().max() > 1e-4
