import json
import math
import os
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from training.batch import choose_prompt
from training.clip_order import epoch_order, samples_per_epoch, shard_videos
from training.config import DEFAULT_PROMPT, VideoDistillationConfig
from training.run_log import read_log
from training.video import find_latest_student, main, memory_param_groups, trained_modules, train_video_stage
from video_stage_data import make_clip_data

MEMORY_PREFIXES = ("perceiver_resampler.", "memory_cross_attn.")


@pytest.fixture(scope="module")
def debug_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("video_stage")
    sav_root, cache_dir, student = make_clip_data(root, num_videos=3)
    config = VideoDistillationConfig(sav_root=sav_root, cache_dir=cache_dir, student_checkpoint=student,
                                     out_dir=root / "run", debug=True, grad_accum=2, show_progress=False)
    return config, train_video_stage(config), student


def test_debug_run_trains_only_the_memory_modules(debug_run):
    config, result, student = debug_run
    before = load_file(str(student / "model.safetensors"))
    after = load_file(str(result.final_model / "model.safetensors"))
    assert before.keys() == after.keys()
    frozen_changed = [k for k in before if not k.startswith(MEMORY_PREFIXES) and not torch.equal(before[k], after[k])]
    assert frozen_changed == []
    memory_changed = [k for k in before if k.startswith(MEMORY_PREFIXES) and not torch.equal(before[k], after[k])]
    assert "memory_cross_attn.gate" in memory_changed
    assert any(k.startswith("perceiver_resampler.") for k in memory_changed)


def test_debug_run_logs_finite_losses_and_writes_its_outputs(debug_run):
    config, result, _ = debug_run
    rows = read_log(result.log_path)
    assert [row["step"] for row in rows] == [1, 2, 3] and result.steps == 3
    for row in rows:
        for name in ("loss", "mask", "box_l1", "box_giou", "iou", "presence", "classification", "grad_norm"):
            assert math.isfinite(row[name]), (name, row)
        assert row["steps_per_s"] > 0
    assert result.plot_path.stat().st_size > 0
    debug = json.loads((result.out_dir / "debug_rank0.json").read_text())
    assert debug["trainable_sha256"] == result.trainable_sha256 and debug["step"] == 3
    assert result.missing_keys == []


def test_checkpoint_holds_only_the_trainable_modules(debug_run):
    _, result, _ = debug_run
    payload = torch.load(result.checkpoint, weights_only=False)
    assert set(payload["modules"]) == {"perceiver_resampler", "memory_cross_attn"}
    assert payload["step"] == 3
    assert {"torch", "numpy", "python"} <= set(payload["rng"])
    assert payload["config"]["lr"] == 1e-3 and payload["config"]["grad_accum"] == 2  # the recipe's rate
    assert payload["student"]["sha256"]
    num_trainable = sum(t.numel() for m in payload["modules"].values() for t in m.values())
    assert 1_000_000 < num_trainable < 2_000_000  # ~1.6M: the plan's ~1.5M trainable parameters


def test_student_without_memory_keys_reports_them_by_name(tmp_path, caplog):
    sav_root, cache_dir, student = make_clip_data(tmp_path, num_videos=1)
    weights = load_file(str(student / "model.safetensors"))
    from safetensors.torch import save_file

    save_file({k: v for k, v in weights.items() if not k.startswith("memory_cross_attn.")},
              str(student / "model.safetensors"))
    config = VideoDistillationConfig(sav_root=sav_root, cache_dir=cache_dir, student_checkpoint=student,
                                     out_dir=tmp_path / "run", stop_after_steps=1, grad_accum=1, show_progress=False)
    result = train_video_stage(config)
    assert "memory_cross_attn.gate" in result.missing_keys
    assert all(key.startswith("memory_cross_attn.") for key in result.missing_keys)


