from dataclasses import replace

import numpy as np
import pytest
import torch

from training.config import VideoDistillationConfig
from training.memory_tasks import HIDE_GREY, MemoryTaskConfig, augment_clip, drop_slots, hide_box, hide_one_object, \
    task_rng
from training.video import build_parser

GREY = HIDE_GREY / 255.0 * 2 - 1  # SAM3 normalisation (mean 0.5, std 0.5)


def _item(num_valid: int = 8) -> dict:
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[0, 10:20, 10:30] = True
    masks[1, 40:50, 40:60] = True
    memory_mask = torch.zeros(8, dtype=torch.bool)
    memory_mask[8 - num_valid:] = True
    return {"pixel_values": torch.full((3, 64, 64), 0.7), "gt_masks": masks,
            "memory_features": torch.ones(8, 4, 3, 3) * memory_mask[:, None, None, None],
            "memory_mask": memory_mask, "prompts": ["red circle", "blue square"], "video_id": "v"}


def test_hide_box_covers_the_mask_with_a_margin():
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[10:20, 10:30] = True  # 10 x 20 pixels
    y0, y1, x0, x1 = hide_box(mask)
    assert (y0, y1) == (10 - 3, 20 + 3) and (x0, x1) == (10 - 5, 30 + 5)
    mask[:] = False
    mask[0:5, 60:64] = True  # clipped at the image border
    y0, y1, x0, x1 = hide_box(mask)
    assert y0 == 0 and x1 >= 64


def test_hide_one_object_greys_one_object_and_keeps_the_ground_truth():
    item = _item()
    seen = set()
    for seed in range(20):
        hidden, chosen = hide_one_object(item["pixel_values"], item["gt_masks"], np.random.default_rng(seed))
        seen.add(chosen)
        inside = hidden[:, item["gt_masks"][chosen]]
        assert torch.allclose(inside, torch.full_like(inside, GREY))
        other = hidden[:, item["gt_masks"][1 - chosen]]
        assert torch.allclose(other, torch.full_like(other, 0.7))  # the other object stays visible
    assert seen == {0, 1}  # any object, prompted or not, may be hidden
    assert torch.allclose(item["pixel_values"], torch.full((3, 64, 64), 0.7))  # the input is not modified
    empty = torch.zeros(1, 64, 64, dtype=torch.bool)
    same, chosen = hide_one_object(item["pixel_values"], empty, np.random.default_rng(0))
    assert chosen == -1 and same is item["pixel_values"]


def test_drop_slots_masks_valid_slots_and_keeps_one():
    mask = torch.tensor([False, False, True, True, True, True, True, True])
    rng = np.random.default_rng(0)
    counts = []
    for _ in range(200):
        kept = drop_slots(mask, rng, 0.5)
        assert not (kept & ~mask).any()  # never revives an invalid slot
        assert kept.any()
        counts.append(int(kept.sum()))
    assert 2 < np.mean(counts) < 4.5  # about half of the 6 valid slots
    assert torch.equal(drop_slots(mask, rng, 1.0).sum(), torch.tensor(1))
    assert drop_slots(mask, rng, 0.0) is mask


def test_augment_clip_is_a_no_op_when_off_and_zeroes_dropped_slots():
    item = _item()
    assert augment_clip(item, MemoryTaskConfig(), np.random.default_rng(0)) is item
    out = augment_clip(item, MemoryTaskConfig(slot_dropout=0.9), np.random.default_rng(0))
    assert out["memory_mask"].sum() < 8 and out["memory_mask"].any()
    assert torch.equal(out["memory_features"].flatten(1).abs().sum(1) > 0, out["memory_mask"])
    assert item["memory_mask"].all()  # the dataset's item is left alone
    hidden = augment_clip(item, MemoryTaskConfig(hide_object_prob=1.0), np.random.default_rng(0))
    assert hidden["hidden_object"] in (0, 1)
    assert not torch.equal(hidden["pixel_values"], item["pixel_values"])
    assert torch.equal(hidden["gt_masks"], item["gt_masks"])


def test_nothing_is_hidden_without_context():
    item = _item(num_valid=0)
    out = augment_clip(item, MemoryTaskConfig(hide_object_prob=1.0), np.random.default_rng(0))
    assert torch.equal(out["pixel_values"], item["pixel_values"]) and "hidden_object" not in out


def test_task_rng_is_its_own_stream():
    a = task_rng(0, 0, 0, 5).random(4)
    assert np.array_equal(a, task_rng(0, 0, 0, 5).random(4))
    assert not np.array_equal(a, task_rng(0, 0, 0, 6).random(4))


