"""Export to one ExecuTorch program with the methods encode_frame, decode and encode_text.

    python -m export.executorch --checkpoint DIR --out model.pte [--quantize int8 --calibration-videos DIR]
                                [--prompt "red circle" ...] [--parity-frames VIDEO_OR_DIR]
                                [--program all|frame|text]

``--program frame`` leaves the text encoder out: the file a device with fixed prompts runs (their text
features are in the metadata); ``--program text`` writes the text encoder alone (fp32), an optional
second file for adding prompts on the device.

Recipe: load the checkpoint -> deployment form (export.fuse) -> ``torch.export`` of each entry point
(export.wrappers; for int8, PT2E quantization calibrated on real frames, export.quantize) ->
XNNPACK-friendly rewrites and ``to_edge_transform_and_lower(..., XnnpackPartitioner())``
(export.lowering) -> ``.pte``. The metadata goes to ``<out>.json`` (export.metadata).

Before anything is moved into place, the new program is checked against the eager model
(export.parity); on a mismatch nothing is written and the command exits 1. The ops left outside the
XNNPACK delegate are printed per method; a conv, linear, matmul or softmax among them is an error
(export.lowering.check_delegation) and nothing is written.

Bad input (flags, an unreadable checkpoint or frame source, an output that cannot be written) is found
before the minutes of lowering start and ends in one ``error:`` line, exit 2 (``efficient_sam3.cli``).
Ctrl-C and SIGTERM stop it alike: nothing is written (the program goes through a temp name,
``efficient_sam3.files``), exit 130.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from efficient_sam3 import EfficientSam3Model
from efficient_sam3.cli import ArgumentParser, non_empty_text, positive_int
from efficient_sam3.files import atomic_path, check_creatable
from export.command import run_export
from export.config import (DEFAULT_CALIBRATION_FRAMES, DEFAULT_PARITY_FRAMES, QUANTIZATION_MODES, ExecutorchExportConfig,
                           is_quantized, tolerance_for)
from export.frames import read_frames, to_pixel_values
from export.fuse import deployment_model
from export.lowering import check_delegation, count_delegates, lower_to_xnnpack, ops_outside_delegate
from efficient_sam3.contract import DEFAULT_MAX_PROMPTS, PROGRAM_PARTS
from efficient_sam3.programs import metadata_path
from export.metadata import build_metadata, checkpoint_sha256, prompt_records, write_json_atomic
from export.parity import ParityError, ParityReport, check_parity
from export.progress import StageTimer
from export.wrappers import EncodeText, build_entry_points


@dataclass
class ExportResult:
    program: Path
    metadata: Path
    size_bytes: int
    ops_outside_delegate: dict[str, Counter]
    delegate_calls: dict[str, int]
    parity: ParityReport
    stage_seconds: dict[str, float]


def _calibration_inputs(model: EfficientSam3Model, config: ExecutorchExportConfig):
    from export.quantize import build_calibration_set, calibration_prompts

    # Every 4th video frame: the frames the memory sees (annotated SA-V frames are 4 apart).
    frames = read_frames(config.calibration_videos, config.calibration_frames, stride=4)
    # Only the prompts some frame will see (frame i gets prompt i mod P) are encoded.
    texts = [model.encode_text(*model.tokenize([prompt]))
             for prompt in calibration_prompts(config.prompts)[:len(frames)]]
    return build_calibration_set(model, to_pixel_values(frames, model.config.image_size),
                                 [(text.features, text.mask) for text in texts])


def export_programs(model: EfficientSam3Model, config: ExecutorchExportConfig,
                    timer: StageTimer) -> dict[str, torch.export.ExportedProgram]:
    """torch.export of the entry points ``config.program`` names (int8: encode_frame and decode quantized)."""
    methods = PROGRAM_PARTS[config.program]
    if is_quantized(config.quantize):
        from export.quantize import quantize_entry_points

        with timer.stage(f"calibrate and quantize ({config.quantize}, {config.calibration_frames} frames)"):
            programs = quantize_entry_points(model, _calibration_inputs(model, config), config.max_prompts,
                                             int4_ffn=config.quantize == "int8-ffn4")
        if "encode_text" in methods:
            with timer.stage("torch.export encode_text (fp32)"):
                text = EncodeText(model)
                programs["encode_text"] = torch.export.export(text, text.example_inputs())
        return {name: programs[name] for name in methods}
    wrappers = build_entry_points(model)
    programs = {}
    for name in methods:
        with timer.stage(f"torch.export {name}"):
            if name == "decode":
                example, dynamic_shapes = wrappers[name].export_arguments(config.max_prompts)
            else:
                example, dynamic_shapes = wrappers[name].example_inputs(), None
            programs[name] = torch.export.export(wrappers[name], example, dynamic_shapes=dynamic_shapes)
    return programs


def check_frame_sources(*sources: Path | None) -> None:
    """Read one frame of each given frame source now: a missing or unreadable one fails before lowering."""
    for source in sources:
        if source is not None:
            read_frames(source, 1)


@torch.no_grad()
def export_executorch(config: ExecutorchExportConfig) -> ExportResult:
    timer = StageTimer("export.executorch")
    out = Path(config.out)
    check_creatable(out, "--out program")
    check_frame_sources(config.calibration_videos, config.parity_frames)
    with timer.stage(f"load {config.checkpoint}"):
        model = EfficientSam3Model.from_pretrained(config.checkpoint).eval()
        if config.coarse_masks:
            model.set_coarse_masks(True)
        sha = checkpoint_sha256(config.checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    with timer.stage("fold BatchNorms and re-parameterise"):
        deployed = deployment_model(model)
    programs = export_programs(deployed, config, timer)
    with timer.stage("lower to XNNPACK"):
        edge = lower_to_xnnpack(programs)
    methods = PROGRAM_PARTS[config.program]
    outside = {name: ops_outside_delegate(edge, name) for name in methods}
    delegates = {name: count_delegates(edge, name) for name in methods}
    for name in methods:
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(outside[name].items())) or "none"
        print(f"[export.executorch] {name}: {delegates[name]} XNNPACK calls; outside the delegate: {ops}")
    check_delegation(edge, methods)  # before serialising: nothing is written
    with timer.stage("serialise"):
        buffer = edge.to_executorch().buffer

    # The program under a temp name with its metadata beside it (<temp>.json, where load_program looks);
    # both are moved into place only after parity, the metadata first.
    with atomic_path(out, suffix=".pte") as tmp_program:
        tmp_metadata = metadata_path(tmp_program)
        try:
            tmp_program.write_bytes(buffer)
            metadata = build_metadata(model, "executorch", config.checkpoint, sha, config.quantize,
                                      prompt_records(model, config.prompts), {name: name for name in methods},
                                      config.max_prompts)
            write_json_atomic(tmp_metadata, metadata)
            with timer.stage("parity check"):
                frames = config.parity_frames or config.calibration_videos
                report = check_parity(config.checkpoint, tmp_program, frames, config.parity_num_frames,
                                      tolerance=config.parity_tolerance or tolerance_for(config.quantize), model=model)
            print(report.format())
            if not report.passed:
                raise ParityError(report)
            os.replace(tmp_metadata, metadata_path(out))
        finally:
            tmp_metadata.unlink(missing_ok=True)
    print(f"[export.executorch] wrote {out} ({len(buffer) / 1e6:.1f} MB) and {metadata_path(out)}")
    return ExportResult(out, metadata_path(out), len(buffer), outside, delegates, report, timer.seconds)


def pte_path(text: str) -> Path:
    """argparse type of ``--out``: a path ending in .pte."""
    if Path(text).suffix != ".pte":
        raise argparse.ArgumentTypeError(f"{text} must name a .pte file (the metadata goes to <out>.json)")
    return Path(text)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description="Export EfficientSAM3 to an ExecuTorch program (XNNPACK).")
    parser.add_argument("--checkpoint", required=True, type=Path, help="save_pretrained directory")
    parser.add_argument("--out", required=True, type=pte_path, help="output .pte (metadata goes to <out>.json)")
    parser.add_argument("--quantize", choices=QUANTIZATION_MODES, default="none",
                        help="int8: convs and linears in int8 (calibrated); int8-ffn4: the same with the "
                             "transformers' feed-forward linears in 4-bit weights (a smaller file)")
    parser.add_argument("--prompt", action="append", default=[], type=non_empty_text,
                        help="prompt whose features are stored (repeatable)")
    parser.add_argument("--calibration-videos", type=Path, default=None,
                        help="video file or directory of videos for int8 calibration")
    parser.add_argument("--calibration-frames", type=positive_int, default=DEFAULT_CALIBRATION_FRAMES)
    parser.add_argument("--parity-frames", type=Path, default=None,
                        help="frames for the parity check (default: the calibration videos, else generated frames)")
    parser.add_argument("--parity-num-frames", type=positive_int, default=DEFAULT_PARITY_FRAMES)
    parser.add_argument("--program", choices=sorted(PROGRAM_PARTS), default="all",
                        help="entry points of the .pte: all; frame = encode_frame + decode, what a device runs on "
                             "every frame (prompts from the metadata); text = encode_text alone, fp32, for adding "
                             "prompts on the device")
    parser.add_argument("--max-prompts", type=positive_int, default=DEFAULT_MAX_PROMPTS,
                        help="prompts one decode call takes (its prompt dimension runs from 1 to this; 1: a static "
                             "single-prompt decode)")
    parser.add_argument("--coarse-masks", action="store_true",
                        help="opt-in fast mask path: the pixel decoder's last stage runs at 72x72 (504 px) and "
                             "masks are upsampled 2x; fewer FLOPs per prompt, coarser masks (README)")
    args = parser.parse_args(argv)
    if is_quantized(args.quantize) and args.calibration_videos is None:
        parser.error(f"--calibration-videos: required with --quantize {args.quantize} (a video file or a directory of videos)")
    return run_export(lambda: export_executorch(ExecutorchExportConfig(
        checkpoint=args.checkpoint, out=args.out, prompts=tuple(args.prompt), quantize=args.quantize,
        calibration_videos=args.calibration_videos, calibration_frames=args.calibration_frames,
        parity_frames=args.parity_frames, parity_num_frames=args.parity_num_frames, program=args.program,
        max_prompts=args.max_prompts, coarse_masks=args.coarse_masks)),
        args.out, "exported program does not match the model")


if __name__ == "__main__":
    sys.exit(main())
