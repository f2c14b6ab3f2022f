"""Live frame sources: a camera, a network stream, raw frames on standard input; and the one place that
turns a ``--video`` argument into a source.

``--video`` is read as (``video_source_kind``):
- ``-``: raw bgr24 frames on standard input, exactly ``width * height * 3`` bytes each (what
  ``ffmpeg ... -f rawvideo -pix_fmt bgr24 -`` writes); the frame size comes from ``--size WxH``;
- all digits (``0``): a camera index, opened with ``cv2.VideoCapture(index)``;
- anything containing ``://`` (rtsp://, http://, udp://, ...): a stream OpenCV's FFmpeg backend opens;
- otherwise a video file or a JPEG frame folder (``runtime.video_io.FrameSource``).

A live source has no end known in advance: it yields ``(frame_number, frame BGR uint8 [H, W, 3])`` with
frame numbers 0, 1, 2, ... until the stream ends (EOF on stdin, the stream closing) or ``stop()`` is called
(from another thread: the run's frame reader). Its ``VideoInfo`` has ``live=True`` and ``num_frames=None``;
video ids are ``camera<N>``, ``stdin`` and, for a URL, the last path component's stem (else the host),
reduced to ``[A-Za-z0-9_-]``. A source that cannot be opened raises ``VideoReadError`` naming it; a partial
last frame on stdin is a warning naming ``stdin`` and is dropped.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import select
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import cv2
import numpy as np

from efficient_sam3.frames import VideoReadError
from runtime.video_io import DEFAULT_DIRECTORY_FPS, FrameSource, VideoInfo

logger = logging.getLogger(__name__)

STDIN = "-"
STDIN_POLL_SECONDS = 0.1  # how often a blocked stdin read looks whether the run asked it to stop
DEFAULT_LIVE_FPS = DEFAULT_DIRECTORY_FPS  # a live source whose rate neither --fps nor OpenCV gives
MAX_FRAME_SIDE = 1 << 15  # --size sides above this are refused (esam3_run: the same limit)
MAX_FPS = 1000.0  # --fps above this is refused, and a camera or stream reporting more is not believed (esam3_run:
# the same): the overlay video's mp4v encoder refuses rates past 65535, and no live source we read comes close


def video_source_kind(video: str | Path) -> str:
    """"stdin", "camera", "stream" or "file" (a video file or frame folder) for a --video argument."""
    text = str(video)
    if text == STDIN:
        return "stdin"
    if text.isdigit():
        return "camera"
    if "://" in text:
        return "stream"
    return "file"


def parse_frame_size(text: str) -> tuple[int, int]:
    """"WIDTHxHEIGHT" -> (width, height), both positive; ValueError with the problem otherwise."""
    match = re.fullmatch(r"([0-9]+)[xX]([0-9]+)", text)
    if match is None:
        raise ValueError(f"{text!r} is not WIDTHxHEIGHT (e.g. 640x480)")
    width, height = int(match.group(1)), int(match.group(2))
    if width <= 0 or height <= 0:
        raise ValueError(f"{text} must be two positive integers WIDTHxHEIGHT")
    if max(width, height) > MAX_FRAME_SIDE:
        raise ValueError(f"{text!r} is out of range")
    return width, height


def stream_video_id(url: str) -> str:
    """The last path component's stem of ``url`` (else its host), reduced to [A-Za-z0-9_-]."""
    parts = urlsplit(url)
    stem = PurePosixPath(parts.path).stem if parts.path.strip("/") else ""
    name = stem or parts.hostname or "stream"
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def check_frame_size_option(video: str | Path, size: tuple[int, int] | None) -> None:
    """ValueError("--size: ...") unless a frame size is given exactly when ``video`` is stdin."""
    stdin = video_source_kind(video) == "stdin"
    if stdin and size is None:
        raise ValueError("--size: required with --video - (the WIDTHxHEIGHT of the raw bgr24 frames on stdin)")
    if not stdin and size is not None:
        raise ValueError("--size: only for --video - (raw frames on stdin); a video file, frame folder, camera "
                         "or stream has its own frame size")


