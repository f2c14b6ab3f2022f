"""Typed settings of the two export CLIs and of the parity check (frozen dataclasses, as the model's)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from efficient_sam3.contract import DEFAULT_MAX_PROMPTS, PROGRAM_PARTS

# "int8-ffn4": int8 as "int8", with the transformers' feed-forward linears holding 4-bit weights
# (export/quantize.py, ``int4_weight_modules``): the smaller on-device file.
QUANTIZATION_MODES = ("none", "int8", "int8-ffn4")
DEFAULT_CALIBRATION_FRAMES = 16
DEFAULT_PARITY_FRAMES = 2


@dataclass(frozen=True)
class ParityTolerance:
    """Largest allowed difference between an exported program and eager PyTorch.

    atol: max |difference| of pred_logits, pred_boxes, presence_logits, iou_scores and text_features.
    min_mask_iou: IoU of the binarised masks (logit > 0), per query (two empty masks count as 1).
    mean_mask_iou: IoU averaged over the queries of one decode call.
    mask_logit_band: pixels whose eager mask logit lies within +-band of 0 are left out of the IoU.
        Two fp32 programs legitimately disagree on the sign of a logit that is within rounding of 0;
        random-weight models have many such pixels (the edge preset's ONNX export differs by at most
        1.8e-5 in mask logits yet flips enough of them to bring a small mask's IoU to 0.998).
    """

    atol: float
    min_mask_iou: float
    mean_mask_iou: float
    mask_logit_band: float = 0.0


# fp32: both programs compute the same math in a different order.
FP32_TOLERANCE = ParityTolerance(atol=1e-4, min_mask_iou=0.999, mean_mask_iou=0.999, mask_logit_band=1e-3)
# int8 (convs and linears, export/quantize.py), measured with random weights on held-out synthetic SA-V
# frames: max |diff| <= 0.008 (tiny) / 0.015 (edge) on logits and boxes; mean mask IoU 0.94-0.96 (tiny),
# 0.89-0.93 (edge). Random weights give near-zero, noisy mask logits, so single queries drop to IoU 0.2:
# the per-query bound is not gated for int8, the per-call mean is.
INT8_TOLERANCE = ParityTolerance(atol=0.05, min_mask_iou=0.0, mean_mask_iou=0.85)
# int8-ffn4 (the feed-forward linears' weights in 4 bits, per output channel), measured the same way: edge
# mean mask IoU 0.915 on one prompt and 0.798 on the 8-prompt call, max |diff| 0.062 on logits; tiny 0.83-0.86
# (int8 on the same frames: edge 0.89-0.93, tiny 0.94-0.96). 4-bit weights cost that much agreement with
# fp32; the gate still refuses a broken export.
INT8_FFN4_TOLERANCE = ParityTolerance(atol=0.1, min_mask_iou=0.0, mean_mask_iou=0.75)


def check_prompts(prompts: tuple[str, ...]) -> None:
    """Every runtime refuses an empty prompt, so an export never stores one."""
    for prompt in prompts:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"--prompt: {prompt!r} is empty; a stored prompt needs text")


def check_max_prompts(max_prompts: int) -> None:
    if not isinstance(max_prompts, int) or isinstance(max_prompts, bool) or max_prompts < 1:
        raise ValueError(f"--max-prompts must be a positive integer, got {max_prompts!r}")


def is_quantized(quantization: str) -> bool:
    """Whether the mode calibrates on frames and quantizes convs and linears (every mode but "none")."""
    if quantization not in QUANTIZATION_MODES:
        raise ValueError(f"unknown quantization {quantization!r}; choose from {QUANTIZATION_MODES}")
    return quantization != "none"


def tolerance_for(quantization: str) -> ParityTolerance:
    if quantization == "int8-ffn4":
        return INT8_FFN4_TOLERANCE
    return INT8_TOLERANCE if is_quantized(quantization) else FP32_TOLERANCE


@dataclass(frozen=True)
class ExecutorchExportConfig:
    checkpoint: Path
    out: Path  # the .pte; its metadata goes to <out>.json
    prompts: tuple[str, ...] = ()
    quantize: str = "none"  # one of QUANTIZATION_MODES
    calibration_videos: Path | None = None
    calibration_frames: int = DEFAULT_CALIBRATION_FRAMES
    # Frames for the parity check run before the program is moved into place (None: the calibration
    # videos, else generated frames) and how many of them.
    parity_frames: Path | None = None
    parity_num_frames: int = DEFAULT_PARITY_FRAMES
    # None: tolerance_for(quantize).
    parity_tolerance: ParityTolerance | None = None
    # Which entry points the .pte holds (efficient_sam3.contract.PROGRAM_PARTS): "all"; "frame" (what a
    # device runs per frame, prompts from the metadata); "text" (the text encoder alone, always fp32).
    program: str = "all"
    # decode takes 1 to max_prompts prompts per call (1: a static single-prompt program).
    max_prompts: int = DEFAULT_MAX_PROMPTS
    # The opt-in fast mask path (MaskDecoderConfig.coarse_masks) for this export; False: the checkpoint's own.
    coarse_masks: bool = False

    def __post_init__(self) -> None:
        tolerance_for(self.quantize)
        check_max_prompts(self.max_prompts)
        if self.program not in PROGRAM_PARTS:
            raise ValueError(f"--program must be one of {sorted(PROGRAM_PARTS)}, got {self.program!r}")
        if self.program == "text" and self.quantize != "none":
            raise ValueError("--program text: the text encoder stays fp32 (runs once per prompt); drop --quantize")
        check_prompts(self.prompts)
        if self.parity_num_frames < 1:
            raise ValueError(f"parity_num_frames must be >= 1, got {self.parity_num_frames}")
        if is_quantized(self.quantize) and self.calibration_videos is None:
            raise ValueError(f"--quantize {self.quantize} needs --calibration-videos (a video file or a directory of videos)")
        if self.calibration_frames < 1:
            raise ValueError(f"calibration_frames must be >= 1, got {self.calibration_frames}")
        if Path(self.out).suffix != ".pte":
            raise ValueError(f"--out must name a .pte file, got {self.out}")


@dataclass(frozen=True)
class OnnxInt8Config:
    """export.onnx_int8: static int8 (QDQ) of an export.onnx directory."""

    onnx: Path  # the fp32 export.onnx directory
    out: Path  # the int8 directory (same layout)
    calibration_videos: Path
    calibration_frames: int = DEFAULT_CALIBRATION_FRAMES
    checkpoint: Path | None = None  # None: the source_checkpoint named in the fp32 metadata
    parity_frames: Path | None = None  # None: calibration-video frames after the calibration frames
    parity_num_frames: int = DEFAULT_PARITY_FRAMES
    parity_tolerance: ParityTolerance | None = None  # None: INT8_TOLERANCE
    full_range: bool = False  # 8-bit weights (VNNI / ARM targets only); default 7-bit (ORT reduce_range)

    def __post_init__(self) -> None:
        if self.calibration_frames < 1 or self.parity_num_frames < 1:
            raise ValueError(f"calibration_frames and parity_num_frames must be >= 1, got "
                             f"{self.calibration_frames}, {self.parity_num_frames}")
        if Path(self.out).resolve() == Path(self.onnx).resolve():
            raise ValueError(f"--out: {self.out} is the fp32 directory itself; choose another folder")


@dataclass(frozen=True)
class OnnxExportConfig:
    checkpoint: Path
    out: Path  # a directory: encode_frame.onnx, decode.onnx, encode_text.onnx, metadata.json
    prompts: tuple[str, ...] = ()
    opset: int = 18
    parity_frames: Path | None = None
    parity_num_frames: int = DEFAULT_PARITY_FRAMES
    max_prompts: int = DEFAULT_MAX_PROMPTS  # as ExecutorchExportConfig's
    coarse_masks: bool = False  # as ExecutorchExportConfig's

    def __post_init__(self) -> None:
        check_prompts(self.prompts)
        check_max_prompts(self.max_prompts)
        if self.parity_num_frames < 1:
            raise ValueError(f"parity_num_frames must be >= 1, got {self.parity_num_frames}")
        if self.opset < 18:
            raise ValueError(f"ONNX export needs opset >= 18, got {self.opset}")
