"""Image stage: train the whole student on single annotated frames.

    python -m training.image --sav-root DIR [--out DIR] [--teacher DIR] [--steps N] [--lr LR]

Supervision is the ground truth of one prompt per frame (see ``training.batch``), with the losses of
``training.losses``. With ``--teacher`` (a SAM3 or EfficientSAM3 checkpoint directory, see
``training.teacher``) FPN level 3 -- the feature the temporal memory stores -- is also aligned to the
teacher's level 3 by MSE. The memory modules are not used on single frames and stay at their
initialisation (an exact identity). The student is written with ``save_pretrained`` to
``<out>/student``, where the video stage finds the latest one automatically. Bad input (flags, data,
checkpoints, an output that cannot be written) is one ``error:`` line and exit 2; Ctrl-C and SIGTERM
stop the run alike (exit 130; the image stage keeps no checkpoint, so it starts again).
"""

from __future__ import annotations

import logging
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from efficient_sam3 import EfficientSam3Config, EfficientSam3Model
from efficient_sam3.cli import INTERRUPTED_EXIT, ArgumentParser, fail, non_negative_int, positive_float, positive_int, \
    sigterm_as_interrupt
from efficient_sam3.files import check_creatable, write_json_atomic
from efficient_sam3.presets import PRESETS
from efficient_sam3.freeze import VIDEO_TRAINABLE_MODULES
from training.batch import PromptTokenizer, build_batch, sample_rng
from training.config import IMAGE_STAGE_CHECKPOINT, ImageStageConfig, config_to_dict, timestamped_run_dir
from training.distributed import device_flag
from training.frame_dataset import AnnotatedFrameDataset
from training.losses import SegmentationLoss
from training.run_log import LOG_FILE, PLOT_FILE, RunLog, plot_loss_curves
from training.schedule import warmup_cosine_scheduler
from training.cpu_allocator import keep_freed_memory_mapped

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageStageResult:
    checkpoint: Path  # save_pretrained directory of the trained student
    steps: int
    final_loss: float
    log_path: Path
    plot_path: Path
    wall_time_s: float


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_student(preset: str, init_checkpoint: Path | None) -> EfficientSam3Model:
    if init_checkpoint is not None:
        return EfficientSam3Model.from_pretrained(init_checkpoint)
    return EfficientSam3Model(EfficientSam3Config.from_preset(preset))


