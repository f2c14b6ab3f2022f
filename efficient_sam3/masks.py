"""Binary masks on the host (numpy, no torch): COCO RLE encoding and area, and tight boxes.

The one encoder and the one mask-to-box rule of the project: training (SA-V files, evaluation), the
torch-free runtime (prediction JSON, detections) and the tests all import them from here. Validating
an RLE read from a file is ``training.data.rle.check_rle``.

Boxes are (x1, y1, x2, y2) with x2/y2 exclusive pixel edges: a one-pixel mask at (x, y) has the box
(x, y, x + 1, y + 1), so a mask filling the image has the box (0, 0, W, H).
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def encode_rle(mask: np.ndarray) -> dict:
    """bool [H, W] -> {"size": [H, W], "counts": str}: pycocotools' compressed COCO RLE, counts as ASCII
    text (JSON-ready; pycocotools takes it as it is)."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_area(rle: dict | None) -> int:
    """Pixels of a COCO RLE; None (an absent mask) has none."""
    return 0 if rle is None else int(mask_utils.area(rle))


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Tight box of a non-empty bool mask [H, W] -> [4] float32 (x1, y1, x2, y2) in pixels, x2/y2 exclusive."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("mask_box needs a non-empty mask")
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """bool [N, H, W] -> float32 [N, 4] ``mask_box`` normalised by (W, H), so a mask filling the image gives
    (0, 0, 1, 1); an empty mask gives (0, 0, 0, 0)."""
    num_masks, height, width = masks.shape
    boxes = np.zeros((num_masks, 4), dtype=np.float32)
    scale = np.array([width, height, width, height], dtype=np.float64)
    for row, mask in enumerate(masks):
        if mask.any():
            boxes[row] = mask_box(mask) / scale
    return boxes
