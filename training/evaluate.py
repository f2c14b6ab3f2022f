"""J&F of predictions against SA-V ground truth, equal to SA-V's official evaluator (library + CLI).

Ground truth (``--gt-root``), looked up per video id (``training.masklet_io``):
- SA-V train layout: ``<gt_root>/**/<video_id>_manual.json`` (``masklet_category`` optional);
- SA-V val/test layout: ``<gt_root>/[Annotations_6fps/]<video_id>/<obj:03d>/<frame:05d>.png``.

Predictions (``--pred``), either
- runtime JSON, one per video (a file or a folder of ``*.json``, ``runtime.predictions``): concept
  predictions whose ids mean nothing to the ground truth, so per video ground-truth objects are
  matched one-to-one (Hungarian, maximising the per-object official J; within a category when the
  ground truth has ``masklet_category``) to predicted objects; an object may stay unmatched and is
  then scored against an all-empty prediction (chosen whenever that scores higher). Unmatched
  predictions (false positives) cost nothing here -- the concept metrics (cgF1, pHOTA) price them;
- or SA-V PNG folders ``<pred>/<video_id>/<obj:03d>/<frame:05d>.png`` whose object folders are
  named like the ground truth's (as the official evaluator reads them; no matching).

Scoring is the official one (facebookresearch/sam2 ``sav_dataset/utils/sav_benchmark.py``; parity
tests in ``tests/training/test_sav_official_parity.py``): each object's annotated frames minus the
first and last (JSON predictions: restricted to the frames they cover) are its evaluated frames;
it is scored from the first evaluated frame where it is non-empty in the ground truth or in the
prediction onwards (``training.metrics.first_scored_frame``); an object empty in the ground truth
at every evaluated frame is not scored (listed under ``unscored``; the official evaluator stops with
an AssertionError there). Overall J, F, J&F are means over all scored objects of all videos, 0-100.

With runtime JSON predictions and ground truth that lists ``video_np_pairs`` (positive and negative
phrases per video), SAM3's video concept metrics are reported too (cgF1, IL_MCC, positive micro-F1,
pHOTA; ``training.concept_metrics``), under "concept" in ``--out``.

``--write-official-layout DIR`` writes the ground truth and the (matched) predictions as PNG folders
``DIR/gt`` and ``DIR/pred``, so ``python sav_evaluator.py --gt_root DIR/gt --pred_root DIR/pred``
(sam2's ``sav_dataset``) reproduces the per-object numbers.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from efficient_sam3.cli import ArgumentParser, fail
from efficient_sam3.files import check_creatable, write_json_atomic
from efficient_sam3.sav_png import write_video_pngs
from training.concept_io import evaluate_concepts
from training.concept_metrics import ConceptResult
from training.masklet_io import (
    Masklet,
    PredictionVideo,
    load_gt_json,
    load_gt_png_dir,
    load_pred_png_dir,
    load_prediction_json,
)
from training.metrics import (
    DEFAULT_BOUND_TH,
    assign_predictions,
    boundary_f_measure,
    evaluated_frames,
    first_scored_frame,
    region_similarity,
)

__all__ = ["EvalResult", "Masklet", "ObjectResult", "PredictionVideo", "VideoResult", "evaluate",
           "evaluate_png_video", "evaluate_video", "load_prediction_json", "main", "write_official_layout",
           "write_result_json"]


@dataclass(frozen=True)
class ObjectResult:
    obj_id: int
    category: str | None
    pred_obj_id: int | None  # None: scored against an empty prediction
    j: float  # 0-100
    f: float  # 0-100
    num_frames: int  # frames scored (from the first where ground truth or prediction is non-empty)


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
    """``objects``: scored objects; ``unscored``: ids of objects empty in the ground truth at every
    evaluated frame (no score, as in the official evaluator, which fails on them)."""

    video_id: str
    objects: list[ObjectResult]
    unscored: tuple[int, ...] = ()
    matched_masks: dict[int, Masklet] = field(default_factory=dict, repr=False, compare=False)

    @property
    def all_objects(self) -> list[ObjectResult]:
        return self.objects


@dataclass(frozen=True)
class EvalResult(_MeanScores):
    """``per_video`` scored videos; ``skipped`` maps a video id (or file) to why it was not scored.
    Overall scores average all scored objects of all videos, as the SA-V benchmark does."""

    per_video: dict[str, VideoResult]
    skipped: dict[str, str]

    @property
    def all_objects(self) -> list[ObjectResult]:
        return [o for v in self.per_video.values() for o in v.objects]


def _area(rle: dict | None) -> int:
    return 0 if rle is None else int(mask_utils.area(rle))


def _rle_iou(pred: dict | None, gt: dict) -> float:
    """J between two RLEs (None = empty prediction); 1 when both are empty."""
    gt_area, pred_area = _area(gt), _area(pred)
    if gt_area == 0 and pred_area == 0:
        return 1.0
    if gt_area == 0 or pred_area == 0:
        return 0.0
    return float(mask_utils.iou([pred], [gt], [0])[0, 0])


def _scored_frames(gt: Masklet, pred: Masklet | None, frames: list[int]) -> list[int]:
    """The official rule: ``frames`` from the first where ``gt`` or ``pred`` is non-empty (``[]``
    when ``gt`` is empty at all of them)."""
    gt_present = [_area(gt.frames[t]) > 0 for t in frames]
    pred_present = [pred is not None and _area(pred.frames[t]) > 0 for t in frames]
    start = first_scored_frame(np.array(gt_present, bool), np.array(pred_present, bool))
    return [] if start is None else frames[start:]


def _mean_j(gt: Masklet, pred: Masklet | None, frames: list[int]) -> float:
    scored = _scored_frames(gt, pred, frames)
    return float(np.mean([_rle_iou(None if pred is None else pred.frames[t], gt.frames[t]) for t in scored]))


def _score_object(gt: Masklet, pred: Masklet | None, frames: list[int], bound_th: float) -> ObjectResult:
    j_values, f_values = [], []
    for t in _scored_frames(gt, pred, frames):
        gt_mask = mask_utils.decode(gt.frames[t]).astype(bool)  # [H, W]
        pred_mask = np.zeros_like(gt_mask) if pred is None else mask_utils.decode(pred.frames[t]).astype(bool)
        j_values.append(region_similarity(pred_mask, gt_mask))
        f_values.append(boundary_f_measure(pred_mask, gt_mask, bound_th))
    return ObjectResult(obj_id=gt.obj_id, category=gt.category, pred_obj_id=None if pred is None else pred.obj_id,
                        j=100 * float(np.mean(j_values)), f=100 * float(np.mean(f_values)), num_frames=len(j_values))


def _evaluated(obj: Masklet, skip_first_last: bool) -> list[int]:
    annotated = sorted(obj.frames)
    return [annotated[i] for i in evaluated_frames(len(annotated), skip_first_last)]


def _check_sizes(gt: Masklet, preds: list[Masklet], frames: list[int]) -> None:
    for t in frames:
        sizes = {tuple(gt.frames[t]["size"])} | {tuple(p.frames[t]["size"]) for p in preds}
        if len(sizes) != 1:
            raise ValueError(f"frame {t}: mask sizes differ between ground truth and prediction: {sorted(sizes)}")


def _video_result(video_id: str, gt: list[Masklet], pairs: dict[int, Masklet | None], frames: dict[int, list[int]],
                  bound_th: float) -> VideoResult:
    objects = [_score_object(obj, pairs[obj.obj_id], frames[obj.obj_id], bound_th)
               for obj in gt if obj.obj_id in pairs]
    matched = {obj_id: pred for obj_id, pred in pairs.items() if pred is not None}
    return VideoResult(video_id, objects, tuple(o.obj_id for o in gt if o.obj_id not in pairs), matched)


def evaluate_video(gt: list[Masklet], prediction: PredictionVideo, skip_first_last: bool = True,
                   bound_th: float = DEFAULT_BOUND_TH) -> VideoResult:
    """Match a JSON prediction's objects to ground-truth objects and score every object of one video."""
    if not gt:
        raise ValueError("the ground truth has no objects")
    preds = prediction.masklets
    if any(o.category is not None for o in gt) and any(p.category is None for p in preds):
        raise ValueError("ground truth has masklet_category but the prediction does not")
    frames = {}
    for obj in gt:
        frames[obj.obj_id] = [t for t in _evaluated(obj, skip_first_last) if t in prediction.frame_indices]
        if not frames[obj.obj_id]:
            raise ValueError(f"object {obj.obj_id}: none of its evaluated frames is in the prediction's frame_indices")
        _check_sizes(obj, preds, frames[obj.obj_id])
    scored = [o for o in gt if any(_area(o.frames[t]) > 0 for t in frames[o.obj_id])]
    mean_j = np.array([[_mean_j(o, p, frames[o.obj_id]) for p in preds] for o in scored])
    mean_j = mean_j.reshape(len(scored), len(preds))  # [O, P], also when O or P is 0
    empty_j = np.array([_mean_j(o, None, frames[o.obj_id]) for o in scored])
    allowed = np.array([[o.category is None or o.category == p.category for p in preds] for o in scored], dtype=bool)
    assignment = assign_predictions(mean_j, empty_j, allowed.reshape(mean_j.shape))
    pairs = {o.obj_id: None if index is None else preds[index] for o, index in zip(scored, assignment)}
    return _video_result(prediction.video_id, gt, pairs, frames, bound_th)


