"""Two CPU processes under torchrun (gloo): each trains on its own video shard, gradients are averaged,
and both end with identical memory weights."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.run_log import read_log
from training.video import trainable_sha256
from video_stage_data import make_clip_data

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    sav_root, cache_dir, student = make_clip_data(root, num_videos=2)
    out_dir = root / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "training.video", "--sav-root", str(sav_root), "--cache-dir", str(cache_dir),
               "--student-ckpt", str(student), "--out", str(out_dir), "--debug", "--grad-accum", "1",
               "--lr", "1e-3", "--warmup-steps", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    completed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    return completed, out_dir, student


def test_both_ranks_finish_with_identical_trainable_weights(ddp_run):
    completed, out_dir, student = ddp_run
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    hashes = [json.loads((out_dir / f"debug_rank{rank}.json").read_text()) for rank in range(2)]
    assert [h["step"] for h in hashes] == [3, 3]
    assert hashes[0]["trainable_sha256"] == hashes[1]["trainable_sha256"]

    from efficient_sam3 import EfficientSam3Model
    from efficient_sam3.freeze import freeze_for_video_distillation

    initial = EfficientSam3Model.from_pretrained(student)
    freeze_for_video_distillation(initial)
    assert trainable_sha256(initial) != hashes[0]["trainable_sha256"]  # training moved the weights


def test_rank0_writes_the_checkpoint_log_and_final_model(ddp_run):
    completed, out_dir, student = ddp_run
    assert completed.returncode == 0, completed.stderr[-3000:]
    payload = torch.load(out_dir / "checkpoints" / "last.pt", weights_only=False)
    assert payload["step"] == 3 and payload["config"]["world_size"] == 2
    assert [row["step"] for row in read_log(out_dir / "log.jsonl")] == [1, 2, 3]
    final = load_file(str(out_dir / "final_model" / "model.safetensors"))
    frozen = load_file(str(student / "model.safetensors"))
    changed = [k for k in frozen if not torch.equal(final[k], frozen[k])]
    assert changed and all(k.startswith(("perceiver_resampler.", "memory_cross_attn.")) for k in changed)
