"""Export to ONNX: one file per entry point, plus metadata.json, in one directory.

    python -m export.onnx --checkpoint DIR --out DIR [--prompt "red circle" ...] [--parity-frames VIDEO_OR_DIR]

Recipe: load the checkpoint -> deployment form (export.fuse) -> ``torch.onnx.export(dynamo=True)`` of
each wrapper (export.wrappers) at opset >= 18 -> ``onnx.checker`` (full check) -> parity with
onnxruntime on CPU against the eager model (export.parity). The directory is built under a temporary
name and moved into place only when every check passes (``efficient_sam3.files.atomic_directory``); on
a parity mismatch the command exits 1. Bad input (flags, an unreadable checkpoint or frame source, an
output that cannot be written) is found before exporting and ends in one ``error:`` line, exit 2;
Ctrl-C and SIGTERM stop it alike, nothing written, exit 130.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from efficient_sam3 import EfficientSam3Model
from efficient_sam3.cli import ArgumentParser, non_empty_text, positive_int
from efficient_sam3.files import atomic_directory, check_creatable
from export.command import run_export
from export.frames import read_frames
from efficient_sam3.contract import DEFAULT_MAX_PROMPTS
from export.config import DEFAULT_PARITY_FRAMES, OnnxExportConfig, tolerance_for
from export.fuse import deployment_model
from efficient_sam3.programs import ONNX_METADATA_FILE
from export.metadata import build_metadata, checkpoint_sha256, prompt_records, write_json_atomic
from export.parity import ParityError, ParityReport, check_parity
from export.progress import StageTimer
from export.wrappers import INPUT_NAMES, METHOD_NAMES, OUTPUT_NAMES, build_entry_points


@dataclass
class OnnxExportResult:
    directory: Path
    files: dict[str, Path]
    size_bytes: dict[str, int]
    opset: int
    parity: ParityReport
    stage_seconds: dict[str, float]


def export_method(wrapper: torch.nn.Module, method: str, path: Path, opset: int, max_prompts: int) -> None:
    """torch.onnx.export (dynamo) of one wrapper to ``path``, then the full onnx.checker. decode takes 1 to
    ``max_prompts`` prompts (a dynamic prompt dimension)."""
    import onnx

    if method == "decode":
        example, dynamic_shapes = wrapper.export_arguments(max_prompts)
    else:
        example, dynamic_shapes = wrapper.example_inputs(), None
    onnx_program = torch.onnx.export(
        wrapper, example, dynamic_shapes=dynamic_shapes, dynamo=True, opset_version=opset,
        input_names=list(INPUT_NAMES[method]), output_names=list(OUTPUT_NAMES[method]),
        external_data=False, verbose=False)
    onnx_program.save(str(path))
    onnx.checker.check_model(str(path), full_check=True)


@torch.no_grad()
def export_onnx(config: OnnxExportConfig) -> OnnxExportResult:
    timer = StageTimer("export.onnx")
    out = Path(config.out)
    check_creatable(out, "--out folder", folder=True)
    if config.parity_frames is not None:
        read_frames(config.parity_frames, 1)  # a missing or unreadable frame source fails now, not after exporting
    with timer.stage(f"load {config.checkpoint}"):
        model = EfficientSam3Model.from_pretrained(config.checkpoint).eval()
        if config.coarse_masks:
            model.set_coarse_masks(True)
        sha = checkpoint_sha256(config.checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    with timer.stage("fold BatchNorms and re-parameterise"):
        wrappers = build_entry_points(deployment_model(model))
    files = {name: f"{name}.onnx" for name in METHOD_NAMES}
    with atomic_directory(out) as staging:  # replaces ``out`` only when every check passed
        for name in METHOD_NAMES:
            with timer.stage(f"torch.onnx.export {name} (opset {config.opset}) + onnx.checker"):
                export_method(wrappers[name], name, staging / files[name], config.opset, config.max_prompts)
        metadata = build_metadata(model, "onnx", config.checkpoint, sha, "none",
                                  prompt_records(model, config.prompts), files, config.max_prompts)
        write_json_atomic(staging / ONNX_METADATA_FILE, metadata)
        with timer.stage("parity check (onnxruntime CPU)"):
            report = check_parity(config.checkpoint, staging, config.parity_frames, config.parity_num_frames,
                                  tolerance=tolerance_for("none"), model=model)
        print(report.format())
        if not report.passed:
            raise ParityError(report)
        sizes = {name: (staging / files[name]).stat().st_size for name in METHOD_NAMES}
    print(f"[export.onnx] wrote {out}: " + ", ".join(f"{files[n]} {sizes[n] / 1e6:.1f} MB" for n in METHOD_NAMES))
    return OnnxExportResult(out, {n: out / files[n] for n in METHOD_NAMES}, sizes, config.opset, report, timer.seconds)


def opset_flag(text: str) -> int:
    """argparse type of ``--opset``: 18 or later (the dynamo exporter's minimum)."""
    opset = positive_int(text)
    if opset < 18:
        raise argparse.ArgumentTypeError(f"{opset}: ONNX export needs opset 18 or later")
    return opset


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description="Export EfficientSAM3 to ONNX (one file per entry point).")
    parser.add_argument("--checkpoint", required=True, type=Path, help="save_pretrained directory")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--prompt", action="append", default=[], type=non_empty_text,
                        help="prompt whose features are stored (repeatable)")
    parser.add_argument("--opset", type=opset_flag, default=18)
    parser.add_argument("--parity-frames", type=Path, default=None,
                        help="frames for the parity check (video, frame directory or video directory)")
    parser.add_argument("--parity-num-frames", type=positive_int, default=DEFAULT_PARITY_FRAMES)
    parser.add_argument("--max-prompts", type=positive_int, default=DEFAULT_MAX_PROMPTS,
                        help="prompts one decode call takes (1: a static single-prompt decode)")
    parser.add_argument("--coarse-masks", action="store_true",
                        help="opt-in fast mask path (pixel decoder's last stage at 72x72, masks upsampled 2x)")
    args = parser.parse_args(argv)
    return run_export(lambda: export_onnx(OnnxExportConfig(
        checkpoint=args.checkpoint, out=args.out, prompts=tuple(args.prompt), opset=args.opset,
        parity_frames=args.parity_frames, parity_num_frames=args.parity_num_frames, max_prompts=args.max_prompts,
        coarse_masks=args.coarse_masks)),
        args.out, "exported ONNX models do not match the model")


if __name__ == "__main__":
    sys.exit(main())
