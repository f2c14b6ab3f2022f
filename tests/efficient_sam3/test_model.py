import pytest
import torch

from efficient_sam3 import EfficientSam3Config, freeze_for_video_distillation
from model_helpers import open_memory_path

BATCH = 2


def _inputs(config, seed=0):
    gen = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(BATCH, 3, config.image_size, config.image_size, generator=gen)
    input_ids = torch.randint(0, 49406, (BATCH, config.text.max_length), generator=gen)
    attention_mask = torch.ones(BATCH, config.text.max_length, dtype=torch.long)
    attention_mask[1, 6:] = 0
    return pixel_values, input_ids, attention_mask


def _memory(config, seed=1):
    gen = torch.Generator().manual_seed(seed)
    grid = config.memory_grid
    return torch.randn(BATCH, config.memory.context_frames, config.hidden_size, grid, grid, generator=gen)


def _assert_output_shapes(out, config):
    q = config.detr_decoder.num_queries
    assert out.pred_masks.shape == (BATCH, q, 144, 144)
    assert out.pred_boxes.shape == (BATCH, q, 4)
    assert out.pred_logits.shape == (BATCH, q)
    assert out.presence_logits.shape == (BATCH, 1)
    assert out.iou_scores.shape == (BATCH, q)
    for value in vars(out).values():
        assert torch.isfinite(value).all()
    assert (out.pred_boxes[..., 2:] >= out.pred_boxes[..., :2]).all()  # xyxy (not clipped, as SAM3)


def test_tiny_keeps_the_edge_tensor_contract(tiny_config):
    edge = EfficientSam3Config.from_preset("edge")
    for config in (tiny_config, edge):
        assert config.image_size == 504
        assert config.fpn_sizes == (144, 72, 36, 18)
        assert config.hidden_size == 256
        assert config.memory.context_frames == 8 and config.memory.num_latents == 64
    assert edge.backbone.trunk_channels == 1024 and edge.detr_decoder.num_queries == 200
    assert edge.detr_encoder.num_layers == 6 and edge.detr_decoder.num_layers == 6


def test_encode_image_gives_four_fpn_levels(tiny_model, tiny_config):
    pixel_values, _, _ = _inputs(tiny_config)
    with torch.no_grad():
        vision = tiny_model.encode_image(pixel_values)
    shapes = [tuple(level.shape) for level in vision.fpn_hidden_states]
    assert shapes == [(BATCH, 256, 144, 144), (BATCH, 256, 72, 72), (BATCH, 256, 36, 36), (BATCH, 256, 18, 18)]
    assert vision.memory_features.shape == (BATCH, 256, 18, 18)


@pytest.mark.parametrize("valid_frames", [8, 3])
def test_forward_and_forward_video_shapes(tiny_model, tiny_config, valid_frames):
    pixel_values, input_ids, attention_mask = _inputs(tiny_config)
    memory_mask = torch.zeros(BATCH, 8, dtype=torch.bool)
    memory_mask[:, 8 - valid_frames:] = True
    with torch.no_grad():
        _assert_output_shapes(tiny_model(pixel_values, input_ids, attention_mask), tiny_config)
        out = tiny_model.forward_video(pixel_values, input_ids, _memory(tiny_config), memory_mask, attention_mask)
    _assert_output_shapes(out, tiny_config)


def test_forward_video_equals_forward_at_initialisation(tiny_model, tiny_config):
    pixel_values, input_ids, attention_mask = _inputs(tiny_config)
    with torch.no_grad():
        image = tiny_model(pixel_values, input_ids, attention_mask)
        for seed in (1, 2):
            video = tiny_model.forward_video(pixel_values, input_ids, _memory(tiny_config, seed) * 10, None,
                                             attention_mask)
            for name in vars(image):
                assert (getattr(image, name) - getattr(video, name)).abs().max() <= 1e-6, name


def test_forward_video_without_valid_memory_equals_forward_after_training(tiny_model, tiny_config):
    """With every slot masked the memory path is off even when its gate is open."""
    pixel_values, input_ids, attention_mask = _inputs(tiny_config)
    with torch.no_grad():
        open_memory_path(tiny_model, 1.0)
        image = tiny_model(pixel_values, input_ids, attention_mask)
        no_memory = tiny_model.forward_video(pixel_values, input_ids, _memory(tiny_config),
                                             torch.zeros(BATCH, 8, dtype=torch.bool), attention_mask)
        with_memory = tiny_model.forward_video(pixel_values, input_ids, _memory(tiny_config), None, attention_mask)
    assert torch.equal(image.pred_logits, no_memory.pred_logits)
    assert (image.pred_logits - with_memory.pred_logits).abs().max() > 1e-4


