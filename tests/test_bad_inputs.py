"""Bad input to every command ends the same way (efficient_sam3.cli): exit status 2, exactly ONE line on
stderr, ``error: <file or flag>: <problem>``, naming the culprit, and nothing left behind in the output
folder (no output, no temp file).

Each row is (command, arguments, culprit): tiny inputs made here -- malformed JSON, corrupt checkpoints,
RLEs that do not cover their mask, NaN-free but empty folders, impossible numbers, outputs that cannot
be written. Commands run in-process through their ``main(argv)``; none reaches the minutes of export
lowering or training.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from efficient_sam3.masks import encode_rle
from efficient_sam3 import EfficientSam3Config, EfficientSam3Model

COMMANDS = {
    "training.video": "training.video",
    "training.image": "training.image",
    "training.cache_teacher": "training.cache_teacher",
    "training.synthetic": "training.synthetic",
    "training.evaluate": "training.evaluate",
    "training.memory_eval": "training.memory_eval",
    "export.executorch": "export.executorch",
    "export.onnx": "export.onnx",
    "export.parity": "export.parity",
    "export.measure": "export.measure",
    "convert": "efficient_sam3.convert",
    "runtime": "runtime.__main__",
}
HEIGHT, WIDTH = 24, 32


@dataclass(frozen=True)
class Data:
    """Inputs shared by the rows (made once per module)."""

    sav: Path  # one short synthetic SA-V video
    cache: Path  # its (random, finite) feature cache
    ckpt: Path  # a random tiny EfficientSAM3 checkpoint
    bad_json_ckpt: Path  # config.json is not JSON
    bad_weights_ckpt: Path  # model.safetensors is garbage
    other_preset_ckpt: Path  # memory.context_frames 4 (the video stage trains 8)
    other_size_ckpt: Path  # image_size 560 (the training frames are 504)
    empty: Path  # an empty folder
    gt: Path  # SA-V train-layout ground truth (one video)
    good_pred: Path  # a valid prediction JSON of that video
    garbage_pt: Path  # not a torch file


@dataclass(frozen=True)
class Ctx:
    """One row's view: shared data plus its own folder (``out`` is where outputs go)."""

    data: Data
    tmp: Path

    @property
    def out(self) -> Path:
        return self.tmp / "out"

    def __getattr__(self, name):
        return getattr(self.data, name)


@dataclass(frozen=True)
class Row:
    command: str
    args: Callable[[Ctx], list[str]]
    culprit: Callable[[Ctx], str]
    setup: Callable[[Ctx], None] | None = None
    needs_no_cuda: bool = False


