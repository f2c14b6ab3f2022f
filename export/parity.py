"""Parity of an exported program with eager PyTorch, output by output.

    python -m export.parity --checkpoint DIR --program model.pte [--frames VIDEO_OR_DIR] [--num-frames N]

The reference is the checkpoint's model in its training form (so BatchNorm folding, re-parameterisation
and lowering are all checked at once). First the provenance: the program's metadata must name this
checkpoint's weights (sha256) and its config (preset, image size, T, queries, widths); otherwise a
``ProgramMismatchError`` says which field differs. Then, on real frames (``--frames``; generated
frames otherwise) with random memory, each case runs the whole pipeline on both sides:

    encode_frame -> decode with memory slots all valid / only the last 3 valid / none valid,
    and encode_text for each prompt stored with the program (or "red circle");
    for a decode that takes several prompts (metadata ``max_prompts`` > 1), one call with
    ``max_prompts`` different prompts on the first frame, against the eager model run on each prompt
    alone (a batched call must equal the separate calls).

Gated outputs (``ParityTolerance``): pred_logits, pred_boxes, presence_logits, iou_scores and
text_features by max |difference|; pred_masks by the IoU of the binarised masks (logit > 0) per query,
leaving out pixels whose eager logit is within rounding of 0 (``ParityTolerance.mask_logit_band``).
The encode_frame features are reported but not gated. Exit code 0 = parity, 1 = outputs differ,
2 = the program does not come from this checkpoint, or bad input (one ``error:`` line).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from efficient_sam3 import EfficientSam3Model
from efficient_sam3.cli import INTERRUPTED_EXIT, ArgumentParser, fail, positive_int, sigterm_as_interrupt
from efficient_sam3.programs import load_program
from export.config import DEFAULT_PARITY_FRAMES, ParityTolerance, tolerance_for
from export.frames import generated_frames, read_frames, to_pixel_values
from export.metadata import checkpoint_sha256
from export.wrappers import OUTPUT_NAMES, Decode, EncodeFrame, EncodeText

ATOL_OUTPUTS = ("pred_boxes", "pred_logits", "presence_logits", "iou_scores")
# Memory cases: (name, number of valid slots at the end of the ring; None = all).
MEMORY_CASES = (("all_valid", None), ("last_3_valid", 3), ("none_valid", 0))
DEFAULT_PROMPT = "red circle"
# Prompts that fill a batched decode case after the stored ones (distinct texts, different lengths).
BATCH_FILL_PROMPTS = ("blue square", "a green triangle on the left", "person", "yellow star", "car",
                      "the small grey circle", "dog", "striped ball", "tree", "white cup")


class ProgramMismatchError(ValueError):
    """The program's metadata does not describe the given checkpoint."""


class ParityError(RuntimeError):
    """An exported program does not reproduce the eager model within tolerance."""

    def __init__(self, report: "ParityReport") -> None:
        super().__init__(report.format())
        self.report = report


@dataclass(frozen=True)
class OutputCheck:
    case: str
    output: str
    max_abs_diff: float
    min_mask_iou: float | None = None
    mean_mask_iou: float | None = None
    gated: bool = True
    passed: bool = True


@dataclass
class ParityReport:
    backend: str
    quantization: str
    tolerance: ParityTolerance
    checks: list[OutputCheck] = field(default_factory=list)

    @property
    def failures(self) -> list[OutputCheck]:
        return [check for check in self.checks if not check.passed]

    @property
    def passed(self) -> bool:
        return not self.failures

    def format(self) -> str:
        t = self.tolerance
        lines = [f"parity {self.backend} ({self.quantization}); tolerance atol={t.atol:g}, per-query mask IoU >= "
                 f"{t.min_mask_iou:g}, mean >= {t.mean_mask_iou:g} (pixels with |logit| < {t.mask_logit_band:g} ignored)"]
        for c in self.checks:
            iou = "" if c.min_mask_iou is None else f"  mask IoU min {c.min_mask_iou:.4f} mean {c.mean_mask_iou:.4f}"
            status = "ok" if c.passed else "FAIL"
            gate = "" if c.gated else " (reported)"
            lines.append(f"  {status:4s} {c.case:28s} {c.output:16s} max|diff| {c.max_abs_diff:.3g}{iou}{gate}")
        lines.append("PASSED" if self.passed else f"FAILED: {len(self.failures)} outputs out of tolerance")
        return "\n".join(lines)