def test_one_prompt_encoding_serves_several_memory_conditions(tiny_model, tiny_config):
    """encode_prompt once, then decode_with_memory with a batch of memories (what memory_eval does for its
    conditions): every row equals forward_video of one frame, its prompt and that memory alone."""
    pixel_values, input_ids, attention_mask = _inputs(tiny_config)
    memory = _memory(tiny_config)  # [2, T, ...]: two memory conditions
    memory_mask = torch.ones(BATCH, 8, dtype=torch.bool)
    memory_mask[1] = False  # the second condition has no valid slot (memory off)
    with torch.no_grad():
        open_memory_path(tiny_model, 1.0)
        vision = tiny_model.encode_image(pixel_values[:1])
        text = tiny_model.encode_text(input_ids, attention_mask)  # two prompts
        prompt, encoder_tokens = tiny_model.encode_prompt(vision, text)
        tokens = tiny_model.encode_memory(memory, memory_mask)
        rows = type(prompt)(features=prompt.features.repeat(2, 1, 1), mask=prompt.mask.repeat(2, 1))
        batched = tiny_model.decode_with_memory(vision, rows, encoder_tokens.repeat(2, 1, 1),
                                                tokens.repeat_interleave(2, 0), memory_mask.any(1).repeat_interleave(2))
        for condition, p in ((0, 1), (1, 0)):  # each memory condition, each prompt
                alone = tiny_model.forward_video(pixel_values[:1], input_ids[p:p + 1], memory[condition:condition + 1],
                                                 memory_mask[condition:condition + 1], attention_mask[p:p + 1])
                for name in vars(alone):
                    assert torch.allclose(getattr(batched, name)[2 * condition + p], getattr(alone, name)[0],
                                          atol=1e-4), (condition, p, name)
        image = tiny_model(pixel_values[:1], input_ids, attention_mask)
    assert torch.allclose(batched.pred_logits[2:], image.pred_logits, atol=1e-4)  # memory off = the image model
    assert (batched.pred_logits[:2] - image.pred_logits).abs().max() > 1e-3  # memory on changes the answer


def test_masked_slots_are_ignored(tiny_model, tiny_config):
    pixel_values, input_ids, attention_mask = _inputs(tiny_config)
    memory = _memory(tiny_config)
    memory_mask = torch.ones(BATCH, 8, dtype=torch.bool)
    memory_mask[:, :5] = False  # a stream's start: only the 3 most recent slots hold frames
    changed = memory.clone()
    changed[:, :5] = torch.randn_like(changed[:, :5]) * 100
    with torch.no_grad():
        open_memory_path(tiny_model, 1.0)  # make the memory path matter
        tokens_a = tiny_model.encode_memory(memory, memory_mask)
        tokens_b = tiny_model.encode_memory(changed, memory_mask)
        out_a = tiny_model.forward_video(pixel_values, input_ids, memory, memory_mask, attention_mask)
        out_b = tiny_model.forward_video(pixel_values, input_ids, changed, memory_mask, attention_mask)
        # A valid slot does matter.
        changed_valid = memory.clone()
        changed_valid[:, 7] = torch.randn_like(changed_valid[:, 7])
        tokens_c = tiny_model.encode_memory(changed_valid, memory_mask)
    assert torch.equal(tokens_a, tokens_b)
    assert torch.equal(out_a.pred_masks, out_b.pred_masks)
    assert (tokens_a - tokens_c).abs().max() > 1e-3


def test_wrong_shapes_raise_clear_errors(tiny_model, tiny_config):
    pixel_values, input_ids, attention_mask = _inputs(tiny_config)
    with pytest.raises(ValueError, match="pixel_values must be"):
        tiny_model(pixel_values[:, :, :500], input_ids, attention_mask)
    with pytest.raises(ValueError, match="input_ids must be"):
        tiny_model(pixel_values, input_ids[:, :10], attention_mask[:, :10])
    with pytest.raises(ValueError, match="memory_features must be"):
        tiny_model.forward_video(pixel_values, input_ids, torch.zeros(BATCH, 4, 256, 18, 18))
    with pytest.raises(ValueError, match="exactly one of pixel_values"):
        tiny_model(None, input_ids, attention_mask)


def test_freeze_leaves_only_memory_modules_trainable(tiny_model, tiny_config):
    trainable = freeze_for_video_distillation(tiny_model)
    assert trainable and all(n.startswith(("perceiver_resampler.", "memory_cross_attn.")) for n in trainable)
    expected = {n for n, _ in tiny_model.named_parameters() if n.startswith(("perceiver_resampler.", "memory_cross_attn."))}
    assert set(trainable) == expected
    # Open the gate a little so the perceiver receives gradient too (at exactly zero only the gate does).
    with torch.no_grad():
        open_memory_path(tiny_model, 0.1)
    pixel_values, input_ids, attention_mask = _inputs(tiny_config)
    out = tiny_model.forward_video(pixel_values, input_ids, _memory(tiny_config), None, attention_mask)
    (out.pred_masks.mean() + out.pred_logits.mean() + out.pred_boxes.mean()).backward()
    for name, param in tiny_model.named_parameters():
        if name in expected:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name


def test_info_table_lists_every_module(capsys):
    from efficient_sam3.__main__ import main

    main(["info", "--preset", "tiny"])
    printed = capsys.readouterr().out
    for name in ("backbone", "neck", "text_encoder", "detr_encoder", "detr_decoder", "mask_decoder",
                 "perceiver_resampler", "memory_cross_attn", "total"):
        assert name in printed


def test_default_config_is_plain_data():
    """The ``preset`` field holds a name (the classmethod is ``from_preset``), so any config serialises."""
    import json

    config = EfficientSam3Config()
    assert config.preset == "custom"  # its defaults are no preset's, so it does not claim one (issue #17)
    assert config != EfficientSam3Config.from_preset("edge")
    assert json.loads(json.dumps(config.to_dict()))["preset"] == "custom"
    assert EfficientSam3Config.from_preset("edge").preset == "edge"