def evaluate_png_video(gt: list[Masklet], pred_dir: Path, skip_first_last: bool = True,
                       bound_th: float = DEFAULT_BOUND_TH) -> VideoResult:
    """Score an SA-V PNG prediction folder whose object folders are named like the ground truth's."""
    if not gt:
        raise ValueError("the ground truth has no objects")
    frames = {obj.obj_id: _evaluated(obj, skip_first_last) for obj in gt}
    preds = load_pred_png_dir(pred_dir, frames)
    for obj in gt:
        _check_sizes(obj, [preds[obj.obj_id]], frames[obj.obj_id])
    pairs = {o.obj_id: preds[o.obj_id] for o in gt if any(_area(o.frames[t]) > 0 for t in frames[o.obj_id])}
    return _video_result(pred_dir.name, gt, pairs, frames, bound_th)


def _prediction_files(pred: Path) -> list[Path]:
    if pred.is_file():
        return [pred]
    if not pred.is_dir():
        raise FileNotFoundError(f"{pred}: prediction file or folder not found")
    files = sorted(pred.glob("*.json"))
    if not files:
        raise ValueError(f"{pred}: no prediction *.json files (nor video folders of SA-V PNGs)")
    return files


class MissingGroundTruth(ValueError):
    """No ground truth for a predicted video (the prediction is skipped, not the evaluation stopped)."""


