"""Live input for both runners (runtime.live_sources, runtime.frame_reader; esam3_run's live_source.h,
frame_reader.h): raw frames piped from ffmpeg on stdin, a stream served over HTTP from this machine, --realtime
dropping frames to keep up, SIGTERM ending a live stream with its outputs committed, and bad sources or --size
values as one error line with nothing written.

Models: the contract-shaped ONNX pair for python -m runtime (contract_onnx.py, ~30 ms a frame) and the
contract-shaped .pte for esam3_run (contract_pte.py, ~1 ms a frame); the runner is built by
test_native_runner.py's fixture. ffmpeg comes from the imageio-ffmpeg package. The HTTP stream is served by
Python's http.server (a static MPEG-TS file): it listens before the runner connects, where ``ffmpeg -listen 1``
would race with the runner's connect.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from contract_onnx import write_contract_onnx_dir
from output_checks import (WAIT_LIMIT_SECONDS, frame_count, noise_video, one_error_line, square_video, temps_in,
                           wait_for)
from test_native_runner import contract_model, native_tools  # noqa: F401 (fixtures: the built runner, its model)

from runtime.__main__ import main

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

PROMPT = "bright square"
REPO = Path(__file__).resolve().parents[2]
SIZE = (48, 64)  # (height, width) of the piped frames
PIPED_FRAMES = 12
SUMMARY_FRAMES = re.compile(r": (\d+) frames \((\d+) recorded(?:, (\d+) dropped to keep up)?\)")


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    return write_contract_onnx_dir(tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return square_video(tmp_path_factory.mktemp("live") / "clip.mp4", PIPED_FRAMES, size=SIZE)


def _python_command(model: Path, video: str, *extra) -> list[str]:
    return [sys.executable, "-m", "runtime", "--model", str(model), "--video", video, "--prompt", PROMPT, "--quiet",
            *map(str, extra)]


def _native_command(native_tools, model: Path, video: str, *extra) -> list[str]:  # noqa: F811
    return [str(native_tools["run"]), "--model", str(model), "--video", video, "--prompt", PROMPT, "--quiet",
            *map(str, extra)]


@pytest.fixture(params=["python", "native"])
def runner(request, onnx_model):
    """``runner(video, *flags)`` -> the command line of python -m runtime or esam3_run on its contract model."""
    if request.param == "python":
        command = functools.partial(_python_command, onnx_model)
    else:
        command = functools.partial(_native_command, request.getfixturevalue("native_tools"),
                                    request.getfixturevalue("contract_model"))
    command.kind = request.param
    return command


def _piped(command: list[str], video: Path, timeout: float = WAIT_LIMIT_SECONDS) -> subprocess.CompletedProcess:
    """``ffmpeg -i video -f rawvideo -pix_fmt bgr24 - | command``."""
    ffmpeg = subprocess.Popen([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(video), "-f",
                               "rawvideo", "-pix_fmt", "bgr24", "-"], stdout=subprocess.PIPE)
    try:
        result = subprocess.run(command, stdin=ffmpeg.stdout, capture_output=True, text=True, errors="replace",
                                cwd=REPO, timeout=timeout)
    finally:
        ffmpeg.stdout.close()
        ffmpeg.wait(timeout=timeout)
    return result


def _frames_in(out_json: Path) -> list[int]:
    return json.loads(out_json.read_text())["frame_indices"]


def _summary_counts(stdout: str) -> tuple[int, int, int | None]:
    """(frames processed, recorded, dropped or None) from a runner's summary line."""
    match = SUMMARY_FRAMES.search(stdout)
    assert match, stdout
    return int(match.group(1)), int(match.group(2)), None if match.group(3) is None else int(match.group(3))


# 1. raw frames on stdin ----------------------------------------------------------------------------------------
def test_an_ffmpeg_pipe_is_read_to_its_end_and_committed(runner, clip, tmp_path):
    out_json, out_video = tmp_path / "pred.json", tmp_path / "overlay.mp4"
    result = _piped(runner("-", "--size", f"{SIZE[1]}x{SIZE[0]}", "--out-json", out_json, "--out-video", out_video),
                    clip)
    assert result.returncode == 0, result.stderr
    predictions = json.loads(out_json.read_text())
    assert predictions["video_id"] == "stdin" and predictions["frame_indices"] == list(range(PIPED_FRAMES))
    assert (predictions["video_height"], predictions["video_width"]) == SIZE
    assert predictions["masklet_id"], "the contract model finds the bright square"
    assert frame_count(out_video) == (PIPED_FRAMES, SIZE)
    assert _summary_counts(result.stdout) == (PIPED_FRAMES, PIPED_FRAMES, None)
    assert temps_in(tmp_path) == []


