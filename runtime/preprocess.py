"""SAM3 image preprocessing shared by training, export checks and the runtime.

One definition for every consumer: RGB uint8 [H, W, 3] -> cv2.resize to (S, S) with
INTER_LINEAR -> float32 / 255 -> (x - 0.5) / 0.5 -> CHW [3, S, S]. Numpy + cv2 only.
"""

from __future__ import annotations

import cv2
import numpy as np

IMAGE_SIZE = 504
PIXEL_MEAN = 0.5
PIXEL_STD = 0.5


def preprocess_frame(frame: np.ndarray, image_size: int = IMAGE_SIZE, rgb: bool = True) -> np.ndarray:
    """Turn one uint8 video frame into SAM3 pixel values.

    Args:
        frame: uint8 [H, W, 3]. RGB when `rgb` is True; BGR (as cv2 decodes it) when False.
        image_size: output side S; the frame is resized to a square, aspect ratio is not kept.
        rgb: whether `frame` is already RGB.

    Returns:
        float32 [3, S, S], values in [-1, 1].
    """
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"preprocess_frame expects a [H, W, 3] frame, got shape {tuple(frame.shape)}")
    if frame.dtype != np.uint8:
        raise ValueError(f"preprocess_frame expects a uint8 frame, got {frame.dtype}")
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if not rgb:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    resized = cv2.resize(frame, (image_size, image_size), interpolation=cv2.INTER_LINEAR)  # [S, S, 3]
    pixels = resized.astype(np.float32) / 255.0
    pixels = (pixels - PIXEL_MEAN) / PIXEL_STD
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))  # [S, S, 3] -> [3, S, S]
