"""What ``training.evaluate`` reports: the result as JSON (0-100 scale), as a table, with SAM3's concept
metrics line, and as SA-V PNG folders that sam2's ``sav_evaluator.py`` reads (``write_official_layout``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from efficient_sam3.files import write_json_atomic
from efficient_sam3.sav_png import write_video_pngs
from training.concept_metrics import ConceptResult
from training.jf_scores import EvalResult, ObjectResult
from training.masklet_io import gt_json_index, load_video_gt


def write_official_layout(result: EvalResult, gt_root: str | Path, out_dir: str | Path) -> Path:
    """Write each evaluated video's ground truth (``out_dir/gt``) and its matched predictions
    (``out_dir/pred``, object folders named by ground-truth id; empty for unmatched objects) as
    SA-V PNG folders, for sam2's ``sav_evaluator.py``. Each video folder is written atomically."""
    gt_root, out_dir = Path(gt_root), Path(out_dir)
    json_index = gt_json_index(gt_root)
    for sub in ("gt", "pred"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    for video_id, video in result.per_video.items():
        gt = load_video_gt(gt_root, video_id, json_index)
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
