"""ONNX Runtime int8 (export.onnx_int8) beside the fp32 export it came from: latency, size, parity, J&F.

    python -m benchmarks.onnx_int8 --fp32 DIR --int8 DIR --videos HELD_OUT_SAV_ROOT [--threads 2] [--frames 12]

Latency, parity and J&F as ``benchmarks.program_comparison`` measures them (fp32 the reference, int8
the variant), plus the size of encode_frame + decode (the per-frame programs) and of the whole
directory, MB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from benchmarks.program_comparison import QUALITY_COLUMNS, REFERENCE, RANDOM_WEIGHTS_SCORE_THRESHOLD, compare_programs
from benchmarks.report import Column, Row, Section

FP32_ROW = "ONNX Runtime fp32"
INT8_ROW = "ONNX Runtime int8 (QDQ)"
PER_FRAME_FILES = ("encode_frame.onnx", "decode.onnx")
HELD_OUT_SEED = 1  # benchmarks.training_side.write_synthetic (the calibration videos) uses seed 0


def _size_mb(directory: Path, names: tuple[str, ...] | None = None) -> float:
    paths = [directory / n for n in names] if names else [p for p in directory.iterdir() if p.is_file()]
    return sum(p.stat().st_size for p in paths) / 1e6


def onnx_int8_rows(fp32_dir: Path, int8_dir: Path, videos: Path, threads: int = 2, frames: int = 12,
                   parity_frames: int = 2, max_video_frames: int | None = 41,
                   score_threshold: float = RANDOM_WEIGHTS_SCORE_THRESHOLD) -> list[Row]:
    """The fp32 and int8 rows; ``videos`` holds held-out SA-V-format videos (``*.mp4`` + ``*_manual.json``)."""
    fp32_dir, int8_dir = Path(fp32_dir), Path(int8_dir)
    preset = json.loads((fp32_dir / "metadata.json").read_text(encoding="utf-8"))["preset"]
    directories = {REFERENCE: fp32_dir, "int8": int8_dir}
    metrics = compare_programs(directories, "onnx", videos, threads, frames, parity_frames, max_video_frames,
                               score_threshold)
    rows = []
    for name, directory in directories.items():
        sizes = {"size_per_frame_mb": _size_mb(directory, PER_FRAME_FILES), "size_total_mb": _size_mb(directory)}
        rows.append(Row.ok(FP32_ROW if name == REFERENCE else INT8_ROW, {**metrics[name], **sizes},
                           {"threads": str(threads), "preset": preset, "device": "CPU (onnxruntime)",
                            "directory": str(directory), "score_threshold": f"{score_threshold:g}"}))
    return rows


def write_held_out(root: Path, num_videos: int, video_frames: int) -> Path:
    """Synthetic SA-V-format videos that no export calibrated on (another seed than the calibration set)."""
    from training.synthetic import generate_dataset
    from training.synthetic_scene import SceneConfig

    scene = SceneConfig(min_frames=video_frames, max_frames=video_frames)
    generate_dataset(root, num_videos, seed=HELD_OUT_SEED, val_fraction=0.0, scene_config=scene)
    return root


def int8_directory(onnx_dir: Path, out_dir: Path, calibration_videos: Path, parity_videos: Path) -> Path:
    """``out_dir``: export.onnx_int8 of ``onnx_dir``, reused when it is already the int8 of the same weights."""
    from export.onnx_int8 import OnnxInt8Config, quantize_onnx_directory

    try:
        fp32 = json.loads((onnx_dir / "metadata.json").read_text(encoding="utf-8"))
        int8 = json.loads((out_dir / "metadata.json").read_text(encoding="utf-8"))
        if int8["quantization"] == "int8" and int8["source_checkpoint_sha256"] == fp32["source_checkpoint_sha256"]:
            return out_dir
    except (OSError, ValueError, KeyError):
        pass
    with contextlib.redirect_stdout(sys.stderr):  # the exporter's progress is not part of the report
        quantize_onnx_directory(OnnxInt8Config(onnx=onnx_dir, out=out_dir, calibration_videos=calibration_videos,
                                               parity_frames=parity_videos))
    return out_dir


def onnx_int8_section(rows: list[Row]) -> Section:
    return Section(
        key="onnx_int8", title="ONNX Runtime int8 (static QDQ, export.onnx_int8) vs fp32",
        columns=[Column("p50_ms", "p50 ms"), Column("fps", "FPS", "{:.2f}"),
                 Column("ratio_vs_reference", "× fp32", "{:.2f}"),
                 Column("size_per_frame_mb", "encode+decode MB"), Column("size_total_mb", "dir MB"),
                 *QUALITY_COLUMNS],
        rows=rows, detail_keys=("preset", "threads", "score_threshold"),
        notes=["Latency: encode_frame + decode, 1 prompt, full memory, fp32 and int8 interleaved in one process; "
               "× fp32 = median of per-frame int8/fp32 ratios.",
               "Parity: against the eager checkpoint on held-out frames (export.parity cases, random memory).",
               "J&F on held-out synthetic videos; 'vs fp32 masks' scores int8 with the fp32 run as ground truth; "
               "stream mask IoU: raw masks of fp32 and int8 sessions run side by side, each with its own memory."])


def main(argv: list[str] | None = None) -> int:
    from benchmarks.report import render_section

    parser = argparse.ArgumentParser(prog="python -m benchmarks.onnx_int8", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fp32", type=Path, required=True, help="export.onnx directory")
    parser.add_argument("--int8", type=Path, required=True, help="export.onnx_int8 directory made from it")
    parser.add_argument("--videos", type=Path, required=True, help="held-out SA-V-format videos")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=12, help="timed frames per directory")
    parser.add_argument("--max-video-frames", type=int, default=41, help="frames of each held-out video streamed")
    args = parser.parse_args(argv)
    print(render_section(onnx_int8_section(onnx_int8_rows(
        args.fp32, args.int8, args.videos, args.threads, args.frames, max_video_frames=args.max_video_frames))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
