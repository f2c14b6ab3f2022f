import random
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from training.checkpoint import capture_rng_state, load_training_checkpoint, restore_rng_state, \
    save_training_checkpoint
from training.config import VideoDistillationConfig
from training.run_log import read_log
from training.schedule import WarmupCosine, warmup_cosine_scheduler
from training.video import train_video_stage
from video_stage_data import make_clip_data

LOSS_KEYS = ("loss", "mask", "box_l1", "box_giou", "iou", "presence", "classification", "lr")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same 2-step schedule (2 epochs x 1 step x 2 accumulated clips) run straight through, and
    interrupted after step 1 then resumed."""
    root = tmp_path_factory.mktemp("resume")
    sav_root, cache_dir, student = make_clip_data(root, num_videos=2)
    base = VideoDistillationConfig(
        sav_root=sav_root, cache_dir=cache_dir, student_checkpoint=student, epochs=2, steps_per_epoch=1,
        grad_accum=2, lr=1e-3, warmup_steps=1, degraded_fraction=0.5, absent_prompt_prob=0.5,
        show_progress=False)
    straight = train_video_stage(replace(base, out_dir=root / "straight"))
    first = train_video_stage(replace(base, out_dir=root / "interrupted", stop_after_steps=1))
    resumed = train_video_stage(replace(base, out_dir=root / "interrupted", resume=root / "interrupted"))
    return base, straight, first, resumed


def test_resumed_run_repeats_the_uninterrupted_loss_sequence(runs):
    _, straight, first, resumed = runs
    assert (straight.steps, first.steps, resumed.steps) == (2, 1, 2)
    straight_rows, resumed_rows = read_log(straight.log_path), read_log(resumed.log_path)
    assert [r["step"] for r in resumed_rows] == [1, 2]  # the resumed log continues the interrupted one
    for a, b in zip(straight_rows, resumed_rows):
        for key in LOSS_KEYS:
            assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-7), (a["step"], key)
    assert straight_rows[0]["loss"] != straight_rows[1]["loss"]  # two different clips/prompts were drawn


def test_resumed_run_ends_with_the_same_weights(runs):
    _, straight, _, resumed = runs
    a = load_file(str(straight.final_model / "model.safetensors"))
    b = load_file(str(resumed.final_model / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6)


def test_resume_refuses_changed_settings(runs):
    base, _, first, _ = runs
    with pytest.raises(ValueError, match="lr"):
        train_video_stage(replace(base, out_dir=first.out_dir.parent / "other", lr=5e-4, resume=first.checkpoint))


def test_resume_refuses_a_different_student(runs, tmp_path):
    base, _, first, _ = runs
    from video_stage_data import write_student

    other = write_student(tmp_path / "other_student", seed=1)
    with pytest.raises(ValueError, match="frozen weights"):
        train_video_stage(replace(base, out_dir=tmp_path / "run", student_checkpoint=other, resume=first.checkpoint))


# Checkpoint file --------------------------------------------------------------------------------
def _tiny_setup():
    model = torch.nn.Module()
    model.perceiver_resampler = torch.nn.Linear(3, 3)
    model.memory_cross_attn = torch.nn.Linear(3, 3)
    model.backbone = torch.nn.Linear(3, 3)
    model.backbone.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    scheduler = warmup_cosine_scheduler(optimizer, 2, 10)
    return model, optimizer, scheduler


def test_checkpoint_round_trip_restores_modules_optimizer_scheduler_and_rng(tmp_path):
    model, optimizer, scheduler = _tiny_setup()
    for _ in range(3):
        model.perceiver_resampler(torch.ones(1, 3)).sum().backward()
        optimizer.step()
        scheduler.step()
    path = tmp_path / "ckpt" / "last.pt"
    torch.manual_seed(5)
    save_training_checkpoint(path, model, ("perceiver_resampler", "memory_cross_attn"), optimizer, scheduler,
                             step=3, config={"lr": 1e-2}, student={"path": "s", "sha256": "0"})
    expected_draw = torch.rand(3)
    assert not list(path.parent.glob("*.tmp"))  # atomic: no temp file left behind

    fresh, fresh_opt, fresh_sched = _tiny_setup()
    restored = load_training_checkpoint(path, fresh, ("perceiver_resampler", "memory_cross_attn"), fresh_opt,
                                        fresh_sched)
    assert restored.step == 3 and restored.config == {"lr": 1e-2}
    assert torch.equal(fresh.perceiver_resampler.weight, model.perceiver_resampler.weight)
    assert not torch.equal(fresh.backbone.weight, model.backbone.weight)  # frozen weights are not in the file
    assert fresh_sched.get_last_lr() == scheduler.get_last_lr()
    assert fresh_opt.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]
    assert torch.equal(torch.rand(3), expected_draw)  # RNG restored to the saved state


def test_checkpoint_refuses_trainable_parameters_it_would_not_save(tmp_path):
    model, optimizer, scheduler = _tiny_setup()
    model.backbone.requires_grad_(True)
    with pytest.raises(ValueError, match="backbone"):
        save_training_checkpoint(tmp_path / "x.pt", model, ("perceiver_resampler", "memory_cross_attn"),
                                 optimizer, scheduler, 0, {}, {})


def test_load_rejects_missing_and_foreign_files(tmp_path):
    model, optimizer, scheduler = _tiny_setup()
    with pytest.raises(FileNotFoundError, match="not found"):
        load_training_checkpoint(tmp_path / "none.pt", model, ("perceiver_resampler",), optimizer, scheduler)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load_training_checkpoint(tmp_path / "junk.pt", model, ("perceiver_resampler",), optimizer, scheduler)


def test_rng_state_round_trip():
    state = capture_rng_state()
    values = (torch.rand(1).item(), np.random.rand(), random.random())
    restore_rng_state(state)
    assert (torch.rand(1).item(), np.random.rand(), random.random()) == values


# Schedule ---------------------------------------------------------------------------------------
def test_warmup_then_cosine_to_min_ratio():
    schedule = WarmupCosine(warmup_steps=4, total_steps=14, min_ratio=0.1)
    assert [schedule(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert schedule(9) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the decay
    assert schedule(14) == pytest.approx(0.1) and schedule(100) == pytest.approx(0.1)
    values = [schedule(s) for s in range(4, 15)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    with pytest.raises(ValueError):
        WarmupCosine(warmup_steps=1, total_steps=0)


def test_checkpoint_file_gets_the_usual_mode(tmp_path):
    import os
    import stat

    model = torch.nn.Module()
    model.head = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    old = os.umask(0o022)
    try:
        save_training_checkpoint(tmp_path / "last.pt", model, ("head",), optimizer, scheduler, 1, {}, {})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "last.pt").stat().st_mode) == 0o644  # mkstemp's 0600 before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_interrupted_cli_run_keeps_its_last_checkpoint_and_resumes(runs, tmp_path, monkeypatch, capsys):
    """Ctrl-C (SIGTERM arrives as the same KeyboardInterrupt, efficient_sam3.cli.sigterm_as_interrupt) while
    the step-2 checkpoint is being written: exit 130 with one line, step 1's checkpoint intact, no temp
    file, and --resume finishes the schedule."""
    import signal

    from training import video
    from training.video import main

    base = runs[0]
    run = tmp_path / "run"
    argv = ["--sav-root", str(base.sav_root), "--cache-dir", str(base.cache_dir), "--student-ckpt",
            str(base.student_checkpoint), "--out", str(run), "--epochs", "2", "--steps-per-epoch", "1",
            "--grad-accum", "2", "--lr", "1e-3", "--warmup-steps", "1", "--checkpoint-every", "1"]
    real_save, calls = video.save_training_checkpoint, []

    def interrupted_while_saving(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            real_torch_save = torch.save

            def partial_save(payload, file):
                open(file, "wb").write(b"partial")
                raise KeyboardInterrupt
            monkeypatch.setattr(torch, "save", partial_save)
            try:
                return real_save(path, *args, **kwargs)
            finally:
                monkeypatch.setattr(torch, "save", real_torch_save)
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(video, "save_training_checkpoint", interrupted_while_saving)
    handler = signal.getsignal(signal.SIGTERM)
    try:
        try:
            code = main(argv)
        except KeyboardInterrupt:
            code = "KeyboardInterrupt escaped"
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 130
        assert len(err) == 1 and err[0].startswith(f"interrupted: {run} keeps its last checkpoint") and "--resume" in err[0]
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt"]
        assert torch.load(run / "checkpoints" / "last.pt", weights_only=False)["step"] == 1
        monkeypatch.setattr(video, "save_training_checkpoint", real_save)
        assert main([*argv, "--resume"]) == 0
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert [row["step"] for row in read_log(run / "log.jsonl")] == [1, 2]
