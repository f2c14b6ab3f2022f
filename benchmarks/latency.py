"""Per-frame latency: the timing loop, and one stepper per way of running our model.

A stepper is a callable ``step(frame_number)`` that does one frame's streaming work. For our model that
is encode_frame + decode for one prompt with a full memory of T context frames (the runtime's
per-frame work; the prompt's text features are computed once, before timing):

* ``eager`` / ``eager_fused``: ``model.encode_image`` + ``model.forward_video(vision=..., text=...)``
  (``_fused``: after ``efficient_sam3.backbone.fuse_for_deployment``, as the exporters see it);
* ``onnx``: the exported ``encode_frame.onnx`` + ``decode.onnx`` in ONNX Runtime (CPU provider);
* ``executorch``: the exported ``.pte`` methods ``encode_frame`` + ``decode``;
* ``session``: ``runtime.VideoSession.step`` on a raw 1280x720 frame (end to end: resize and
  normalise, the programs, masks at frame size, object tracking, memory writes).

Module level imports are stdlib + numpy only, so an ONNX worker process never loads torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from efficient_sam3.programs import load_program, metadata_path, read_program_metadata

Stepper = Callable[[int], object]

# Distinct random inputs cycled through while timing (no backend sees the same frame twice in a row).
NUM_DISTINCT_FRAMES = 4
# Raw frame size fed to runtime.VideoSession (720p landscape, BGR like OpenCV decodes it).
SESSION_FRAME_HW = (720, 1280)
STEPPER_KINDS = ("eager", "eager_fused", "onnx", "executorch", "session")


@dataclass(frozen=True)
class TimingPlan:
    """warmup untimed frames, then ``frames`` timed ones; a stepper whose last warm-up frame took longer
    than ``slow_threshold_s`` is timed over ``slow_frames`` frames instead. With ``min_warmup`` set, the
    warm-up stops early (after at least ``min_warmup`` frames) once a warm-up frame takes longer than
    ``very_slow_threshold_s`` (used by the trackers: filling a memory bank at minutes per frame)."""

    warmup: int = 3
    frames: int = 20
    slow_frames: int = 3
    slow_threshold_s: float = 1.0
    min_warmup: int | None = None
    very_slow_threshold_s: float = 10.0

    def __post_init__(self) -> None:
        if self.warmup < 1 or self.frames < 1 or self.slow_frames < 1:
            raise ValueError(f"warmup, frames and slow_frames must be >= 1, got {self}")
        if self.min_warmup is not None and not 1 <= self.min_warmup <= self.warmup:
            raise ValueError(f"min_warmup must be in [1, warmup], got {self}")


@dataclass(frozen=True)
class LatencyStats:
    p50_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    frames: int  # timed frames
    warmup: int  # untimed frames before them

    @property
    def fps(self) -> float:
        return 1000.0 / self.p50_ms

    def to_metrics(self) -> dict[str, float]:
        return {**asdict(self), "fps": self.fps}


def stats_from_times(times_s: list[float], warmup: int) -> LatencyStats:
    if not times_s:
        raise ValueError("no timed frames")
    ms = np.asarray(times_s, dtype=np.float64) * 1000.0
    return LatencyStats(
        p50_ms=float(np.percentile(ms, 50)),
        p90_ms=float(np.percentile(ms, 90)),
        mean_ms=float(ms.mean()),
        min_ms=float(ms.min()),
        frames=len(times_s),
        warmup=warmup,
    )


def time_steps(step: Stepper, plan: TimingPlan) -> LatencyStats:
    """Run ``plan.warmup`` frames untimed, then time each of the next frames (wall clock, CPU work is
    synchronous so no device sync is needed)."""
    frame_number = 0
    last_warmup_s = 0.0
    for _ in range(plan.warmup):
        started = time.perf_counter()
        step(frame_number)
        last_warmup_s = time.perf_counter() - started
        frame_number += 1
        if (plan.min_warmup is not None and frame_number >= plan.min_warmup
                and last_warmup_s > plan.very_slow_threshold_s):
            break
    count = plan.slow_frames if last_warmup_s > plan.slow_threshold_s else plan.frames
    times = []
    for _ in range(count):
        started = time.perf_counter()
        step(frame_number)
        times.append(time.perf_counter() - started)
        frame_number += 1
    return stats_from_times(times, frame_number - len(times))


# Steppers for our model ----------------------------------------------------------------------------
def _random_memory(context_frames: int, hidden_size: int, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """A full memory: T valid slots of level-3 features [1, T, C, G, G] and mask [1, T] all True."""
    rng = np.random.default_rng(1)
    features = rng.standard_normal((1, context_frames, hidden_size, grid, grid), dtype=np.float32)
    return features, np.ones((1, context_frames), dtype=np.bool_)


def _random_pixels(image_size: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal((1, 3, image_size, image_size), dtype=np.float32) for _ in range(NUM_DISTINCT_FRAMES)]


def _stored_prompt(metadata: dict, where: Path) -> tuple[str, np.ndarray, np.ndarray]:
    """First prompt of an export (validated metadata, read from ``where``): text, text_features [1, L, C]
    float32, text_mask [1, L] int64."""
    if not metadata.get("prompts"):
        raise ValueError(f"{where}: metadata has no 'prompts' with precomputed text features")
    prompt = metadata["prompts"][0]
    features = np.asarray(prompt["text_features"], dtype=np.float32)[None]
    mask = np.asarray(prompt["attention_mask"], dtype=np.int64)[None]
    return prompt["text"], features, mask


def eager_stepper(checkpoint_dir: Path, fused: bool, prompt: str) -> Stepper:
    from efficient_sam3 import EfficientSam3Model
    from efficient_sam3.backbone import fuse_for_deployment

    model = EfficientSam3Model.from_pretrained(checkpoint_dir).eval()
    if fused:
        fuse_for_deployment(model)
    return memory_path_steppers(model, prompt)[0]


def program_stepper(path: Path, threads: int | None) -> Stepper:
    """encode_frame + decode of an exported program (a .pte or an ONNX directory), one stored prompt, full
    memory. ``threads``: ONNX Runtime's intra-op threads; ExecuTorch's threadpool is pinned beforehand
    with ``set_executorch_threads``."""
    program = load_program(path, num_threads=threads if path.is_dir() else None, methods=("encode_frame", "decode"))
    metadata = program.metadata
    _, text_features, text_mask = _stored_prompt(metadata, metadata_path(path))
    memory, mask = _random_memory(metadata["context_frames"], metadata["hidden_size"], metadata["memory_grid"])
    frames = _random_pixels(metadata["image_size"])

    def step(frame_number: int) -> object:
        fpn0, fpn1, fpn2, _ = program.run("encode_frame", [frames[frame_number % len(frames)]])
        return program.run("decode", [fpn0, fpn1, fpn2, memory, mask, text_features, text_mask])

    return step


def set_executorch_threads(threads: int) -> str:
    """Pin ExecuTorch's CPU threadpool (as runtime/ does); returns how the thread count was set."""
    try:
        from executorch.extension.pybindings import _C

        _C._unsafe_reset_threadpool(threads)
    except (ImportError, AttributeError) as err:
        return f"runtime default threadpool (could not pin: {err})"
    return f"{threads} (pybindings _unsafe_reset_threadpool)"