def _gt_loader(gt_root: Path, video_id: str, json_index: dict[str, Path]) -> list[Masklet]:
    """The ground truth of one video. A malformed ground-truth file raises a ValueError naming it."""
    if video_id in json_index:
        return load_gt_json(json_index[video_id])
    for video_dir in (gt_root / video_id, gt_root / "Annotations_6fps" / video_id):
        if video_dir.is_dir():
            return load_gt_png_dir(video_dir)
    raise MissingGroundTruth(f"no ground truth for video {video_id!r} under {gt_root}")


def _is_png_layout(pred: Path) -> bool:
    return pred.is_dir() and not any(pred.glob("*.json")) and any(p.is_dir() for p in pred.iterdir())


def evaluate(
    pred: str | Path,
    gt_root: str | Path,
    skip_first_last: bool = True,
    bound_th: float = DEFAULT_BOUND_TH,
    show_progress: bool = True,
) -> EvalResult:
    """Evaluate the predictions under ``pred`` (JSON files or SA-V PNG folders) against ``gt_root``.

    Bad videos (unreadable prediction, missing ground truth or PNG, size mismatch, ...) are skipped
    and listed in ``EvalResult.skipped``. Raises when nothing could be scored (with the one reason when
    a single video was given), and on a malformed ground-truth file (naming it): a benchmark that
    silently drops a video of its ground truth reports a different score.
    """
    pred, gt_root = Path(pred), Path(gt_root)
    if not gt_root.is_dir():
        raise FileNotFoundError(f"{gt_root}: ground-truth folder not found")
    png_layout = _is_png_layout(pred)
    items = sorted(p for p in pred.iterdir() if p.is_dir()) if png_layout else _prediction_files(pred)
    json_index = {p.name[: -len("_manual.json")]: p for p in gt_root.rglob("*_manual.json")}
    per_video: dict[str, VideoResult] = {}
    skipped: dict[str, str] = {}
    for path in tqdm(items, desc="evaluate", unit="video", disable=not show_progress):
        if png_layout:
            video_id = path.name
        else:
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
            gt = _gt_loader(gt_root, video_id, json_index)  # a malformed ground truth raises, naming its file
        except MissingGroundTruth as err:
            skipped[video_id] = f"{path}: {err}"
            continue
        try:
            if png_layout:
                video = evaluate_png_video(gt, path, skip_first_last, bound_th)
            else:
                video = evaluate_video(gt, prediction, skip_first_last, bound_th)
        except ValueError as err:
            skipped[video_id] = f"{path}: {err}"
            continue
        if video.objects:
            per_video[video_id] = video
        else:
            skipped[video_id] = f"{path}: no object is non-empty in the ground truth at an evaluated frame"
    if not per_video:
        if len(skipped) == 1:
            raise ValueError(next(iter(skipped.values())))
        reasons = "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:5])
        raise ValueError(f"no video could be evaluated ({len(skipped)} skipped: {reasons})")
    return EvalResult(per_video=per_video, skipped=skipped)