def _box(k: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[4:12, 2 + k : 10 + k] = True
    return mask


def _write_gt(root: Path) -> Path:
    data = {"video_id": "sav_000001", "video_frame_count": 24, "video_height": HEIGHT, "video_width": WIDTH,
            "masklet": [[encode_rle(_box(k))] for k in range(6)], "masklet_id": [7], "masklet_first_appeared_frame": [0]}
    path = root / "sav_000001_manual.json"
    root.mkdir(parents=True)
    path.write_text(json.dumps(data))
    return path


def _write_pred(path: Path) -> Path:
    frames = list(range(0, 24, 4))
    data = {"video_id": "sav_000001", "masklet": [[encode_rle(_box(t // 4))] for t in frames], "masklet_id": [1],
            "frame_indices": frames}
    path.write_text(json.dumps(data))
    return path


def _save(config: EfficientSam3Config, directory: Path) -> Path:
    torch.manual_seed(0)
    EfficientSam3Model(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_checkpoint) -> Data:
    from training.data.feature_cache import FORMAT_VERSION, cache_path, write_cache_file
    from training.data.sav import find_videos, load_annotation
    from training.synthetic import generate_dataset
    from training.synthetic_scene import SceneConfig

    root = tmp_path_factory.mktemp("bad_inputs")
    sav = root / "sav"
    generate_dataset(sav, 1, seed=0, val_fraction=0.0,
                     scene_config=SceneConfig(frame_sizes=((64, 48),), min_frames=13, max_frames=15))
    files = find_videos(sav)[0]
    frames = load_annotation(files.json_path).annotated_frame_indices()
    write_cache_file(cache_path(root / "cache", files.video_id), torch.randn(len(frames), 256, 18, 18).half(),
                     frames, {"video_id": files.video_id, "teacher": "random:0", "image_size": "504",
                              "format_version": FORMAT_VERSION})
    tiny = EfficientSam3Config.from_preset("tiny")
    bad_json = root / "bad_json_ckpt"
    shutil.copytree(tiny_checkpoint, bad_json)
    (bad_json / "config.json").write_text("{not json")
    bad_weights = root / "bad_weights_ckpt"
    shutil.copytree(tiny_checkpoint, bad_weights)
    (bad_weights / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!")
    empty = root / "empty"
    empty.mkdir()
    gt = root / "gt"
    _write_gt(gt)
    garbage_pt = root / "student.pt"
    garbage_pt.write_bytes(b"PK\x03\x04 not a zip")
    return Data(
        sav=sav, cache=root / "cache", ckpt=tiny_checkpoint, bad_json_ckpt=bad_json, bad_weights_ckpt=bad_weights,
        other_preset_ckpt=_save(replace(tiny, memory=replace(tiny.memory, context_frames=4)), root / "t4"),
        other_size_ckpt=_save(replace(tiny, image_size=560), root / "s560"),
        empty=empty, gt=gt, good_pred=_write_pred(root / "pred.json"), garbage_pt=garbage_pt)


def _file(ctx: Ctx, name: str = "a_file") -> Path:
    """A plain file inside the output folder (an output path under it cannot be created)."""
    ctx.out.mkdir(exist_ok=True)
    path = ctx.out / name
    path.write_text("not a folder\n")
    return path


def _pred_with(ctx: Ctx, rle: dict) -> Path:
    data = json.loads(ctx.good_pred.read_text())
    data["masklet"][2][0] = rle
    path = ctx.tmp / "p.json"
    path.write_text(json.dumps(data))
    return path


def _gt_with_garbage(ctx: Ctx) -> None:
    shutil.copytree(ctx.gt, ctx.tmp / "gt")
    path = ctx.tmp / "gt" / "sav_000001_manual.json"
    data = json.loads(path.read_text())
    data["masklet"][3][0] = {"size": [HEIGHT, WIDTH], "counts": "Q3"}  # 97 pixels of 768
    path.write_text(json.dumps(data))


def _pte_with_garbage_metadata(ctx: Ctx) -> None:
    ctx.tmp.joinpath("model.pte").write_bytes(b"not a program")
    ctx.tmp.joinpath("model.pte.json").write_text("{\"format_version\": ")


def _run_with_garbage_checkpoint(ctx: Ctx) -> None:
    (ctx.out / "checkpoints").mkdir(parents=True)
    (ctx.out / "checkpoints" / "last.pt").write_bytes(b"garbage, not a checkpoint")


def video(ctx: Ctx, *extra: str) -> list[str]:
    return ["--sav-root", str(ctx.sav), "--cache-dir", str(ctx.cache), "--student-ckpt", str(ctx.ckpt),
            "--out", str(ctx.out), *extra]


def image(ctx: Ctx, *extra: str) -> list[str]:
    return ["--sav-root", str(ctx.sav), "--out", str(ctx.out), *extra]


def cache(ctx: Ctx, *extra: str) -> list[str]:
    return ["--sav-root", str(ctx.sav), "--out", str(ctx.out / "cache"), "--teacher", str(ctx.ckpt), *extra]


def evaluate(ctx: Ctx, *extra: str, pred: Path | None = None, gt: Path | None = None) -> list[str]:
    return ["--pred", str(pred or ctx.good_pred), "--gt-root", str(gt or ctx.gt), "--out", str(ctx.out / "r.json"),
            *extra]


def memory(ctx: Ctx, *extra: str) -> list[str]:
    return ["--model", str(ctx.ckpt), "--sav-root", str(ctx.sav), "--cache-dir", str(ctx.cache),
            "--out", str(ctx.out / "m.json"), *extra]


def et(ctx: Ctx, *extra: str) -> list[str]:
    return ["--checkpoint", str(ctx.ckpt), "--out", str(ctx.out / "model.pte"), *extra]


def onnx(ctx: Ctx, *extra: str) -> list[str]:
    return ["--checkpoint", str(ctx.ckpt), "--out", str(ctx.out / "onnx"), *extra]


def convert(ctx: Ctx, *extra: str) -> list[str]:
    return ["--from", "efficientsam3", str(ctx.garbage_pt), "--out", str(ctx.out / "ckpt"), *extra]


def flag(name: str) -> Callable[[Ctx], str]:
    return lambda ctx: name


ROWS = {
    # training.video
    "video/steps-per-epoch-0": Row("training.video", lambda c: video(c, "--steps-per-epoch", "0"), flag("--steps-per-epoch")),
    "video/batch-size-0": Row("training.video", lambda c: video(c, "--batch-size", "0"), flag("--batch-size")),
    "video/grad-accum-negative": Row("training.video", lambda c: video(c, "--grad-accum", "-2"), flag("--grad-accum")),
    "video/lr-nan": Row("training.video", lambda c: video(c, "--lr", "nan"), flag("--lr")),
    "video/degraded-fraction-1.5": Row("training.video", lambda c: video(c, "--degraded-fraction", "1.5"),
                                       flag("--degraded-fraction")),
    "video/epochs-not-a-number": Row("training.video", lambda c: video(c, "--epochs", "two"), flag("--epochs")),
    "video/device-cuda-without-cuda": Row("training.video", lambda c: video(c, "--device", "cuda"), flag("--device"),
                                          needs_no_cuda=True),
    "video/sav-root-without-cache-dir": Row("training.video", lambda c: ["--sav-root", str(c.sav)], flag("--cache-dir")),
    "video/bare-resume-without-out": Row("training.video", lambda c: video(c)[:6] + ["--resume"], flag("--resume")),
    "video/resume-before-any-checkpoint": Row("training.video", lambda c: video(c, "--resume"), lambda c: str(c.out)),
    "video/resume-garbage-checkpoint": Row("training.video", lambda c: video(c, "--resume"),
                                           lambda c: str(c.out / "checkpoints" / "last.pt"),
                                           setup=_run_with_garbage_checkpoint),
    "video/student-config-not-json": Row("training.video", lambda c: video(c)[:4] + [
        "--student-ckpt", str(c.bad_json_ckpt), "--out", str(c.out)], lambda c: str(c.bad_json_ckpt / "config.json")),
    "video/student-weights-garbage": Row("training.video", lambda c: video(c)[:4] + [
        "--student-ckpt", str(c.bad_weights_ckpt), "--out", str(c.out)],
        lambda c: str(c.bad_weights_ckpt / "model.safetensors")),
    "video/student-of-another-preset": Row("training.video", lambda c: video(c)[:4] + [
        "--student-ckpt", str(c.other_preset_ckpt), "--out", str(c.out)], lambda c: str(c.other_preset_ckpt)),
    "video/student-missing": Row("training.video", lambda c: video(c)[:4] + [
        "--student-ckpt", str(c.tmp / "nowhere"), "--out", str(c.out)], lambda c: str(c.tmp / "nowhere")),
    "video/empty-sav-root": Row("training.video", lambda c: ["--sav-root", str(c.empty)] + video(c)[2:],
                                lambda c: str(c.empty)),
    "video/out-is-a-file": Row("training.video", lambda c: video(c)[:6] + ["--out", str(c.out / "a_file")],
                               lambda c: str(c.out / "a_file"), setup=_file),
    # training.image
    "image/steps-0": Row("training.image", lambda c: image(c, "--steps", "0"), flag("--steps")),
    "image/batch-size-0": Row("training.image", lambda c: image(c, "--batch-size", "0"), flag("--batch-size")),
    "image/lr-negative": Row("training.image", lambda c: image(c, "--lr", "-1"), flag("--lr")),
    "image/unknown-preset": Row("training.image", lambda c: image(c, "--preset", "huge"), flag("--preset")),
    "image/device-cuda-without-cuda": Row("training.image", lambda c: image(c, "--device", "cuda:0"), flag("--device"),
                                          needs_no_cuda=True),
    "image/missing-sav-root": Row("training.image", lambda c: ["--sav-root", str(c.tmp / "nowhere"), "--out", str(c.out)],
                                  lambda c: str(c.tmp / "nowhere")),
    "image/empty-sav-root": Row("training.image", lambda c: ["--sav-root", str(c.empty), "--out", str(c.out)],
                                lambda c: str(c.empty)),
    "image/init-config-not-json": Row("training.image", lambda c: image(c, "--init", str(c.bad_json_ckpt)),
                                      lambda c: str(c.bad_json_ckpt / "config.json")),
    "image/init-of-another-image-size": Row("training.image", lambda c: image(c, "--init", str(c.other_size_ckpt)),
                                            lambda c: str(c.other_size_ckpt)),
    "image/out-under-a-file": Row("training.image", lambda c: ["--sav-root", str(c.sav), "--out", str(c.out / "a_file" / "run")],
                                  lambda c: str(c.out / "a_file" / "run"), setup=_file),
    # training.cache_teacher
    "cache/batch-size-0": Row("training.cache_teacher", lambda c: cache(c, "--batch-size", "0"), flag("--batch-size")),
    "cache/num-shards-0": Row("training.cache_teacher", lambda c: cache(c, "--num-shards", "0"), flag("--num-shards")),
    "cache/shard-index-out-of-range": Row("training.cache_teacher",
                                          lambda c: cache(c, "--num-shards", "2", "--shard-index", "2"),
                                          flag("--shard-index")),
    "cache/image-size-100": Row("training.cache_teacher", lambda c: cache(c, "--image-size", "100"),
                                flag("--image-size 504")),  # names the flag and the size that works
    "cache/empty-sav-root": Row("training.cache_teacher", lambda c: ["--sav-root", str(c.empty)] + cache(c)[2:],
                                lambda c: str(c.empty)),
    "cache/teacher-missing": Row("training.cache_teacher", lambda c: cache(c)[:4] + ["--teacher", str(c.tmp / "nowhere")],
                                 lambda c: str(c.tmp / "nowhere")),
    "cache/teacher-config-not-json": Row("training.cache_teacher",
                                         lambda c: cache(c)[:4] + ["--teacher", str(c.bad_json_ckpt)],
                                         lambda c: str(c.bad_json_ckpt / "config.json")),
    "cache/out-is-a-file": Row("training.cache_teacher",
                               lambda c: ["--sav-root", str(c.sav), "--out", str(c.out / "a_file"), "--teacher", str(c.ckpt)],
                               lambda c: str(c.out / "a_file"), setup=_file),
    "cache/device-cuda-without-cuda": Row("training.cache_teacher", lambda c: cache(c, "--device", "cuda"),
                                          flag("--device"), needs_no_cuda=True),
    # training.synthetic
    "synthetic/videos-0": Row("training.synthetic", lambda c: ["--out", str(c.out), "--videos", "0", "--seed", "0"],
                              flag("--videos")),
    "synthetic/val-fraction-1": Row("training.synthetic",
                                    lambda c: ["--out", str(c.out), "--videos", "2", "--seed", "0", "--val-fraction", "1"],
                                    flag("--val-fraction")),
    "synthetic/seed-negative": Row("training.synthetic", lambda c: ["--out", str(c.out), "--videos", "1", "--seed", "-3"],
                                   flag("--seed")),
    "synthetic/out-under-a-file": Row("training.synthetic",
                                      lambda c: ["--out", str(c.out / "a_file" / "d"), "--videos", "1", "--seed", "0"],
                                      lambda c: str(c.out / "a_file" / "d"), setup=_file),
    # training.evaluate
    "evaluate/pred-not-json": Row("training.evaluate", lambda c: evaluate(c, pred=c.tmp / "p.json"),
                                  lambda c: str(c.tmp / "p.json"), setup=lambda c: (c.tmp / "p.json").write_text("{trunc")),
    "evaluate/pred-rle-short-counts": Row("training.evaluate", lambda c: evaluate(c, pred=c.tmp / "p.json"),
                                          lambda c: f"{c.tmp / 'p.json'}: masklet[2][0] (frame 8, object 1)",
                                          setup=lambda c: _pred_with(c, {"size": [HEIGHT, WIDTH], "counts": [100]})),
    "evaluate/pred-rle-negative-counts": Row("training.evaluate", lambda c: evaluate(c, pred=c.tmp / "p.json"),
                                             lambda c: str(c.tmp / "p.json"),
                                             setup=lambda c: _pred_with(c, {"size": [HEIGHT, WIDTH],
                                                                            "counts": [800, -32]})),
    "evaluate/pred-rle-zero-size": Row("training.evaluate", lambda c: evaluate(c, pred=c.tmp / "p.json"),
                                       lambda c: str(c.tmp / "p.json"),
                                       setup=lambda c: _pred_with(c, {"size": [0, WIDTH], "counts": []})),
    "evaluate/gt-rle-garbage": Row("training.evaluate", lambda c: evaluate(c, gt=c.tmp / "gt"),
                                   lambda c: f"{c.tmp / 'gt' / 'sav_000001_manual.json'}: masklet[3][0] (frame 12, object 7)",
                                   setup=_gt_with_garbage),
    "evaluate/gt-root-missing": Row("training.evaluate", lambda c: evaluate(c, gt=c.tmp / "nowhere"),
                                    lambda c: str(c.tmp / "nowhere")),
    "evaluate/out-under-a-file": Row("training.evaluate", lambda c: evaluate(c)[:4] + ["--out", str(c.out / "a_file" / "r.json")],
                                     lambda c: str(c.out / "a_file" / "r.json"), setup=_file),
    # training.memory_eval
    "memory_eval/threshold-2": Row("training.memory_eval", lambda c: memory(c, "--threshold", "2"), flag("--threshold")),
    "memory_eval/max-negative-prompts-negative": Row("training.memory_eval",
                                                     lambda c: memory(c, "--max-negative-prompts", "-1"),
                                                     flag("--max-negative-prompts")),
    "memory_eval/model-missing": Row("training.memory_eval", lambda c: ["--model", str(c.tmp / "nowhere")] + memory(c)[2:],
                                     lambda c: str(c.tmp / "nowhere")),
    "memory_eval/model-weights-garbage": Row("training.memory_eval",
                                             lambda c: ["--model", str(c.bad_weights_ckpt)] + memory(c)[2:],
                                             lambda c: str(c.bad_weights_ckpt / "model.safetensors")),
    "memory_eval/empty-sav-root": Row("training.memory_eval",
                                      lambda c: memory(c)[:2] + ["--sav-root", str(c.empty)] + memory(c)[4:],
                                      lambda c: str(c.empty)),
    "memory_eval/out-is-a-folder": Row("training.memory_eval", lambda c: memory(c)[:-2] + ["--out", str(c.empty)],
                                       lambda c: str(c.empty)),
    # export.executorch (all refused before lowering)
    "executorch/empty-prompt": Row("export.executorch", lambda c: et(c, "--prompt", ""), flag("--prompt")),
    "executorch/out-not-pte": Row("export.executorch", lambda c: et(c)[:2] + ["--out", str(c.out / "model.bin")],
                                  flag("--out")),
    "executorch/int8-without-calibration": Row("export.executorch", lambda c: et(c, "--quantize", "int8"),
                                               flag("--calibration-videos")),
    "executorch/calibration-frames-0": Row("export.executorch", lambda c: et(c, "--calibration-frames", "0"),
                                           flag("--calibration-frames")),
    "executorch/parity-num-frames-0": Row("export.executorch", lambda c: et(c, "--parity-num-frames", "0"),
                                          flag("--parity-num-frames")),
    "executorch/parity-frames-missing": Row("export.executorch", lambda c: et(c, "--parity-frames", str(c.tmp / "nowhere.mp4")),
                                            lambda c: str(c.tmp / "nowhere.mp4")),
    "executorch/checkpoint-weights-garbage": Row("export.executorch",
                                                 lambda c: ["--checkpoint", str(c.bad_weights_ckpt)] + et(c)[2:],
                                                 lambda c: str(c.bad_weights_ckpt / "model.safetensors")),
    "executorch/checkpoint-config-not-json": Row("export.executorch",
                                                 lambda c: ["--checkpoint", str(c.bad_json_ckpt)] + et(c)[2:],
                                                 lambda c: str(c.bad_json_ckpt / "config.json")),
    "executorch/out-under-a-file": Row("export.executorch", lambda c: et(c)[:2] + ["--out", str(c.out / "a_file" / "m.pte")],
                                       lambda c: str(c.out / "a_file" / "m.pte"), setup=_file),
    # export.onnx
    "onnx/blank-prompt": Row("export.onnx", lambda c: onnx(c, "--prompt", "   "), flag("--prompt")),
    "onnx/opset-17": Row("export.onnx", lambda c: onnx(c, "--opset", "17"), flag("--opset")),
    "onnx/checkpoint-missing": Row("export.onnx", lambda c: ["--checkpoint", str(c.tmp / "nowhere")] + onnx(c)[2:],
                                   lambda c: str(c.tmp / "nowhere")),
    "onnx/out-is-a-file": Row("export.onnx", lambda c: onnx(c)[:2] + ["--out", str(c.out / "a_file")],
                              lambda c: str(c.out / "a_file"), setup=_file),
    # export.parity
    "parity/num-frames-0": Row("export.parity", lambda c: ["--checkpoint", str(c.ckpt), "--program", str(c.tmp / "m.pte"),
                                                           "--num-frames", "0"], flag("--num-frames")),
    "parity/program-missing": Row("export.parity", lambda c: ["--checkpoint", str(c.ckpt), "--program", str(c.tmp / "m.pte")],
                                  lambda c: str(c.tmp / "m.pte")),
    "parity/program-metadata-not-json": Row("export.parity",
                                            lambda c: ["--checkpoint", str(c.ckpt), "--program", str(c.tmp / "model.pte")],
                                            lambda c: str(c.tmp / "model.pte.json"), setup=_pte_with_garbage_metadata),
    # export.measure
    "measure/threads-0": Row("export.measure", lambda c: ["--checkpoint", str(c.ckpt), "--threads", "0"], flag("--threads")),
    "measure/runs-0": Row("export.measure", lambda c: ["--checkpoint", str(c.ckpt), "--runs", "0"], flag("--runs")),
    "measure/program-missing": Row("export.measure",
                                   lambda c: ["--checkpoint", str(c.ckpt), "--program", str(c.tmp / "m.pte")],
                                   lambda c: str(c.tmp / "m.pte")),
    # python -m efficient_sam3.convert
    "convert/image-size-100": Row("convert", lambda c: convert(c, "--image-size", "100"), flag("--image-size")),
    "convert/unknown-source": Row("convert", lambda c: ["--from", "onnx", str(c.garbage_pt), "--out", str(c.out)],
                                  flag("--from")),
    "convert/file-missing": Row("convert", lambda c: ["--from", "sam3", str(c.tmp / "sam3.pt"), "--out", str(c.out / "x")],
                                lambda c: str(c.tmp / "sam3.pt")),
    "convert/file-garbage": Row("convert", lambda c: convert(c), lambda c: str(c.garbage_pt)),
    "convert/out-not-empty": Row("convert", lambda c: convert(c)[:3] + ["--out", str(c.out)], lambda c: str(c.out),
                                 setup=_file),
    # python -m runtime (already one line today; another engineer owns the runtime)
    "runtime/video-missing": Row("runtime", lambda c: ["--model", str(c.ckpt), "--video", str(c.tmp / "none.mp4"),
                                                       "--prompt", "red circle"], lambda c: str(c.tmp / "none.mp4")),
    "runtime/model-config-not-json": Row("runtime", lambda c: ["--model", str(c.bad_json_ckpt), "--video",
                                                               str(next(c.sav.glob("*.mp4"))), "--prompt", "red circle"],
                                         lambda c: str(c.bad_json_ckpt / "config.json")),
}


def _tree(path: Path) -> list[str]:
    """Every file and folder under ``path``, hidden ones (temp files) included."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


@pytest.fixture()
def keep_sigterm():
    """Commands make SIGTERM raise KeyboardInterrupt (efficient_sam3.cli); give pytest its handler back."""
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


@pytest.mark.parametrize("name", list(ROWS))
def test_bad_input_is_one_error_line_exit_2_and_leaves_nothing(name, data, tmp_path, capsys, keep_sigterm):
    import importlib

    row = ROWS[name]
    if row.needs_no_cuda and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    ctx = Ctx(data, tmp_path)
    if row.setup is not None:
        row.setup(ctx)
    argv = row.args(ctx)
    before = _tree(tmp_path)
    main = importlib.import_module(COMMANDS[row.command]).main
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse, and training.evaluate's convention
        code = exit_info.code
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 2, f"exit {code}; stderr: {err}"
    assert len(lines) == 1 and lines[0].strip(), f"expected one line, got: {err!r}"
    assert lines[0].startswith("error: "), lines[0]
    assert row.culprit(ctx) in lines[0], lines[0]
    assert _tree(tmp_path) == before  # nothing written, no temp file left
    if name == "evaluate/gt-rle-garbage":
        assert str(ctx.good_pred) not in lines[0]  # the ground truth is to blame, not the prediction


def test_the_table_covers_every_command_and_enough_inputs():
    assert len(ROWS) >= 40
    assert {row.command for row in ROWS.values()} == set(COMMANDS)


def test_a_subprocess_prints_one_line_too(tmp_path):
    """Run as a program (no pytest capture), a parse-time error is still one line and exit 2."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "export.executorch", "--checkpoint", str(tmp_path), "--out",
                             str(tmp_path / "m.pte"), "--prompt", ""], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 2 and result.stderr.splitlines() == [
        "error: --prompt: must not be empty"], result.stderr
    assert list(tmp_path.iterdir()) == []
