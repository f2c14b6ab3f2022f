"""SAM3's video concept metrics over (video, noun phrase) pairs: cgF1, IL_MCC, positive micro-F1, pHOTA.

The reference is facebookresearch/sam3 ``sam3/eval/saco_veval_evaluators.py`` (``VideoCGF1Evaluator``,
``VideoPhraseHotaEvaluator``), ``cgf1_eval.py`` (``CGF1Eval``), ``ytvis_eval.py`` (masklet IoU) and
``hota_eval_toolkit/``; parity tests in ``tests/training/test_concept_metrics.py`` against numbers that
code produced (``tests/fixtures/saco_official/make_fixtures.py``). Each pair is one "image" of the
official evaluators: a phrase prompted on a video, positive when the ground truth has a masklet of it,
negative otherwise.

- Kept predictions: cgF1 keeps masklets with ``score >= 0.5``, pHOTA those with ``score > 0.5`` (the
  official evaluators differ in exactly this way).
- Masklet IoU (cgF1): summed intersection over summed union over the pair's frames; 1 when both are
  empty everywhere. Per pair, kept predictions are matched one-to-one to ground-truth masklets
  (Hungarian, maximum total IoU); at each IoU threshold 0.50:0.05:0.95 a match with IoU >= threshold
  is a TP, other predictions FPs, other ground-truth masklets FNs.
- IL_MCC: Matthews correlation of "the pair has >= 1 kept prediction" against "the pair has >= 1
  ground-truth masklet", over all pairs (with the official 1e-6 in the denominator).
- positive micro-F1: micro-averaged F1 from the TP/FN of every pair and the FP of pairs that have
  ground truth and predictions (false positives on negative pairs are priced by IL_MCC instead), with
  the official 1e-4 smoothing; cgF1 = positive micro-F1 x IL_MCC at each threshold, then averaged.
- pHOTA: HOTA (``trackeval.metrics.HOTA``) with every pair as one sequence and one class, over the
  pairs with ground truth or a kept prediction; per-frame similarity is mask IoU, a ground-truth
  masklet is present at a frame whose RLE is not None, a prediction where its mask is non-empty.
  HOTA is the mean over the 19 alpha thresholds.

All scores here are 0-100 (the official code reports 0-1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment

from efficient_sam3.masks import rle_area

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # COCO's iouThrs
SCORE_THRESHOLD = 0.5
IL_OUTCOMES = ("TP", "FP", "TN", "FN")


@dataclass(frozen=True)
class ConceptMasklet:
    """One masklet of one (video, phrase) pair: ``frames[t]`` is a compressed COCO RLE or None
    (absent) at the pair's t-th evaluated frame; ``score`` in [0, 1] (predictions); ``iscrowd``
    (ground truth) masklets are ignored by cgF1, as in the official code."""

    frames: tuple[dict | None, ...]
    score: float = 1.0
    iscrowd: bool = False


@dataclass(frozen=True)
class PhrasePair:
    """A phrase prompted on a video: its ground-truth masklets (none: a negative pair) and predictions."""

    video_id: str
    phrase: str
    num_frames: int
    gt: tuple[ConceptMasklet, ...]
    pred: tuple[ConceptMasklet, ...]

    def __post_init__(self) -> None:
        for kind, masklets in (("ground-truth", self.gt), ("predicted", self.pred)):
            for masklet in masklets:
                if len(masklet.frames) != self.num_frames:
                    raise ValueError(f"{self.video_id} / {self.phrase!r}: a {kind} masklet has "
                                     f"{len(masklet.frames)} frames, the pair {self.num_frames}")


@dataclass(frozen=True)
class PairCounts:
    """cgF1 counts of one pair: ``tp``/``fp``/``fn`` are ``[10]`` int64, one per IoU threshold."""

    video_id: str
    phrase: str
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    il_outcome: str  # one of IL_OUTCOMES

    @property
    def positive(self) -> bool:
        return self.il_outcome in ("TP", "FN")


@dataclass(frozen=True)
class ConceptResult:
    """Dataset-level concept metrics (0-100) and the per-pair counts they come from."""

    cgf1: float  # mean over IoU 0.5:0.95
    il_mcc: float  # image(video)-level MCC, [-100, 100]
    positive_micro_f1: float  # mean over IoU 0.5:0.95
    cgf1_50: float
    cgf1_75: float
    phota: float  # HOTA, mean over alpha
    phota_deta: float
    phota_assa: float
    il_counts: dict[str, int]
    num_pairs: int
    num_positive_pairs: int
    pairs: tuple[PairCounts, ...]

    def to_dict(self) -> dict:
        """JSON-ready summary (per-pair counts as a list)."""
        summary = {k: getattr(self, k) for k in ("cgf1", "il_mcc", "positive_micro_f1", "cgf1_50", "cgf1_75",
                                                 "phota", "phota_deta", "phota_assa", "il_counts", "num_pairs",
                                                 "num_positive_pairs")}
        summary["per_pair"] = [{"video_id": p.video_id, "phrase": p.phrase, "il_outcome": p.il_outcome,
                                "TP_50_95": float(p.tp.mean()), "FP_50_95": float(p.fp.mean()),
                                "FN_50_95": float(p.fn.mean())} for p in self.pairs]
        return summary


def masklet_iou(pred: ConceptMasklet, gt: ConceptMasklet) -> float:
    """Spatio-temporal IoU: summed intersection / summed union over frames; 1 when both are empty."""
    intersection = union = 0
    for pred_rle, gt_rle in zip(pred.frames, gt.frames):
        if pred_rle is not None and gt_rle is not None:
            intersection += rle_area(mask_utils.merge([pred_rle, gt_rle], intersect=True))
            union += rle_area(mask_utils.merge([pred_rle, gt_rle], intersect=False))
        else:
            union += rle_area(gt_rle) + rle_area(pred_rle)
    return 1.0 if union == 0 else intersection / union


def pair_counts(pair: PhrasePair, score_threshold: float = SCORE_THRESHOLD) -> PairCounts:
    """TP/FP/FN at every IoU threshold and the video-level outcome of one pair (``CGF1Eval.evaluateImg``)."""
    gt = [m for m in pair.gt if not m.iscrowd]
    pred = [m for m in pair.pred if m.score >= score_threshold]
    zeros = np.zeros(len(IOU_THRESHOLDS), dtype=np.int64)
    outcome = ("TP" if pred else "FN") if gt else ("FP" if pred else "TN")
    if not gt or not pred:
        return PairCounts(pair.video_id, pair.phrase, zeros, zeros + len(pred), zeros + len(gt), outcome)
    iou = np.array([[masklet_iou(p, g) for g in gt] for p in pred])  # [P, G]
    rows, cols = linear_sum_assignment(-iou)
    matched = iou[rows, cols]
    tp = np.array([(matched >= t).sum() for t in IOU_THRESHOLDS], dtype=np.int64)
    return PairCounts(pair.video_id, pair.phrase, tp, len(pred) - tp, len(gt) - tp, outcome)


def _cgf1(counts: list[PairCounts]) -> dict[str, np.ndarray | float]:
    """``CGF1Eval.accumulate``: micro F1 over positive pairs, IL_MCC over all pairs (0-1)."""
    tp = sum((c.tp for c in counts), np.zeros(len(IOU_THRESHOLDS), dtype=np.int64))
    fn = sum((c.fn for c in counts), np.zeros(len(IOU_THRESHOLDS), dtype=np.int64))
    positive_fp = sum((c.fp for c in counts if c.il_outcome == "TP"), np.zeros(len(IOU_THRESHOLDS), dtype=np.int64))
    precision = tp / (tp + positive_fp + 1e-4)
    recall = tp / (tp + fn + 1e-4)
    positive_micro_f1 = 2 * precision * recall / (precision + recall + 1e-4)
    il = {k: sum(c.il_outcome == k for c in counts) for k in IL_OUTCOMES}
    denominator = float(il["TP"] + il["FP"]) * float(il["TP"] + il["FN"]) * float(il["TN"] + il["FP"]) \
        * float(il["TN"] + il["FN"])
    il_mcc = float(il["TP"] * il["TN"] - il["FP"] * il["FN"]) / (denominator ** 0.5 + 1e-6)
    return {"positive_micro_f1": positive_micro_f1, "il_mcc": il_mcc, "cgf1": positive_micro_f1 * il_mcc,
            "il_counts": il}


def _hota_sequence(pair: PhrasePair, score_threshold: float) -> dict | None:
    """trackeval's per-sequence input for one pair, or None when it has no ground truth and no kept prediction."""
    gt = list(pair.gt)
    pred = [m for m in pair.pred if m.score > score_threshold]
    if not gt and not pred:
        return None
    data = {"gt_ids": [], "tracker_ids": [], "similarity_scores": [], "num_timesteps": pair.num_frames}
    for t in range(pair.num_frames):
        gt_ids = [i for i, m in enumerate(gt) if m.frames[t] is not None]
        pred_ids = [i for i, m in enumerate(pred) if rle_area(m.frames[t]) > 0]
        gt_rles = [gt[i].frames[t] for i in gt_ids]
        pred_rles = [pred[i].frames[t] for i in pred_ids]
        similarity = np.asarray(mask_utils.iou(gt_rles, pred_rles, [False] * len(pred_rles)), dtype=float)
        data["similarity_scores"].append(similarity.reshape(len(gt_ids), len(pred_ids)))  # [G_t, P_t]
        data["gt_ids"].append(np.array(gt_ids, dtype=int))
        data["tracker_ids"].append(np.array(pred_ids, dtype=int))
    for kind in ("gt", "tracker"):  # ids contiguous over the ids seen, as trackeval's datasets relabel them
        seen = np.unique(np.concatenate(data[f"{kind}_ids"])).astype(int)
        relabel = {int(old): new for new, old in enumerate(seen)}
        data[f"{kind}_ids"] = [np.array([relabel[int(i)] for i in ids], dtype=int) for ids in data[f"{kind}_ids"]]
        data[f"num_{kind}_ids"] = len(seen)
        data[f"num_{kind}_dets"] = sum(len(ids) for ids in data[f"{kind}_ids"])
    return data