def write_official_layout(result: EvalResult, gt_root: str | Path, out_dir: str | Path) -> Path:
    """Write each evaluated video's ground truth (``out_dir/gt``) and its matched predictions
    (``out_dir/pred``, object folders named by ground-truth id; empty for unmatched objects) as
    SA-V PNG folders, for sam2's ``sav_evaluator.py``. Each video folder is written atomically."""
    gt_root, out_dir = Path(gt_root), Path(out_dir)
    json_index = {p.name[: -len("_manual.json")]: p for p in gt_root.rglob("*_manual.json")}
    for sub in ("gt", "pred"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    for video_id, video in result.per_video.items():
        gt = _gt_loader(gt_root, video_id, json_index)
        gt_masks, pred_masks = {}, {}
        for obj in gt:
            gt_masks[obj.obj_id] = {t: mask_utils.decode(rle).astype(bool) for t, rle in obj.frames.items()}
            pred = video.matched_masks.get(obj.obj_id)
            pred_masks[obj.obj_id] = {
                t: np.zeros_like(mask) if pred is None or t not in pred.frames
                else mask_utils.decode(pred.frames[t]).astype(bool)
                for t, mask in gt_masks[obj.obj_id].items()}
        write_video_pngs(out_dir / "gt", video_id, gt_masks)
        write_video_pngs(out_dir / "pred", video_id, pred_masks)
    return out_dir


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
        "protocol": "SA-V official J&F (sam2 sav_dataset/utils/sav_benchmark.py)",
        "num_videos": len(result.per_video),
        "num_objects": len(result.all_objects),
        "per_video": {
            vid: {"J&F": v.jf, "J": v.j, "F": v.f, "objects": [_object_dict(o) for o in v.objects],
                  "unscored_objects": list(v.unscored)}
            for vid, v in result.per_video.items()
        },
        "skipped": result.skipped,
    }


