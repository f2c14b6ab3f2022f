"""The offline default pipeline: everything ``python -m training.video`` does with no data flags.

1. synthetic SA-V-format videos (``training.synthetic``), split into train and held-out folders;
2. image stage: the whole tiny student on single clean annotated frames (``training.image``);
3. feature cache: FPN level 3 of every annotated frame (``training.cache_teacher``). Offline there is
   no SAM3, so the "teacher" is the image-stage student itself -- exactly the features a device has;
4. video stage: the memory cross-attention and the perceiver on clips of the train split, with issue
   #16's recipe (``training.video``; ``PipelineConfig.video_perceiver_lr_scale`` 0 freezes the perceiver);
5. evaluation on the held-out split: J&F with memory off / on (cache) / on (student features) / on with
   another video's memory (the control), and SAM3's concept metrics (cgF1, IL_MCC, positive micro-F1,
   pHOTA) over positive and negative prompts (``training.memory_eval``), printed as a table and written
   to ``summary.json``.

Everything goes under one run folder (``--out``, default ``runs/pipeline-<timestamp>``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path

import torch

from efficient_sam3 import EfficientSam3Model
from efficient_sam3.files import check_creatable, write_text_atomic
from training.cache_teacher import CacheConfig, cache_features
from training.config import ImageStageConfig, PipelineConfig, VideoDistillationConfig, config_to_dict, \
    timestamped_run_dir
from training.image import train_image_stage
from training.memory_eval import CONDITIONS, evaluate_memory, format_memory_table
from training.synthetic import generate_dataset
from training.video import train_video_stage

SUMMARY_FILE = "summary.json"
EVAL_FILE = "memory_eval.json"
NOTE = ("Offline there is no SAM3 teacher: the feature cache holds the image-stage student's own FPN level 3, "
        "so memory_on (cached features, float16) and memory_on_student_features (computed now, float32) "
        "differ only by float16 rounding. With a SAM3 cache they measure teacher vs student memory.")
PROTOCOL = ("held-out videos; every annotated frame but the first and last; one prompt per ground-truth "
            "category; jf_* use SAM3's rule: instances = queries with sigmoid(logit)*sigmoid(presence) > 0.5 "
            "(jf_top1_diagnostic, a diagnostic only: those plus the best query whenever sigmoid(presence) > 0.5); "
            "per frame and category objects matched to instances by maximum IoU (unmatched -> empty mask); "
            "J&F per object as SA-V's official evaluator scores it, mean over objects, 0-100. "
            "See training.memory_eval.")


def run_default_pipeline(config: PipelineConfig) -> dict:
    """Run all five steps and return the summary (also written to ``<out>/summary.json``)."""
    started = time.perf_counter()
    out_dir = Path(config.out_dir or timestamped_run_dir("pipeline"))
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir}: run folder is not empty; pick a new --out")
    check_creatable(out_dir, "run folder", folder=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def log(message: str) -> None:
        if config.show_progress:
            print(f"[pipeline {time.perf_counter() - started:6.0f} s] {message}", flush=True)

    log(f"run folder {out_dir}")
    data_dir = out_dir / "data"
    total_videos = config.num_train_videos + config.num_heldout_videos
    mark = time.perf_counter()
    generate_dataset(data_dir, total_videos, config.seed, val_fraction=config.num_heldout_videos / total_videos,
                     scene_config=config.scene, show_progress=config.show_progress)
    train_dir, heldout_dir = data_dir / "train", data_dir / "val"
    counts = {split: len(list(path.glob("*_manual.json")))
              for split, path in (("train", train_dir), ("val", heldout_dir))}
    if counts != {"train": config.num_train_videos, "val": config.num_heldout_videos}:
        raise RuntimeError(f"{data_dir}: expected {config.num_train_videos} train + {config.num_heldout_videos} "
                           f"held-out videos, the generator wrote {counts}")
    timings["synthetic_data_s"] = time.perf_counter() - mark
    log(f"synthetic data: {counts['train']} train + {counts['val']} held-out videos")

    mark = time.perf_counter()
    image = train_image_stage(ImageStageConfig(
        sav_root=train_dir, out_dir=out_dir / "image_stage", preset=config.preset, steps=config.image_steps,
        batch_size=config.image_batch_size, lr=config.image_lr, warmup_steps=config.image_warmup_steps,
        seed=config.seed, device=config.device, show_progress=config.show_progress))
    timings["image_stage_s"] = time.perf_counter() - mark
    log(f"image stage: {image.steps} steps, final loss {image.final_loss:.3f}")

    mark = time.perf_counter()
    cache_dir = out_dir / "cache"
    cached = cache_features(CacheConfig(sav_root=data_dir, out_dir=cache_dir, teacher=image.checkpoint,
                                        device=config.device, show_progress=config.show_progress))
    if cached.failed:
        raise RuntimeError(f"feature caching failed for {cached.failed}")
    timings["feature_cache_s"] = time.perf_counter() - mark
    log(f"feature cache: {cached.frames_written} frames from {cached.teacher}")

    mark = time.perf_counter()
    video = train_video_stage(VideoDistillationConfig(
        sav_root=train_dir, cache_dir=cache_dir, out_dir=out_dir / "video_stage", student_checkpoint=image.checkpoint,
        context_frames=config.context_frames, epochs=config.video_epochs,
        steps_per_epoch=config.video_steps_per_epoch, lr=config.video_lr,
        perceiver_lr_scale=config.video_perceiver_lr_scale, warmup_steps=config.video_warmup_steps,
        grad_accum=config.video_grad_accum, degraded_fraction=config.video_degraded_fraction,
        hide_object_prob=config.video_hide_object_prob, slot_dropout=config.video_slot_dropout,
        perceiver_qk_norm=config.video_perceiver_qk_norm,
        perceiver_values_without_position=config.video_perceiver_values_without_position, seed=config.seed,
        device=config.device, show_progress=config.show_progress))
    timings["video_stage_s"] = time.perf_counter() - mark
    log(f"video stage: {video.steps} steps, final loss {video.final_loss:.3f}")

    mark = time.perf_counter()
    model = EfficientSam3Model.from_pretrained(video.final_model)
    result = evaluate_memory(model, heldout_dir, cache_dir, device=config.device, show_progress=config.show_progress,
                             max_negative_prompts=config.eval_negative_prompts)
    _write_json(out_dir / EVAL_FILE, result.to_dict())
    timings["evaluation_s"] = time.perf_counter() - mark

    scores = result.conditions
    summary = {
        "jf_memory_off": scores["memory_off"].jf,
        "jf_memory_on": scores["memory_on"].jf,
        "jf_memory_on_student_features": scores["memory_on_student_features"].jf,
        "jf_memory_on_other_video": scores["memory_on_other_video"].jf,
        "jf_gain_memory_on": scores["memory_on"].jf - scores["memory_off"].jf,
        # What memory adds through its content: true memory vs another video's (see training.memory_eval).
        "jf_gain_memory_content": scores["memory_on"].jf - scores["memory_on_other_video"].jf,
        "instance_rule": result.rules[0],
        # SAM3's video concept metrics (0-100) over every (held-out video, phrase) pair, the synthetic
        # vocabulary's absent phrases included as negative prompts (training.concept_metrics).
        **{f"{metric}_{name}": result.concept[name][metric] for name in CONDITIONS
           for metric in ("cgf1", "il_mcc", "positive_micro_f1", "phota")},
        "concept_pairs": {"total": result.concept["memory_off"]["num_pairs"],
                          "positive": result.concept["memory_off"]["num_positive_pairs"]},
        "jf_top1_diagnostic": {name: result.scores["top1"][name].jf for name in CONDITIONS},
        "scores": {rule: {name: vars(result.scores[rule][name]) for name in CONDITIONS} for rule in result.rules},
        "num_heldout_videos": len(next(iter(result.per_video.values()))),
        "num_objects": result.num_objects,
        "num_evaluated_frames": result.num_frames,
        "skipped_videos": result.skipped,
        "memory_gate": float(torch.tanh(model.memory_cross_attn.gate.detach()).item()),
        # What the memory held while it trained (training.memory_diagnostics): retention < threshold = collapse.
        "memory_diagnostics": video.memory_diagnostics,
        "image_stage_final_loss": image.final_loss,
        "video_stage_final_loss": video.final_loss,
        "wall_time_s": time.perf_counter() - started,
        "stage_times_s": timings,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "device": config.device},
        "note": NOTE,
        "protocol": PROTOCOL,
        "config": config_to_dict(config),
        "paths": {"data": str(data_dir), "image_student": str(image.checkpoint), "cache": str(cache_dir),
                  "video_run": str(video.out_dir), "final_model": str(video.final_model),
                  "memory_eval": str(out_dir / EVAL_FILE)},
    }
    _write_json(out_dir / SUMMARY_FILE, summary)
    if config.show_progress:
        print(format_memory_table(result))
        print(format_summary_table(summary))
    return summary


def format_summary_table(summary: dict) -> str:
    top1 = summary["jf_top1_diagnostic"]
    rows = [("memory off", summary["jf_memory_off"], top1["memory_off"]),
            ("memory on (cached features)", summary["jf_memory_on"], top1["memory_on"]),
            ("memory on (student features)", summary["jf_memory_on_student_features"],
             top1["memory_on_student_features"]),
            ("control: memory of another video", summary["jf_memory_on_other_video"], top1["memory_on_other_video"])]
    lines = ["| held-out J&F (0-100, SA-V official) | SAM3 0.5 rule | top1 rule (diagnostic) |", "|---|---|---|"]
    lines += [f"| {name} | {value:.1f} | {top1_value:.1f} |" for name, value, top1_value in rows]
    lines.append(f"| gain, memory on - off | {summary['jf_gain_memory_on']:+.1f} |")
    lines += ["", "| held-out concept metrics (0-100, SAM3's code) | cgF1 | IL_MCC | positive micro-F1 | pHOTA |",
              "|---|---|---|---|---|"]
    lines += [f"| {name} | {summary['cgf1_' + key]:.1f} | {summary['il_mcc_' + key]:.1f} | "
              f"{summary['positive_micro_f1_' + key]:.1f} | {summary['phota_' + key]:.1f} |"
              for (name, *_), key in zip(rows, CONDITIONS)]
    lines.append(f"| pairs (video, phrase) | {summary['concept_pairs']['total']} "
                 f"({summary['concept_pairs']['positive']} positive) |")
    lines.append(f"| gain from memory content, memory on - control | {summary['jf_gain_memory_content']:+.1f} |")
    diagnostics = summary.get("memory_diagnostics") or {}
    if diagnostics:
        lines.append(f"| memory retention, first -> last (collapse < {diagnostics['retention_threshold']}) | "
                     f"{diagnostics['retention_first']:.3f} -> {diagnostics['retention_last']:.3f} |")
    lines.append(f"| wall time | {summary['wall_time_s']:.0f} s |")
    return "\n".join(lines)


def _finite(value):
    """NaN (e.g. no degraded frames) becomes None, which strict JSON can hold; recurses into dicts/lists."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def _write_json(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(_finite(data), indent=2, default=str, allow_nan=False))
