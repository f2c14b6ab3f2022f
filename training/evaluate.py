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

Scoring is the official one (``training.jf_scores``): overall J, F, J&F are means over all scored objects
of all videos, 0-100; an object empty in the ground truth at every evaluated frame is not scored (the
official evaluator stops with an AssertionError there).

With runtime JSON predictions and ground truth that lists ``video_np_pairs`` (positive and negative
phrases per video), SAM3's video concept metrics are reported too (cgF1, IL_MCC, positive micro-F1,
pHOTA; ``training.concept_metrics``), under "concept" in ``--out``.

``--write-official-layout DIR`` writes the ground truth and the (matched) predictions as PNG folders
``DIR/gt`` and ``DIR/pred``, so ``python sav_evaluator.py --gt_root DIR/gt --pred_root DIR/pred``
(sam2's ``sav_dataset``) reproduces the per-object numbers.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from efficient_sam3.cli import ArgumentParser, fail
from efficient_sam3.files import check_creatable
from training.concept_io import evaluate_concepts
from training.eval_report import format_concept_line, format_table, write_official_layout, write_result_json
from training.jf_scores import EvalResult, VideoResult, evaluate_png_video, evaluate_video
from training.masklet_io import (
    Masklet,
    MissingGroundTruth,
    PredictionVideo,
    gt_json_index,
    load_prediction_json,
    load_video_gt,
)
from training.metrics import DEFAULT_BOUND_TH

# The library surface: scoring (training.jf_scores), reading (training.masklet_io), reporting
# (training.eval_report) and the walk over a prediction folder here.
__all__ = ["EvalResult", "Masklet", "PredictionVideo", "VideoResult", "evaluate", "evaluate_png_video",
           "evaluate_video", "load_prediction_json", "main", "write_official_layout", "write_result_json"]


def _prediction_files(pred: Path) -> list[Path]:
    if pred.is_file():
        return [pred]
    if not pred.is_dir():
        raise FileNotFoundError(f"{pred}: prediction file or folder not found")
    files = sorted(pred.glob("*.json"))
    if not files:
        raise ValueError(f"{pred}: no prediction *.json files (nor video folders of SA-V PNGs)")
    return files


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
    json_index = gt_json_index(gt_root)
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
            gt = load_video_gt(gt_root, video_id, json_index)  # a malformed ground truth raises, naming its file
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
