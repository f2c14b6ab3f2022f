"""Clip augmentations that make the video stage's memory worth reading (issue #16).

The synthetic data degrades a third to a half of the annotated frames, but a clip whose query frame is
clean can be solved without memory, and the memory path then learns to adapt the frozen image model
whatever the memory holds (another video's memory scores nearly as well as the true one). Two
augmentations, applied to a dataset item before it is batched, each off by default:

- ``hide_object_prob``: with this probability the query frame hides one of its annotated objects,
  chosen at random among all of them (prompted or not), under a grey box (the object's bounding box
  plus 15% margin, the grey of the synthetic data's "dropout" degradation), while the ground truth
  keeps its mask. The box alone does not say which concept it hides (any object may be hidden), so
  only the context frames, where the object is visible, can tell the heads whether the prompted
  concept is under it.
- ``slot_dropout``: each valid context slot is masked out with this probability (at least one valid
  slot is kept), so the memory cannot rely on one fixed slot and the perceiver learns to summarise
  whichever frames a stream has.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from efficient_sam3.contract import PIXEL_MEAN, PIXEL_STD

HIDE_GREY = 128  # uint8 grey of training.synthetic_scene.DROPOUT_GREY
HIDE_MARGIN = 0.15  # box margin, as a fraction of the object's extent (as the synthetic dropout)


@dataclass(frozen=True)
class MemoryTaskConfig:
    hide_object_prob: float = 0.0
    slot_dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("hide_object_prob", "slot_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"MemoryTaskConfig.{name} must be in [0, 1], got {value}")

    @property
    def active(self) -> bool:
        return self.hide_object_prob > 0 or self.slot_dropout > 0


def task_rng(seed: int, epoch: int, rank: int, position: int) -> np.random.Generator:
    """The augmentation's own stream (independent of the prompt choice's ``training.batch.sample_rng``, so
    turning an augmentation on changes nothing else a clip draws)."""
    return np.random.default_rng([seed, epoch, rank, position, 0x5EED16])


def hide_box(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """bool [S, S] non-empty mask -> (y0, y1, x0, x1), the grey box's slice bounds (bbox + margin)."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    y_min, y_max, x_min, x_max = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
    margin_y = int(HIDE_MARGIN * (y_max - y_min + 1)) + 2
    margin_x = int(HIDE_MARGIN * (x_max - x_min + 1)) + 2
    return max(y_min - margin_y, 0), y_max + margin_y + 1, max(x_min - margin_x, 0), x_max + margin_x + 1


def hide_one_object(pixel_values: torch.Tensor, gt_masks: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
    """pixel_values [3, S, S] (SAM3 normalisation), gt_masks bool [N, S, S] -> (a copy with the box of one
    random non-empty object grey, its index); (pixel_values, -1) when no object is non-empty."""
    candidates = [i for i in range(gt_masks.shape[0]) if bool(gt_masks[i].any())]
    if not candidates:
        return pixel_values, -1
    chosen = candidates[int(rng.integers(len(candidates)))]
    y0, y1, x0, x1 = hide_box(gt_masks[chosen])
    hidden = pixel_values.clone()
    for channel in range(hidden.shape[0]):
        hidden[channel, y0:y1, x0:x1] = (HIDE_GREY / 255.0 - PIXEL_MEAN[channel]) / PIXEL_STD[channel]
    return hidden, chosen


def drop_slots(memory_mask: torch.Tensor, rng: np.random.Generator, prob: float) -> torch.Tensor:
    """memory_mask bool [T] -> a copy with each valid slot masked with probability ``prob``; when every
    valid slot would go, one of them (at random) stays."""
    valid = torch.nonzero(memory_mask, as_tuple=True)[0].tolist()
    if not valid or prob <= 0:
        return memory_mask
    drop = rng.random(len(valid)) < prob
    if drop.all():
        drop[int(rng.integers(len(valid)))] = False
    kept = memory_mask.clone()
    for slot, dropped in zip(valid, drop):
        if dropped:
            kept[slot] = False
    return kept


def augment_clip(item: dict, config: MemoryTaskConfig, rng: np.random.Generator) -> dict:
    """A dataset item (``SAVVideoDataset``) with the configured augmentations applied (a new dict; the
    item is not modified). Draws from ``rng`` in a fixed order: slot dropout, then hiding."""
    if not config.active:
        return item
    item = dict(item)
    if config.slot_dropout > 0:
        item["memory_mask"] = drop_slots(item["memory_mask"], rng, config.slot_dropout)
        item["memory_features"] = item["memory_features"] * item["memory_mask"][:, None, None, None]
    has_memory = bool(item["memory_mask"].any())  # without context nothing could tell what is hidden
    if config.hide_object_prob > 0 and rng.random() < config.hide_object_prob and has_memory:
        item["pixel_values"], item["hidden_object"] = hide_one_object(item["pixel_values"], item["gt_masks"], rng)
    return item