def test_a_partial_last_frame_on_stdin_is_a_warning_and_dropped(runner, tmp_path):
    height, width = SIZE
    frames = np.random.default_rng(0).integers(0, 256, (3, height, width, 3), dtype=np.uint8).tobytes()
    out_json = tmp_path / "pred.json"
    result = subprocess.run(runner("-", "--size", f"{width}x{height}", "--out-json", out_json),
                            input=frames + frames[:100], capture_output=True, cwd=REPO, timeout=WAIT_LIMIT_SECONDS)
    err = result.stderr.decode(errors="replace")
    assert result.returncode == 0, err
    assert f"stdin: the stream ended inside a frame (100 of {width * height * 3} bytes); that partial frame is " \
           "dropped" in err
    assert _frames_in(out_json) == [0, 1, 2]


def test_sigterm_ends_a_live_stdin_run_and_commits_the_frames_so_far(runner, tmp_path):
    height, width = SIZE
    out_json, out_video = tmp_path / "pred.json", tmp_path / "overlay.mp4"
    run = subprocess.Popen(runner("-", "--size", f"{width}x{height}", "--out-json", out_json, "--out-video",
                                  out_video), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           cwd=REPO)
    frame = np.zeros((height, width, 3), np.uint8)
    frame[10:26, 20:36] = 255
    # The pipe holds ~7 frames of 9 KB and the runner reads at most 4 ahead, so once these 30 blocking writes
    # are done the runner has processed frames (a stop before the first frame would write nothing).
    try:
        for _ in range(30):
            run.stdin.write(frame.tobytes())
            run.stdin.flush()
        run.send_signal(signal.SIGTERM)  # the pipe stays open: only the signal ends the stream
        out, err = run.communicate(timeout=WAIT_LIMIT_SECONDS)
    finally:
        if run.poll() is None:
            run.kill()
    err = err.decode(errors="replace")
    assert run.returncode == 0, err
    assert "error: " not in err
    assert "stopped by signal 15 (SIGTERM)" in out.decode()
    frames = _frames_in(out_json)
    assert 30 - 7 - 4 - 2 <= len(frames) <= 30 and frames == list(range(len(frames)))
    assert frame_count(out_video) == (len(frames), SIZE)
    assert temps_in(tmp_path) == []


# 2. a stream over HTTP -----------------------------------------------------------------------------------------
@pytest.fixture
def http_stream(clip, tmp_path):
    """http://127.0.0.1:<port>/live.ts: ``clip`` as MPEG-TS (mpeg4), served by Python's http.server."""
    served = tmp_path / "served"
    served.mkdir()
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(clip), "-c:v", "mpeg4",
                    "-f", "mpegts", str(served / "live.ts")], check=True, timeout=WAIT_LIMIT_SECONDS)
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/live.ts"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # no request lines in the test output
        pass


def test_a_stream_url_is_read_and_committed(runner, http_stream, tmp_path):
    out_json, out_video = tmp_path / "pred.json", tmp_path / "overlay.mp4"
    result = subprocess.run(runner(http_stream, "--out-json", out_json, "--out-video", out_video),
                            capture_output=True, text=True, errors="replace", cwd=REPO, timeout=WAIT_LIMIT_SECONDS)
    assert result.returncode == 0, result.stderr
    predictions = json.loads(out_json.read_text())
    assert predictions["video_id"] == "live"  # the URL's last path component, without its suffix
    assert 0 < len(predictions["frame_indices"]) <= PIPED_FRAMES
    assert frame_count(out_video) == (len(predictions["frame_indices"]), SIZE)


# 3. --realtime drops frames to keep up -------------------------------------------------------------------------
def test_realtime_on_a_file_paced_faster_than_the_backend_drops_frames(runner, tmp_path):
    # esam3_run's contract model takes ~1 ms a frame: large frames (overlay and masks at 480x640) make it slower
    # than 1000 fps; the ONNX model's ~30 ms a frame is slower at any size.
    size, num_frames = ((480, 640), 48) if runner.kind == "native" else (SIZE, 24)
    video = square_video(tmp_path / "clip.mp4", num_frames, size=size)
    out_json, out_video = tmp_path / "pred.json", tmp_path / "overlay.mp4"
    result = subprocess.run(runner(str(video), "--realtime", "--fps", "1000", "--out-json", out_json, "--out-video",
                                   out_video), capture_output=True, text=True, errors="replace", cwd=REPO,
                            timeout=WAIT_LIMIT_SECONDS)
    assert result.returncode == 0, result.stderr
    assert "frame numbers jump" not in result.stderr  # expected under --realtime
    processed, recorded, dropped = _summary_counts(result.stdout)
    frames = _frames_in(out_json)
    assert dropped > 0 and processed == recorded == len(frames)
    assert recorded + dropped == num_frames
    # source frame numbers: they skip the dropped ones; the last frame waits in the slot at the end and is taken
    assert frames == sorted(set(frames)) and frames[-1] == num_frames - 1
    assert frame_count(out_video) == (len(frames), size)


