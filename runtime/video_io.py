"""Frame sources (a video file, or a directory of JPEG frames) and the overlay video writer.

Sources yield ``(frame_number, frame)`` with frame BGR uint8 [H, W, 3], as OpenCV decodes it:
- a video file (mp4, avi, ...): frame numbers 0, 1, 2, ...;
- a directory of ``*.jpg`` / ``*.jpeg`` frames (SA-V val/test ``JPEGImages_24fps/<video_id>/00000.jpg``):
  frames in numeric order of their file names, which are their frame numbers (positions when the names
  are not all numbers). Every frame of a directory must have the first frame's size.
Unreadable inputs and zero-frame videos raise ``VideoReadError`` naming the file.
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

FRAME_SUFFIXES = (".jpg", ".jpeg")
DEFAULT_DIRECTORY_FPS = 24.0  # SA-V JPEGImages_24fps


class VideoReadError(ValueError):
    pass


@dataclass(frozen=True)
class VideoInfo:
    """video_id: file stem or directory name; num_frames: the container's count (may be approximate
    for video files); fps: the container's rate (DEFAULT_DIRECTORY_FPS for a directory)."""

    video_id: str
    path: Path
    num_frames: int
    fps: float
    height: int
    width: int


class FrameSource:
    """Iterate ``(frame_number, frame BGR uint8 [H, W, 3])``; use as a context manager or call close()."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self._files = _frame_files(self.path)
            first = _read_image(self._files[0][1])
            self._capture = None
            fps, count = DEFAULT_DIRECTORY_FPS, len(self._files)
        elif self.path.is_file():
            self._capture = cv2.VideoCapture(str(self.path))
            ok, first = self._capture.read() if self._capture.isOpened() else (False, None)
            if not ok or first is None:
                self._capture.release()
                raise VideoReadError(f"{self.path}: cannot decode a first frame (not a video, corrupt, "
                                     "or zero frames)")
            fps = float(self._capture.get(cv2.CAP_PROP_FPS)) or DEFAULT_DIRECTORY_FPS
            count = max(int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)), 1)
        else:
            raise VideoReadError(f"{self.path}: no such video file or frame directory")
        self._first = first
        self.info = VideoInfo(video_id=self.path.stem if self.path.is_file() else self.path.name, path=self.path,
                              num_frames=count, fps=fps, height=first.shape[0], width=first.shape[1])

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        if self._capture is None:
            yield self._files[0][0], self._first
            for number, file in self._files[1:]:
                frame = _read_image(file)
                if frame.shape != self._first.shape:
                    raise VideoReadError(f"{file}: frame is {frame.shape[0]}x{frame.shape[1]}, the first frame of "
                                         f"{self.path} is {self.info.height}x{self.info.width}")
                yield number, frame
            return
        yield 0, self._first
        number = 1
        while True:
            ok, frame = self._capture.read()
            if not ok or frame is None:
                return
            yield number, frame
            number += 1


def _frame_files(directory: Path) -> list[tuple[int, Path]]:
    files = [p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES]
    if not files:
        raise VideoReadError(f"{directory}: no {'/'.join(FRAME_SUFFIXES)} frames in this directory")
    if all(p.stem.isdigit() for p in files):
        return sorted((int(p.stem), p) for p in files)
    return list(enumerate(sorted(files)))


def _read_image(path: Path) -> np.ndarray:
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise VideoReadError(f"{path}: unreadable image")
    return frame


# Overlay ----------------------------------------------------------------------------------------
def object_colour(obj_id: int) -> tuple[int, int, int]:
    """A stable, well separated BGR colour per object id (golden-ratio hue steps)."""
    hue = (obj_id * 0.618033988749895) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(blue * 255), int(green * 255), int(red * 255)


def draw_overlay(frame: np.ndarray, objects: list, alpha: float = 0.5) -> np.ndarray:
    """BGR frame + ``ObjectResult``s -> a new BGR frame with tinted masks, boxes and ``id prompt score``."""
    canvas = frame.copy()
    for obj in objects:
        colour = np.array(object_colour(obj.obj_id), dtype=np.float32)
        canvas[obj.mask] = ((1 - alpha) * canvas[obj.mask] + alpha * colour).astype(np.uint8)
    for obj in objects:
        colour = object_colour(obj.obj_id)
        x1, y1, x2, y2 = (int(round(v)) for v in obj.box_xyxy)
        cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), colour, 2)
        label = f"{obj.obj_id} {obj.prompt} {obj.score:.2f}"
        cv2.putText(canvas, label, (x1, max(y1 - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return canvas


class OverlayVideoWriter:
    """mp4v writer that appears at ``path`` only when closed without error (temp file + os.replace)."""

    def __init__(self, path: str | Path, fps: float, frame_size: tuple[int, int]) -> None:
        self.path = Path(path)
        self.frame_size = frame_size
        self._tmp = self.path.with_name(f".{self.path.stem}.tmp{self.path.suffix or '.mp4'}")
        height, width = frame_size
        self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not self._writer.isOpened():
            raise OSError(f"{self.path}: cannot open a video writer (directory missing or codec unavailable)")
        self._closed = False

    def write(self, frame: np.ndarray) -> None:
        if frame.shape[:2] != self.frame_size:
            raise ValueError(f"{self.path}: frame size {frame.shape[:2]} differs from the video's {self.frame_size}")
        self._writer.write(frame)

    def __enter__(self) -> "OverlayVideoWriter":
        return self

    def __exit__(self, exc_type, *exc_info: object) -> None:
        self.close(commit=exc_type is None)

    def close(self, commit: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.release()
        if commit:
            os.replace(self._tmp, self.path)
        elif self._tmp.exists():
            self._tmp.unlink()