def phrase_hota(pairs: list[PhrasePair], score_threshold: float = SCORE_THRESHOLD) -> dict[str, float]:
    """Class-agnostic HOTA over the pairs (0-1): ``{"HOTA", "DetA", "AssA"}``, each the mean over alpha."""
    from trackeval.metrics import HOTA  # imported here: trackeval pulls in plotting code

    metric = HOTA()
    sequences = {}
    for index, pair in enumerate(pairs):
        data = _hota_sequence(pair, score_threshold)
        if data is not None:
            sequences[index] = metric.eval_sequence(data)
    if not sequences:
        return {"HOTA": float("nan"), "DetA": float("nan"), "AssA": float("nan")}
    combined = metric.combine_sequences(sequences)
    return {name: float(np.mean(combined[name])) for name in ("HOTA", "DetA", "AssA")}


def concept_metrics(pairs: list[PhrasePair], score_threshold: float = SCORE_THRESHOLD) -> ConceptResult:
    """cgF1, IL_MCC, positive micro-F1 and pHOTA of ``pairs`` (see the module docstring)."""
    if not pairs:
        raise ValueError("no (video, phrase) pairs to evaluate")
    keys = [(p.video_id, p.phrase) for p in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a (video, phrase) pair is listed twice")
    counts = [pair_counts(p, score_threshold) for p in pairs]
    cgf1 = _cgf1(counts)
    hota = phrase_hota(pairs, score_threshold)
    at = {round(float(t), 2): i for i, t in enumerate(IOU_THRESHOLDS)}
    return ConceptResult(
        cgf1=100 * float(cgf1["cgf1"].mean()), il_mcc=100 * cgf1["il_mcc"],
        positive_micro_f1=100 * float(cgf1["positive_micro_f1"].mean()),
        cgf1_50=100 * float(cgf1["cgf1"][at[0.5]]), cgf1_75=100 * float(cgf1["cgf1"][at[0.75]]),
        phota=100 * hota["HOTA"], phota_deta=100 * hota["DetA"], phota_assa=100 * hota["AssA"],
        il_counts=cgf1["il_counts"], num_pairs=len(pairs), num_positive_pairs=sum(c.positive for c in counts),
        pairs=tuple(counts))
