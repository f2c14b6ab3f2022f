"""Anchors: what a user would run instead, built from transformers with random weights.

Speed does not depend on weight values, so every anchor is its transformers class at its default
config, randomly initialised (nothing is downloaded). What one timed frame is:

* video trackers (``EdgeTamVideoModel``, ``Sam3TrackerVideoModel``): one streamed frame of the
  model's own streaming API, ``model(inference_session, frame=pixel_values)``, tracking one object
  that a positive point prompt selected on frame 0. That is the image encoder, memory attention over
  the memory bank, the mask decoder and the memory encoder writing this frame into the bank. Warm-up
  is the prompted frame plus ``num_maskmem`` (7) tracked frames, so every timed frame attends to a
  full memory bank; a tracker slower than 10 s/frame stops filling after one tracked frame, and its
  row says how full the bank was (``quick``, used by the tests only: two warm-up frames).
* ``Sam3VisionModel``: SAM3's ViT + FPN neck on one frame (the image-side cost SAM3 pays per frame
  before any head; SAM3's detector and tracker both start from it).

Pixel values are random normalised tensors at the model's input size. transformers' streaming session
keeps every frame it was given, so the trackers' peak RSS grows with the number of frames streamed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field

from benchmarks.latency import NUM_DISTINCT_FRAMES, TimingPlan

TRACKER_FAMILIES = ("edgetam_video", "sam3_tracker_video")


@dataclass(frozen=True)
class AnchorSpec:
    label: str
    family: str  # edgetam_video | sam3_tracker_video | sam3_vision
    image_size: int | None = None  # None: the config's default
    edgetam_repvit: bool = False  # EdgeTamVisionConfig (RepViT-M1 from timm) instead of the default vision config


ANCHORS: dict[str, AnchorSpec] = {
    "edgetam_video": AnchorSpec("EdgeTamVideoModel, default config (vision: transformers default, SAM2 Hiera-T)",
                                "edgetam_video"),
    "edgetam_video_repvit": AnchorSpec("EdgeTamVideoModel, vision EdgeTamVisionConfig (RepViT-M1, as EdgeTAM ships)",
                                       "edgetam_video", edgetam_repvit=True),
    "sam3_tracker_video_1008": AnchorSpec("Sam3TrackerVideoModel @1008 (default)", "sam3_tracker_video", 1008),
    "sam3_tracker_video_504": AnchorSpec("Sam3TrackerVideoModel @504", "sam3_tracker_video", 504),
    "sam3_vision_1008": AnchorSpec("Sam3VisionModel (ViT + FPN) @1008 (default)", "sam3_vision", 1008),
    "sam3_vision_504": AnchorSpec("Sam3VisionModel (ViT + FPN) @504", "sam3_vision", 504),
}


@dataclass
class AnchorStepper:
    step: Callable[[int], object]
    plan: TimingPlan
    details: dict[str, str] = field(default_factory=dict)
    dynamic_details: Callable[[int], dict[str, str]] | None = None  # (timed frames) -> details, after timing


def unavailable_reason(name: str) -> str | None:
    """Why anchor ``name`` cannot run here (a missing package), or None."""
    if name not in ANCHORS:
        raise KeyError(f"unknown anchor {name!r}; expected one of {sorted(ANCHORS)}")
    if importlib.util.find_spec("transformers") is None:
        return "transformers is not installed"
    if ANCHORS[name].edgetam_repvit:
        missing = [package for package in ("timm", "torchvision") if importlib.util.find_spec(package) is None]
        if missing:
            return (f"{' and '.join(missing)} not installed (EdgeTamVisionConfig's RepViT-M1 backbone is a timm "
                    "model, and timm needs torchvision)")
    return None


def tracker_plan(num_maskmem: int, quick: bool) -> TimingPlan:
    """Prompted frame + enough tracked frames to fill the memory bank, then the timed frames. A tracker
    slower than 10 s/frame stops filling after the prompted frame and one tracked frame (filling would take
    many minutes); its details then say how full the memory bank was while timed."""
    if quick:
        return TimingPlan(warmup=2, frames=3, slow_frames=3)
    return TimingPlan(warmup=1 + num_maskmem, frames=20, slow_frames=3, min_warmup=2)


def build_anchor(name: str, threads: int, quick: bool) -> AnchorStepper:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    spec = ANCHORS[name]
    if spec.family in TRACKER_FAMILIES:
        return _tracker_anchor(spec, quick)
    if spec.family == "sam3_vision":
        return _vision_anchor(spec, quick)
    raise ValueError(f"{name}: unknown anchor family {spec.family!r}")


def _tracker_model(spec: AnchorSpec):
    if spec.family == "edgetam_video":
        from transformers import EdgeTamVideoConfig, EdgeTamVideoModel
        from transformers.models.edgetam_video import EdgeTamVideoInferenceSession

        if spec.edgetam_repvit:
            from transformers import EdgeTamVisionConfig

            config = EdgeTamVideoConfig(vision_config=EdgeTamVisionConfig())
        else:
            config = EdgeTamVideoConfig()
        return EdgeTamVideoModel(config).eval(), EdgeTamVideoInferenceSession
    from transformers import Sam3TrackerVideoConfig, Sam3TrackerVideoModel
    from transformers.models.sam3_tracker_video import Sam3TrackerVideoInferenceSession

    config = Sam3TrackerVideoConfig()
    if spec.image_size is not None:
        config.image_size = spec.image_size  # the setter also resizes the FPN sizes and the memory RoPE grid
    return Sam3TrackerVideoModel(config).eval(), Sam3TrackerVideoInferenceSession


def _tracker_anchor(spec: AnchorSpec, quick: bool) -> AnchorStepper:
    import torch

    model, session_class = _tracker_model(spec)
    size = model.config.image_size
    session = session_class(video_height=size, video_width=size, inference_device="cpu", dtype=torch.float32)
    obj_idx = session.obj_id_to_idx(1)
    # One positive click at the image centre, in the model's input pixel space ([1, 1, 1, 2] / [1, 1, 1]).
    session.add_point_inputs(obj_idx, 0, {
        "point_coords": torch.tensor([[[[size / 2, size / 2]]]], dtype=torch.float32),
        "point_labels": torch.tensor([[[1]]], dtype=torch.int32),
    })
    session.obj_with_new_inputs = [1]
    generator = torch.Generator().manual_seed(0)
    frames = [torch.randn(1, 3, size, size, generator=generator) for _ in range(NUM_DISTINCT_FRAMES)]

    memory_sizes: list[int] = []  # memory-bank frames available to each streamed frame

    @torch.inference_mode()
    def step(frame_number: int) -> object:
        memory_sizes.append(min(len(session.output_dict_per_obj[obj_idx]["non_cond_frame_outputs"]) + 1,
                                model.config.num_maskmem))
        return model(session, frame=frames[frame_number % len(frames)])

    def details(timed_frames: int) -> dict[str, str]:
        timed = memory_sizes[-timed_frames:]
        return {"memory_bank": f"{min(timed)}-{max(timed)} of {model.config.num_maskmem} frames while timed "
                               "(the prompted frame counts as one)"}

    details_static = {
        "timed": "model(session, frame=...) per streamed frame, 1 object (point prompt on frame 0)",
        "image_size": str(size),
        "params_m": f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}",
    }
    return AnchorStepper(step=step, plan=tracker_plan(model.config.num_maskmem, quick), details=details_static,
                         dynamic_details=details)


def _vision_anchor(spec: AnchorSpec, quick: bool) -> AnchorStepper:
    import torch
    from transformers import Sam3VisionConfig, Sam3VisionModel

    config = Sam3VisionConfig()
    if spec.image_size is not None:
        config.image_size = spec.image_size  # before construction: RoPE position ids follow the grid
    model = Sam3VisionModel(config).eval()
    size = config.image_size
    generator = torch.Generator().manual_seed(0)
    frames = [torch.randn(1, 3, size, size, generator=generator) for _ in range(NUM_DISTINCT_FRAMES)]

    @torch.inference_mode()
    def step(frame_number: int) -> object:
        return model(pixel_values=frames[frame_number % len(frames)])

    details = {
        "timed": "Sam3VisionModel(pixel_values) per frame: ViT backbone + FPN neck",
        "image_size": str(size),
        "params_m": f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}",
    }
    plan = TimingPlan(warmup=1, frames=3 if quick else 20, slow_frames=3)
    return AnchorStepper(step=step, plan=plan, details=details)
