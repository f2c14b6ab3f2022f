"""CLI: ``python -m runtime --model PATH --video in.mp4 --prompt "red circle" [--out-json pred.json]
[--out-png DIR] [--out-video overlay.mp4]``. --model is a checkpoint directory (torch), an export.onnx directory (onnx)
or a .pte file (executorch); the backend follows from it unless --backend is given. --video is a video
file, a directory of JPEG frames (SA-V val/test layout), a camera index (0), a stream URL (rtsp://, http://,
udp://, ...) or - for raw bgr24 frames on stdin of --size WxH; --realtime drops frames to keep up with the source.

Live input (runtime.live_sources): ``ffmpeg -i in.mp4 -f rawvideo -pix_fmt bgr24 - | python -m runtime --model M
--video - --size 640x480 --prompt "red circle" --realtime --out-json p.json``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from efficient_sam3.cli import (
    INTERRUPTED_EXIT,
    error_line,
    fail,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
    sigterm_as_interrupt,
)
from runtime.backends.registry import BACKENDS

OUTPUTS_HELP = """outputs: --out-json, --out-video and the video's --out-png folder are one set. Before any work every
output folder must exist and be writable, and temp files that killed runs left there are removed.
Another run writing any of the same outputs (python -m runtime or esam3_run) makes this run refuse
at once (exit 2). Everything is written under temp names and moved into place together when the
video is done; the overlay video is read back first and must hold every frame (a full disk is an
error, exit 2). An error, Ctrl-C or SIGTERM before that writes nothing: files already at the output
paths stay as they were; an interrupted run exits 130.

live input: a camera, a stream or stdin has no end known in advance. Ctrl-C or SIGTERM (after the first
frame) or the end of the stream ENDS it: the frames processed so far are written as above, exit 0, and the
summary names the signal. A partial last frame on stdin is a warning and is dropped. A camera or stream that
cannot be opened is one error line, exit 2, nothing written."""


class ArgumentsError(Exception):
    """A malformed command line (argparse's message, e.g. "--threads: 0 must be a positive integer")."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print the usage and exit; main prints one error line
        raise ArgumentsError(message.removeprefix("argument "))


def score_threshold(text: str) -> float:
    value = probability(text)
    if value == 1.0:
        raise argparse.ArgumentTypeError(f"{text} must be below 1 (no score is above 1)")
    return value


def mask_iou(text: str) -> float:
    value = probability(text)
    if value == 0.0:
        raise argparse.ArgumentTypeError(f"{text} must be above 0 (an IoU of 0 would match unrelated masks)")
    return value


def frame_size(text: str) -> tuple[int, int]:
    from runtime.live_sources import parse_frame_size

    try:
        return parse_frame_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def source_fps(text: str) -> float:
    from runtime.live_sources import MAX_FPS

    value = positive_float(text)
    if value > MAX_FPS:
        raise argparse.ArgumentTypeError(f"{text} must be at most {MAX_FPS:g} frames per second")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m runtime", description=__doc__.split("\n\n")[0], epilog=OUTPUTS_HELP,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="checkpoint dir, export.onnx dir or .pte file")
    parser.add_argument("--video", required=True,
                        help="video file, directory of JPEG frames, camera index (0), stream URL (rtsp://, "
                             "http://, udp://, ...) or - (raw bgr24 frames on stdin, with --size)")
    parser.add_argument("--size", type=frame_size, metavar="WxH",
                        help="frame size of --video - (exactly W*H*3 bytes per frame); only for stdin")
    parser.add_argument("--fps", type=source_fps,
                        help="rate of the source for the overlay video and --realtime pacing, at most 1000 (default: "
                             "what the source reports; 24 for stdin)")
    parser.add_argument("--realtime", action="store_true",
                        help="keep up with the source: always process the newest frame and drop the ones that came "
                             "in meanwhile (a file or folder is paced at its fps); the summary counts them")
    parser.add_argument("--prompt", action="append", required=True, help="concept to segment (repeatable)")
    parser.add_argument("--backend", choices=BACKENDS, help="default: inferred from --model")
    parser.add_argument("--out-json", type=Path, help="SA-V-style masklet predictions JSON")
    parser.add_argument("--out-png", type=Path,
                        help="also write SA-V PNG folders <DIR>/<video_id>/<obj:03d>/<frame:05d>.png "
                             "(the layout sam2's sav_evaluator.py reads)")
    parser.add_argument("--out-video", type=Path, help="overlay video (mp4v)")
    parser.add_argument("--output-stride", type=positive_int, default=1,
                        help="record frames whose number is a multiple of this (4: SA-V's 6 fps annotated frames)")
    parser.add_argument("--memory-stride", type=positive_int,
                        help="write every n-th frame into memory (default: the model's, 4)")
    parser.add_argument("--score-threshold", type=score_threshold, default=0.5,
                        help="keep queries whose score probability is above this, in [0, 1) (default 0.5)")
    parser.add_argument("--max-missed-frames", type=non_negative_int, default=8,
                        help="retire an object id after this many misses")
    parser.add_argument("--min-iou", type=mask_iou, default=0.3, help="mask IoU needed to keep an object id, in (0, 1]")
    parser.add_argument("--max-frames", type=positive_int, help="stop after this many frames")
    parser.add_argument("--threads", type=positive_int, help="CPU threads for the backend")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def problem_text(err: BaseException) -> str:
    """The message of an error; an OSError built as OSError(errno, "<path>: <problem>") (efficient_sam3.files)
    or raised by the OS for a file gives "<path>: <problem>" without the "[Errno N]" prefix."""
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename}: {err.strerror}" if err.filename is not None else err.strerror
    return str(err)


def _interrupt_behind(err: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt an exception was raised from or while handling, if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _interrupted(video: str, interrupt: KeyboardInterrupt) -> int:
    cause = str(interrupt) or "Ctrl-C"
    print(error_line(f"{video}: interrupted ({cause}); nothing was written"), file=sys.stderr, flush=True)
    return INTERRUPTED_EXIT


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except ArgumentsError as err:
        return fail(err)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from runtime.postprocess import PostprocessConfig
    from runtime.run import RunConfig, run_video
    from runtime.session import SessionConfig
    from efficient_sam3.tracker import TrackerConfig

    previous_sigterm = signal.getsignal(signal.SIGTERM)
    sigterm_as_interrupt()
    try:  # bad input (config, model, video, prompt, outputs) ends in one clear line, not a traceback
        config = RunConfig(
            model=args.model, video=args.video, prompts=tuple(args.prompt), backend=args.backend,
            out_json=args.out_json, out_png=args.out_png, out_video=args.out_video, output_stride=args.output_stride,
            max_frames=args.max_frames, num_threads=args.threads, show_progress=not args.quiet,
            frame_size=args.size, fps=args.fps, realtime=args.realtime,
            session=SessionConfig(
                memory_stride=args.memory_stride,
                postprocess=PostprocessConfig(score_threshold=args.score_threshold),
                tracker=TrackerConfig(min_iou=args.min_iou, max_missed_frames=args.max_missed_frames)),
        )
        summary = run_video(config)
    except KeyboardInterrupt as interrupt:
        return _interrupted(args.video, interrupt)
    except Exception as err:
        interrupt = _interrupt_behind(err)
        if interrupt is not None:  # e.g. SIGTERM while onnxruntime initialises: it raises ImportError from it
            return _interrupted(args.video, interrupt)
        if not isinstance(err, (OSError, ValueError, RuntimeError)):
            raise
        return fail(problem_text(err))
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
    print(summary.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
