"""Masklets read from files for J&F evaluation: SA-V ground truth and our predictions.

Ground truth:
- SA-V train layout ``<video_id>_manual.json`` (``training.data.sav``): every object has every
  annotated frame (an absent object has an empty RLE there).
- SA-V val/test layout ``<video_id>/<obj:03d>/<frame:05d>.png``: each object's frames are ITS OWN
  PNG files, as SA-V's official evaluator lists them (``sorted(os.listdir(object folder))``); a
  frame without a PNG of that object is not one of its annotated frames.
Predictions:
- runtime JSON (``runtime.predictions``): objects with their own ids and prompts;
- SA-V PNG layout (``efficient_sam3.sav_png``), object folders named like the ground truth's.
PNG masks are read as the official evaluator does: PIL, pixels > 0 are the object, at most two
distinct pixel values per file. Errors are ``ValueError``s that start with the offending file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from efficient_sam3.masks import encode_rle
from efficient_sam3.sav_png import frame_file_name, object_dir_name
from training.data.rle import check_rle
from training.data.sav import load_annotation


@dataclass(frozen=True)
class Masklet:
    """One object of one video: ``frames`` maps video frame number -> COCO RLE."""

    obj_id: int
    category: str | None
    frames: dict[int, dict]


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a JSON object")
    return data


def _field(data: dict, key: str, kind: type, path: Path) -> object:
    if not isinstance(data.get(key), kind):
        raise ValueError(f"{path}: missing or malformed field {key!r} (expected {kind.__name__})")
    return data[key]


def _per_object_rles(masklet: list, frame_indices: list[int], obj_ids: list[int], path: Path) -> list[list[dict]]:
    """``masklet[entry][object]`` -> validated compressed RLEs, one list per entry (entry k is frame
    ``frame_indices[k]``; errors name the file, the frame and the object)."""
    entries = []
    for index, entry in enumerate(masklet):
        if not isinstance(entry, list) or len(entry) != len(obj_ids):
            raise ValueError(f"{path}: masklet[{index}] must list {len(obj_ids)} objects")
        entries.append([check_rle(rle, f"{path}: masklet[{index}][{obj}] (frame {frame_indices[index]}, "
                                      f"object {obj_ids[obj]})") for obj, rle in enumerate(entry)])
    return entries


def _categories(data: dict, num_objects: int, path: Path) -> list[str] | None:
    if "masklet_category" not in data:
        return None
    categories = data["masklet_category"]
    valid = isinstance(categories, list) and all(isinstance(c, str) for c in categories)
    if not valid or len(categories) != num_objects:
        raise ValueError(f"{path}: masklet_category must list one string per masklet ({num_objects})")
    return categories


def load_gt_json(path: Path) -> list[Masklet]:
    """Ground-truth masklets from an SA-V ``<video_id>_manual.json`` (via ``training.data.sav``)."""
    annotation = load_annotation(path)
    frames = annotation.annotated_frame_indices()
    return [
        Masklet(
            obj_id=obj_id,
            category=None if annotation.categories is None else annotation.categories[slot],
            frames={frame: check_rle(annotation.masklet[k][slot], annotation.rle_source(k, slot))
                    for k, frame in enumerate(frames)},
        )
        for slot, obj_id in enumerate(annotation.obj_ids)
    ]


def read_mask_png(path: Path) -> np.ndarray:
    """bool ``[H, W]`` of one SA-V PNG: pixels > 0 (any channel) are the object."""
    try:
        with Image.open(path) as image:
            array = np.array(image)
    except (OSError, UnidentifiedImageError) as err:
        raise ValueError(f"{path}: missing or unreadable PNG ({err})") from err
    if array.ndim not in (2, 3):
        raise ValueError(f"{path}: expected a single-channel or colour mask, got shape {array.shape}")
    if len(np.unique(array)) > 2:
        raise ValueError(f"{path}: more than one object in the mask (SA-V holds one object per PNG)")
    mask = array > 0
    return mask.any(axis=2) if mask.ndim == 3 else mask


def _frame_number(png: Path) -> int:
    if not png.stem.isdigit():
        raise ValueError(f"{png}: PNG name is not a frame number")
    return int(png.stem)


def load_gt_png_dir(video_dir: Path) -> list[Masklet]:
    """Ground-truth masklets from an SA-V val/test folder ``<video_id>/<obj:03d>/<frame:05d>.png``.

    Each object's annotated frames are the PNGs in its own folder (the official evaluator's rule).
    """
    if not video_dir.is_dir():
        raise ValueError(f"{video_dir}: ground-truth video folder not found")
    obj_dirs = sorted(p for p in video_dir.iterdir() if p.is_dir())
    if not obj_dirs or not all(d.name.isdigit() for d in obj_dirs):
        raise ValueError(f"{video_dir}: expected numbered object folders (000, 001, ...)")
    masklets = []
    for obj_dir in obj_dirs:
        pngs = sorted(obj_dir.glob("*.png"))
        if not pngs:
            raise ValueError(f"{obj_dir}: object folder without PNG masks")
        frames = {_frame_number(png): encode_rle(read_mask_png(png)) for png in pngs}
        masklets.append(Masklet(obj_id=int(obj_dir.name), category=None, frames=frames))
    return masklets


def load_pred_png_dir(video_dir: Path, wanted: dict[int, list[int]]) -> dict[int, Masklet]:
    """Predicted masklets of an SA-V PNG folder, aligned by object folder name.

    ``wanted[obj_id]`` lists the frames to read for each ground-truth object; a missing object
    folder or PNG is an error (the official evaluator stops there too). Other objects are ignored.
    """
    if not video_dir.is_dir():
        raise ValueError(f"{video_dir}: prediction video folder not found")
    result = {}
    for obj_id, frames in wanted.items():
        obj_dir = video_dir / object_dir_name(obj_id)
        masks = {}
        for frame in frames:
            png = obj_dir / frame_file_name(frame)
            if not png.is_file():
                raise ValueError(f"{png}: prediction PNG not found (every evaluated ground-truth frame needs one)")
            masks[frame] = encode_rle(read_mask_png(png))
        result[obj_id] = Masklet(obj_id=obj_id, category=None, frames=masks)
    return result


@dataclass(frozen=True)
class PredictionVideo:
    """A runtime prediction file: the frames it covers and its predicted masklets."""

    video_id: str
    frame_indices: frozenset[int]
    masklets: list[Masklet]


def load_prediction_json(path: Path) -> PredictionVideo:
    """Read and validate a runtime prediction JSON."""
    data = read_json(path)
    video_id = _field(data, "video_id", str, path)
    obj_ids = _field(data, "masklet_id", list, path)
    frame_indices = _field(data, "frame_indices", list, path)
    if not all(isinstance(t, int) and t >= 0 for t in frame_indices) or len(set(frame_indices)) != len(frame_indices):
        raise ValueError(f"{path}: frame_indices must be unique non-negative integers")
    if not all(isinstance(i, (int, float)) and not isinstance(i, bool) and float(i).is_integer() for i in obj_ids):
        raise ValueError(f"{path}: masklet_id must list integers")
    masklet = _field(data, "masklet", list, path)
    if len(masklet) != len(frame_indices):
        raise ValueError(f"{path}: {len(masklet)} masklet entries but {len(frame_indices)} frame_indices")
    entries = _per_object_rles(masklet, frame_indices, obj_ids, path)
    categories = _categories(data, len(obj_ids), path)
    masklets = [
        Masklet(
            obj_id=int(obj_id),
            category=None if categories is None else categories[obj],
            frames={frame: entry[obj] for frame, entry in zip(frame_indices, entries)},
        )
        for obj, obj_id in enumerate(obj_ids)
    ]
    return PredictionVideo(video_id=video_id, frame_indices=frozenset(frame_indices), masklets=masklets)


def gt_json_index(gt_root: Path) -> dict[str, Path]:
    """video id -> its ``<video_id>_manual.json`` anywhere under ``gt_root`` (SA-V train layout)."""
    return {p.name[: -len("_manual.json")]: p for p in Path(gt_root).rglob("*_manual.json")}


class MissingGroundTruth(ValueError):
    """No ground truth for a predicted video (the prediction is skipped, not the evaluation stopped)."""


def load_video_gt(gt_root: Path, video_id: str, json_index: dict[str, Path]) -> list[Masklet]:
    """The ground truth of one video. A malformed ground-truth file raises a ValueError naming it."""
    if video_id in json_index:
        return load_gt_json(json_index[video_id])
    for video_dir in (gt_root / video_id, gt_root / "Annotations_6fps" / video_id):
        if video_dir.is_dir():
            return load_gt_png_dir(video_dir)
    raise MissingGroundTruth(f"no ground truth for video {video_id!r} under {gt_root}")