def test_realtime_on_stdin_commits_at_eof(runner, clip, tmp_path):
    out_json = tmp_path / "pred.json"
    result = _piped(runner("-", "--size", f"{SIZE[1]}x{SIZE[0]}", "--realtime", "--out-json", out_json), clip)
    assert result.returncode == 0, result.stderr
    processed, recorded, dropped = _summary_counts(result.stdout)
    assert processed == recorded == len(_frames_in(out_json)) >= 1
    assert recorded + dropped == PIPED_FRAMES


def test_sigterm_during_a_realtime_file_run_still_writes_nothing(runner, tmp_path):
    video = noise_video(tmp_path / "long.mp4", 400)
    out_json, out_video = tmp_path / "pred.json", tmp_path / "overlay.mp4"
    out_json.write_text("old predictions")
    run = subprocess.Popen(runner(str(video), "--realtime", "--fps", "24", "--out-json", out_json, "--out-video",
                                  out_video), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)

    def frames_being_written() -> bool:  # FFmpeg writes the overlay in 256 KiB chunks past a 44-byte header
        temps = [tmp_path / name for name in temps_in(tmp_path) if name.startswith(".overlay.mp4.")]
        return bool(temps) and temps[0].stat().st_size > 1000

    try:
        wait_for(frames_being_written, "overlay frames in the run's temp video", run)
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=WAIT_LIMIT_SECONDS)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, err
    assert one_error_line(err) == f"error: {video}: interrupted (signal 15); nothing was written"
    assert out_json.read_text() == "old predictions" and not out_video.exists() and temps_in(tmp_path) == []


# 4. bad sources and flags ----------------------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("case", ["no_size", "zero_size", "bad_size", "size_with_file", "zero_fps", "fps_too_high",
                                  "camera", "url"])
def test_a_bad_live_source_or_flag_is_one_line_naming_it(case, runner, clip, tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/x.mp4"
    video, extra, expected = {
        "no_size": ("-", [], "error: --size: required with --video - (the WIDTHxHEIGHT of the raw bgr24 frames on "
                             "stdin)"),
        "zero_size": ("-", ["--size", "0x10"], "error: --size: 0x10 must be two positive integers WIDTHxHEIGHT"),
        "bad_size": ("-", ["--size", "abc"], "error: --size: 'abc' is not WIDTHxHEIGHT (e.g. 640x480)"),
        "size_with_file": (str(clip), ["--size", "64x48"], "error: --size: only for --video - (raw frames on stdin); "
                                                           "a video file, frame folder, camera or stream has its own "
                                                           "frame size"),
        "zero_fps": (str(clip), ["--fps", "0"], "error: --fps: 0 must be a positive number"),
        "fps_too_high": (str(clip), ["--fps", "1e5"], "error: --fps: 1e5 must be at most 1000 frames per second"),
        "camera": ("57", [], "error: 57: cannot open camera 57 (no such device, busy, or no permission)"),
        "url": (url, [], f"error: {url}: cannot open the stream (unreachable, refused, or not a stream OpenCV's "
                         "FFmpeg backend reads)"),
    }[case]
    out_json, out_video = tmp_path / "pred.json", tmp_path / "overlay.mp4"
    result = subprocess.run(runner(video, *extra, "--out-json", out_json, "--out-video", out_video),
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", cwd=REPO,
                            timeout=WAIT_LIMIT_SECONDS)
    assert result.returncode == 2, result.stderr
    assert one_error_line(result.stderr) == expected
    assert not out_json.exists() and not out_video.exists() and temps_in(tmp_path) == []


def test_python_size_flag_is_checked_in_process(onnx_model, tmp_path, capsys):
    code = main(["--model", str(onnx_model), "--video", "-", "--size", "64x", "--prompt", PROMPT, "--quiet"])
    assert code == 2
    assert capsys.readouterr().err == "error: --size: '64x' is not WIDTHxHEIGHT (e.g. 640x480)\n"


def test_the_video_id_of_a_stream_is_its_last_path_stem_or_host():
    from runtime.live_sources import stream_video_id, video_source_kind

    assert stream_video_id("rtsp://cam.local:8554/front door.sdp?x=1") == "front_door"
    assert stream_video_id("http://127.0.0.1:8080/") == "127_0_0_1"
    assert stream_video_id("udp://@239.0.0.1:1234") == "239_0_0_1"
    assert [video_source_kind(v) for v in ("-", "0", "12", "rtsp://h/x", "clip.mp4", "./0")] == \
        ["stdin", "camera", "camera", "stream", "file", "file"]
