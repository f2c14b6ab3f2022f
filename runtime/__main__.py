"""CLI: ``python -m runtime --model PATH --video in.mp4 --prompt "red circle" [--out-json pred.json]
[--out-png DIR] [--out-video overlay.mp4]``. --model is a checkpoint directory (torch), an export.onnx directory (onnx)
or a .pte file (executorch); the backend follows from it unless --backend is given. --video is a video
file or a directory of JPEG frames (SA-V val/test layout)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from runtime.backends.registry import BACKENDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runtime", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="checkpoint dir, export.onnx dir or .pte file")
    parser.add_argument("--video", type=Path, required=True, help="video file or directory of JPEG frames")
    parser.add_argument("--prompt", action="append", required=True, help="concept to segment (repeatable)")
    parser.add_argument("--backend", choices=BACKENDS, help="default: inferred from --model")
    parser.add_argument("--out-json", type=Path, help="SA-V-style masklet predictions JSON")
    parser.add_argument("--out-png", type=Path,
                        help="also write SA-V PNG folders <DIR>/<video_id>/<obj:03d>/<frame:05d>.png "
                             "(the layout sam2's sav_evaluator.py reads)")
    parser.add_argument("--out-video", type=Path, help="overlay video (mp4v)")
    parser.add_argument("--output-stride", type=int, default=1,
                        help="record frames whose number is a multiple of this (4: SA-V's 6 fps annotated frames)")
    parser.add_argument("--memory-stride", type=int,
                        help="write every n-th frame into memory (default: the model's, 4)")
    parser.add_argument("--score-threshold", type=float, default=0.5)
    parser.add_argument("--max-missed-frames", type=int, default=8, help="retire an object id after this many misses")
    parser.add_argument("--min-iou", type=float, default=0.3, help="mask IoU needed to keep an object id")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    parser.add_argument("--threads", type=int, help="CPU threads for the backend")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from runtime.postprocess import PostprocessConfig
    from runtime.run import RunConfig, run_video
    from runtime.session import SessionConfig
    from runtime.tracker import TrackerConfig

    try:  # bad input (config, model, video, prompt) ends in one clear line, not a traceback
        config = RunConfig(
            model=args.model, video=args.video, prompts=tuple(args.prompt), backend=args.backend,
            out_json=args.out_json, out_png=args.out_png, out_video=args.out_video, output_stride=args.output_stride,
            max_frames=args.max_frames, num_threads=args.threads, show_progress=not args.quiet,
            session=SessionConfig(
                memory_stride=args.memory_stride,
                postprocess=PostprocessConfig(score_threshold=args.score_threshold),
                tracker=TrackerConfig(min_iou=args.min_iou, max_missed_frames=args.max_missed_frames)),
        )
        summary = run_video(config)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