def verify_provenance(metadata: dict, checkpoint: str | Path, model: EfficientSam3Model) -> None:
    """Raise ProgramMismatchError unless the metadata names this checkpoint's weights and config."""
    sha = checkpoint_sha256(checkpoint)
    if metadata["source_checkpoint_sha256"] != sha:
        raise ProgramMismatchError(
            f"program was exported from a checkpoint with weights sha256 {metadata['source_checkpoint_sha256'][:16]}... "
            f"({metadata['source_checkpoint']}), but {checkpoint} has sha256 {sha[:16]}...")
    config = model.config
    expected = {"preset": config.preset, "image_size": config.image_size,
                "context_frames": config.memory.context_frames, "num_queries": config.detr_decoder.num_queries,
                "max_text_length": config.text.max_length, "hidden_size": config.hidden_size}
    for key, value in expected.items():
        if metadata[key] != value:
            raise ProgramMismatchError(f"program metadata {key}={metadata[key]!r} but the checkpoint's model has {value!r}")


def mask_iou(reference_logits: torch.Tensor, program_logits: torch.Tensor, band: float = 0.0) -> torch.Tensor:
    """Per-query IoU of masks binarised at logit 0: [B, Q, H, W] x 2 -> [B*Q] (empty vs empty = 1).
    Pixels whose reference logit is within ``band`` of 0 are ignored on both sides."""
    decided = reference_logits.abs() >= band
    a, b = (reference_logits > 0) & decided, (program_logits > 0) & decided
    intersection = (a & b).flatten(2).sum(-1).float()
    union = (a | b).flatten(2).sum(-1).float()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union)).flatten()


def _compare(case: str, names: tuple[str, ...], reference: tuple[torch.Tensor, ...],
             program: tuple[torch.Tensor, ...], tolerance: ParityTolerance, gated: tuple[str, ...]) -> list[OutputCheck]:
    if len(reference) != len(program):
        raise ValueError(f"{case}: program returned {len(program)} outputs, expected {len(reference)}")
    checks = []
    for name, ref, got in zip(names, reference, program):
        if tuple(ref.shape) != tuple(got.shape):
            raise ValueError(f"{case}: output {name} has shape {list(got.shape)}, expected {list(ref.shape)}")
        diff = float((ref.float() - got.float()).abs().max())
        if name == "pred_masks":
            iou = mask_iou(ref, got, tolerance.mask_logit_band)
            min_iou, mean_iou = float(iou.min()), float(iou.mean())
            passed = min_iou >= tolerance.min_mask_iou and mean_iou >= tolerance.mean_mask_iou
            checks.append(OutputCheck(case, name, diff, min_iou, mean_iou, passed=passed))
        else:
            is_gated = name in gated
            checks.append(OutputCheck(case, name, diff, gated=is_gated, passed=(not is_gated) or diff <= tolerance.atol))
    return checks


def random_memory(model: EfficientSam3Model, valid_slots: int | None, generator: torch.Generator):
    """memory_features [1, T, C, G, G] (random) and memory_mask [1, T] with the last ``valid_slots`` True."""
    config = model.config
    frames = config.memory.context_frames
    memory = torch.randn(1, frames, config.hidden_size, config.memory_grid, config.memory_grid, generator=generator)
    mask = torch.zeros(1, frames, dtype=torch.bool)
    mask[0, frames - (frames if valid_slots is None else valid_slots):] = True
    return memory, mask


