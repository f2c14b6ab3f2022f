"""SA-V val/test PNG layout of masklet predictions, as SA-V's official evaluator reads them.

    <root>/<video_id>/<obj_id:03d>/<frame:05d>.png    one binary mask per object and frame:
                                                      uint8, 0 background, 255 foreground

facebookresearch/sam2 ``sav_dataset/sav_evaluator.py --gt_root ... --pred_root <root>`` reads this
(it takes pixels > 0 as the object). Every object gets a PNG at every recorded frame, empty where it
is absent, so the evaluator finds a prediction for each frame it scores. The layout is stated once,
here: ``training.evaluate`` reads it with the same path functions.

Object folders are our predicted ``masklet_id``s. SA-V's evaluator compares folders by name, so
concept predictions (whose ids mean nothing to the ground truth) score meaningfully only after
they are aligned to ground-truth ids: ``python -m training.evaluate --write-matched-png`` writes
the matched predictions in this layout.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from efficient_sam3.files import atomic_directory

FOREGROUND = 255


def object_dir_name(obj_id: int) -> str:
    """Folder of one object: ``000``, ``001``, ... (SA-V's three-digit object folders)."""
    if obj_id < 0:
        raise ValueError(f"object ids must be non-negative for the SA-V PNG layout, got {obj_id}")
    return f"{obj_id:03d}"


def frame_file_name(frame_idx: int) -> str:
    """PNG of one video frame: ``00000.png``, ``00004.png``, ..."""
    if frame_idx < 0:
        raise ValueError(f"frame numbers must be non-negative, got {frame_idx}")
    return f"{frame_idx:05d}.png"


def write_mask_png(path: Path, mask: np.ndarray) -> None:
    """bool ``[H, W]`` -> single-channel PNG with 0 / 255."""
    if mask.ndim != 2:
        raise ValueError(f"{path}: expected an [H, W] mask, got shape {mask.shape}")
    if not cv2.imwrite(str(path), mask.astype(np.uint8) * FOREGROUND):
        raise OSError(f"{path}: could not write PNG")


def video_folder(root: str | Path, video_id: str) -> Path:
    """``root/video_id``, the folder of one video (ValueError for a name that is not a plain folder name)."""
    if not video_id or "/" in video_id or video_id.startswith("."):
        raise ValueError(f"{video_id!r}: not usable as a video folder name")
    return Path(root) / video_id


def write_masks_into(folder: Path, masks: dict[int, dict[int, np.ndarray]]) -> None:
    """Write ``masks[obj_id][frame_idx]`` (bool ``[H, W]``) as ``folder/<obj>/<frame>.png`` (folder exists)."""
    for obj_id, frames in masks.items():
        obj_dir = folder / object_dir_name(int(obj_id))
        obj_dir.mkdir()
        for frame_idx, mask in frames.items():
            write_mask_png(obj_dir / frame_file_name(int(frame_idx)), mask)


def write_video_pngs(root: str | Path, video_id: str, masks: dict[int, dict[int, np.ndarray]]) -> Path:
    """Write one video's masks (``masks[obj_id][frame_idx]`` bool ``[H, W]``) under ``root/video_id``.

    The video folder appears whole or not at all: it is written under a temporary name in ``root`` and
    renamed into place, replacing an older folder of the same video (``efficient_sam3.files.atomic_directory``).
    Returns the video folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: PNG output folder does not exist")
    final = video_folder(root, video_id)
    with atomic_directory(final) as staging:
        write_masks_into(staging, masks)
    return final


def prediction_masks(predictions: dict) -> dict[int, dict[int, np.ndarray]]:
    """A masklet prediction dict (``runtime.predictions`` JSON schema) -> ``masks[obj_id][frame_idx]`` bool
    ``[H, W]``: every object at every frame of ``frame_indices`` (empty where it is absent)."""
    obj_ids = predictions["masklet_id"]
    masks: dict[int, dict[int, np.ndarray]] = {int(obj_id): {} for obj_id in obj_ids}
    for frame_idx, entry in zip(predictions["frame_indices"], predictions["masklet"]):
        for obj_id, rle in zip(obj_ids, entry):
            counts = rle["counts"].encode("ascii") if isinstance(rle["counts"], str) else rle["counts"]
            masks[int(obj_id)][int(frame_idx)] = mask_utils.decode({"size": rle["size"], "counts": counts}).astype(bool)
    return masks


def write_prediction_pngs(root: str | Path, predictions: dict) -> Path:
    """Write a masklet prediction dict (``runtime.predictions`` JSON schema) in the PNG layout.

    Every object gets a PNG at every frame of ``frame_indices`` (empty where it is absent).
    """
    return write_video_pngs(root, predictions["video_id"], prediction_masks(predictions))