def train_image_stage(config: ImageStageConfig) -> ImageStageResult:
    started = time.perf_counter()
    seed_everything(config.seed)
    device = torch.device(config.device)
    out_dir = Path(config.out_dir)
    check_creatable(out_dir, "run folder", folder=True)  # before any work
    dataset = AnnotatedFrameDataset(config.sav_root, max_objects_per_frame=config.max_objects_per_frame,
                                    include_degraded_frames=config.include_degraded_frames,
                                    annotation_type=config.annotation_type)
    model = build_student(config.preset, config.init_checkpoint).to(device)
    if dataset.image_size != model.config.image_size:
        source = config.init_checkpoint or f"preset {config.preset!r}"
        raise ValueError(f"{source}: the model runs at {model.config.image_size} px (preset "
                         f"{model.config.preset!r}), the training frames are {dataset.image_size} px")
    out_dir.mkdir(parents=True, exist_ok=True)
    teacher = None
    if config.teacher is not None:
        from training.teacher import load_teacher

        teacher = load_teacher(config.teacher, model.config.image_size, config.device)
    memory_prefixes = tuple(f"{name}." for name in VIDEO_TRAINABLE_MODULES)
    params = []
    for name, param in model.named_parameters():
        param.requires_grad_(not name.startswith(memory_prefixes))  # unused on single frames
        if param.requires_grad:
            params.append(param)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = warmup_cosine_scheduler(optimizer, config.warmup_steps, config.steps)
    loss_fn = SegmentationLoss(weights=config.loss_weights)
    tokenizer = PromptTokenizer(model)
    model.train()

    log_path, plot_path = out_dir / LOG_FILE, out_dir / PLOT_FILE
    order: list[int] = []
    epoch = position = 0
    row: dict = {}
    progress = tqdm(range(config.steps), desc="image stage", unit="step", disable=not config.show_progress)
    with RunLog(log_path) as run_log:
        for step in progress:
            step_started = time.perf_counter()
            indices, rngs = [], []
            for _ in range(config.batch_size):
                if position == len(order):
                    order = np.random.default_rng([config.seed, epoch]).permutation(len(dataset)).tolist()
                    epoch, position = epoch + 1, 0
                indices.append(order[position])
                rngs.append(sample_rng(config.seed, epoch, 0, position))
                position += 1
            items = [dataset[index] for index in indices]
            categories = [list(dataset.facts[item["video_id"]].categories) for item in items]
            batch = build_batch(items, categories, rngs, tokenizer, config.absent_prompt_prob).to(device)

            vision = model.encode_image(batch.pixel_values)
            text = model.encode_text(batch.input_ids, batch.attention_mask)
            output = model(vision=vision, text=text)
            losses = loss_fn(output.pred_masks, output.pred_boxes, output.pred_logits, output.presence_logits,
                             output.iou_scores, batch.gt_masks, batch.gt_boxes)
            total = losses.total
            terms = {name: float(value) for name, value in losses.terms.items()}
            if teacher is not None:
                # clone: the teacher runs under inference mode, and its output is needed for backward
                target = teacher.encode(batch.pixel_values).to(vision.memory_features.dtype).clone()
                align = F.mse_loss(vision.memory_features, target)
                total = total + config.feature_align_weight * align
                terms["feature_align"] = float(align.detach())
            if not torch.isfinite(total):
                raise FloatingPointError(f"image stage step {step}: non-finite loss {terms}")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            scheduler.step()

            row = {"step": step + 1, "epoch": epoch, "lr": scheduler.get_last_lr()[0], "loss": float(total.detach()),
                   **terms, "num_matched": losses.num_matched,
                   "steps_per_s": 1.0 / (time.perf_counter() - step_started)}
            run_log.write(row)
            progress.set_postfix(loss=f"{row['loss']:.3f}", steps_per_s=f"{row['steps_per_s']:.2f}")

    model.eval()
    checkpoint = out_dir / IMAGE_STAGE_CHECKPOINT
    model.save_pretrained(checkpoint)
    write_json_atomic(out_dir / "image_config.json", config_to_dict(config), indent=2)
    plot_loss_curves(log_path, plot_path, title="image stage")
    return ImageStageResult(checkpoint=checkpoint, steps=config.steps, final_loss=row.get("loss", float("nan")),
                            log_path=log_path, plot_path=plot_path, wall_time_s=time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description="Image stage: train the whole student on single annotated frames.")
    parser.add_argument("--sav-root", type=Path, required=True, help="SA-V train-layout folder")
    parser.add_argument("--out", type=Path, help="run folder (default runs/image-<timestamp>)")
    parser.add_argument("--teacher", type=Path, help="align FPN level 3 to this SAM3/EfficientSAM3 checkpoint")
    parser.add_argument("--init", type=Path, help="start from this EfficientSAM3 checkpoint instead of random")
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS),
                        help="model preset when starting from random weights")
    parser.add_argument("--steps", type=positive_int, default=ImageStageConfig.steps)
    parser.add_argument("--batch-size", type=positive_int, default=ImageStageConfig.batch_size)
    parser.add_argument("--lr", type=positive_float, default=ImageStageConfig.lr)
    parser.add_argument("--include-degraded", action="store_true", help="also train on synthetic degraded frames")
    parser.add_argument("--device", type=device_flag, default="cpu")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    args = parser.parse_args(argv)
    sigterm_as_interrupt()
    keep_freed_memory_mapped()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out_dir = args.out or timestamped_run_dir("image")
    try:
        config = ImageStageConfig(
            sav_root=args.sav_root,
            out_dir=out_dir,
            preset=args.preset,
            init_checkpoint=args.init,
            teacher=args.teacher,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            include_degraded_frames=args.include_degraded,
            seed=args.seed,
            device=args.device,
            show_progress=sys.stderr.isatty(),  # a progress bar on a terminal, not in logs
        )
        result = train_image_stage(config)
    except (OSError, ValueError) as error:
        return fail(error)
    except KeyboardInterrupt:
        print(f"interrupted: {out_dir} holds no student yet (the image stage keeps no checkpoint); run it again",
              file=sys.stderr)
        return INTERRUPTED_EXIT
    print(f"image stage: {result.steps} steps in {result.wall_time_s:.0f} s, final loss {result.final_loss:.4f}; "
          f"student written to {result.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
