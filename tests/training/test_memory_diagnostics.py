"""training.memory_diagnostics: retention separates a content-free memory from a real one; attention and
update numbers are what the modules compute."""

import math

import pytest
import torch

from model_helpers import open_memory_path
from training.memory_diagnostics import (
    RETENTION_THRESHOLD,
    content_retention,
    max_entropy,
    measure_memory,
    summarise,
)


def _probe(model, clips: int, same_content: bool):
    config = model.config
    generator = torch.Generator().manual_seed(0)
    grid, frames = config.memory_grid, config.memory.context_frames
    features = torch.randn(1 if same_content else clips, frames, config.hidden_size, grid, grid, generator=generator)
    features = features.expand(clips, -1, -1, -1, -1).contiguous()
    pixels = torch.randn(clips, 3, config.image_size, config.image_size, generator=generator)
    input_ids, attention_mask = model.tokenize(["red circle"] * clips)
    return pixels, input_ids, attention_mask, features


def _forward(model, probe):
    pixels, input_ids, attention_mask, features = probe
    return model.forward_video(pixels, input_ids, features, attention_mask=attention_mask)


def test_content_retention_is_the_mean_pairwise_relative_difference():
    a, b = torch.ones(4, 2), torch.zeros(4, 2)
    b[0, 0] = 1.0
    tokens = torch.stack([a, a.clone(), b])  # [3, M=4, C=2]
    norm_a, norm_b = math.sqrt(8), 1.0
    diff_ab = math.sqrt(7)
    expected = (0 + 2 * diff_ab / ((norm_a + norm_b) / 2)) / 3
    assert content_retention(tokens) == pytest.approx(expected)
    with pytest.raises(ValueError):
        content_retention(tokens[:1])


def test_different_clips_are_retained_and_identical_ones_reported_as_collapse(tiny_model):
    model = tiny_model.eval()
    real = measure_memory(model, _forward, _probe(model, 3, same_content=False))
    assert real.retention > RETENTION_THRESHOLD and not real.collapsed and real.warning() is None
    same = measure_memory(model, _forward, _probe(model, 3, same_content=True))
    assert same.retention < 1e-5 and same.collapsed
    assert "MEMORY COLLAPSE" in same.warning()
    keys = model.config.memory.context_frames * model.config.memory_grid ** 2 + model.config.memory.num_latents
    assert 0.0 < real.context_mass < 1.0
    assert 0.0 < real.attention_entropy <= max_entropy(keys) + 1e-4
    assert real.latent_norm == pytest.approx(float(model.perceiver_resampler.latents.detach().norm(dim=-1).mean()))
    assert real.memory_norm > 0


def test_update_ratio_is_zero_at_initialisation_and_follows_the_gate(tiny_model):
    model = tiny_model.eval()
    probe = _probe(model, 2, same_content=False)
    assert measure_memory(model, _forward, probe).update_ratio == 0.0  # out_proj starts at zero
    open_memory_path(model, gate=0.5)
    half = measure_memory(model, _forward, probe).update_ratio
    open_memory_path(model, gate=1.0)
    full = measure_memory(model, _forward, probe).update_ratio
    assert half > 0 and full / half == pytest.approx(math.tanh(1.0) / math.tanh(0.5), rel=1e-4)


def test_hooks_are_removed_after_a_measurement(tiny_model):
    model = tiny_model.eval()
    measure_memory(model, _forward, _probe(model, 2, same_content=False))
    assert not model.perceiver_resampler._forward_hooks
    assert not model.memory_cross_attn._forward_hooks
    assert all(not layer._forward_hooks for layer in model.perceiver_resampler.layers)


def test_summary_names_the_collapse_steps():
    rows = [{"step": s, "mem_retention": r, "mem_context_mass": 0.5, "mem_attention_entropy": 3.0,
             "mem_latent_norm": 0.2, "mem_memory_norm": 16.0, "mem_update_ratio": 0.1}
            for s, r in ((0, 0.3), (50, 0.02), (100, 0.01))]
    summary = summarise(rows)
    assert summary["collapsed"] and summary["collapse_steps"] == [50, 100]
    assert summary["retention_first"] == 0.3 and summary["retention_min"] == 0.01
    assert summarise([]) == {}
