"""(video, noun phrase) pairs for ``training.concept_metrics``, read from files.

Two sources:
- SA-Co/VEval files (what SAM3's ``saco_veval_eval.py`` reads): a YT-VIS-style ground-truth JSON
  (``videos``, ``annotations`` with per-frame ``segmentations``, ``categories``, ``video_np_pairs``)
  and a prediction JSON list of masklets (``video_id``, ``category_id``, ``score``,
  ``segmentations``). Pairs are, as in the official code, the (video, category) pairs of the
  predictions, the ground-truth annotations and ``video_np_pairs``.
- ours: SA-V train-layout ground truth (``<video>_manual.json`` with ``masklet_category`` and
  ``video_np_pairs``, ``training.data.sav``) and runtime prediction JSON (``runtime.predictions``;
  ``masklet_score`` per masklet, 1.0 when the file has none). Pairs are the phrases of
  ``video_np_pairs`` and ``masklet_category`` plus any predicted phrase; frames are the annotated
  frames the prediction covers; an empty ground-truth mask is an absent frame.
Errors are ``ValueError``s that start with the offending file.
"""

from __future__ import annotations

import json
from pathlib import Path

from pycocotools import mask as mask_utils

from training.concept_metrics import SCORE_THRESHOLD, ConceptMasklet, ConceptResult, PhrasePair, concept_metrics
from training.data.sav import load_annotation
from training.data.rle import check_rle
from training.masklet_io import load_gt_json, load_prediction_json, read_json


def _frame_rle(rle: object, where: str) -> dict | None:
    return None if rle is None else check_rle(rle, where)


def _saco_masklet(entry: object, num_frames: int, where: str, is_gt: bool) -> ConceptMasklet:
    if not isinstance(entry, dict) or not isinstance(entry.get("segmentations"), list):
        raise ValueError(f"{where}: expected a masklet with a 'segmentations' list")
    frames = tuple(_frame_rle(rle, f"{where} frame {t}") for t, rle in enumerate(entry["segmentations"]))
    if len(frames) != num_frames:
        raise ValueError(f"{where}: {len(frames)} segmentations for a video of {num_frames} frames")
    if is_gt:
        return ConceptMasklet(frames=frames, iscrowd=bool(entry.get("iscrowd", 0)))
    if not isinstance(entry.get("score"), (int, float)):
        raise ValueError(f"{where}: prediction without a numeric 'score'")
    return ConceptMasklet(frames=frames, score=float(entry["score"]))