def _run(program, method: str, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """One call of an ``efficient_sam3.programs`` program (numpy in and out) with torch tensors."""
    return tuple(torch.from_numpy(output) for output in program.run(method, inputs))


@torch.no_grad()
def compare_program(model: EfficientSam3Model, program, pixel_values: list[torch.Tensor],
                    tolerance: ParityTolerance, seed: int = 0) -> ParityReport:
    """Run every case on the eager model and on ``program``; return the per-output checks."""
    metadata = program.metadata
    report = ParityReport(program.backend, metadata["quantization"], tolerance)
    encode_frame, decode, encode_text = EncodeFrame(model), Decode(model), EncodeText(model)

    prompts = [p["text"] for p in metadata["prompts"]] or [DEFAULT_PROMPT]
    text_inputs = {}
    for text in prompts:
        ids, mask = model.tokenize([text])
        text_inputs[text] = (ids, mask)
        if "encode_text" in program.method_names:  # a frame-only program has none (PROGRAM_PARTS)
            reference = (encode_text(ids, mask),)
            report.checks += _compare(f"encode_text '{text}'", OUTPUT_NAMES["encode_text"], reference,
                                      _run(program, "encode_text", (ids, mask)), tolerance, ("text_features",))
    for stored in metadata["prompts"]:
        ids, mask = text_inputs[stored["text"]]
        if stored["input_ids"] != ids[0].tolist():
            raise ProgramMismatchError(f"stored prompt {stored['text']!r} has different token ids than the tokenizer gives")
        reference = (encode_text(ids, mask),)
        report.checks += _compare(f"stored features '{stored['text']}'", ("text_features",), reference,
                                  (torch.tensor(stored["text_features"])[None],), tolerance, ("text_features",))

    ids, text_mask = text_inputs[prompts[0]]
    text_features = encode_text(ids, text_mask)
    generator = torch.Generator().manual_seed(seed)
    frame_methods = {"encode_frame", "decode"} <= set(program.method_names)  # a text-only program has none
    for index, pixels in enumerate(pixel_values if frame_methods else []):
        reference_levels = encode_frame(pixels)
        program_levels = _run(program, "encode_frame", (pixels,))
        report.checks += _compare(f"frame {index} encode_frame", OUTPUT_NAMES["encode_frame"], reference_levels,
                                  program_levels, tolerance, gated=())
        for case, valid_slots in MEMORY_CASES:
            memory, memory_mask = random_memory(model, valid_slots, generator)
            reference = decode(*reference_levels[:3], memory, memory_mask, text_features, text_mask)
            got = _run(program, "decode", (*program_levels[:3], memory, memory_mask, text_features, text_mask))
            report.checks += _compare(f"frame {index} decode {case}", OUTPUT_NAMES["decode"], reference, got,
                                      tolerance, ATOL_OUTPUTS)
    if frame_methods and pixel_values and metadata["max_prompts"] > 1:
        report.checks += _compare_batched(model, program, pixel_values[0], prompts, metadata["max_prompts"],
                                          tolerance, generator)
    return report


def batch_prompts(prompts: list[str], count: int) -> list[str]:
    """``count`` distinct prompts: ``prompts`` first, then BATCH_FILL_PROMPTS."""
    texts = list(dict.fromkeys([*prompts, *BATCH_FILL_PROMPTS]))
    if len(texts) < count:
        texts += [f"object {i}" for i in range(count - len(texts))]
    return texts[:count]


def _compare_batched(model: EfficientSam3Model, program, pixels: torch.Tensor, prompts: list[str], count: int,
                     tolerance: ParityTolerance, generator: torch.Generator) -> list[OutputCheck]:
    """One program decode of ``count`` prompts vs the eager decode of each prompt alone, stacked."""
    encode_frame, decode, encode_text = EncodeFrame(model), Decode(model), EncodeText(model)
    texts = batch_prompts(prompts, count)
    ids, text_mask = model.tokenize(texts)  # [P, L]
    text_features = encode_text(ids, text_mask)  # [P, L, C]
    memory, memory_mask = random_memory(model, 3, generator)
    levels = encode_frame(pixels)[:3]
    alone = [decode(*levels, memory, memory_mask, text_features[p:p + 1], text_mask[p:p + 1]) for p in range(count)]
    reference = tuple(torch.cat(rows, dim=0) for rows in zip(*alone))
    got = _run(program, "decode", (*_run(program, "encode_frame", (pixels,))[:3], memory, memory_mask,
                                   text_features, text_mask))
    return _compare(f"frame 0 decode {count} prompts at once", OUTPUT_NAMES["decode"], reference, got, tolerance,
                    ATOL_OUTPUTS)


def load_frames(source: str | Path | None, count: int, image_size: int) -> list[torch.Tensor]:
    """pixel_values of ``count`` frames from ``source`` (every 4th video frame), or generated frames."""
    frames = generated_frames(count) if source is None else read_frames(source, count, stride=4)
    return to_pixel_values(frames, image_size)


def check_parity(checkpoint: str | Path, program_path: str | Path, frames: str | Path | None = None,
                 num_frames: int = DEFAULT_PARITY_FRAMES, tolerance: ParityTolerance | None = None,
                 model: EfficientSam3Model | None = None) -> ParityReport:
    """Provenance check, then ``compare_program``; ``tolerance`` defaults to the program's quantization."""
    model = (model or EfficientSam3Model.from_pretrained(checkpoint)).eval()
    program = load_program(program_path, complete_metadata=True)
    verify_provenance(program.metadata, checkpoint, model)
    if program.metadata.get("coarse_masks", False) != model.config.mask_decoder.coarse_masks:
        model.set_coarse_masks(bool(program.metadata.get("coarse_masks", False)))  # exported with --coarse-masks
    tolerance = tolerance or tolerance_for(program.metadata["quantization"])
    pixel_values = load_frames(frames, num_frames, model.config.image_size)
    return compare_program(model, program, pixel_values, tolerance)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description="Check an exported program against eager PyTorch.")
    parser.add_argument("--checkpoint", required=True, type=Path, help="save_pretrained directory")
    parser.add_argument("--program", required=True, type=Path, help="model.pte or an ONNX export directory")
    parser.add_argument("--frames", type=Path, default=None,
                        help="video file, directory of frames or directory of videos (default: generated frames)")
    parser.add_argument("--num-frames", type=positive_int, default=DEFAULT_PARITY_FRAMES)
    args = parser.parse_args(argv)
    sigterm_as_interrupt()
    try:
        report = check_parity(args.checkpoint, args.program, args.frames, args.num_frames)
    except ProgramMismatchError as err:
        return fail(f"{args.program}: {err}")
    except (OSError, ValueError) as err:  # a missing or malformed checkpoint, program, metadata or frame source
        return fail(err)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
    print(report.format())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
