"""SA-V-style J&F evaluation of concept-segmentation predictions (library + CLI).

Ground truth (``--gt-root``), looked up per video id:
- SA-V train layout: ``<gt_root>/**/<video_id>_manual.json`` with ``masklet[k][obj]`` COCO
  RLEs for annotated index ``k`` (= video frame ``4k``), ``masklet_id`` and, in synthetic
  data, ``masklet_category`` (the prompt of each masklet).
- SA-V val/test layout: ``<gt_root>/[Annotations_6fps/]<video_id>/<obj:03d>/<frame:05d>.png``.

Predictions (``--pred``): one JSON per video (a file or a folder of ``*.json``) written by
the runtime: ``{"video_id", "masklet": [entry][object] COCO RLE at video size,
"masklet_id": [...], "masklet_category": [prompt per object], "frame_indices": [video frame
of each entry]}``.

Protocol: our models segment every instance of a prompt, so predicted ids mean nothing to
the ground truth. Per video and per ground-truth category, ground-truth objects are matched
one-to-one (Hungarian, maximising mean J over the evaluated frames) to predicted objects of
that category; an object may also stay unmatched and is then scored against an all-empty
prediction (chosen whenever that scores higher). Without ``masklet_category`` in the ground
truth every prediction is a candidate. Evaluated frames are each object's annotated frames
minus the first and last, restricted to the frames the prediction covers. Per video, J, F
and J&F are means over its objects; overall scores are means over all objects of all
videos (as the SA-V benchmark does), on a 0-100 scale. Unmatched predictions (false
positives) are not penalised: J&F measures how well annotated objects are segmented.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from training.data.sav import load_annotation
from training.metrics import (
    DEFAULT_BOUND_TH,
    assign_predictions,
    boundary_f_measure,
    evaluated_frames,
    region_similarity,
)


@dataclass(frozen=True)
class Masklet:
    """One object of one video: ``frames`` maps video frame number -> COCO RLE."""

    obj_id: int
    category: str | None
    frames: dict[int, dict]


@dataclass(frozen=True)
class ObjectResult:
    obj_id: int
    category: str | None
    pred_obj_id: int | None  # None: scored against an empty prediction
    j: float  # 0-100
    f: float  # 0-100
    num_frames: int


class _MeanScores(ABC):
    """J, F and J&F (0-100) averaged over the objects listed by ``all_objects``."""

    @property
    @abstractmethod
    def all_objects(self) -> list[ObjectResult]: ...

    @property
    def j(self) -> float:
        return float(np.mean([o.j for o in self.all_objects]))

    @property
    def f(self) -> float:
        return float(np.mean([o.f for o in self.all_objects]))

    @property
    def jf(self) -> float:
        return (self.j + self.f) / 2


@dataclass(frozen=True)
class VideoResult(_MeanScores):
    video_id: str
    objects: list[ObjectResult]

    @property
    def all_objects(self) -> list[ObjectResult]:
        return self.objects


@dataclass(frozen=True)
class EvalResult(_MeanScores):
    """``per_video`` scored videos; ``skipped`` maps a video id (or file) to why it was not scored.
    Overall scores average all objects of all videos, as the SA-V benchmark does."""

    per_video: dict[str, VideoResult]
    skipped: dict[str, str]

    @property
    def all_objects(self) -> list[ObjectResult]:
        return [o for v in self.per_video.values() for o in v.objects]


def _coco_rle(obj: object, where: str) -> dict:
    """Validate a COCO RLE (compressed str/bytes or uncompressed list counts) -> compressed."""
    if not isinstance(obj, dict) or "size" not in obj or "counts" not in obj:
        raise ValueError(f"{where}: expected a COCO RLE dict with 'size' and 'counts'")
    size = obj["size"]
    integral = isinstance(size, list) and all(isinstance(s, (int, float)) and s > 0 and s == int(s) for s in size)
    if not integral or len(size) != 2:
        raise ValueError(f"{where}: RLE size must be [height, width], got {size!r}")
    size = [int(s) for s in size]
    counts = obj["counts"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects({"size": size, "counts": counts}, *size)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    if not isinstance(counts, bytes):
        raise ValueError(f"{where}: RLE counts must be a string or a list, got {type(counts).__name__}")
    return {"size": list(size), "counts": counts}


def _read_json(path: Path) -> dict:
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


def _per_object_rles(masklet: list, num_objects: int, path: Path) -> list[list[dict]]:
    """``masklet[entry][object]`` -> validated compressed RLEs, one list per entry."""
    entries = []
    for index, entry in enumerate(masklet):
        if not isinstance(entry, list) or len(entry) != num_objects:
            raise ValueError(f"{path}: masklet[{index}] must list {num_objects} objects")
        entries.append([_coco_rle(rle, f"{path}: masklet[{index}][{obj}]") for obj, rle in enumerate(entry)])
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
            frames={
                frame: _coco_rle(annotation.masklet[k][slot], f"{path}: masklet[{k}][{slot}]")
                for k, frame in enumerate(frames)
            },
        )
        for slot, obj_id in enumerate(annotation.obj_ids)
    ]


def _encode(mask: np.ndarray) -> dict:
    """bool ``[H, W]`` -> compressed COCO RLE."""
    return mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))


def load_gt_png_dir(video_dir: Path) -> list[Masklet]:
    """Ground-truth masklets from an SA-V val/test folder ``<video_id>/<obj:03d>/<frame:05d>.png``.

    The annotated frames are every frame with a PNG of any object; an object without a PNG
    at an annotated frame is absent there (the convention of ``training.data.sav_eval_layout``;
    real SA-V val/test folders hold a PNG for every object at every annotated frame).
    """
    obj_dirs = sorted(p for p in video_dir.iterdir() if p.is_dir())
    if not obj_dirs or not all(d.name.isdigit() for d in obj_dirs):
        raise ValueError(f"{video_dir}: expected numbered object folders (000, 001, ...)")
    masks: dict[int, dict[int, np.ndarray]] = {}
    for obj_dir in obj_dirs:
        masks[int(obj_dir.name)] = {}
        for png in obj_dir.glob("*.png"):
            image = cv2.imread(str(png), cv2.IMREAD_COLOR)
            if image is None or not png.stem.isdigit():
                raise ValueError(f"{png}: unreadable mask or non-numeric frame name")
            masks[int(obj_dir.name)][int(png.stem)] = image.any(axis=2)  # [H, W] bool
    shapes = {m.shape for per_obj in masks.values() for m in per_obj.values()}
    if len(shapes) != 1:
        raise ValueError(f"{video_dir}: no PNG masks, or masks of different sizes {sorted(shapes)}")
    empty = _encode(np.zeros(shapes.pop(), dtype=bool))
    frames = sorted({t for per_obj in masks.values() for t in per_obj})
    return [
        Masklet(
            obj_id=obj_id,
            category=None,
            frames={t: _encode(per_obj[t]) if t in per_obj else empty for t in frames},
        )
        for obj_id, per_obj in masks.items()
    ]


@dataclass(frozen=True)
class PredictionVideo:
    """A runtime prediction file: the frames it covers and its predicted masklets."""

    video_id: str
    frame_indices: frozenset[int]
    masklets: list[Masklet]


def load_prediction_json(path: Path) -> PredictionVideo:
    """Read and validate a runtime prediction JSON."""
    data = _read_json(path)
    video_id = _field(data, "video_id", str, path)
    obj_ids = _field(data, "masklet_id", list, path)
    frame_indices = _field(data, "frame_indices", list, path)
    if not all(isinstance(t, int) and t >= 0 for t in frame_indices) or len(set(frame_indices)) != len(frame_indices):
        raise ValueError(f"{path}: frame_indices must be unique non-negative integers")
    entries = _per_object_rles(_field(data, "masklet", list, path), len(obj_ids), path)
    if len(entries) != len(frame_indices):
        raise ValueError(f"{path}: {len(entries)} masklet entries but {len(frame_indices)} frame_indices")
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


def _rle_iou(pred: dict | None, gt: dict) -> float:
    """J between two RLEs (None = empty prediction); 1 when both are empty."""
    gt_area = int(mask_utils.area(gt))
    pred_area = 0 if pred is None else int(mask_utils.area(pred))
    if gt_area == 0 and pred_area == 0:
        return 1.0
    if gt_area == 0 or pred_area == 0:
        return 0.0
    return float(mask_utils.iou([pred], [gt], [0])[0, 0])


def evaluate_video(
    gt: list[Masklet], prediction: PredictionVideo, skip_first_last: bool = True, bound_th: float = DEFAULT_BOUND_TH
) -> list[ObjectResult]:
    """Match predictions to ground-truth objects and score every object of one video."""
    if not gt:
        raise ValueError("the ground truth has no objects")
    preds = prediction.masklets
    if any(o.category is not None for o in gt) and any(p.category is None for p in preds):
        raise ValueError("ground truth has masklet_category but the prediction does not")
    frames = {}
    for obj in gt:
        annotated = sorted(obj.frames)
        annotated = [annotated[i] for i in evaluated_frames(len(annotated), skip_first_last)]
        frames[obj.obj_id] = [t for t in annotated if t in prediction.frame_indices]
        if not frames[obj.obj_id]:
            raise ValueError(f"object {obj.obj_id}: none of its evaluated frames is in the prediction's frame_indices")
        for t in frames[obj.obj_id]:
            sizes = {tuple(obj.frames[t]["size"])} | {tuple(p.frames[t]["size"]) for p in preds}
            if len(sizes) != 1:
                raise ValueError(f"frame {t}: mask sizes differ between ground truth and prediction: {sorted(sizes)}")

    mean_j = np.zeros((len(gt), len(preds)))
    for row, obj in enumerate(gt):
        for col, pred in enumerate(preds):
            mean_j[row, col] = np.mean([_rle_iou(pred.frames[t], obj.frames[t]) for t in frames[obj.obj_id]])
    empty_j = np.array([np.mean([_rle_iou(None, o.frames[t]) for t in frames[o.obj_id]]) for o in gt])
    allowed = np.array([[o.category is None or o.category == p.category for p in preds] for o in gt], dtype=bool)
    assignment = assign_predictions(mean_j, empty_j, allowed.reshape(len(gt), len(preds)))

    results = []
    for obj, pred_index in zip(gt, assignment):
        j_values, f_values = [], []
        for t in frames[obj.obj_id]:
            gt_mask = mask_utils.decode(obj.frames[t]).astype(bool)  # [H, W]
            if pred_index is None:
                pred_mask = np.zeros_like(gt_mask)
            else:
                pred_mask = mask_utils.decode(preds[pred_index].frames[t]).astype(bool)
            j_values.append(region_similarity(pred_mask, gt_mask))
            f_values.append(boundary_f_measure(pred_mask, gt_mask, bound_th))
        results.append(
            ObjectResult(
                obj_id=obj.obj_id,
                category=obj.category,
                pred_obj_id=None if pred_index is None else preds[pred_index].obj_id,
                j=100 * float(np.mean(j_values)),
                f=100 * float(np.mean(f_values)),
                num_frames=len(j_values),
            )
        )
    return results


def _prediction_files(pred: Path) -> list[Path]:
    if pred.is_file():
        return [pred]
    if not pred.is_dir():
        raise FileNotFoundError(f"{pred}: prediction file or folder not found")
    files = sorted(pred.glob("*.json"))
    if not files:
        raise ValueError(f"{pred}: no prediction *.json files")
    return files


def _gt_loader(gt_root: Path, video_id: str, json_index: dict[str, Path]) -> list[Masklet]:
    if video_id in json_index:
        return load_gt_json(json_index[video_id])
    for video_dir in (gt_root / video_id, gt_root / "Annotations_6fps" / video_id):
        if video_dir.is_dir():
            return load_gt_png_dir(video_dir)
    raise ValueError(f"no ground truth for video {video_id!r} under {gt_root}")


def evaluate(
    pred: str | Path,
    gt_root: str | Path,
    skip_first_last: bool = True,
    bound_th: float = DEFAULT_BOUND_TH,
    show_progress: bool = True,
) -> EvalResult:
    """Evaluate every prediction JSON under ``pred`` against ``gt_root`` (layouts above).

    Bad videos (unreadable prediction, missing ground truth, size mismatch, ...) are skipped
    and listed in ``EvalResult.skipped``. Raises when nothing could be scored.
    """
    pred, gt_root = Path(pred), Path(gt_root)
    files = _prediction_files(pred)
    if not gt_root.is_dir():
        raise FileNotFoundError(f"{gt_root}: ground-truth folder not found")
    json_index = {p.name[: -len("_manual.json")]: p for p in gt_root.rglob("*_manual.json")}
    per_video: dict[str, VideoResult] = {}
    skipped: dict[str, str] = {}
    for path in tqdm(files, desc="evaluate", unit="video", disable=not show_progress):
        try:
            prediction = load_prediction_json(path)
        except ValueError as err:
            skipped[path.name] = str(err)
            continue
        video_id = prediction.video_id
        if video_id in per_video or video_id in skipped:
            skipped[f"{video_id} ({path.name})"] = f"{path}: duplicate prediction for video {video_id}"
            continue
        try:
            gt = _gt_loader(gt_root, video_id, json_index)
            per_video[video_id] = VideoResult(video_id, evaluate_video(gt, prediction, skip_first_last, bound_th))
        except ValueError as err:
            skipped[video_id] = f"{path}: {err}"
    if not per_video:
        reasons = "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:5])
        raise ValueError(f"no video could be evaluated ({len(skipped)} skipped: {reasons})")
    return EvalResult(per_video=per_video, skipped=skipped)


def _object_dict(obj: ObjectResult) -> dict:
    return {
        "obj_id": obj.obj_id,
        "category": obj.category,
        "pred_obj_id": obj.pred_obj_id,
        "J&F": (obj.j + obj.f) / 2,
        "J": obj.j,
        "F": obj.f,
        "num_frames": obj.num_frames,
    }


def result_to_dict(result: EvalResult) -> dict:
    """JSON-ready form of ``result``: scores on a 0-100 scale under the keys "J&F", "J", "F"."""
    return {
        "J&F": result.jf,
        "J": result.j,
        "F": result.f,
        "num_videos": len(result.per_video),
        "num_objects": len(result.all_objects),
        "per_video": {
            vid: {"J&F": v.jf, "J": v.j, "F": v.f, "objects": [_object_dict(o) for o in v.objects]}
            for vid, v in result.per_video.items()
        },
        "skipped": result.skipped,
    }


def write_result_json(result: EvalResult, path: str | Path) -> None:
    """Write ``result`` as JSON atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(result_to_dict(result), handle, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def format_table(result: EvalResult) -> str:
    width = max([len("overall"), *(len(v) for v in result.per_video)])
    lines = [f"{'video':<{width}}  {'objs':>4}  {'J&F':>6}  {'J':>6}  {'F':>6}"]
    for vid, v in result.per_video.items():
        lines.append(f"{vid:<{width}}  {len(v.objects):>4}  {v.jf:6.1f}  {v.j:6.1f}  {v.f:6.1f}")
    lines.append(f"{'overall':<{width}}  {len(result.all_objects):>4}  {result.jf:6.1f}  {result.j:6.1f}  {result.f:6.1f}")
    lines += [f"skipped {vid}: {reason}" for vid, reason in result.skipped.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="SA-V-style J&F of prediction JSONs against SA-V ground truth.")
    parser.add_argument("--pred", required=True, help="prediction JSON file or folder of them")
    parser.add_argument("--gt-root", required=True, help="folder with <video>_manual.json or <video>/<obj>/<frame>.png")
    parser.add_argument("--out", help="write the result as JSON here")
    args = parser.parse_args(argv)
    try:
        result = evaluate(args.pred, args.gt_root)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"error: {err}\n")
    print(format_table(result))
    if args.out:
        write_result_json(result, args.out)


if __name__ == "__main__":
    main()
