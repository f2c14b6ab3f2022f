from dataclasses import replace

import torch

from efficient_sam3 import EfficientSam3Config, EfficientSam3Model
from efficient_sam3.config import MemoryConfig
from efficient_sam3.perceiver import PerceiverResampler
from training.memory_diagnostics import _perceiver_attention
from training.video import use_perceiver_qk_norm

GRID = 18


def _features(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 8, 256, GRID, GRID, generator=torch.Generator().manual_seed(seed))


def test_default_perceiver_has_no_qk_norm_parameters():
    perceiver = PerceiverResampler(256, MemoryConfig(), GRID)
    assert not perceiver.qk_norm
    assert not any("q_norm" in name or "k_norm" in name for name in perceiver.state_dict())


def test_qk_norm_makes_attention_invariant_to_the_scale_of_queries_and_keys():
    torch.manual_seed(0)
    perceiver = PerceiverResampler(256, MemoryConfig(perceiver_qk_norm=True), GRID).eval()
    plain = PerceiverResampler(256, MemoryConfig(), GRID).eval()
    plain.load_state_dict({k: v for k, v in perceiver.state_dict().items() if "_norm." not in k or "norm_" in k},
                          strict=False)
    features = _features()
    with torch.no_grad():
        before, plain_before = perceiver(features), plain(features)
        for model in (perceiver, plain):
            for layer in model.layers:  # grow the logits 20x, as a collapsing perceiver does
                for proj in (layer.attn.q_proj, layer.attn.k_proj):
                    proj.weight.mul_(20)
                    proj.bias.mul_(20)
        after, plain_after = perceiver(features), plain(features)
    assert torch.allclose(before, after, atol=1e-3)  # up to the LayerNorms' eps
    assert not torch.allclose(plain_before, plain_after, atol=1e-2)  # without QK-norm the attention sharpens


def test_diagnostics_read_the_attention_the_layer_computes():
    torch.manual_seed(0)
    perceiver = PerceiverResampler(256, MemoryConfig(perceiver_qk_norm=True), GRID).eval()
    media = torch.randn(1, 8 * GRID * GRID, 256)
    latents = torch.randn(1, 64, 256)
    bias = torch.zeros(1, 1, 64, 8 * GRID * GRID + 64)
    layer = perceiver.layers[0]
    with torch.no_grad():
        probs = _perceiver_attention(layer, media, latents, bias)  # [1, h, M, Nk]
        normed = layer.norm_latents(latents)
        keys = torch.cat([layer.norm_media(media), normed], dim=1)
        _, _, v = layer.heads(normed, keys)
        attended = torch.matmul(probs, v).transpose(1, 2).reshape(1, 64, 256)
        expected = latents + layer.attn.o_proj(attended)
        expected = expected + layer.ff(expected)
        assert torch.allclose(layer(media, latents, bias), expected, atol=1e-5)


def test_use_perceiver_qk_norm_switches_a_student_and_survives_save_and_load(tmp_path):
    torch.manual_seed(0)
    model = EfficientSam3Model(EfficientSam3Config.from_preset("tiny")).eval()
    features = _features(1)[:1]
    with torch.no_grad():
        before = model.encode_memory(features)
        use_perceiver_qk_norm(model)
        after = model.encode_memory(features)
    assert model.config.memory.perceiver_qk_norm and model.perceiver_resampler.qk_norm
    assert not torch.allclose(before, after)
    with torch.no_grad():
        for layer in model.perceiver_resampler.layers:
            layer.q_norm.weight.fill_(1.5)
        after = model.encode_memory(features)
    model.save_pretrained(tmp_path / "m")
    loaded = EfficientSam3Model.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.memory.perceiver_qk_norm
    with torch.no_grad():
        assert torch.allclose(loaded.encode_memory(features), after, atol=1e-5)
    use_perceiver_qk_norm(loaded)  # already on: nothing changes
    assert torch.equal(loaded.perceiver_resampler.layers[0].q_norm.weight,
                       torch.full_like(loaded.perceiver_resampler.layers[0].q_norm.weight, 1.5))


def test_a_config_saved_without_the_field_loads_without_qk_norm():
    data = EfficientSam3Config.from_preset("tiny").to_dict()
    data["memory"].pop("perceiver_qk_norm")
    config = EfficientSam3Config.from_dict(data)
    assert config.memory.perceiver_qk_norm is False
    assert replace(config.memory, perceiver_qk_norm=True).perceiver_qk_norm


def test_values_without_position_read_the_bare_features():
    features = _features(3)[:1]  # [1, T, C, H, W]
    bare = features.flatten(3).transpose(2, 3).reshape(1, 8 * GRID * GRID, 256)  # [1, T*HW, C]
    seen = {}
    for value_pos in (True, False):
        torch.manual_seed(0)
        perceiver = PerceiverResampler(256, MemoryConfig(perceiver_value_pos=value_pos), GRID).eval()
        handles = [layer.register_forward_hook(lambda module, args, output, key=(value_pos, index):
                                               seen.__setitem__(key, args))
                   for index, layer in enumerate(perceiver.layers)]
        with torch.no_grad():
            perceiver(features)
        for handle in handles:
            handle.remove()
    for index in range(2):
        media, _, _, value_media = seen[False, index]
        assert torch.equal(value_media, bare)  # values: the features alone
        assert not torch.allclose(media, bare)  # keys: the features with their position and slot encodings
        assert seen[True, index][3] is None  # the perceiver of before: values read the keys' tokens
    torch.manual_seed(0)
    perceiver = PerceiverResampler(256, MemoryConfig(perceiver_value_pos=False), GRID).eval()
    layer = perceiver.layers[0]
    latents = torch.randn(1, 64, 256)
    media = bare + torch.randn(256)  # stands in for the encodings
    key_bias = torch.zeros(1, 1, 64, 8 * GRID * GRID + 64)
    with torch.no_grad():
        normed = layer.norm_latents(latents)
        keys = torch.cat([layer.norm_media(media), normed], dim=1)
        values = torch.cat([layer.norm_media(bare), normed], dim=1)
        expected = latents + layer.attn(normed, keys, values, key_bias)
        expected = expected + layer.ff(expected)
        assert torch.allclose(layer(media, latents, key_bias, bare), expected, atol=1e-5)
        assert not torch.allclose(layer(media, latents, key_bias), expected, atol=1e-3)


def test_use_perceiver_values_without_position_survives_save_and_load(tmp_path):
    from training.video import use_perceiver_values_without_position

    torch.manual_seed(0)
    model = EfficientSam3Model(EfficientSam3Config.from_preset("tiny")).eval()
    features = _features(2)[:1]
    with torch.no_grad():
        before = model.encode_memory(features)
        use_perceiver_values_without_position(model)
        after = model.encode_memory(features)
    assert not model.config.memory.perceiver_value_pos and not torch.allclose(before, after)
    model.save_pretrained(tmp_path / "m")
    loaded = EfficientSam3Model.from_pretrained(tmp_path / "m").eval()
    assert not loaded.config.memory.perceiver_value_pos
    with torch.no_grad():
        assert torch.allclose(loaded.encode_memory(features), after, atol=1e-5)
    data = EfficientSam3Config.from_preset("tiny").to_dict()
    data["memory"].pop("perceiver_value_pos")
    assert EfficientSam3Config.from_dict(data).memory.perceiver_value_pos is True  # older configs: as before