def test_perceiver_lr_scale_zero_trains_and_checkpoints_only_the_cross_attention(tmp_path):
    sav_root, cache_dir, student = make_clip_data(tmp_path, num_videos=1)
    config = VideoDistillationConfig(sav_root=sav_root, cache_dir=cache_dir, student_checkpoint=student,
                                     out_dir=tmp_path / "run", perceiver_lr_scale=0.0, epochs=1, steps_per_epoch=2,
                                     grad_accum=1, warmup_steps=1, lr=1e-2, show_progress=False)
    result = train_video_stage(config)
    before = load_file(str(student / "model.safetensors"))
    after = load_file(str(result.final_model / "model.safetensors"))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("memory_cross_attn.") for k in changed)
    payload = torch.load(result.checkpoint, weights_only=False)
    assert set(payload["modules"]) == {"memory_cross_attn"}
    assert len(payload["optimizer"]["param_groups"]) == 1
    with pytest.raises(ValueError, match="holds modules"):  # a run that also trains the perceiver cannot resume it
        train_video_stage(replace(config, out_dir=tmp_path / "other", perceiver_lr_scale=1.0,
                                  resume=result.checkpoint))


def test_memory_param_groups_scale_the_perceiver():
    model = torch.nn.Module()
    model.memory_cross_attn, model.perceiver_resampler = torch.nn.Linear(2, 2), torch.nn.Linear(2, 3)
    groups = memory_param_groups(model, lr=1e-3, perceiver_lr_scale=0.1)
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(1e-4)]
    assert [sum(p.numel() for p in g["params"]) for g in groups] == [6, 9]
    assert len(memory_param_groups(model, lr=1e-3, perceiver_lr_scale=0.0)) == 1
    assert trained_modules(1.0) == ("perceiver_resampler", "memory_cross_attn")
    assert trained_modules(0.0) == ("memory_cross_attn",)


def test_find_latest_student_picks_the_newest(tmp_path):
    for name in ("image-a", "image-b"):
        (tmp_path / name / "student").mkdir(parents=True)
        (tmp_path / name / "student" / "model.safetensors").write_bytes(b"x")
    old = time.time() - 100
    os.utime(tmp_path / "image-b" / "student" / "model.safetensors", (old, old))
    assert find_latest_student(tmp_path) == tmp_path / "image-a" / "student"
    with pytest.raises(FileNotFoundError, match="no image-stage checkpoint"):
        find_latest_student(tmp_path / "empty")


def test_cli_rejects_inconsistent_flags(tmp_path):
    with pytest.raises(SystemExit):
        main(["--cache-dir", str(tmp_path)])  # data flags without --sav-root
    with pytest.raises(SystemExit):
        main(["--sav-root", str(tmp_path)])  # --sav-root without --cache-dir
    with pytest.raises(SystemExit):
        main(["--lr", "0.1"])  # a video-stage flag the default pipeline would ignore


def test_config_rejects_bad_values(tmp_path):
    with pytest.raises(ValueError, match="grad_accum"):
        VideoDistillationConfig(grad_accum=0)
    with pytest.raises(ValueError, match="degraded_fraction"):
        VideoDistillationConfig(degraded_fraction=1.5)
    with pytest.raises(ValueError, match="perceiver_lr_scale"):
        VideoDistillationConfig(perceiver_lr_scale=-0.1)
    defaults = VideoDistillationConfig()
    assert (defaults.context_frames, defaults.max_objects_per_frame, defaults.epochs, defaults.lr,
            defaults.perceiver_lr_scale, defaults.hide_object_prob, defaults.warmup_steps, defaults.batch_size,
            defaults.grad_accum, defaults.annotation_type) == (8, 20, 5, 1e-3, 0.1, 0.5, 200, 1, 4, "manual")


# Data order ------------------------------------------------------------------------------------
KEYS = [(f"v{v}", q) for v in range(5) for q in range(1, 7)]