def format_concept_line(concept: ConceptResult | None) -> str:
    if concept is None:
        return "concept metrics: not computed (the ground truth lists no video_np_pairs, so no negatives)"
    return (f"concept metrics over {concept.num_pairs} (video, phrase) pairs ({concept.num_positive_pairs} positive): "
            f"cgF1 {concept.cgf1:.1f}  IL_MCC {concept.il_mcc:.1f}  positive micro-F1 {concept.positive_micro_f1:.1f}  "
            f"pHOTA {concept.phota:.1f}")


def write_result_json(result: EvalResult, path: str | Path, concept: ConceptResult | None = None) -> None:
    """Write ``result`` (and SAM3's concept metrics, when given, under "concept") as JSON atomically
    (``efficient_sam3.files``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {**result_to_dict(result), "concept": None if concept is None else concept.to_dict()},
                      indent=2)


def format_table(result: EvalResult) -> str:
    width = max([len("overall"), *(len(v) for v in result.per_video)])
    lines = [f"{'video':<{width}}  {'objs':>4}  {'J&F':>6}  {'J':>6}  {'F':>6}"]
    for vid, v in result.per_video.items():
        lines.append(f"{vid:<{width}}  {len(v.objects):>4}  {v.jf:6.1f}  {v.j:6.1f}  {v.f:6.1f}")
    lines.append(f"{'overall':<{width}}  {len(result.all_objects):>4}  {result.jf:6.1f}  {result.j:6.1f}  {result.f:6.1f}")
    lines += [f"unscored {vid}: objects {list(v.unscored)} are empty at every evaluated frame"
              for vid, v in result.per_video.items() if v.unscored]
    lines += [f"skipped {vid}: {reason}" for vid, reason in result.skipped.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The CLI. Bad input (flags, files, a malformed ground truth, nothing scorable) ends in one
    ``error: <file or flag>: <problem>`` line and ``SystemExit(2)``; outputs are checked before any work."""
    parser = ArgumentParser(description="SA-V official J&F of predictions against SA-V ground truth.")
    parser.add_argument("--pred", required=True,
                        help="prediction JSON file, folder of them, or folder of SA-V PNG video folders")
    parser.add_argument("--gt-root", required=True, help="folder with <video>_manual.json or <video>/<obj>/<frame>.png")
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    parser.add_argument("--do-not-skip-first-and-last-frame", action="store_true",
                        help="score the first and last annotated frames too (not the SA-V val/test standard)")
    parser.add_argument("--write-official-layout", metavar="DIR", type=Path,
                        help="write DIR/gt and DIR/pred (matched predictions) as PNG folders for sav_evaluator.py")
    args = parser.parse_args(argv)
    try:
        if args.out is not None:
            check_creatable(args.out, "--out file")
        if args.write_official_layout is not None:
            check_creatable(args.write_official_layout, "--write-official-layout folder", folder=True)
        result = evaluate(args.pred, args.gt_root, skip_first_last=not args.do_not_skip_first_and_last_frame,
                          show_progress=sys.stderr.isatty())  # no progress bar in logs: stderr keeps the error line
        concept = None if _is_png_layout(Path(args.pred)) else evaluate_concepts(args.pred, args.gt_root)
        if args.write_official_layout is not None:
            write_official_layout(result, args.gt_root, args.write_official_layout)
        if args.out is not None:
            write_result_json(result, args.out, concept)
    except (ValueError, OSError) as err:
        raise SystemExit(fail(err)) from None
    print(format_table(result))
    print(format_concept_line(concept))
    return 0


if __name__ == "__main__":
    sys.exit(main())