def test_flags_reach_the_config_and_bad_values_are_rejected():
    args = build_parser().parse_args(["--sav-root", "x", "--cache-dir", "y", "--hide-object-prob", "0.25",
                                      "--slot-dropout", "0.25"])
    assert args.hide_object_prob == 0.25 and args.slot_dropout == 0.25
    defaults = build_parser().parse_args(["--sav-root", "x", "--cache-dir", "y"])
    assert defaults.hide_object_prob == 0.5 and defaults.slot_dropout == 0.0  # issue #16's recipe hides objects
    assert (defaults.lr, defaults.perceiver_lr_scale) == (1e-3, 0.1)
    with pytest.raises(ValueError, match="hide_object_prob"):
        VideoDistillationConfig(hide_object_prob=1.5)
    with pytest.raises(ValueError, match="slot_dropout"):
        VideoDistillationConfig(slot_dropout=-0.1)
    with pytest.raises(ValueError):
        MemoryTaskConfig(slot_dropout=2.0)


class _VideoStageReached(Exception):
    pass


def test_the_pipeline_passes_the_recipe_options_to_the_video_stage(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import training.pipeline as pipeline
    from training.config import PipelineConfig

    def fake_data(data_dir, total, seed, val_fraction, scene_config, show_progress):
        for split, count in (("train", 2), ("val", 1)):
            (data_dir / split).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                (data_dir / split / f"v{index}_manual.json").write_text("{}")

    seen = {}

    def fake_video_stage(config):
        seen["config"] = config
        raise _VideoStageReached

    monkeypatch.setattr(pipeline, "generate_dataset", fake_data)
    monkeypatch.setattr(pipeline, "train_image_stage",
                        lambda config: SimpleNamespace(checkpoint=tmp_path / "s", steps=1, final_loss=0.0))
    monkeypatch.setattr(pipeline, "cache_features",
                        lambda config: SimpleNamespace(failed=[], frames_written=1, teacher="t"))
    monkeypatch.setattr(pipeline, "train_video_stage", fake_video_stage)
    config = replace(PipelineConfig.smoke(tmp_path / "run"), show_progress=False, video_hide_object_prob=0.5,
                     video_slot_dropout=0.25, video_perceiver_qk_norm=True,
                     video_perceiver_values_without_position=True)
    with pytest.raises(_VideoStageReached):
        pipeline.run_default_pipeline(config)
    video = seen["config"]
    assert (video.hide_object_prob, video.slot_dropout, video.perceiver_qk_norm,
            video.perceiver_values_without_position) == (0.5, 0.25, True, True)


def test_the_video_stage_augments_its_clips_and_saves_qk_norm(tmp_path, monkeypatch):
    import training.video as video
    from training.video import train_video_stage
    from video_stage_data import make_clip_data

    from efficient_sam3 import EfficientSam3Model

    sav_root, cache_dir, student = make_clip_data(tmp_path, num_videos=2)
    calls = []
    original = video.augment_clip

    def recording(item, config, rng):
        out = original(item, config, rng)
        calls.append((config, out))
        return out

    monkeypatch.setattr(video, "augment_clip", recording)
    config = VideoDistillationConfig(sav_root=sav_root, cache_dir=cache_dir, student_checkpoint=student,
                                     out_dir=tmp_path / "run", epochs=1, steps_per_epoch=3, grad_accum=1,
                                     warmup_steps=1, hide_object_prob=1.0, slot_dropout=0.5,
                                     perceiver_qk_norm=True, perceiver_values_without_position=True,
                                     perceiver_lr_scale=0.1, show_progress=False)
    result = train_video_stage(config)
    assert len(calls) == 3 and all(c.hide_object_prob == 1.0 and c.slot_dropout == 0.5 for c, _ in calls)
    assert any("hidden_object" in item for _, item in calls)
    saved = EfficientSam3Model.from_pretrained(result.final_model)
    assert saved.config.memory.perceiver_qk_norm and saved.perceiver_resampler.qk_norm
    assert not saved.config.memory.perceiver_value_pos and not saved.perceiver_resampler.value_pos
    trained = saved.perceiver_resampler.layers[0].q_norm.weight
    assert not torch.equal(trained, torch.ones_like(trained))  # the new norms are trained with the perceiver
    calls.clear()
    plain = train_video_stage(replace(config, out_dir=tmp_path / "plain", hide_object_prob=0.0, slot_dropout=0.0,
                                      perceiver_qk_norm=False, perceiver_values_without_position=False))
    assert not calls  # off: the dataset's items go to the batch untouched
    plain_config = EfficientSam3Model.from_pretrained(plain.final_model).config.memory
    assert not plain_config.perceiver_qk_norm and plain_config.perceiver_value_pos
