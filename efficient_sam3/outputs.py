"""Typed outputs of each stage. Boxes are normalised to [0, 1]; masks are logits."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from efficient_sam3.contract import MEMORY_FPN_LEVEL


@dataclass
class VisionFeatures:
    """FPN levels of one image batch, fine to coarse.

    fpn_hidden_states: 4 maps [B, 256, 144, 144], [B, 256, 72, 72], [B, 256, 36, 36], [B, 256, 18, 18]
    (at 504 px). Levels 0-2 feed the heads; level 3 is what the temporal memory stores.
    """

    fpn_hidden_states: tuple[torch.Tensor, ...]

    @property
    def memory_features(self) -> torch.Tensor:
        """FPN level 3 [B, 256, 18, 18]: the per-frame feature written into memory."""
        return self.fpn_hidden_states[MEMORY_FPN_LEVEL]


@dataclass
class TextFeatures:
    """Prompt tokens projected to the model width.

    features: [B, L, 256] float; mask: [B, L] (1 = real token, 0 = padding).
    """

    features: torch.Tensor
    mask: torch.Tensor


@dataclass
class SegmentationOutput:
    """Per-query predictions for one frame.

    pred_masks: [B, Q, 144, 144] mask logits (at 1/3.5 of the 504 px input).
    pred_boxes: [B, Q, 4] boxes, normalised (x1, y1, x2, y2).
    pred_logits: [B, Q] logit that the query is an instance of the prompt.
    presence_logits: [B, 1] logit that the prompted concept is present in the frame at all.
    iou_scores: [B, Q] logit of each query's predicted mask IoU (sigmoid gives the IoU estimate).
    """

    pred_masks: torch.Tensor
    pred_boxes: torch.Tensor
    pred_logits: torch.Tensor
    presence_logits: torch.Tensor
    iou_scores: torch.Tensor