class SessionStepper:
    """``runtime.VideoSession.step`` on raw frames; counts the objects it returns, since with random weights
    the number of detections (so the cost of masks at frame size and tracking) is arbitrary."""

    def __init__(self, model_path: Path, backend: str, threads: int, prompt: str) -> None:
        from runtime.session import VideoSession

        if backend in ("onnx", "executorch"):
            where = metadata_path(model_path)
            prompt = _stored_prompt(read_program_metadata(where), where)[0]
        self.session = VideoSession(model_path, backend, prompts=[prompt], num_threads=threads)
        rng = np.random.default_rng(2)
        self.frames = [rng.integers(0, 256, (*SESSION_FRAME_HW, 3), dtype=np.uint8)  # [H, W, 3] BGR
                       for _ in range(NUM_DISTINCT_FRAMES)]
        self.objects_per_frame: list[int] = []

    def __call__(self, frame_number: int) -> object:
        result = self.session.step(self.frames[frame_number % len(self.frames)])
        self.objects_per_frame.append(len(result.objects))
        return result

    def details(self) -> dict[str, str]:
        counts = self.objects_per_frame
        return {"objects_per_frame": f"{np.mean(counts):.1f} (random weights: arbitrary)" if counts else "0"}


def build_stepper(kind: str, path: Path, threads: int, prompt: str, backend: str | None = None) -> Stepper:
    """The stepper of ``kind`` (one of STEPPER_KINDS) over the model at ``path``."""
    if kind in ("eager", "eager_fused"):
        return eager_stepper(path, fused=kind == "eager_fused", prompt=prompt)
    if kind in ("onnx", "executorch"):
        return program_stepper(path, threads)
    if kind == "session":
        if backend is None:
            raise ValueError("a session stepper needs a backend name")
        return SessionStepper(path, backend, threads, prompt)
    raise ValueError(f"unknown stepper kind {kind!r}; expected one of {STEPPER_KINDS}")


def memory_path_steppers(model, prompt: str) -> tuple[Stepper, Stepper]:
    """(video step, image-only step) of an eager model: encode_image + forward_video with a full memory,
    and encode_image + forward without memory, on the same frames with the same precomputed prompt."""
    import torch

    config = model.config
    with torch.inference_mode():
        text = model.encode_text(*model.tokenize([prompt]))
    memory, mask = (torch.from_numpy(a) for a in
                    _random_memory(config.memory.context_frames, config.hidden_size, config.memory_grid))
    frames = [torch.from_numpy(p) for p in _random_pixels(config.image_size)]

    @torch.inference_mode()
    def video_step(frame_number: int) -> object:
        vision = model.encode_image(frames[frame_number % len(frames)])
        return model.forward_video(None, None, memory, mask, vision=vision, text=text)

    @torch.inference_mode()
    def image_step(frame_number: int) -> object:
        vision = model.encode_image(frames[frame_number % len(frames)])
        return model(vision=vision, text=text)

    return video_step, image_step
