"""``python -m runtime``'s outputs are one safe set (runtime.run_outputs): runs aimed at the same output
exclude each other, a full disk or an unwritable output is one error line with nothing moved into place,
SIGTERM writes nothing, temps of killed runs are removed, and bad flags or frames name what is wrong.
The model is the contract-shaped ONNX pair (contract_onnx.py): no torch, ~40 ms a frame."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from contract_onnx import write_contract_onnx_dir
from output_checks import WAIT_LIMIT_SECONDS, frame_count, noise_video, one_error_line, square_video, temps_in, wait_for

from efficient_sam3.files import OutputLock
from runtime.__main__ import main
from runtime.run_outputs import OutputPaths

PROMPT = "bright square"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_contract_onnx_dir(tmp_path_factory.mktemp("onnx"))


def run_cli(capsys, model: Path, video: Path, *extra) -> tuple[int, str]:
    code = main(["--model", str(model), "--video", str(video), "--prompt", PROMPT, "--quiet", *map(str, extra)])
    return code, capsys.readouterr().err


def start_cli(model: Path, video: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runtime", "--model", str(model), "--video", str(video),
                             "--prompt", PROMPT, "--quiet", *map(str, extra)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


# 1. runs aimed at the same outputs ------------------------------------------------------------------------
@pytest.mark.parametrize("held", ["json", "video", "png"])
def test_a_run_refuses_at_once_an_output_another_run_is_writing(held, model, tmp_path, capsys):
    video = square_video(tmp_path / "clip.mp4", 4)
    out_json, out_video, out_png = tmp_path / "pred.json", tmp_path / "overlay.mp4", tmp_path / "png"
    out_png.mkdir()
    out_json.write_text("old")
    if held == "png":  # the lock the runner takes on the video's PNG folder (beside the PNG root)
        (other_run,) = OutputPaths(png_root=out_png).locks("clip")
    else:
        other_run = OutputLock(out_json if held == "json" else out_video)
    with other_run:
        code, err = run_cli(capsys, model, video, "--out-json", out_json, "--out-video", out_video,
                            "--out-png", out_png)
    assert code == 2
    line = one_error_line(err)
    assert f"another run (pid {os.getpid()}) is writing this output" in line
    assert line.startswith(f"error: {other_run.path}: ")
    assert out_json.read_text() == "old" and not out_video.exists() and list(out_png.iterdir()) == []
    assert temps_in(tmp_path) == []


def test_a_second_run_refuses_while_the_first_writes_and_the_first_leaves_a_consistent_set(model, tmp_path,
                                                                                           capsys):
    first_video = square_video(tmp_path / "first.mp4", 40, size=(48, 64))
    second_video = square_video(tmp_path / "second.mp4", 6, size=(32, 40))
    out_json, out_video = tmp_path / "pred.json", tmp_path / "overlay.mp4"
    first = start_cli(model, first_video, "--out-json", out_json, "--out-video", out_video)
    lock_file = tmp_path / ".pred.json.lock"
    wait_for(lambda: lock_file.is_file() and lock_file.read_text() == str(first.pid), "the first run's lock", first)

    code, err = run_cli(capsys, model, second_video, "--out-json", out_json, "--out-video", out_video)
    assert code == 2 and f"another run (pid {first.pid})" in one_error_line(err)

    _, first_err = first.communicate(timeout=WAIT_LIMIT_SECONDS)
    assert first.returncode == 0, first_err
    predictions = json.loads(out_json.read_text())
    assert predictions["video_id"] == "first" and len(predictions["frame_indices"]) == 40
    assert frame_count(out_video) == (40, (48, 64))  # the video of the same run as the JSON
    assert temps_in(tmp_path) == []


# 2. a full disk ----------------------------------------------------------------------------------------------
def test_a_full_disk_under_the_overlay_video_is_an_error_and_nothing_moves_into_place(model, tmp_path, capsys,
                                                                                     mount_tmpfs):
    disk = mount_tmpfs("small_disk", "size=48k")
    video = noise_video(tmp_path / "noise.mp4", 20)  # its overlay is ~120 KB
    out_json, out_video = tmp_path / "pred.json", disk / "overlay.mp4"
    code, err = run_cli(capsys, model, video, "--out-json", out_json, "--out-video", out_video)
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"error: {out_video}: the overlay video was not written completely")
    assert "of 20 frames read back" in line
    assert sorted(p.name for p in disk.iterdir()) == [".overlay.mp4.lock"]  # no video, no temp
    assert not out_json.exists() and temps_in(tmp_path) == []  # all outputs or none


def test_a_full_disk_under_the_json_is_an_error_naming_it_and_nothing_moves_into_place(model, tmp_path, capsys,
                                                                                     mount_tmpfs):
    disk = mount_tmpfs("small_disk", "size=48k")
    video = noise_video(tmp_path / "noise.mp4", 20)  # its JSON is ~65 KB
    out_json, out_video = disk / "pred.json", tmp_path / "overlay.mp4"
    code, err = run_cli(capsys, model, video, "--out-json", out_json, "--out-video", out_video)
    assert code == 2
    assert one_error_line(err) == f"error: {out_json}: cannot write the predictions JSON (No space left on device)"
    assert sorted(p.name for p in disk.iterdir()) == [".pred.json.lock"]
    assert not out_video.exists() and temps_in(tmp_path) == []


# 3. unwritable outputs fail before any work ---------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--out-json", "--out-video", "--out-png"])
def test_an_unwritable_output_fails_before_the_model_is_loaded(flag, model, tmp_path, capsys, read_only_dir,
                                                               monkeypatch):
    def no_session(*args, **kwargs):
        raise AssertionError("the model was loaded before the outputs were checked")

    monkeypatch.setattr("runtime.run.VideoSession", no_session)
    video = square_video(tmp_path / "clip.mp4", 3)
    target = read_only_dir if flag == "--out-png" else read_only_dir / ("pred.json" if flag == "--out-json"
                                                                          else "overlay.mp4")
    code, err = run_cli(capsys, model, video, flag, target)
    assert code == 2
    line = one_error_line(err)
    named = read_only_dir / "clip" if flag == "--out-png" else target
    assert line.startswith(f"error: {named}: cannot write the ") and "[Errno" not in line


# 4. SIGTERM and killed runs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("when", ["model_loading", "frame_loop"])
def test_sigterm_stops_the_run_and_writes_nothing(when, model, tmp_path):
    video = noise_video(tmp_path / "long.mp4", 400)
    out_json, out_video = tmp_path / "pred.json", tmp_path / "overlay.mp4"
    out_json.write_text("old predictions")
    out_video.write_bytes(b"old video")
    run = start_cli(model, video, "--out-json", out_json, "--out-video", out_video)
    temp_pattern = re.compile(rf"^\.overlay\.mp4\.{run.pid}-[0-9a-f]{{8}}\.tmp\.mp4$")  # efficient_sam3.files' name

    def temp_video_size() -> int:  # -1: not there yet
        temps = [tmp_path / name for name in temps_in(tmp_path) if temp_pattern.match(name)]
        return temps[0].stat().st_size if temps else -1

    # The temp video opens (a 44-byte header) before the model loads; FFmpeg writes the overlay frames
    # (~7 KB each here) in 256 KiB chunks, so a larger file means the frame loop is running.
    least_size = 0 if when == "model_loading" else 1000
    wait_for(lambda: temp_video_size() >= least_size, f"a temp video of {least_size} bytes", run)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=WAIT_LIMIT_SECONDS)
    assert run.returncode == 130, err
    assert one_error_line(err) == f"error: {video}: interrupted (signal {int(signal.SIGTERM)}); nothing was written"
    assert err.splitlines()[-1].startswith("error: ")
    assert out_json.read_text() == "old predictions" and out_video.read_bytes() == b"old video"
    assert temps_in(tmp_path) == []


def test_temps_of_killed_runs_are_removed_by_the_next_run(model, tmp_path, capsys, dead_pid):
    out_dir, png_root = tmp_path / "out", tmp_path / "png"
    out_dir.mkdir()
    png_root.mkdir()
    stale = [out_dir / f".pred.json.{dead_pid}-0123abcd.tmp", out_dir / f".overlay.mp4.{dead_pid}-89abcdef.tmp.mp4"]
    for path in stale:
        path.write_bytes(b"half")
    stale_png = png_root / f".clip.{dead_pid}-00ff00ff.tmp"
    (stale_png / "001").mkdir(parents=True)
    live = out_dir / f".pred.json.{os.getpid()}-00000000.tmp"  # a live process's temp is not touched
    live.write_bytes(b"in progress")
    old_umask = os.umask(0o027)
    try:
        code, err = run_cli(capsys, model, square_video(tmp_path / "clip.mp4", 3), "--out-json",
                            out_dir / "pred.json", "--out-video", out_dir / "overlay.mp4", "--out-png", png_root)
    finally:
        os.umask(old_umask)
    assert code == 0, err
    assert temps_in(out_dir) == [live.name] and [p.name for p in png_root.iterdir()] == ["clip"]
    for output in (out_dir / "pred.json", out_dir / "overlay.mp4"):
        assert output.stat().st_mode & 0o777 == 0o640  # the usual mode under the umask
    assert (png_root / "clip").stat().st_mode & 0o777 == 0o750


# 5. flags and frames that cannot work name the problem ----------------------------------------------------------
@pytest.mark.parametrize("flag, value, problem", [
    ("--threads", "0", "0 must be a positive integer"),
    ("--threads", "x", "'x' is not an integer"),
    ("--max-frames", "-3", "-3 must be a positive integer"),
    ("--output-stride", "0", "0 must be a positive integer"),
    ("--memory-stride", "0", "0 must be a positive integer"),
    ("--max-missed-frames", "-1", "-1 must be an integer >= 0"),
    ("--score-threshold", "1.5", "1.5 must be between 0 and 1"),
    ("--score-threshold", "1", "1 must be below 1 (no score is above 1)"),
    ("--score-threshold", "nan", "'nan' is not a number"),
    ("--min-iou", "0", "0 must be above 0 (an IoU of 0 would match unrelated masks)"),
])
def test_a_bad_numeric_flag_is_one_line_naming_the_flag(flag, value, problem, model, tmp_path, capsys):
    code, err = run_cli(capsys, model, square_video(tmp_path / "clip.mp4", 2), flag, value)
    assert code == 2
    assert err == f"error: {flag}: {problem}\n"


def test_the_same_path_for_json_and_video_is_refused(model, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run_cli(capsys, model, square_video(tmp_path / "clip.mp4", 2), "--out-json", out, "--out-video", out)
    assert code == 2 and one_error_line(err).startswith(f"error: {out}: the same path is given for")
    assert list(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_frames_too_small_for_the_overlay_codec_are_named(model, tmp_path, capsys):
    frames = tmp_path / "tiny"
    frames.mkdir()
    for number in range(2):
        cv2.imwrite(str(frames / f"{number:05d}.jpg"), np.full((1, 1, 3), 200, np.uint8))
    out_json, out_video = tmp_path / "pred.json", tmp_path / "overlay.mp4"
    code, err = run_cli(capsys, model, frames, "--out-json", out_json, "--out-video", out_video)
    assert code == 2
    assert one_error_line(err) == (f"error: {out_video}: the frame size 1x1 is too small for the mp4v codec of the "
                                   "overlay video (it needs at least 2x2 pixels)")
    assert not out_json.exists() and temps_in(tmp_path) == []
    code, err = run_cli(capsys, model, frames, "--out-json", out_json)  # without an overlay, 1x1 frames work
    assert code == 0, err
    assert json.loads(out_json.read_text())["video_height"] == 1
