"""Training-side throughput on synthetic SA-V-format data (``training.synthetic``), random weights.

``write_synthetic`` makes the data (the int8 export calibrates on the same videos).

* teacher caching (``training.cache_teacher.cache_features``): frames/s (decode + preprocess + encode +
  write) and bytes/frame, with the student checkpoint as teacher and, unless ``quick``, SAM3's vision
  tower at 504 px (random weights written as a ``sam3`` checkpoint holding only ``vision_encoder.*``),
  on the first video only;
* the clip dataset (``SAVVideoDataset``): items/s of ``dataset[i]`` (query-frame decode + cache read),
  ``training.data.video_dataset.measure_dataset_throughput``;
* one video-distillation clip: the training loop of ``training.video`` split in two timers: data
  (``dataset[i]`` + ``build_batch``) and compute (``memory_forward`` + loss + backward + gradient clip +
  AdamW step), batch 1, ``VideoDistillationConfig`` defaults for the optimiser and loss.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.report import Row

SYNTHETIC_SEED = 0
SAM3_TEACHER_IMAGE_SIZE = 504


@dataclass(frozen=True)
class TrainingBenchConfig:
    checkpoint: Path  # student checkpoint directory (save_pretrained) of the benchmarked preset
    sav_root: Path  # synthetic SA-V folder written by ``write_synthetic``
    work_dir: Path  # caches and the SAM3 teacher checkpoint go here
    num_videos: int  # videos under sav_root
    dataset_items: int = 20
    distill_clips: int = 5
    sam3_teacher: bool = True


def run_training_side(config: TrainingBenchConfig) -> list[Row]:
    """One row per measurement; a failed step makes its row (and the rows that need it) unavailable."""
    rows: list[Row] = []
    sav_root = config.sav_root
    student_cache = config.work_dir / "cache_student"
    rows.append(_guard(CACHE_STUDENT, lambda: _cache_row(CACHE_STUDENT, sav_root, student_cache, config.checkpoint,
                                                         num_shards=1)))
    if config.sam3_teacher:
        rows.append(_guard(CACHE_SAM3, lambda: _sam3_cache_row(sav_root, config)))
    else:
        rows.append(Row.skipped(CACHE_SAM3, "--quick (SAM3's ViT takes seconds per frame)"))
    if rows[0].status != "ok":
        reason = f"needs the feature cache ({rows[0].reason})"
        return rows + [Row.unavailable(DATASET, reason), Row.unavailable(DISTILL, reason)]
    rows.append(_guard(DATASET, lambda: _dataset_row(sav_root, student_cache, config)))
    rows.append(_guard(DISTILL, lambda: _distill_row(sav_root, student_cache, config)))
    return rows


CACHE_STUDENT = "teacher caching: student checkpoint as teacher"
CACHE_SAM3 = f"teacher caching: SAM3 vision tower @{SAM3_TEACHER_IMAGE_SIZE} (1 video)"
DATASET = "SAVVideoDataset items/s (query decode + cache read)"
DISTILL = "video-distillation clip (batch 1): data vs compute"


def _guard(name: str, measure) -> Row:
    try:
        return measure()
    except Exception as err:  # noqa: BLE001 - reported in the table, never dropped
        return Row.unavailable(name, f"{type(err).__name__}: {err}")


def write_synthetic(sav_root: Path, num_videos: int, video_frames: int) -> Path:
    """SA-V-format videos + annotations (training.synthetic) under sav_root; each video has
    ``video_frames`` frames, annotated every 4th frame."""
    from training.synthetic import generate_dataset
    from training.synthetic_scene import SceneConfig

    scene = SceneConfig(min_frames=video_frames, max_frames=video_frames)
    generate_dataset(sav_root, num_videos, seed=SYNTHETIC_SEED, val_fraction=0.0, scene_config=scene)
    return sav_root


def _cache_row(name: str, sav_root: Path, out_dir: Path, teacher: Path, num_shards: int) -> Row:
    from training.cache_teacher import CacheConfig, cache_features

    shutil.rmtree(out_dir, ignore_errors=True)  # a kept --work-dir must not turn caching into skipping
    summary = cache_features(CacheConfig(sav_root=sav_root, out_dir=out_dir, teacher=teacher,
                                         num_shards=num_shards, shard_index=0, show_progress=False))
    if summary.failed or not summary.frames_written:
        raise RuntimeError(f"cache_features wrote {summary.frames_written} frames, failed: {summary.failed}")
    return Row.ok(name, {"frames_per_s": summary.frames_per_second, "bytes_per_frame": summary.bytes_per_frame,
                         "frames": summary.frames_written, "seconds": summary.seconds},
                  {"note": f"teacher load not timed; {len(summary.cached)} video(s)"})


def _sam3_cache_row(sav_root: Path, config: TrainingBenchConfig) -> Row:
    teacher_dir = config.work_dir / "sam3_vision_random"
    _write_sam3_vision_checkpoint(teacher_dir)
    return _cache_row(CACHE_SAM3, sav_root, config.work_dir / "cache_sam3", teacher_dir, num_shards=config.num_videos)


def _write_sam3_vision_checkpoint(directory: Path) -> None:
    """A transformers ``sam3`` checkpoint with random vision weights only (what training.teacher reads)."""
    from safetensors.torch import save_file
    from transformers import Sam3Config, Sam3VisionModel

    torch.manual_seed(0)
    config = Sam3Config()
    vision = Sam3VisionModel(config.vision_config)
    directory.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(directory)
    state = {f"vision_encoder.{key}": tensor.contiguous() for key, tensor in vision.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))


def _dataset(sav_root: Path, cache_dir: Path, checkpoint: Path):
    from efficient_sam3.checkpoint import read_config
    from training.data.video_dataset import SAVVideoDataset

    model_config = read_config(checkpoint)
    dataset = SAVVideoDataset(sav_root, cache_dir, context_frames=model_config.memory.context_frames,
                              image_size=model_config.image_size)
    if len(dataset) == 0:
        raise RuntimeError(f"{sav_root}: the dataset has no clips (bad videos: {dataset.bad_videos})")
    return dataset


def _dataset_row(sav_root: Path, cache_dir: Path, config: TrainingBenchConfig) -> Row:
    from training.data.video_dataset import measure_dataset_throughput

    dataset = _dataset(sav_root, cache_dir, config.checkpoint)
    items_per_s = measure_dataset_throughput(dataset, config.dataset_items, seed=0)
    return Row.ok(DATASET, {"items_per_s": items_per_s, "ms_per_item": 1000.0 / items_per_s,
                            "items": config.dataset_items},
                  {"note": f"{len(dataset)} clips, 1 worker, random order"})


def _distill_row(sav_root: Path, cache_dir: Path, config: TrainingBenchConfig) -> Row:
    from efficient_sam3 import freeze_for_video_distillation, set_frozen_eval
    from efficient_sam3.checkpoint import load_pretrained
    from training.batch import PromptTokenizer, build_batch, sample_rng
    from training.config import VideoDistillationConfig
    from training.frame_dataset import read_video_facts
    from training.losses import SegmentationLoss
    from training.video import memory_forward

    defaults = VideoDistillationConfig()
    torch.manual_seed(0)
    model = load_pretrained(config.checkpoint).model
    freeze_for_video_distillation(model)
    model.train()
    set_frozen_eval(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=defaults.lr, weight_decay=defaults.weight_decay)
    loss_fn = SegmentationLoss(weights=defaults.loss_weights)
    tokenizer = PromptTokenizer(model)
    dataset = _dataset(sav_root, cache_dir, config.checkpoint)
    facts = read_video_facts(sav_root)
    order = np.random.default_rng(0).permutation(len(dataset))
    data_s, compute_s = [], []
    for clip in range(config.distill_clips + 1):  # clip 0 is warm-up
        started = time.perf_counter()
        item = dataset[int(order[clip % len(order)])]
        batch = build_batch([item], [list(facts[item["video_id"]].categories)], [sample_rng(0, 0, 0, clip)],
                            tokenizer, defaults.absent_prompt_prob)
        loaded = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        output = memory_forward(model, batch)
        losses = loss_fn(output.pred_masks, output.pred_boxes, output.pred_logits, output.presence_logits,
                         output.iou_scores, batch.gt_masks, batch.gt_boxes)
        losses.total.backward()
        torch.nn.utils.clip_grad_norm_(params, defaults.grad_clip)
        optimizer.step()
        finished = time.perf_counter()
        if clip > 0:
            data_s.append(loaded - started)
            compute_s.append(finished - loaded)
    data_ms, compute_ms = 1000.0 * float(np.median(data_s)), 1000.0 * float(np.median(compute_s))
    return Row.ok(DISTILL, {"data_ms": data_ms, "compute_ms": compute_ms, "total_ms": data_ms + compute_ms,
                            "data_share_pct": 100.0 * data_ms / (data_ms + compute_ms),
                            "clips": config.distill_clips},
                  {"note": f"median of {config.distill_clips} clips after 1 warm-up; an optimizer step is "
                           f"grad_accum={defaults.grad_accum} clips; {len(params)} trainable tensors"})
