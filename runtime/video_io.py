"""Frame sources (a video file, or a directory of frame images) and the overlay video writer. Live sources
(camera, stream, stdin) are in ``runtime.live_sources``, which also maps a --video argument to its source.

Sources yield ``(frame_number, frame)`` with frame BGR uint8 [H, W, 3], as OpenCV decodes it:
- a video file (mp4, avi, ...): frame numbers 0, 1, 2, ...;
- a frame folder (``efficient_sam3.frames``: .jpg / .jpeg files, e.g. SA-V val/test
  ``JPEGImages_24fps/<video_id>/00000.jpg``): frames in numeric order of their file names, which are
  their frame numbers (positions when the names are not all numbers). Every frame of a directory must
  have the first frame's size.
Unreadable inputs and zero-frame videos raise ``VideoReadError`` naming the file. Damage that still
decodes is a warning naming the file and the frame: a truncated JPEG (its missing part decodes grey), a
video file that ends before the frame count its container lists.
"""

from __future__ import annotations

import colorsys
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from efficient_sam3.files import atomic_path
from efficient_sam3.frames import FRAME_SUFFIXES, VideoReadError, frame_files, read_frame_file

logger = logging.getLogger(__name__)

DEFAULT_DIRECTORY_FPS = 24.0  # SA-V JPEGImages_24fps
OVERLAY_FOURCC = "mp4v"
OVERLAY_MIN_SIDE = 2  # OpenCV's FFmpeg mp4v encoder refuses frames 1 pixel high or wide (measured, OpenCV 4 and 5)


@dataclass(frozen=True)
class VideoInfo:
    """video_id: file stem or directory name; num_frames: the container's count (may be approximate
    for video files; None for a live source, whose end is not known in advance); fps: the container's rate
    (DEFAULT_DIRECTORY_FPS for a directory); live: a camera, stream or stdin (``runtime.live_sources``),
    whose ``path`` is the --video text as given."""

    video_id: str
    path: Path | str
    num_frames: int | None
    fps: float
    height: int
    width: int
    live: bool = False


class FrameSource:
    """Iterate ``(frame_number, frame BGR uint8 [H, W, 3])``; use as a context manager or call close()."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self._files = _frame_files(self.path)
            first = read_frame_file(self._files[0][1], self._files[0][0])
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
                frame = read_frame_file(file, number)
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
                break
            yield number, frame
            number += 1
        if number < self.info.num_frames:
            logger.warning("%s: decoding stopped at frame %d, the container lists %d frames (the file is truncated "
                           "or corrupt); the %d decoded frames are used", self.path, number, self.info.num_frames,
                           number)


def _frame_files(directory: Path) -> list[tuple[int, Path]]:
    files = frame_files(directory)
    if not files:
        raise VideoReadError(f"{directory}: no {'/'.join(FRAME_SUFFIXES)} frames in this directory")
    return files


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


def check_overlay_frame_size(path: str | Path, frame_size: tuple[int, int]) -> None:
    """ValueError naming ``path`` when frames of ``frame_size`` (H, W) cannot be encoded as mp4v."""
    height, width = frame_size
    if min(height, width) < OVERLAY_MIN_SIDE:
        raise ValueError(f"{path}: the frame size {height}x{width} is too small for the {OVERLAY_FOURCC} codec of the "
                         f"overlay video (it needs at least {OVERLAY_MIN_SIDE}x{OVERLAY_MIN_SIDE} pixels)")


class OverlayVideoWriter:
    """mp4v writer whose video appears at ``path`` only whole: use it as a context manager.

    Frames go to a unique temp name beside ``path`` (``efficient_sam3.files.atomic_path``). Leaving the
    block without an exception closes the video, reads it back (OpenCV's writer reports no error when the
    disk fills up, so the file is checked: its frame count must equal the frames written and its first
    frame must decode) and only then renames it over ``path``; an exception or a failed check removes it.
    ``finish()`` does the close and the check early, so a caller can verify before committing other files.
    """

    def __init__(self, path: str | Path, fps: float, frame_size: tuple[int, int]) -> None:
        check_overlay_frame_size(path, frame_size)
        self.path = Path(path)
        self.fps = fps
        self.frame_size = frame_size
        self.frames_written = 0
        self._atomic = None
        self._writer = None
        self._temp = None
        self._checked = False

    def __enter__(self) -> "OverlayVideoWriter":
        self._atomic = atomic_path(self.path, suffix=self.path.suffix or ".mp4", verify=lambda temp: self.finish())
        self._temp = self._atomic.__enter__()
        height, width = self.frame_size
        self._writer = cv2.VideoWriter(str(self._temp), cv2.VideoWriter_fourcc(*OVERLAY_FOURCC), self.fps,
                                       (width, height))
        if not self._writer.isOpened():
            error = OSError(f"{self.path}: cannot open an {OVERLAY_FOURCC} video writer (the folder is not writable "
                            f"or this OpenCV has no {OVERLAY_FOURCC} encoder)")
            self._atomic.__exit__(type(error), error, None)  # removes the temp name
            raise error
        return self

    def write(self, frame: np.ndarray) -> None:
        if frame.shape[:2] != self.frame_size:
            raise ValueError(f"{self.path}: frame size {frame.shape[:2]} differs from the video's {self.frame_size}")
        self._writer.write(frame)
        self.frames_written += 1

    def finish(self) -> None:
        """Close the video and read it back; OSError naming ``path`` unless every written frame is there."""
        if self._checked:
            return
        self._writer.release()
        if self.frames_written == 0:
            raise OSError(f"{self.path}: no frame was written to the overlay video; nothing was moved into place")
        capture = cv2.VideoCapture(str(self._temp))
        try:
            readable = capture.isOpened()
            frames_found = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if readable else 0
            first_decodes = readable and capture.read()[0]
        finally:
            capture.release()
        if frames_found != self.frames_written or not first_decodes:
            raise OSError(f"{self.path}: the overlay video was not written completely ({frames_found} of "
                          f"{self.frames_written} frames read back; is the disk full?); nothing was moved into place")
        self._checked = True

    def __exit__(self, exc_type, exc, traceback) -> bool:
        self._writer.release()
        return self._atomic.__exit__(exc_type, exc, traceback)
