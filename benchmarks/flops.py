"""FLOPs per frame of each piece of the model, its eager time, and the machine's measured fp32 peak.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (matmul, linear, conv, attention: one
multiply-add = 2 FLOPs; elementwise ops, norms and softmax are not counted). A piece is one or more
top-level submodules of ``EfficientSam3Model``; forward hooks on them attribute the FLOPs and the wall
time of one streaming step (``encode_image`` + ``forward_video`` with a full memory and precomputed
text) to each piece, so the split follows the model's own wiring. Work done outside any submodule
(padding bias, box conversion, reshapes) is reported as "outside submodules".

The peak is the median GFLOP/s of a 2048x2048 fp32 matmul in the same process and thread setting.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from efficient_sam3 import EfficientSam3Model
from efficient_sam3.outputs import VisionFeatures

# Per-frame pieces (name, top-level submodule attributes), in pipeline order.
FRAME_PIECES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("backbone + trunk projection", ("backbone", "trunk_projection")),
    ("FPN neck", ("neck",)),
    ("DETR encoder", ("detr_encoder",)),
    ("perceiver resampler", ("perceiver_resampler",)),
    ("memory cross-attention", ("memory_cross_attn",)),
    ("DETR decoder + scoring", ("detr_decoder", "dot_product_scoring")),
    ("mask decoder + IoU head", ("mask_decoder", "iou_head")),
)
TEXT_PIECE = ("text encoder + projection (once per prompt)", ("text_encoder", "text_projection"))
OUTSIDE = "outside submodules"
PEAK_MATMUL_SIZE = 2048


@dataclass(frozen=True)
class PieceCost:
    name: str
    modules: tuple[str, ...]
    gflops: float  # per call (per frame, or per prompt for the text encoder)
    ms: float  # median eager wall time per call
    per_frame: bool

    @property
    def gflops_per_s(self) -> float:
        return self.gflops / (self.ms / 1000.0) if self.ms > 0 else float("nan")


@dataclass(frozen=True)
class FlopsBreakdown:
    pieces: list[PieceCost]  # FRAME_PIECES, any unlisted submodule, OUTSIDE, then TEXT_PIECE
    frame_gflops: float  # one streaming step, all per-frame pieces
    frame_ms: float  # median eager wall time of one step (hooks attached)
    frames: int  # timed steps


def measure_peak_matmul(size: int = PEAK_MATMUL_SIZE, repeats: int = 10) -> float:
    """Median GFLOP/s of an fp32 [size x size] @ [size x size] matmul (2 * size^3 FLOPs)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    for _ in range(2):
        torch.mm(a, b)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - started)
    return 2.0 * size**3 / float(np.median(times)) / 1e9


class _PieceRecorder:
    """Forward hooks on top-level submodules: per-module wall time and FLOPs of the current step."""

    def __init__(self, model: nn.Module) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.flops: dict[str, int] = defaultdict(int)
        self.counter: FlopCounterMode | None = None
        self._open: dict[str, tuple[float, int]] = {}
        self._handles = []
        for name, child in model.named_children():
            self._handles.append(child.register_forward_pre_hook(self._pre(name)))
            self._handles.append(child.register_forward_hook(self._post(name)))

    def _total_flops(self) -> int:
        return self.counter.get_total_flops() if self.counter is not None else 0

    def _pre(self, name: str):
        def hook(module, args):
            self._open[name] = (time.perf_counter(), self._total_flops())
        return hook

    def _post(self, name: str):
        def hook(module, args, output):
            started, flops_before = self._open.pop(name)
            self.seconds[name] += time.perf_counter() - started
            self.flops[name] += self._total_flops() - flops_before
        return hook

    def reset(self) -> None:
        self.seconds.clear()
        self.flops.clear()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _piece_table(model: nn.Module) -> list[tuple[str, tuple[str, ...]]]:
    """FRAME_PIECES plus one piece per top-level submodule that no listed piece names."""
    listed = {attr for _, attrs in FRAME_PIECES for attr in attrs} | set(TEXT_PIECE[1])
    extra = [(f"other: {name}", (name,)) for name, _ in model.named_children() if name not in listed]
    return list(FRAME_PIECES) + extra


