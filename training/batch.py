"""Prompted batches: each frame of a batch is segmented for ONE text prompt.

The model segments every instance of one concept per forward, so a training item (a frame with its
visible objects and their categories) becomes one (prompt, targets) pair:

- usually one of the categories visible in the frame, chosen uniformly; the targets are all visible
  objects of that category;
- with probability ``absent_prompt_prob`` (and always when nothing is visible) a category of the same
  video that is NOT visible in this frame, with no targets (presence target 0), if the video has one;
- without categories (real SA-V masklets are class-agnostic) the fixed ``DEFAULT_PROMPT`` with every
  visible object as a target.

The choice comes from a generator seeded by (seed, epoch, rank, position), so it is a pure function of
where the item sits in the data order -- which makes a resumed run draw exactly the same prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from training.config import DEFAULT_PROMPT


def sample_rng(seed: int, epoch: int, rank: int, position: int) -> np.random.Generator:
    """Generator for one sample, determined by where it sits in the data order."""
    return np.random.default_rng([seed, epoch, rank, position])


def choose_prompt(
    prompts: list[str],
    video_categories: list[str],
    rng: np.random.Generator,
    absent_prompt_prob: float,
) -> tuple[str, list[int]]:
    """(prompt, indices of the target objects among ``prompts``) for one frame.

    ``prompts``: category of each visible object ("" when the data has no categories);
    ``video_categories``: every category of the video (visible here or not).
    """
    if any(prompt == "" for prompt in prompts) or (not prompts and not any(video_categories)):
        return DEFAULT_PROMPT, list(range(len(prompts)))
    present = sorted(set(prompts))
    absent = sorted(set(video_categories) - set(present))
    use_absent = bool(absent) and (not present or rng.random() < absent_prompt_prob)
    if use_absent:
        return absent[int(rng.integers(len(absent)))], []
    prompt = present[int(rng.integers(len(present)))]
    return prompt, [index for index, name in enumerate(prompts) if name == prompt]


class PromptTokenizer:
    """Tokenises each distinct prompt once: prompt -> (input_ids [L], attention_mask [L])."""

    def __init__(self, model) -> None:
        self._model = model
        self._cache: dict[str, tuple[Tensor, Tensor]] = {}

    def __call__(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """-> input_ids [B, L], attention_mask [B, L] (int64)."""
        missing = sorted({p for p in prompts if p not in self._cache})
        if missing:
            input_ids, attention_mask = self._model.tokenize(missing)
            for row, prompt in enumerate(missing):
                self._cache[prompt] = (input_ids[row], attention_mask[row])
        return (torch.stack([self._cache[p][0] for p in prompts]),
                torch.stack([self._cache[p][1] for p in prompts]))


@dataclass
class PromptedBatch:
    """B frames, each with one prompt and the ground truth of that prompt only.

    pixel_values [B, 3, S, S] float32; input_ids / attention_mask [B, L] int64;
    gt_masks: B bool tensors [N_b, S, S]; gt_boxes: B float32 tensors [N_b, 4] normalised xyxy;
    memory_features [B, T, 256, 18, 18] float32 and memory_mask [B, T] bool for clips, None for images.
    """

    pixel_values: Tensor
    input_ids: Tensor
    attention_mask: Tensor
    gt_masks: list[Tensor]
    gt_boxes: list[Tensor]
    prompts: list[str]
    video_ids: list[str]
    memory_features: Tensor | None = None
    memory_mask: Tensor | None = None

    @property
    def size(self) -> int:
        return self.pixel_values.shape[0]

    def to(self, device: torch.device) -> "PromptedBatch":
        def move(tensor):
            return None if tensor is None else tensor.to(device)

        return PromptedBatch(
            pixel_values=self.pixel_values.to(device),
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            gt_masks=[m.to(device) for m in self.gt_masks],
            gt_boxes=[b.to(device) for b in self.gt_boxes],
            prompts=self.prompts,
            video_ids=self.video_ids,
            memory_features=move(self.memory_features),
            memory_mask=move(self.memory_mask),
        )


def build_batch(
    items: list[dict],
    video_categories: list[list[str]],
    rngs: list[np.random.Generator],
    tokenizer: PromptTokenizer,
    absent_prompt_prob: float,
) -> PromptedBatch:
    """Stack dataset items (``pixel_values``, ``gt_masks``, ``gt_boxes``, ``prompts``, ``video_id`` and,
    for clips, ``memory_features`` / ``memory_mask``) into a PromptedBatch, one prompt per item."""
    prompts, gt_masks, gt_boxes = [], [], []
    for item, categories, rng in zip(items, video_categories, rngs, strict=True):
        prompt, targets = choose_prompt(list(item["prompts"]), categories, rng, absent_prompt_prob)
        masks = item["gt_masks"][torch.tensor(targets, dtype=torch.long)]  # [N_b, S, S]
        # An object can vanish when a large frame is resized to S; the losses need non-empty masks.
        keep = masks.flatten(1).any(dim=1)  # [N_b]
        prompts.append(prompt)
        gt_masks.append(masks[keep])
        gt_boxes.append(item["gt_boxes"][torch.tensor(targets, dtype=torch.long)][keep])
    input_ids, attention_mask = tokenizer(prompts)
    has_memory = "memory_features" in items[0]
    return PromptedBatch(
        pixel_values=torch.stack([item["pixel_values"] for item in items]),
        input_ids=input_ids,
        attention_mask=attention_mask,
        gt_masks=gt_masks,
        gt_boxes=gt_boxes,
        prompts=prompts,
        video_ids=[item["video_id"] for item in items],
        memory_features=torch.stack([item["memory_features"] for item in items]) if has_memory else None,
        memory_mask=torch.stack([item["memory_mask"] for item in items]) if has_memory else None,
    )
