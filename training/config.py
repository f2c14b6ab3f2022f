"""Typed configuration of the training stages: one frozen dataclass per stage.

- ``ImageStageConfig``: the whole student on single annotated frames (``python -m training.image``).
- ``VideoDistillationConfig``: only the memory modules, on clips with cached context features
  (``python -m training.video``); its defaults are the video distillation plan's.
- ``PipelineConfig``: the offline default pipeline (synthetic data -> image stage -> feature cache ->
  video stage -> memory ON/OFF evaluation) that ``python -m training.video`` runs with no data flags.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from training.losses import LossWeights
from training.synthetic_scene import SceneConfig

DEFAULT_RUNS_DIR = Path("runs")
# Subfolder of an image-stage run that holds its student (a save_pretrained directory).
IMAGE_STAGE_CHECKPOINT = "student"
# Subfolder of a video-stage run that holds the export-ready full model.
FINAL_MODEL_DIR = "final_model"
# Prompt for videos without per-object categories (real SA-V masklets are class-agnostic).
DEFAULT_PROMPT = "object"


def timestamped_run_dir(prefix: str, runs_dir: Path = DEFAULT_RUNS_DIR) -> Path:
    """``runs/<prefix>-YYYYmmdd-HHMMSS`` (local time)."""
    return runs_dir / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


@dataclass(frozen=True)
class ImageStageConfig:
    """Train every student parameter on single annotated frames, supervised by ground truth.

    With ``teacher`` set, FPN level 3 (what the temporal memory stores) is also pulled towards the
    teacher's level 3 by an MSE term weighted ``feature_align_weight``. Frames the synthetic data
    marks as degraded are left out unless ``include_degraded_frames`` (the image model learns from
    clean frames; the video stage is where degraded frames are worth learning from).
    """

    sav_root: Path
    out_dir: Path
    preset: str = "tiny"
    init_checkpoint: Path | None = None
    teacher: Path | None = None
    feature_align_weight: float = 1.0
    steps: int = 300
    batch_size: int = 1
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 20
    grad_clip: float = 1.0
    max_objects_per_frame: int = 20
    absent_prompt_prob: float = 0.2
    include_degraded_frames: bool = False
    annotation_type: str = "manual"
    loss_weights: LossWeights = field(default_factory=LossWeights)
    seed: int = 0
    device: str = "cpu"
    show_progress: bool = True

    def __post_init__(self) -> None:
        _check_positive(self, ("steps", "batch_size", "lr", "max_objects_per_frame"))
        _check_probability(self, "absent_prompt_prob")


@dataclass(frozen=True)
class VideoDistillationConfig:
    """Train ``perceiver_resampler`` + ``memory_cross_attn`` on SA-V clips; everything else is frozen.

    Steps are optimizer steps (``batch_size * grad_accum`` clips each). An epoch is one pass over
    this process's share of the clips (every process runs the same number of steps) unless
    ``steps_per_epoch`` fixes it. ``degraded_fraction`` (synthetic data only) draws that share of
    each epoch's query frames from the frames marked degraded; None keeps the natural mix.
    ``stop_after_steps`` ends a run early without changing its schedule (resume continues it).
    """

    sav_root: Path = Path("data/sa_v/sav_train")
    cache_dir: Path = Path("data/sa_v/cached_features")
    out_dir: Path | None = None  # None: runs/video-<timestamp>
    student_checkpoint: Path | None = None  # None: the latest image-stage student under runs_dir
    runs_dir: Path = DEFAULT_RUNS_DIR
    resume: Path | None = None
    annotation_type: str = "manual"
    context_frames: int = 8
    max_objects_per_frame: int = 20
    epochs: int = 5
    steps_per_epoch: int | None = None
    # issue #16's recipe: the cross-attention at 1e-3, the perceiver at 1e-4 (the plan's rate), hide 0.5
    lr: float = 1e-3
    perceiver_lr_scale: float = 0.1  # the perceiver trains at lr * this (training.video.memory_param_groups)
    weight_decay: float = 0.01
    warmup_steps: int = 200
    min_lr_ratio: float = 0.0
    batch_size: int = 1
    grad_accum: int = 4
    grad_clip: float = 1.0
    loss_weights: LossWeights = field(default_factory=LossWeights)
    absent_prompt_prob: float = 0.2
    degraded_fraction: float | None = None
    # training.memory_tasks: hide one object of the query frame under a grey box with this probability,
    # and mask each valid context slot with this probability (0: off)
    hide_object_prob: float = 0.5
    slot_dropout: float = 0.0
    # train the perceiver with QK-norm (efficient_sam3 MemoryConfig.perceiver_qk_norm); a student saved
    # without it gets fresh query/key norms, and the trained model is saved with it
    perceiver_qk_norm: bool = False
    # train the perceiver with values that do not carry the position encodings
    # (MemoryConfig.perceiver_value_pos False); the trained model is saved with it
    perceiver_values_without_position: bool = False
    checkpoint_every: int = 100
    diagnostics_every: int = 25  # memory diagnostics (training.memory_diagnostics) every this many steps
    stop_after_steps: int | None = None
    max_videos: int | None = None
    debug: bool = False
    seed: int = 0
    device: str = "cpu"
    show_progress: bool = True

    def __post_init__(self) -> None:
        _check_positive(self, ("context_frames", "max_objects_per_frame", "epochs", "lr", "batch_size",
                               "grad_accum", "checkpoint_every", "diagnostics_every"))
        for name in ("steps_per_epoch", "stop_after_steps", "max_videos"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"VideoDistillationConfig.{name} must be positive or None, got {value}")
        if self.perceiver_lr_scale < 0:
            raise ValueError(f"VideoDistillationConfig.perceiver_lr_scale must be >= 0, got {self.perceiver_lr_scale}")
        if self.warmup_steps < 0:
            raise ValueError(f"VideoDistillationConfig.warmup_steps must be >= 0, got {self.warmup_steps}")
        _check_probability(self, "absent_prompt_prob")
        if self.degraded_fraction is not None:
            _check_probability(self, "degraded_fraction")
        _check_probability(self, "hide_object_prob")
        _check_probability(self, "slot_dropout")

    def to_dict(self) -> dict:
        return config_to_dict(self)


# Fields that must agree between a checkpoint and the run that resumes it (they fix the data order,
# the schedule and the optimisation, so the resumed run continues the same sequence).
RESUME_FIELDS = ("context_frames", "max_objects_per_frame", "epochs", "steps_per_epoch", "lr", "perceiver_lr_scale",
                 "weight_decay", "warmup_steps", "min_lr_ratio", "batch_size", "grad_accum", "grad_clip",
                 "loss_weights", "absent_prompt_prob", "degraded_fraction", "hide_object_prob", "slot_dropout",
                 "perceiver_qk_norm", "perceiver_values_without_position", "max_videos", "seed", "annotation_type")


@dataclass(frozen=True)
class PipelineConfig:
    """The offline default pipeline and its budgets (``python -m training.video`` with no data flags).

    Budgets are step counts, so a run is reproducible; its wall time depends on the machine. The
    defaults are sized for a run of minutes on an idle 2-core CPU with the tiny preset.

    There is no SAM3 teacher offline, so the features cached for the video stage are the image-stage
    student's own FPN level 3 -- exactly what a device has at run time. Memory ON (cached features)
    and memory ON (student features) then differ only by the cache's float16 rounding.

    The video stage trains with issue #16's recipe (as ``VideoDistillationConfig``): the memory
    cross-attention at 1e-3, the perceiver at 1e-4 (the plan's rate; ``video_perceiver_lr_scale`` 0.1;
    trained at 3e-3 it collapsed to a content-free summary), and half the clips hide one object of the
    query frame (``video_hide_object_prob``), so that the query frame alone is not enough. Departures
    from the plan's video defaults, for a run of a few hundred optimizer steps: ``video_grad_accum`` 1,
    20 warm-up steps, and half the query frames drawn from degraded frames, where memory can help. The scene
    uses 3 colours x 3 shapes (9 prompts) instead of 6 x 6 so that a few hundred image steps learn
    something. The README holds the measured wall time and scores of a default run.
    """

    out_dir: Path | None = None  # None: runs/pipeline-<timestamp>
    preset: str = "tiny"
    seed: int = 0
    device: str = "cpu"
    num_train_videos: int = 24
    num_heldout_videos: int = 6
    scene: SceneConfig = field(default_factory=lambda: SceneConfig(
        min_frames=41, max_frames=63, min_objects=1, max_objects=3, min_size=0.15, max_size=0.3,
        shapes=("circle", "square", "triangle"), colours=("red", "green", "blue")))
    image_steps: int = 300
    image_batch_size: int = 1
    image_lr: float = 1e-3
    image_warmup_steps: int = 20
    video_epochs: int = 1
    video_steps_per_epoch: int = 200
    video_lr: float = VideoDistillationConfig.lr  # issue #16's recipe, defined once (VideoDistillationConfig)
    # 0: the perceiver keeps its initialisation
    video_perceiver_lr_scale: float = VideoDistillationConfig.perceiver_lr_scale
    video_warmup_steps: int = 20
    video_grad_accum: int = 1
    video_degraded_fraction: float = 0.5
    # issue #16's recipe options (training.memory_tasks; MemoryConfig.perceiver_qk_norm and
    # perceiver_value_pos); 0 / False: off
    video_hide_object_prob: float = VideoDistillationConfig.hide_object_prob
    video_slot_dropout: float = 0.0
    video_perceiver_qk_norm: bool = False
    video_perceiver_values_without_position: bool = False
    context_frames: int = 8
    # Absent phrases prompted per held-out video for the concept metrics (each adds a decode per frame).
    eval_negative_prompts: int = 1
    show_progress: bool = True

    @classmethod
    def smoke(cls, out_dir: Path | None = None) -> "PipelineConfig":
        """A few steps on a handful of short videos: checks the wiring, not the numbers."""
        return cls(
            out_dir=out_dir,
            num_train_videos=2,
            num_heldout_videos=1,
            scene=SceneConfig(frame_sizes=((64, 48), (48, 64)), min_frames=13, max_frames=19, min_objects=1,
                              max_objects=2, min_size=0.3, max_size=0.45),
            image_steps=3,
            image_warmup_steps=1,
            video_steps_per_epoch=2,
            video_warmup_steps=1,
            show_progress=False,
        )

    def to_dict(self) -> dict:
        return config_to_dict(self)


def config_to_dict(config) -> dict:
    """JSON-ready dict of a (nested) config dataclass: paths become strings, tuples lists."""

    def convert(value):
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        return value

    return convert(config)


def _check_positive(config, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(config, name)
        if not value > 0:
            raise ValueError(f"{type(config).__name__}.{name} must be positive, got {value}")


def _check_probability(config, name: str) -> None:
    value = getattr(config, name)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{type(config).__name__}.{name} must be in [0, 1], got {value}")