def _streaming_step(model: EfficientSam3Model, prompt: str):
    """(step(pixel_values), two random frames, the prompt's (input_ids, attention_mask)): one streaming
    step is ``encode_image`` + ``forward_video`` with all T memory slots valid and precomputed text."""
    config = model.config
    generator = torch.Generator().manual_seed(0)
    pixels = [torch.randn(1, 3, config.image_size, config.image_size, generator=generator) for _ in range(2)]
    grid = config.memory_grid
    memory = torch.randn(1, config.memory.context_frames, config.hidden_size, grid, grid, generator=generator)
    memory_mask = torch.ones(1, config.memory.context_frames, dtype=torch.bool)
    input_ids, attention_mask = model.tokenize([prompt])

    with torch.no_grad():
        text = model.encode_text(input_ids, attention_mask)

    def step(pixel_values: torch.Tensor) -> None:
        vision: VisionFeatures = model.encode_image(pixel_values)
        model.forward_video(None, None, memory, memory_mask, vision=vision, text=text)

    return step, pixels, (input_ids, attention_mask)


def frame_gflops(model: EfficientSam3Model, prompt: str = "red circle") -> float:
    """GFLOP of one streaming step (the per-frame work of the exported encode_frame + decode)."""
    model = model.eval().requires_grad_(False)
    step, pixels, _ = _streaming_step(model, prompt)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        step(pixels[0])
    return counter.get_total_flops() / 1e9


def module_gflops(module: nn.Module, *inputs: torch.Tensor) -> float:
    """GFLOP of one call of ``module(*inputs)``."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*inputs)
    return counter.get_total_flops() / 1e9


def piece_breakdown(model: EfficientSam3Model, frames: int, prompt: str = "red circle") -> FlopsBreakdown:
    """FLOPs and median eager ms of every piece of one streaming step with a full memory."""
    model = model.eval().requires_grad_(False)  # FlopCounterMode's module tracker needs no grad-requiring params
    step, pixels, (input_ids, attention_mask) = _streaming_step(model, prompt)
    recorder = _PieceRecorder(model)
    try:
        with torch.no_grad():
            # FLOPs: one counted step (counting slows the step, so it is not timed).
            counter = FlopCounterMode(display=False)
            recorder.counter = counter
            with counter:
                step(pixels[0])
            frame_flops = counter.get_total_flops()
            flops = dict(recorder.flops)
            recorder.counter = None
            # Time: one warm-up step, then ``frames`` timed steps.
            step(pixels[1])
            per_module: dict[str, list[float]] = defaultdict(list)
            totals = []
            for index in range(frames):
                recorder.reset()
                started = time.perf_counter()
                step(pixels[index % 2])
                totals.append(time.perf_counter() - started)
                for name in dict(model.named_children()):
                    per_module[name].append(recorder.seconds.get(name, 0.0))
            text_cost = _text_cost(model, input_ids, attention_mask, frames)
    finally:
        recorder.remove()

    pieces = []
    attributed = np.zeros(frames)  # [frames] seconds spent inside the listed submodules
    for name, attrs in _piece_table(model):
        seconds = np.sum([per_module[a] for a in attrs], axis=0)  # [frames]
        attributed += seconds
        pieces.append(PieceCost(name, attrs, sum(flops.get(a, 0) for a in attrs) / 1e9,
                                float(np.median(seconds)) * 1000.0, per_frame=True))
    frame_ms = float(np.median(totals)) * 1000.0
    outside_ms = float(np.median(np.asarray(totals) - attributed)) * 1000.0
    attributed_flops = sum(p.gflops for p in pieces)
    pieces.append(PieceCost(OUTSIDE, (), frame_flops / 1e9 - attributed_flops, outside_ms, per_frame=True))
    pieces.append(text_cost)
    return FlopsBreakdown(pieces=pieces, frame_gflops=frame_flops / 1e9, frame_ms=frame_ms, frames=frames)


def _text_cost(model: EfficientSam3Model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               frames: int) -> PieceCost:
    counter = FlopCounterMode(display=False)
    with counter:
        model.encode_text(input_ids, attention_mask)
    times = []
    for _ in range(max(frames, 3)):
        started = time.perf_counter()
        model.encode_text(input_ids, attention_mask)
        times.append(time.perf_counter() - started)
    return PieceCost(TEXT_PIECE[0], TEXT_PIECE[1], counter.get_total_flops() / 1e9,
                     float(np.median(times)) * 1000.0, per_frame=False)

