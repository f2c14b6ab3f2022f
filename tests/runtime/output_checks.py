"""Helpers of the output-safety tests of both runners (test_output_safety.py for python -m runtime,
test_native_runner.py for esam3_run): input videos that make outputs small or large, and checks of what
a run left behind."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

POLL_SECONDS = 0.02
WAIT_LIMIT_SECONDS = 120  # only bounds a hung child; nothing is asserted about time


def square_video(path: Path, num_frames: int, size=(48, 64)) -> Path:
    """A bright square moving right on black (mp4v, 24 fps): the contract models find one object."""
    height, width = size
    side = height // 3
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24.0, (width, height))
    for t in range(num_frames):
        frame = np.zeros((height, width, 3), np.uint8)
        left = 2 + t % (width // 2)
        frame[height // 5:height // 5 + side, left:left + side] = 255
        writer.write(frame)
    writer.release()
    return path


def noise_video(path: Path, num_frames: int, size=(120, 160)) -> Path:
    """Random pixels: large overlay frames and large RLEs, so outputs outgrow a small disk quickly."""
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24.0, (size[1], size[0]))
    for _ in range(num_frames):
        writer.write(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    writer.release()
    return path


def one_error_line(err: str) -> str:
    """The one "error: " line of a run's stderr (asserts there is exactly one and no traceback)."""
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def temps_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp" in p.name)


def frame_count(video: Path) -> tuple[int, tuple[int, int]]:
    """(frame count, (height, width)) of a video as OpenCV reads it."""
    capture = cv2.VideoCapture(str(video))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    size = (int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)))
    capture.release()
    return count, size


def wait_for(condition, what: str, process: subprocess.Popen | None = None) -> None:
    """Poll ``condition`` until true; fail if ``process`` ends first (or after WAIT_LIMIT_SECONDS)."""
    deadline = time.monotonic() + WAIT_LIMIT_SECONDS
    while not condition():
        if process is not None and process.poll() is not None:
            pytest.fail(f"the run ended ({process.returncode}) before {what}: {process.stderr.read()}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(POLL_SECONDS)


def truncated_avi(path: Path, num_frames: int, keep: float) -> Path:
    """An MJPG AVI of ``num_frames`` noise frames cut to its first ``keep`` fraction of bytes: the header still
    lists every frame, decoding stops about half-way."""
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 24.0, (64, 48))
    for _ in range(num_frames):
        writer.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path