def load_saco_pairs(gt_path: str | Path, pred_path: str | Path) -> list[PhrasePair]:
    """Pairs of an SA-Co/VEval ground-truth JSON and a SAM3 prediction JSON (see the module docstring)."""
    gt_path, pred_path = Path(gt_path), Path(pred_path)
    gt = read_json(gt_path)
    for key in ("videos", "annotations", "categories"):
        if not isinstance(gt.get(key), list):
            raise ValueError(f"{gt_path}: missing or malformed field {key!r} (expected a list)")
    try:
        preds = json.loads(pred_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{pred_path}: cannot read JSON ({err})") from err
    if not isinstance(preds, list):
        raise ValueError(f"{pred_path}: top level must be a list of masklets")
    lengths = {video["id"]: len(video["file_names"]) for video in gt["videos"]}
    names = {category["id"]: category["name"] for category in gt["categories"]}
    gt_of: dict[tuple, list] = {}
    pred_of: dict[tuple, list] = {}
    for index, ann in enumerate(gt["annotations"]):
        key = (ann.get("video_id"), ann.get("category_id"))
        gt_of.setdefault(key, []).append(
            _saco_masklet(ann, lengths.get(key[0], -1), f"{gt_path}: annotations[{index}]", is_gt=True))
    for index, pred in enumerate(preds):
        key = (pred.get("video_id") if isinstance(pred, dict) else None,
               pred.get("category_id") if isinstance(pred, dict) else None)
        pred_of.setdefault(key, []).append(
            _saco_masklet(pred, lengths.get(key[0], -1), f"{pred_path}: [{index}]", is_gt=False))
    keys = set(gt_of) | set(pred_of) | {(p["video_id"], p["category_id"]) for p in gt.get("video_np_pairs", [])}
    for video_id, category_id in keys:
        if video_id not in lengths or category_id not in names:
            raise ValueError(f"{gt_path}: video {video_id!r} or category {category_id!r} is not listed")
    return [PhrasePair(video_id=str(v), phrase=names[c], num_frames=lengths[v], gt=tuple(gt_of.get((v, c), ())),
                       pred=tuple(pred_of.get((v, c), ()))) for v, c in sorted(keys, key=lambda k: (str(k[0]), k[1]))]


def _absent_if_empty(rle: dict) -> dict | None:
    return rle if mask_utils.area(rle) > 0 else None


def runtime_video_pairs(gt_json: str | Path, pred_json: str | Path) -> list[PhrasePair]:
    """Pairs of one video: SA-V ``_manual.json`` with ``video_np_pairs`` and a runtime prediction JSON."""
    gt_json, pred_json = Path(gt_json), Path(pred_json)
    annotation = load_annotation(gt_json)
    if annotation.categories is None or annotation.video_np_pairs is None:
        raise ValueError(f"{gt_json}: concept metrics need 'masklet_category' and 'video_np_pairs'")
    prediction = load_prediction_json(pred_json)
    if prediction.video_id != annotation.video_id:
        raise ValueError(f"{pred_json}: video {prediction.video_id!r}, ground truth {gt_json} is {annotation.video_id!r}")
    scores = _masklet_scores(read_json(pred_json), len(prediction.masklets), pred_json)
    if any(p.category is None for p in prediction.masklets):
        raise ValueError(f"{pred_json}: concept metrics need 'masklet_category' in the prediction")
    frames = [t for t in annotation.annotated_frame_indices() if t in prediction.frame_indices]
    if not frames:
        raise ValueError(f"{pred_json}: none of the annotated frames of {gt_json.name} is in frame_indices")
    gt = load_gt_json(gt_json)
    phrases = dict.fromkeys([p for p, _ in annotation.video_np_pairs] + list(annotation.categories)
                            + [p.category for p in prediction.masklets])
    pairs = []
    for phrase in phrases:
        gt_masklets = tuple(ConceptMasklet(frames=tuple(_absent_if_empty(o.frames[t]) for t in frames))
                            for o in gt if o.category == phrase)
        pred_masklets = tuple(ConceptMasklet(frames=tuple(p.frames[t] for t in frames), score=score)
                              for p, score in zip(prediction.masklets, scores) if p.category == phrase)
        pairs.append(PhrasePair(annotation.video_id, phrase, len(frames), gt_masklets, pred_masklets))
    return pairs


def _masklet_scores(data: dict, num_masklets: int, path: Path) -> list[float]:
    if "masklet_score" not in data:
        return [1.0] * num_masklets
    scores = data["masklet_score"]
    valid = isinstance(scores, list) and all(isinstance(s, (int, float)) and 0 <= s <= 1 for s in scores)
    if not valid or len(scores) != num_masklets:
        raise ValueError(f"{path}: masklet_score must list one number in [0, 1] per masklet ({num_masklets})")
    return [float(s) for s in scores]


def evaluate_concepts(pred: str | Path, gt_root: str | Path, score_threshold: float = SCORE_THRESHOLD
                      ) -> ConceptResult | None:
    """Concept metrics of runtime prediction JSON (a file or a folder of them) against the SA-V
    ``<video>_manual.json`` files under ``gt_root``; None when no ground truth lists ``video_np_pairs``
    (without negatives there is no IL_MCC, as in the official code)."""
    pred, gt_root = Path(pred), Path(gt_root)
    files = [pred] if pred.is_file() else sorted(pred.glob("*.json"))
    index = {p.name[: -len("_manual.json")]: p for p in gt_root.rglob("*_manual.json")}
    chosen = []
    for path in files:
        video_id = load_prediction_json(path).video_id
        if video_id not in index:
            raise ValueError(f"{path}: no {video_id}_manual.json under {gt_root}")
        chosen.append((index[video_id], path))
    if not chosen or not any("video_np_pairs" in read_json(gt) for gt, _ in chosen):
        return None
    return concept_metrics([pair for gt, path in chosen for pair in runtime_video_pairs(gt, path)], score_threshold)
