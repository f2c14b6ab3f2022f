"""The files a device runs: frame programs (encode_frame + decode, prompts stored in the metadata) in int8
and int8-ffn4, and the text encoder as its own optional fp32 program, beside the fp32 program of all methods.

    python -m benchmarks.device_files --checkpoint DIR --reference model_fp32.pte --calibration-videos DIR
                                      --videos HELD_OUT_SAV_ROOT --out-dir DIR [--threads 2]

Each file is exported from the run's checkpoint with ``export.executorch`` (``--program frame`` /
``--program text``; its own parity gate) into ``out_dir`` and reused there when its metadata names the
same weights, format, quantization and methods. The frame programs are compared with the fp32 program
as ``benchmarks.program_comparison`` does (latency interleaved in one process, parity, J&F on held-out
videos, agreement with the fp32 masks). Sizes are MB of 10^6 bytes, the unit of the edge preset's goal
for its int8 frame program (``SIZE_GOAL_MB``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.program_comparison import QUALITY_COLUMNS, REFERENCE, compare_programs
from benchmarks.report import Column, Row, Section

SIZE_GOAL_MB = 50.0


@dataclass(frozen=True)
class DeviceFile:
    label: str
    file_name: str
    program: str  # efficient_sam3.contract.PROGRAM_PARTS
    quantization: str  # export.config.QUANTIZATION_MODES


DEVICE_FILES = (
    DeviceFile("frame program, int8", "frame_int8.pte", "frame", "int8"),
    DeviceFile("frame program, int8-ffn4", "frame_int8_ffn4.pte", "frame", "int8-ffn4"),
    DeviceFile("text program, fp32 (optional: new prompts on the device)", "text_fp32.pte", "text", "none"),
)
REFERENCE_LABEL = "ExecuTorch fp32, all methods (reference)"
_METHODS = {"frame": ["decode", "encode_frame"], "text": ["encode_text"]}


def prepare_device_files(checkpoint: Path, out_dir: Path, prompt: str, calibration_videos: Path) -> dict[str, Path]:
    """label -> .pte of every DEVICE_FILES entry, exported now unless ``out_dir`` holds a matching one."""
    import json

    from benchmarks.artifacts import weights_sha256, export_executorch, export_matches

    out_dir.mkdir(parents=True, exist_ok=True)
    sha = weights_sha256(checkpoint)
    paths = {}
    for file in DEVICE_FILES:
        path = out_dir / file.file_name
        metadata = path.with_name(path.name + ".json")
        reusable = path.exists() and export_matches(metadata, sha, {"quantization": file.quantization})
        if reusable:
            methods = sorted(json.loads(metadata.read_text(encoding="utf-8")).get("methods", {}))
            reusable = methods == _METHODS[file.program]
        if not reusable:
            with contextlib.redirect_stdout(sys.stderr):
                export_executorch(checkpoint, path, prompt, file.quantization,
                                  calibration_videos if file.quantization != "none" else None, program=file.program)
        paths[file.label] = path
    return paths


def _size_mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def device_file_rows(reference: Path, files: dict[str, Path], videos: Path, threads: int = 2) -> list[Row]:
    """The reference row, one row per device file (frame programs with latency, parity and J&F; the text
    program with its size), then the frame program + text program totals."""
    frame_files = {file.label: files[file.label] for file in DEVICE_FILES if file.program == "frame"}
    metrics = compare_programs({REFERENCE: reference, **frame_files}, "executorch", videos, threads)
    rows = [Row.ok(REFERENCE_LABEL, {**metrics[REFERENCE], "size_mb": _size_mb(reference)},
                   {"threads": str(threads)})]
    text = next(file for file in DEVICE_FILES if file.program == "text")
    for file in DEVICE_FILES:
        path = files[file.label]
        if file.program == "frame":
            goal = "meets" if _size_mb(path) <= SIZE_GOAL_MB else "misses"
            rows.append(Row.ok(file.label, {**metrics[file.label], "size_mb": _size_mb(path),
                                            "with_text_mb": _size_mb(path) + _size_mb(files[text.label])},
                               {"quantization": file.quantization, "size_goal": f"{goal} <= {SIZE_GOAL_MB:g} MB"}))
        else:
            rows.append(Row.ok(file.label, {"size_mb": _size_mb(path)}, {"quantization": file.quantization}))
    return rows


def device_files_section(rows: list[Row]) -> Section:
    return Section(
        key="device_files", title="On-device files: frame programs (int8, int8-ffn4) and the text program",
        columns=[Column("size_mb", "MB"), Column("with_text_mb", "MB with text program"),
                 Column("p50_ms", "p50 ms"), Column("ratio_vs_reference", "× fp32", "{:.2f}"),
                 *QUALITY_COLUMNS],
        rows=rows, detail_keys=("quantization", "size_goal", "threads"),
        notes=["A device with fixed prompts runs only the frame program (the prompts' text features are in its "
               "metadata); the text program adds prompts on the device. int8-ffn4: int8 with the transformers' "
               "feed-forward linears in 4-bit weights (export/quantize.py). MB = 10^6 bytes.",
               "Latency: encode_frame + decode, 1 prompt, full memory, every program interleaved in one process; "
               "× fp32 = median of per-frame ratios to the reference. Parity: each file against the eager "
               "checkpoint on held-out frames with its own tolerance. J&F on held-out synthetic videos; "
               "'vs fp32 masks' scores a file with the reference's run as ground truth (benchmarks/program_comparison.py)."])


def main(argv: list[str] | None = None) -> int:
    from benchmarks.report import render_section

    parser = argparse.ArgumentParser(prog="python -m benchmarks.device_files", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--reference", type=Path, required=True, help="the fp32 .pte of all methods")
    parser.add_argument("--calibration-videos", type=Path, required=True)
    parser.add_argument("--videos", type=Path, required=True, help="held-out SA-V-format videos")
    parser.add_argument("--out-dir", type=Path, required=True, help="where the device files are (or go)")
    parser.add_argument("--prompt", default="red circle")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    from efficient_sam3.cli import fail

    try:
        files = prepare_device_files(args.checkpoint, args.out_dir, args.prompt, args.calibration_videos)
        rows = device_file_rows(args.reference, files, args.videos, args.threads)
    except (OSError, ValueError) as err:
        return fail(err)
    print(render_section(device_files_section(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