def open_frame_source(video: str | Path, size: tuple[int, int] | None = None,
                      fps: float | None = None) -> FrameSource | CaptureSource | StdinSource:
    """The source a --video argument names (module docstring). ``size`` (width, height) is required for stdin
    and refused otherwise; ``fps`` overrides the rate the source reports (DEFAULT_LIVE_FPS when none does)."""
    check_frame_size_option(video, size)
    kind = video_source_kind(video)
    if kind == "stdin":
        return StdinSource(size, fps or DEFAULT_LIVE_FPS)
    if kind in ("camera", "stream"):
        return CaptureSource(str(video), fps)
    source = FrameSource(video)
    if fps is not None:
        source.info = dataclasses.replace(source.info, fps=fps)
    return source


@contextmanager
def _opencv_quiet() -> Iterator[None]:
    """OpenCV's own warnings off while a camera or stream is opened: a failure is our one error line."""
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(previous)


class _LiveSource:
    """Shared parts: context manager, ``stop()`` from another thread."""

    info: VideoInfo

    def __init__(self) -> None:
        self._stopping = threading.Event()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def stop(self) -> None:
        """Ask a read in progress (in another thread) to end; iteration then stops."""
        self._stopping.set()

    def close(self) -> None:
        self.stop()


class CaptureSource(_LiveSource):
    """A camera (``source`` all digits) or a stream URL, read through ``cv2.VideoCapture``."""

    def __init__(self, source: str, fps: float | None = None) -> None:
        super().__init__()
        camera = source.isdigit()
        with _opencv_quiet():
            self._capture = cv2.VideoCapture(int(source)) if camera else cv2.VideoCapture(source, cv2.CAP_FFMPEG)
            opened = self._capture.isOpened()
            ok, first = self._capture.read() if opened else (False, None)
        if not ok or first is None:
            self._capture.release()
            what = (f"cannot open camera {int(source)} (no such device, busy, or no permission)" if camera else
                    "cannot open the stream (unreachable, refused, or not a stream OpenCV's FFmpeg backend reads)")
            raise VideoReadError(f"{source}: {what}")
        reported = float(self._capture.get(cv2.CAP_PROP_FPS))
        rate = fps or (reported if 0 < reported <= MAX_FPS else DEFAULT_LIVE_FPS)
        self._first = first
        self.info = VideoInfo(video_id=f"camera{int(source)}" if camera else stream_video_id(source), path=source,
                              num_frames=None, fps=rate, height=first.shape[0], width=first.shape[1], live=True)

    def close(self) -> None:
        super().close()
        self._capture.release()

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        yield 0, self._first
        number = 1
        while not self._stopping.is_set():
            ok, frame = self._capture.read()
            if not ok or frame is None:
                return
            yield number, frame
            number += 1


class StdinSource(_LiveSource):
    """Raw bgr24 frames of ``size`` (width, height) on standard input."""

    def __init__(self, size: tuple[int, int], fps: float) -> None:
        super().__init__()
        width, height = size
        self._fd = sys.stdin.buffer.fileno()
        self._frame_bytes = width * height * 3
        self.info = VideoInfo(video_id="stdin", path=STDIN, num_frames=None, fps=fps, height=height, width=width,
                              live=True)
        self._first = self._read_frame()
        if self._first is None:
            raise VideoReadError(f"stdin: the stream ended before a first whole {width}x{height} bgr24 frame "
                                 f"({self._frame_bytes} bytes)")

    def _read_frame(self) -> np.ndarray | None:
        """The next whole frame; None at EOF (a partial frame is a warning) or when stop() was called."""
        buffer = bytearray(self._frame_bytes)
        view = memoryview(buffer)
        filled = 0
        while filled < self._frame_bytes:
            if self._stopping.is_set():
                return None
            ready, _, _ = select.select([self._fd], [], [], STDIN_POLL_SECONDS)
            if not ready:
                continue
            chunk = os.read(self._fd, self._frame_bytes - filled)
            if not chunk:
                if filled:
                    logger.warning("stdin: the stream ended inside a frame (%d of %d bytes); that partial frame is "
                                   "dropped", filled, self._frame_bytes)
                return None
            view[filled:filled + len(chunk)] = chunk
            filled += len(chunk)
        return np.frombuffer(buffer, np.uint8).reshape(self.info.height, self.info.width, 3)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        yield 0, self._first
        number = 1
        while (frame := self._read_frame()) is not None:
            yield number, frame
            number += 1