def test_shards_are_disjoint_and_cover_every_video():
    shards = [set(shard_videos([v for v, _ in KEYS], rank, 2)) for rank in range(2)]
    assert shards[0].isdisjoint(shards[1]) and shards[0] | shards[1] == {f"v{v}" for v in range(5)}
    orders = [epoch_order(KEYS, set(), 20, seed=0, epoch=0, rank=rank, world_size=2) for rank in range(2)]
    for rank, order in enumerate(orders):
        assert {KEYS[i][0] for i in order} <= shards[rank]


def test_epoch_order_is_deterministic_and_walks_full_passes():
    first = epoch_order(KEYS, set(), len(KEYS), seed=3, epoch=1)
    assert first == epoch_order(KEYS, set(), len(KEYS), seed=3, epoch=1)
    assert sorted(first) == list(range(len(KEYS)))  # one pass: every clip once
    assert first != epoch_order(KEYS, set(), len(KEYS), seed=3, epoch=2)


def test_degraded_fraction_oversamples_degraded_clips():
    degraded = {key for key in KEYS if key[1] == 3}  # 1 in 6 clips
    order = epoch_order(KEYS, degraded, 600, seed=0, epoch=0, degraded_fraction=0.5)
    share = np.mean([KEYS[i] in degraded for i in order])
    assert 0.4 < share < 0.6
    natural = epoch_order(KEYS, degraded, 600, seed=0, epoch=0)
    assert np.mean([KEYS[i] in degraded for i in natural]) == pytest.approx(1 / 6)


def test_samples_per_epoch():
    assert samples_per_epoch(30, 1, 4, None) == 28  # one pass, whole steps
    assert samples_per_epoch(30, 2, 4, None) == 12
    assert samples_per_epoch(3, 2, 4, None) == 4  # at least one step
    assert samples_per_epoch(30, 2, 4, 5) == 20


def test_epoch_order_rejects_a_rank_without_videos():
    with pytest.raises(ValueError, match="no clips"):
        epoch_order(KEYS[:6], set(), 4, seed=0, epoch=0, rank=1, world_size=2)


# Prompt choice ---------------------------------------------------------------------------------
def test_choose_prompt_targets_every_object_of_the_category():
    rng = np.random.default_rng(0)
    prompts = ["red circle", "blue square", "red circle"]
    for _ in range(20):
        prompt, targets = choose_prompt(prompts, ["red circle", "blue square"], rng, absent_prompt_prob=0.0)
        assert targets == [i for i, p in enumerate(prompts) if p == prompt]


def test_choose_prompt_absent_category_has_no_targets():
    rng = np.random.default_rng(0)
    prompt, targets = choose_prompt(["red circle"], ["red circle", "green star"], rng, absent_prompt_prob=1.0)
    assert (prompt, targets) == ("green star", [])
    prompt, targets = choose_prompt([], ["green star"], rng, absent_prompt_prob=0.0)  # nothing visible
    assert (prompt, targets) == ("green star", [])
    prompt, targets = choose_prompt(["red circle"], ["red circle"], rng, absent_prompt_prob=1.0)  # none absent
    assert (prompt, targets) == ("red circle", [0])


def test_choose_prompt_without_categories_uses_the_default_prompt():
    rng = np.random.default_rng(0)
    assert choose_prompt(["", ""], ["", ""], rng, 0.5) == (DEFAULT_PROMPT, [0, 1])


def test_memory_diagnostics_are_logged_and_summarised(debug_run):
    """Measured before training (summary only) and at the last step (log row and summary)."""
    config, result, _ = debug_run
    rows = read_log(result.log_path)
    assert "mem_retention" not in rows[0] and "mem_retention" in rows[-1]
    for key in ("mem_retention", "mem_context_mass", "mem_attention_entropy", "mem_latent_norm", "mem_memory_norm",
                "mem_update_ratio"):
        assert math.isfinite(rows[-1][key])
    summary = result.memory_diagnostics
    assert summary["measurements"] == 2 and summary["retention_last"] == rows[-1]["mem_retention"]
    assert summary["update_ratio_first"] == 0.0 < summary["update_ratio_last"]  # out_proj starts at zero
    assert not summary["collapsed"] and summary["retention_min"] > summary["retention_threshold"]
