"""Frames for calibration and parity checks: read from a video, a frame folder (``efficient_sam3.frames``:
.jpg / .jpeg images, e.g. the SA-V JPEG layout) or a directory of videos, preprocessed with the
shared SAM3 preprocessing.

Decoding and resizing stay on the host (numpy + cv2), as in the runtime.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from efficient_sam3.contract import preprocess_frame
from efficient_sam3.frames import FRAME_SUFFIXES, frame_files, is_frame_file, read_frame_file

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def _read_video(path: Path, max_frames: int, stride: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"{path}: cannot open video")
    frames, index = [], 0
    try:
        while len(frames) < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            if index % stride == 0:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            index += 1
    finally:
        capture.release()
    if not frames:
        raise ValueError(f"{path}: no decodable frames")
    return frames


def _read_image(path: Path, number: int) -> np.ndarray:
    return cv2.cvtColor(read_frame_file(path, number), cv2.COLOR_BGR2RGB)


def read_frames(source: str | Path, max_frames: int, stride: int = 1) -> list[np.ndarray]:
    """Up to ``max_frames`` RGB uint8 frames [H, W, 3] in stream order, every ``stride``-th frame.

    ``source``: a video file; an image; a frame folder (its frames in frame order); or a directory
    holding videos (searched recursively, sorted), read one after another until ``max_frames`` are collected.
    """
    source = Path(source)
    if max_frames < 1 or stride < 1:
        raise ValueError(f"max_frames and stride must be >= 1, got {max_frames}, {stride}")
    if source.is_file():
        if is_frame_file(source):
            return [_read_image(source, 0)]
        return _read_video(source, max_frames, stride)
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such video, image or directory")
    images = frame_files(source)
    if images:
        return [_read_image(path, number) for number, path in images[::stride][:max_frames]]
    videos = sorted(p for p in source.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise ValueError(f"{source}: holds no images ({', '.join(FRAME_SUFFIXES)}) and no videos "
                         f"({', '.join(VIDEO_SUFFIXES)})")
    frames: list[np.ndarray] = []
    for video in videos:
        frames += _read_video(video, max_frames - len(frames), stride)
        if len(frames) >= max_frames:
            break
    return frames


def to_pixel_values(frames: list[np.ndarray], image_size: int) -> list[torch.Tensor]:
    """RGB uint8 frames -> pixel_values [1, 3, S, S] each (SAM3 preprocessing)."""
    return [torch.from_numpy(preprocess_frame(frame, image_size=image_size, rgb=True))[None] for frame in frames]


def generated_frames(count: int, seed: int = 0, size: tuple[int, int] = (360, 640)) -> list[np.ndarray]:
    """Deterministic stand-in frames (smooth colour gradients plus filled shapes) for when no video is
    given; a real frame source should be preferred for parity and calibration."""
    rng = np.random.default_rng(seed)
    height, width = size
    frames = []
    for _ in range(count):
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        base = rng.uniform(0, 255, size=3)
        slope = rng.uniform(-0.2, 0.2, size=(3, 2))
        frame = np.stack([base[c] + slope[c, 0] * ys + slope[c, 1] * xs for c in range(3)], axis=-1)
        frame = np.clip(frame, 0, 255).astype(np.uint8)
        for _ in range(3):
            centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
            cv2.circle(frame, centre, int(rng.integers(15, 80)), colour, thickness=-1)
        frames.append(frame)
    return frames
