"""Typed settings of the two export CLIs and of the parity check (frozen dataclasses, as the model's)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

QUANTIZATION_MODES = ("none", "int8")
# The runtime writes one frame in every MEMORY_STRIDE into the memory ring (recorded in the metadata;
# annotated SA-V frames are 4 video frames apart, and the memory was trained on annotated frames).
MEMORY_STRIDE = 4
DEFAULT_CALIBRATION_FRAMES = 16
DEFAULT_PARITY_FRAMES = 2


@dataclass(frozen=True)
class ParityTolerance:
    """Largest allowed difference between an exported program and eager PyTorch.

    atol: max |difference| of pred_logits, pred_boxes, presence_logits, iou_scores and text_features.
    min_mask_iou: IoU of the binarised masks (logit > 0), per query (two empty masks count as 1).
    mean_mask_iou: IoU averaged over the queries of one decode call.
    """

    atol: float
    min_mask_iou: float
    mean_mask_iou: float


# fp32: both programs compute the same math in a different order.
FP32_TOLERANCE = ParityTolerance(atol=1e-4, min_mask_iou=0.999, mean_mask_iou=0.999)
# int8 (convs and linears, export/quantize.py), from the tiny preset with random weights on held-out
# synthetic SA-V frames: max |diff| <= 0.008 (logits), 0.002 (boxes); mean mask IoU 0.94-0.96. Random
# weights give near-zero, noisy mask logits, so single queries can reach IoU 0.2: the per-query bound
# is not gated for int8, the mean is.
INT8_TOLERANCE = ParityTolerance(atol=0.05, min_mask_iou=0.0, mean_mask_iou=0.9)


def tolerance_for(quantization: str) -> ParityTolerance:
    if quantization not in QUANTIZATION_MODES:
        raise ValueError(f"unknown quantization {quantization!r}; choose from {QUANTIZATION_MODES}")
    return INT8_TOLERANCE if quantization == "int8" else FP32_TOLERANCE


@dataclass(frozen=True)
class ExecutorchExportConfig:
    checkpoint: Path
    out: Path  # the .pte; its metadata goes to <out>.json
    prompts: tuple[str, ...] = ()
    quantize: str = "none"
    calibration_videos: Path | None = None
    calibration_frames: int = DEFAULT_CALIBRATION_FRAMES
    # Frames for the parity check run before the program is moved into place (None: the calibration
    # videos, else generated frames) and how many of them.
    parity_frames: Path | None = None
    parity_num_frames: int = DEFAULT_PARITY_FRAMES
    # None: FP32_TOLERANCE or INT8_TOLERANCE by ``quantize``.
    parity_tolerance: ParityTolerance | None = None

    def __post_init__(self) -> None:
        tolerance_for(self.quantize)
        if self.parity_num_frames < 1:
            raise ValueError(f"parity_num_frames must be >= 1, got {self.parity_num_frames}")
        if self.quantize == "int8" and self.calibration_videos is None:
            raise ValueError("--quantize int8 needs --calibration-videos (a video file or a directory of videos)")
        if self.calibration_frames < 1:
            raise ValueError(f"calibration_frames must be >= 1, got {self.calibration_frames}")
        if Path(self.out).suffix != ".pte":
            raise ValueError(f"--out must name a .pte file, got {self.out}")


@dataclass(frozen=True)
class OnnxExportConfig:
    checkpoint: Path
    out: Path  # a directory: encode_frame.onnx, decode.onnx, encode_text.onnx, metadata.json
    prompts: tuple[str, ...] = ()
    opset: int = 18
    parity_frames: Path | None = None
    parity_num_frames: int = DEFAULT_PARITY_FRAMES

    def __post_init__(self) -> None:
        if self.parity_num_frames < 1:
            raise ValueError(f"parity_num_frames must be >= 1, got {self.parity_num_frames}")
        if self.opset < 18:
            raise ValueError(f"ONNX export needs opset >= 18, got {self.opset}")
