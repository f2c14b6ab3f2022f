"""Video stage: train the temporal memory (perceiver_resampler + memory_cross_attn) on SA-V clips.

    python -m training.video --sav-root DIR --cache-dir DIR [--student-ckpt DIR] [--out DIR] [--resume [PATH]]
    torchrun --nproc_per_node K -m training.video --sav-root DIR --cache-dir DIR ...
    python -m training.video [--out DIR]      # no data flags: the offline default pipeline (training.pipeline)

Each clip is T cached context features + one decoded query frame (``SAVVideoDataset``) with ONE text
prompt (``training.batch``). Everything but the memory modules is frozen and in eval mode; the image
encoder and the text encoder run without autograd, and gradients reach the memory modules through
the frozen DETR decoder and mask decoder. No teacher is loaded: context features come from the cache.
``perceiver_lr_scale`` sets the perceiver's rate relative to the cross-attention's (0: the perceiver keeps its
initialisation and only ``memory_cross_attn`` is trained and checkpointed; see ``trained_modules``).
Writes ``<out>/checkpoints/last.pt`` (trainable modules + optimizer + scheduler + step + RNG),
``<out>/log.jsonl``, ``<out>/loss_curves.png`` and ``<out>/final_model`` (save_pretrained).
Ctrl-C and SIGTERM stop the run the same way: the last checkpoint stays (written atomically), exit
130, and ``--resume <out>`` continues the same schedule. Bad input (flags, checkpoints, data, an output
that cannot be written) is one ``error:`` line and exit 2 (``efficient_sam3.cli``).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from efficient_sam3.checkpoint import load_pretrained
from efficient_sam3.cli import INTERRUPTED_EXIT, ArgumentParser, fail, non_negative_float, non_negative_int, \
    positive_float, positive_int, probability, sigterm_as_interrupt
from efficient_sam3.files import check_creatable, write_json_atomic
from efficient_sam3.freeze import VIDEO_TRAINABLE_MODULES, freeze_for_video_distillation, set_frozen_eval
from efficient_sam3.outputs import SegmentationOutput
from training.batch import PromptedBatch, PromptTokenizer, build_batch, sample_rng
from training.checkpoint import LAST_CHECKPOINT, check_trainable_modules, load_training_checkpoint, \
    save_training_checkpoint
from training.clip_order import epoch_order, samples_per_epoch
from training.config import FINAL_MODEL_DIR, IMAGE_STAGE_CHECKPOINT, RESUME_FIELDS, VideoDistillationConfig, \
    timestamped_run_dir
from training.data.sav import find_videos
from training.data.video_dataset import SAVVideoDataset
from training.distributed import DistributedContext, average_gradients, barrier, broadcast_object, \
    broadcast_parameters, device_flag, init_distributed, mean_over_ranks, shutdown
from training.frame_dataset import read_video_facts
from training.image import seed_everything
from training.losses import SegmentationLoss
from training.memory_tasks import MemoryTaskConfig, augment_clip, task_rng
from training.memory_diagnostics import MemoryDiagnostics, measure_memory, summarise
from training.run_log import LOG_FILE, PLOT_FILE, RunLog, plot_loss_curves
from training.schedule import warmup_cosine_scheduler
from training.teacher import weights_sha256
from training.cpu_allocator import keep_freed_memory_mapped

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
DEBUG_MAX_VIDEOS = 2
DEBUG_STEPS = 3


@dataclass(frozen=True)
class VideoStageResult:
    out_dir: Path
    checkpoint: Path
    final_model: Path
    log_path: Path
    plot_path: Path
    steps: int  # optimizer steps completed (including those before a resume)
    total_steps: int  # steps of the full schedule
    final_loss: float
    missing_keys: list[str]  # memory-module keys the student checkpoint lacked (kept at initialisation)
    trainable_sha256: str  # hash of the trained parameters (identical on every rank)
    wall_time_s: float
    rank: int  # this process's rank (0 without torchrun)
    # training.memory_diagnostics.summarise of the measurements logged during the run ({} if none could be made)
    memory_diagnostics: dict = field(default_factory=dict)


def find_latest_student(runs_dir: Path) -> Path:
    """The newest image-stage student (``<run>/student/model.safetensors``) anywhere under ``runs_dir``."""
    candidates = [path.parent for path in Path(runs_dir).glob(f"**/{IMAGE_STAGE_CHECKPOINT}/model.safetensors")]
    if not candidates:
        raise FileNotFoundError(f"{runs_dir}: no image-stage checkpoint (*/{IMAGE_STAGE_CHECKPOINT}/model.safetensors);"
                                f" run python -m training.image first or pass --student-ckpt")
    return max(candidates, key=lambda path: (path / "model.safetensors").stat().st_mtime)


def resolve_resume(resume: Path) -> Path:
    """A checkpoint file, or a run folder whose ``checkpoints/last.pt`` is used."""
    resume = Path(resume)
    if resume.is_dir():
        resume = resume / CHECKPOINT_DIR / LAST_CHECKPOINT
    if not resume.is_file():
        raise FileNotFoundError(f"{resume}: no training checkpoint to resume from")
    return resume


def memory_forward(model, batch: PromptedBatch) -> SegmentationOutput:
    """Frozen encoders without autograd, then the memory path and the heads with autograd."""
    with torch.no_grad():
        vision = model.encode_image(batch.pixel_values)
        text = model.encode_text(batch.input_ids, batch.attention_mask)
    return model.forward_video(None, None, batch.memory_features, batch.memory_mask, vision=vision, text=text)


def trained_modules(perceiver_lr_scale: float) -> tuple[str, ...]:
    """The memory modules a run trains and checkpoints: both, or only ``memory_cross_attn`` when
    ``perceiver_lr_scale`` is 0 and the perceiver keeps its initialisation.

    Why a separate perceiver rate: at a rate that trains the cross-attention in a few hundred steps, the
    perceiver learns a constant summary that drowns its content. Measured on the default pipeline (200 steps
    at 3e-3): the relative difference between two videos' memory tokens fell from 0.34 at initialisation to
    0.006, and another video's memory then scored as well as the true one (40.9 vs 40.8 J&F); at 0.1x the
    rate the tokens kept 0.25 but the cross-attention learned to ignore it (39.8 vs 39.8); with the
    perceiver left at initialisation, the true memory beat another video's by 1.4 J&F (38.8 vs 37.4).
    The default (issue #16's recipe: cross-attention 1e-3, perceiver 0.1x, hide 0.5) keeps the content, and
    after 2,000 steps it is worth +6.2 to +6.9 J&F over another video's memory on 24 held-out videos (README).
    """
    if perceiver_lr_scale == 0:
        return tuple(name for name in VIDEO_TRAINABLE_MODULES if name != "perceiver_resampler")
    return VIDEO_TRAINABLE_MODULES


def memory_param_groups(model, lr: float, perceiver_lr_scale: float) -> list[dict]:
    """Optimizer groups: ``memory_cross_attn`` at ``lr`` (first, so the logged lr is its), and the perceiver
    at ``lr * perceiver_lr_scale`` unless that is 0."""
    names = sorted(trained_modules(perceiver_lr_scale), key=lambda name: name != "memory_cross_attn")
    return [{"params": list(getattr(model, name).parameters()),
             "lr": lr * perceiver_lr_scale if name == "perceiver_resampler" else lr} for name in names]


def use_perceiver_qk_norm(model) -> None:
    """Give the student's perceiver QK-norm (``MemoryConfig.perceiver_qk_norm``) unless it has it, and record
    it in the model's config (saved checkpoints then rebuild it)."""
    if model.config.memory.perceiver_qk_norm:
        return
    model.perceiver_resampler.enable_qk_norm()
    model.config = replace(model.config, memory=replace(model.config.memory, perceiver_qk_norm=True))


def use_perceiver_values_without_position(model) -> None:
    """Make the student's perceiver read values without the position encodings (``MemoryConfig.perceiver_value_pos``
    False; no parameter changes) and record it in the model's config."""
    model.perceiver_resampler.value_pos = False
    model.config = replace(model.config, memory=replace(model.config.memory, perceiver_value_pos=False))


PROBE_CLIPS = 4  # clips of different videos the memory diagnostics compare


def memory_probe(dataset: SAVVideoDataset, clip_keys: list[tuple[str, int]], facts: dict, tokenizer: PromptTokenizer,
                 seed: int) -> PromptedBatch | None:
    """The fixed batch the memory diagnostics run on: from each of the first PROBE_CLIPS videos (sorted by
    id) its last clip (the most context), prompted with a phrase present in it. None with fewer than two
    videos (retention compares clips of different videos)."""
    last: dict[str, int] = {}
    for index, (video, query) in enumerate(clip_keys):
        if video not in last or query > clip_keys[last[video]][1]:
            last[video] = index
    videos = sorted(last)[:PROBE_CLIPS]
    if len(videos) < 2:
        return None
    items = [dataset[last[video]] for video in videos]
    categories = [list(facts[item["video_id"]].categories) for item in items]
    rngs = [np.random.default_rng([seed, 0x9E37, position]) for position in range(len(items))]
    return build_batch(items, categories, rngs, tokenizer, absent_prompt_prob=0.0)


def _diagnose(model, probe: PromptedBatch, step: int, progress) -> MemoryDiagnostics:
    """Measure the memory on the probe; a collapse is printed at once, above the progress bar."""
    diagnostics = measure_memory(model, memory_forward, probe)
    if diagnostics.collapsed:
        progress.write(f"WARNING video stage step {step}: {diagnostics.warning()}", file=sys.stderr)
    return diagnostics


def trainable_sha256(model) -> str:
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def train_video_stage(config: VideoDistillationConfig) -> VideoStageResult:
    context = init_distributed(config.device)
    try:
        return _train(_apply_debug(config), context)
    finally:
        shutdown(context)


def _apply_debug(config: VideoDistillationConfig) -> VideoDistillationConfig:
    if not config.debug:
        return config
    return replace(config, max_videos=config.max_videos or DEBUG_MAX_VIDEOS,
                   stop_after_steps=config.stop_after_steps or DEBUG_STEPS, checkpoint_every=1)


@dataclass
class _Student:
    """The student being trained: its folder, what loading it reported, and its trainable parameters."""

    directory: Path
    model: torch.nn.Module
    missing_keys: list[str]
    modules: tuple[str, ...]
    params: list[torch.nn.Parameter]
    names: list[str]


@dataclass(frozen=True)
class _ClipPlan:
    """The clips of the run and how they are spread over epochs and steps."""

    dataset: SAVVideoDataset
    facts: dict
    clip_keys: list[tuple[str, int]]
    degraded_keys: set[tuple[str, int]]
    allowed: set[str] | None
    epoch_length: int
    steps_per_epoch: int
    total_steps: int
    end_step: int


def _load_student(config: VideoDistillationConfig, context: DistributedContext) -> _Student:
    """The image-stage student with only the memory modules trainable, on the run's device."""
    directory = config.student_checkpoint or find_latest_student(config.runs_dir)
    directory = Path(broadcast_object(str(directory), context))
    seed_everything(config.seed)  # memory modules missing from the student are initialised identically
    loaded = load_pretrained(directory)
    model = loaded.model
    if context.is_main and loaded.missing_keys:
        print(f"{directory}: {len(loaded.missing_keys)} memory-module keys missing, kept at initialisation: "
              + ", ".join(loaded.missing_keys))
    if model.config.memory.context_frames != config.context_frames:
        raise ValueError(f"{directory}: the student's memory.context_frames is {model.config.memory.context_frames} "
                         f"(preset {model.config.preset!r}), this run uses context_frames {config.context_frames}")
    if config.perceiver_qk_norm:
        use_perceiver_qk_norm(model)
    if config.perceiver_values_without_position:
        use_perceiver_values_without_position(model)
    modules = trained_modules(config.perceiver_lr_scale)
    freeze_for_video_distillation(model, modules)
    check_trainable_modules(model, modules)
    model.to(context.device)
    model.train()
    set_frozen_eval(model)
    params = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    broadcast_parameters(params, context)
    return _Student(directory, model, list(loaded.missing_keys), modules, params, names)


def _plan_clips(config: VideoDistillationConfig, image_size: int, context: DistributedContext) -> _ClipPlan:
    """Read the SA-V clips (bad videos skipped and reported) and size the epochs."""
    dataset = SAVVideoDataset(config.sav_root, config.cache_dir, context_frames=config.context_frames,
                              annotation_type=config.annotation_type,
                              max_objects_per_frame=config.max_objects_per_frame,
                              image_size=image_size, skip_bad_videos=True)
    if len(dataset) == 0:
        reasons = "; ".join(bad.reason for bad in dataset.bad_videos[:3]) or "no SA-V videos in this folder or below it"
        raise ValueError(f"{config.sav_root}: no clips ({len(dataset.bad_videos)} bad videos: {reasons})")
    facts = read_video_facts(config.sav_root, config.annotation_type)
    clip_keys = [dataset.item_key(index) for index in range(len(dataset))]
    degraded_keys = {(v, q) for v, q in clip_keys if q in facts[v].degraded_frames}
    allowed = set(sorted({v for v, _ in clip_keys})[: config.max_videos]) if config.max_videos else None
    clips_per_step = config.batch_size * config.grad_accum
    num_clips = sum(1 for v, _ in clip_keys if allowed is None or v in allowed)
    epoch_length = samples_per_epoch(num_clips, context.world_size, clips_per_step, config.steps_per_epoch)
    steps_per_epoch = epoch_length // clips_per_step
    total_steps = config.epochs * steps_per_epoch
    end_step = min(total_steps, config.stop_after_steps or total_steps)
    return _ClipPlan(dataset, facts, clip_keys, degraded_keys, allowed, epoch_length, steps_per_epoch, total_steps,
                     end_step)


def _accumulate_gradients(config: VideoDistillationConfig, context: DistributedContext, model, plan: _ClipPlan,
                          order: list[int], epoch: int, step_in_epoch: int, step: int, tokenizer: PromptTokenizer,
                          loss_fn: SegmentationLoss) -> dict[str, float]:
    """Forward and backward of one optimizer step's micro-batches; returns the step's mean loss terms."""
    sums: dict[str, float] = defaultdict(float)
    tasks = MemoryTaskConfig(config.hide_object_prob, config.slot_dropout)
    for micro in range(config.grad_accum):
        first = (step_in_epoch * config.grad_accum + micro) * config.batch_size
        positions = range(first, first + config.batch_size)
        items = [plan.dataset[order[p]] for p in positions]
        if tasks.active:
            items = [augment_clip(item, tasks, task_rng(config.seed, epoch, context.rank, p))
                     for item, p in zip(items, positions)]
        categories = [list(plan.facts[item["video_id"]].categories) for item in items]
        rngs = [sample_rng(config.seed, epoch, context.rank, p) for p in positions]
        batch = build_batch(items, categories, rngs, tokenizer, config.absent_prompt_prob).to(context.device)
        output = memory_forward(model, batch)
        losses = loss_fn(output.pred_masks, output.pred_boxes, output.pred_logits, output.presence_logits,
                         output.iou_scores, batch.gt_masks, batch.gt_boxes)
        if not torch.isfinite(losses.total):
            raise FloatingPointError(f"video stage step {step}: non-finite loss "
                                     f"{ {k: float(v) for k, v in losses.terms.items()} } on {batch.video_ids}")
        (losses.total / config.grad_accum).backward()
        sums["loss"] += float(losses.total.detach()) / config.grad_accum
        for name, value in losses.terms.items():
            sums[name] += float(value) / config.grad_accum
        sums["num_matched"] += losses.num_matched
    return sums


def _save_final(model, final_model: Path, log_path: Path, plot_path: Path, student_dir: Path) -> None:
    """The trained model as a checkpoint folder, and the loss curves as a picture."""
    model.eval()
    model.save_pretrained(final_model)
    if log_path.stat().st_size > 0:
        plot_loss_curves(log_path, plot_path, title=f"video stage ({student_dir.name})")


def _train(config: VideoDistillationConfig, context: DistributedContext) -> VideoStageResult:
    started = time.perf_counter()
    resume_path = resolve_resume(config.resume) if config.resume is not None else None
    out_dir = config.out_dir or (resume_path.parent.parent if resume_path
                                 else timestamped_run_dir("video", config.runs_dir))
    out_dir = Path(broadcast_object(str(out_dir), context))
    if context.is_main:
        check_creatable(out_dir, "run folder", folder=True)  # before any work
    if not find_videos(config.sav_root, config.annotation_type):
        raise ValueError(f"{config.sav_root}: no SA-V videos (*.mp4 with *_{config.annotation_type}.json) "
                         f"in this folder or below it")
    student = _load_student(config, context)
    model, params = student.model, student.params
    plan = _plan_clips(config, model.config.image_size, context)

    optimizer = torch.optim.AdamW(memory_param_groups(model, config.lr, config.perceiver_lr_scale),
                                  weight_decay=config.weight_decay)
    scheduler = warmup_cosine_scheduler(optimizer, config.warmup_steps, plan.total_steps, config.min_lr_ratio)
    run_config = {**config.to_dict(), "world_size": context.world_size,
                  "steps_per_epoch_resolved": plan.steps_per_epoch}
    provenance = {"path": str(student.directory), "sha256": weights_sha256(student.directory)}
    step = 0
    if resume_path is not None:
        saved = load_training_checkpoint(resume_path, model, student.modules, optimizer, scheduler)
        _check_resume_compatible(saved.config, run_config, saved.student, provenance, resume_path)
        step = saved.step
    loss_fn = SegmentationLoss(weights=config.loss_weights)
    tokenizer = PromptTokenizer(model)

    checkpoint_path = out_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    log_path, plot_path = out_dir / LOG_FILE, out_dir / PLOT_FILE
    run_log = RunLog(log_path, resume_from_step=step if resume_path else None) if context.is_main else None
    if context.is_main:
        write_json_atomic(out_dir / "video_config.json", {**run_config, "student": provenance}, indent=2)
    saw_gradient = dict.fromkeys(student.names, False)
    orders: dict[int, list[int]] = {}
    row: dict = {}
    progress = tqdm(total=plan.end_step, initial=step, desc="video stage", unit="step",
                    disable=not (config.show_progress and context.is_main))
    probe = (memory_probe(plan.dataset, plan.clip_keys, plan.facts, tokenizer, config.seed)
             if context.is_main else None)
    diagnostics_log: list[dict] = []
    if probe is not None:
        probe = probe.to(context.device)
        first = _diagnose(model, probe, step, progress)
        diagnostics_log.append({"step": step, **first.as_row()})  # before training: in the summary, not the log
    while step < plan.end_step:
        step_started = time.perf_counter()
        epoch, step_in_epoch = divmod(step, plan.steps_per_epoch)
        if epoch not in orders:
            orders = {epoch: epoch_order(plan.clip_keys, plan.degraded_keys, plan.epoch_length, config.seed, epoch,
                                         context.rank, context.world_size, config.degraded_fraction, plan.allowed)}
        optimizer.zero_grad(set_to_none=True)
        sums = _accumulate_gradients(config, context, model, plan, orders[epoch], epoch, step_in_epoch, step,
                                     tokenizer, loss_fn)
        average_gradients(params, context)
        if config.debug:
            _check_gradients(model, student.names, saw_gradient, step)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        scheduler.step()
        step += 1
        metrics = mean_over_ranks({**sums, "grad_norm": float(grad_norm)}, context)
        if context.is_main:
            row = {"step": step, "epoch": epoch, "lr": scheduler.get_last_lr()[0], **metrics,
                   "memory_gate": float(torch.tanh(model.memory_cross_attn.gate.detach()).item()),
                   "steps_per_s": 1.0 / (time.perf_counter() - step_started)}
            if probe is not None and (step % config.diagnostics_every == 0 or step == plan.end_step):
                measured = _diagnose(model, probe, step, progress).as_row()
                diagnostics_log.append({"step": step, **measured})
                row.update(measured)
            run_log.write(row)
            progress.update(1)
            progress.set_postfix(loss=f"{row['loss']:.3f}", steps_per_s=f"{row['steps_per_s']:.2f}")
        if step % config.checkpoint_every == 0 or step == plan.end_step:
            if context.is_main:
                save_training_checkpoint(checkpoint_path, model, student.modules, optimizer, scheduler,
                                         step, run_config, provenance)
            barrier(context)
    progress.close()
    if config.debug:
        never = [name for name, seen in saw_gradient.items() if not seen]
        if never:
            raise AssertionError(f"debug: trainable parameters never received a nonzero gradient: {never}")
    digest = trainable_sha256(model)
    if config.debug:
        write_json_atomic(out_dir / f"debug_rank{context.rank}.json",
                          {"rank": context.rank, "step": step, "trainable_sha256": digest})
    final_model = out_dir / FINAL_MODEL_DIR
    if context.is_main:
        run_log.close()
        if not checkpoint_path.exists():  # a resume at the end step: nothing trained, keep the file current
            save_training_checkpoint(checkpoint_path, model, student.modules, optimizer, scheduler,
                                     step, run_config, provenance)
        _save_final(model, final_model, log_path, plot_path, student.directory)
    barrier(context)
    return VideoStageResult(out_dir=out_dir, checkpoint=checkpoint_path, final_model=final_model, log_path=log_path,
                            plot_path=plot_path, steps=step, total_steps=plan.total_steps,
                            final_loss=row.get("loss", math.nan), missing_keys=student.missing_keys,
                            trainable_sha256=digest, wall_time_s=time.perf_counter() - started,
                            rank=context.rank, memory_diagnostics=summarise(diagnostics_log))


def _check_gradients(model, names: list[str], saw_gradient: dict[str, bool], step: int) -> None:
    """Debug: every trainable gradient finite, frozen parameters without gradients."""
    for name, param in model.named_parameters():
        if not param.requires_grad:
            if param.grad is not None:
                raise AssertionError(f"debug step {step}: frozen parameter {name} has a gradient")
            continue
        if param.grad is None:
            continue
        if not torch.isfinite(param.grad).all():
            raise AssertionError(f"debug step {step}: non-finite gradient in {name}")
        if param.grad.abs().sum() > 0:
            saw_gradient[name] = True


def _check_resume_compatible(saved: dict, current: dict, saved_student: dict, student: dict, path: Path) -> None:
    fields = (*RESUME_FIELDS, "world_size", "steps_per_epoch_resolved")
    differences = {name: (saved.get(name), current.get(name))
                   for name in fields if saved.get(name) != current.get(name)}
    if differences:
        raise ValueError(f"{path}: cannot resume, settings differ from the checkpoint (saved, now): {differences}")
    if saved_student.get("sha256") != student["sha256"]:
        raise ValueError(f"{path}: cannot resume, the frozen weights come from {saved_student.get('path')} "
                         f"(sha256 {saved_student.get('sha256', '')[:16]}), not {student['path']} "
                         f"(sha256 {student['sha256'][:16]})")


def build_parser() -> argparse.ArgumentParser:
    defaults = VideoDistillationConfig()
    parser = ArgumentParser(
        description="Video stage: train the temporal memory on SA-V clips with cached features. Without "
                    "--sav-root it runs the offline default pipeline (synthetic data, image stage, feature "
                    "caching, video stage, memory ON/OFF evaluation) in --out.")
    parser.add_argument("--sav-root", type=Path, help="SA-V train-layout folder (omit for the default pipeline)")
    parser.add_argument("--cache-dir", type=Path, help="feature cache folder (<video_id>.safetensors)")
    parser.add_argument("--student-ckpt", type=Path, help="image-stage student (default: latest under --runs-dir)")
    parser.add_argument("--runs-dir", type=Path, default=defaults.runs_dir)
    parser.add_argument("--resume", type=Path, nargs="?", const=Path("__out__"),
                        help="checkpoint file or run folder; bare --resume continues --out")
    parser.add_argument("--out", type=Path, help="run folder (default runs/video-<timestamp>)")
    parser.add_argument("--debug", action="store_true",
                        help=f"{DEBUG_STEPS} steps on {DEBUG_MAX_VIDEOS} videos, checking losses and gradients "
                             f"(without --sav-root: a smoke run of the default pipeline)")
    parser.add_argument("--device", type=device_flag, default=defaults.device)
    parser.add_argument("--lr", type=positive_float, default=defaults.lr)
    parser.add_argument("--perceiver-lr-scale", type=non_negative_float, default=defaults.perceiver_lr_scale,
                        help="the perceiver trains at lr * this; 0 keeps it at its initialisation")
    parser.add_argument("--epochs", type=positive_int, default=defaults.epochs)
    parser.add_argument("--steps-per-epoch", type=positive_int, default=defaults.steps_per_epoch)
    parser.add_argument("--warmup-steps", type=non_negative_int, default=defaults.warmup_steps)
    parser.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    parser.add_argument("--grad-accum", type=positive_int, default=defaults.grad_accum)
    parser.add_argument("--degraded-fraction", type=probability, default=defaults.degraded_fraction,
                        help="share of query frames drawn from synthetic degraded frames")
    parser.add_argument("--hide-object-prob", type=probability, default=defaults.hide_object_prob,
                        help="share of clips whose query frame hides one random object under a grey box (the "
                             "ground truth keeps it: only the memory can tell what is hidden)")
    parser.add_argument("--slot-dropout", type=probability, default=defaults.slot_dropout,
                        help="each valid context slot is masked with this probability (one always stays)")
    parser.add_argument("--perceiver-qk-norm", action="store_true",
                        help="normalise the perceiver's queries and keys per head (bounded attention logits)")
    parser.add_argument("--perceiver-values-without-position", action="store_true",
                        help="the perceiver's values hold the context features without their position and slot "
                             "encodings (its keys keep them), so it cannot answer with a content-free map")
    parser.add_argument("--checkpoint-every", type=positive_int, default=defaults.checkpoint_every)
    parser.add_argument("--diagnostics-every", type=positive_int, default=defaults.diagnostics_every,
                        help="measure what the memory holds (retention, perceiver attention) every N steps")
    parser.add_argument("--stop-after-steps", type=positive_int, help="end early; --resume continues the same schedule")
    parser.add_argument("--max-videos", type=positive_int, help="train on the first N videos only")
    parser.add_argument("--annotation-type", choices=("manual", "auto"), default=defaults.annotation_type)
    parser.add_argument("--seed", type=non_negative_int, default=defaults.seed)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.sav_root is None:
        pipeline_flags = {"out", "debug", "device", "seed"}
        ignored = sorted(name for name, value in vars(args).items()
                         if name not in pipeline_flags and value != parser.get_default(name))
        if ignored:
            parser.error(f"{', '.join('--' + n.replace('_', '-') for n in ignored)}: only with --sav-root (without it the "
                         f"default pipeline runs on its own synthetic data and takes only --out, --debug, --device, "
                         f"--seed)")
    elif args.cache_dir is None:
        parser.error("--cache-dir: required with --sav-root")
    resume = args.resume
    if resume == Path("__out__"):
        if args.out is None:
            parser.error("--resume: a bare --resume needs --out (the run folder to continue)")
        resume = args.out
    sigterm_as_interrupt()
    keep_freed_memory_mapped()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.sav_root is None:
        return _run_pipeline(args)
    out_dir = args.out or (None if resume is not None else timestamped_run_dir("video", args.runs_dir))
    try:
        config = VideoDistillationConfig(
            sav_root=args.sav_root, cache_dir=args.cache_dir, out_dir=out_dir, student_checkpoint=args.student_ckpt,
            runs_dir=args.runs_dir, resume=resume, annotation_type=args.annotation_type, epochs=args.epochs,
            steps_per_epoch=args.steps_per_epoch, lr=args.lr, perceiver_lr_scale=args.perceiver_lr_scale,
            warmup_steps=args.warmup_steps, batch_size=args.batch_size, grad_accum=args.grad_accum,
            degraded_fraction=args.degraded_fraction, hide_object_prob=args.hide_object_prob,
            slot_dropout=args.slot_dropout, perceiver_qk_norm=args.perceiver_qk_norm,
            perceiver_values_without_position=args.perceiver_values_without_position, checkpoint_every=args.checkpoint_every, diagnostics_every=args.diagnostics_every,
            stop_after_steps=args.stop_after_steps, max_videos=args.max_videos,
            debug=args.debug, seed=args.seed, device=args.device,
            show_progress=sys.stderr.isatty())  # a progress bar on a terminal, not in logs
        result = train_video_stage(config)
    except (OSError, ValueError) as error:
        return fail(error)
    except KeyboardInterrupt:
        run = out_dir or resume
        print(f"interrupted: {run} keeps its last checkpoint; continue with --resume {run}", file=sys.stderr)
        return INTERRUPTED_EXIT
    if result.rank == 0:
        print(f"video stage: {result.steps}/{result.total_steps} steps, final loss {result.final_loss:.4f}, "
              f"{result.wall_time_s:.0f} s; checkpoint {result.checkpoint}; model {result.final_model}")
    return 0


def _run_pipeline(args: argparse.Namespace) -> int:
    """The offline default pipeline (no --sav-root), with the same error and interrupt handling."""
    from training.config import PipelineConfig
    from training.pipeline import run_default_pipeline

    pipeline = PipelineConfig.smoke(args.out) if args.debug else PipelineConfig(out_dir=args.out)
    pipeline = replace(pipeline, device=args.device, seed=args.seed)
    try:
        run_default_pipeline(pipeline)
    except (OSError, ValueError) as error:
        return fail(error)
    except KeyboardInterrupt:
        print(f"interrupted: {args.out or 'the pipeline run folder'} is incomplete; start a new run", file=sys.stderr)
        return INTERRUPTED_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
