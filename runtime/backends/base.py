"""The small interface every inference backend implements, and the numpy types it exchanges.

A backend runs the three stateless entry points of the export contract on one frame:
``encode_frame`` (pixels -> FPN levels 0-2 + the level-3 memory feature), ``decode`` (one frame's
features + the T-slot memory + the text features of up to ``max_prompts`` prompts -> per-query
predictions for each prompt, in one call) and text features for a prompt. Everything crosses this boundary as numpy, so the session, the memory ring
and post-processing never import torch (the ONNX path runs on devices without PyTorch).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from efficient_sam3 import contract


@dataclass(frozen=True)
class ModelInfo:
    """What the session needs to know about a model, read from its checkpoint or export metadata.

    Grid sizes follow from ``image_size`` by ``efficient_sam3.contract``; pixel_mean / pixel_std are the
    per-channel (RGB) normalisation the model was trained with; max_prompts: the prompts one decode call
    takes (exports before metadata version 3 take one).
    """

    preset: str
    image_size: int
    context_frames: int
    memory_stride: int
    num_queries: int
    hidden_size: int
    max_text_length: int
    pixel_mean: tuple[float, ...] = contract.PIXEL_MEAN
    pixel_std: tuple[float, ...] = contract.PIXEL_STD
    max_prompts: int = 1

    @property
    def mask_size(self) -> int:
        return contract.mask_size(self.image_size)

    @property
    def memory_grid(self) -> int:
        return contract.memory_grid(self.image_size)

    @property
    def fpn_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Shapes of encode_frame's outputs: FPN levels 0-2, then the memory feature (batch 1)."""
        return tuple((1, self.hidden_size, side, side) for side in contract.fpn_sizes(self.image_size))


@dataclass(frozen=True)
class PromptFeatures:
    """text: the prompt; features [1, L, C] float32 text tokens; mask [1, L] int64 (1 = real token)."""

    text: str
    features: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class FrameFeatures:
    """Output of encode_frame: fpn = levels 0-2 ([1, C, 144, 144], [1, C, 72, 72], [1, C, 36, 36]);
    memory_feature = level 3 [1, C, 18, 18], what the memory ring stores."""

    fpn: tuple[np.ndarray, np.ndarray, np.ndarray]
    memory_feature: np.ndarray


@dataclass(frozen=True)
class DecodeOutput:
    """Predictions for one frame and one prompt (batch dimension dropped).

    pred_masks [Q, 144, 144] float32 mask logits; pred_boxes [Q, 4] normalised xyxy;
    pred_logits [Q] instance logits; presence_logit: the concept-presence logit; iou_scores [Q] logits.
    """

    pred_masks: np.ndarray
    pred_boxes: np.ndarray
    pred_logits: np.ndarray
    presence_logit: float
    iou_scores: np.ndarray


class BackendError(RuntimeError):
    """A model file that cannot be loaded or run by the requested backend, or that breaks the contract."""


def normalise_prompt(text: str) -> str:
    """Prompt text as matched against stored prompts: lower case, single spaces (the tokenizer's view)."""
    if not isinstance(text, str):
        raise TypeError(f"a prompt must be a string, got {type(text).__name__}")
    normalised = " ".join(text.lower().split())
    if not normalised:
        raise ValueError("empty prompt: give the concept to segment, e.g. 'red circle'")
    return normalised


def check_outputs(arrays: list[np.ndarray], expected: list[tuple[int, ...]], what: str) -> list[np.ndarray]:
    """Check an entry point's outputs against the contract's shapes; float32, C-contiguous copies back."""
    if len(arrays) != len(expected):
        raise BackendError(f"{what}: expected {len(expected)} outputs, got {len(arrays)}")
    checked = []
    for index, (array, shape) in enumerate(zip(arrays, expected)):
        if tuple(array.shape) != shape:
            raise BackendError(f"{what}: output {index} has shape {list(array.shape)}, expected {list(shape)}")
        checked.append(np.ascontiguousarray(array, dtype=np.float32))
    return checked


def stack_prompts(prompts: Sequence[PromptFeatures]) -> tuple[np.ndarray, np.ndarray]:
    """The text inputs of one decode call: features [P, L, C] float32, mask [P, L] int64."""
    features = np.concatenate([p.features for p in prompts], axis=0).astype(np.float32, copy=False)
    mask = np.concatenate([p.mask for p in prompts], axis=0).astype(np.int64, copy=False)
    return np.ascontiguousarray(features), np.ascontiguousarray(mask)


def decode_outputs_from_arrays(arrays: list[np.ndarray], info: ModelInfo, num_prompts: int,
                               what: str) -> list[DecodeOutput]:
    """The five flat outputs of one ``decode`` call for P prompts -> one ``DecodeOutput`` per prompt."""
    queries, side, p = info.num_queries, info.mask_size, num_prompts
    masks, boxes, logits, presence, iou = check_outputs(
        arrays, [(p, queries, side, side), (p, queries, 4), (p, queries), (p, 1), (p, queries)], what)
    return [DecodeOutput(pred_masks=masks[i], pred_boxes=boxes[i], pred_logits=logits[i],
                         presence_logit=float(presence[i, 0]), iou_scores=iou[i]) for i in range(p)]


class Backend(ABC):
    """One loaded model. Implementations: torch (a checkpoint directory), onnx, executorch."""

    name: str
    info: ModelInfo

    @abstractmethod
    def prompt_features(self, text: str) -> PromptFeatures:
        """Text features of ``text`` (ValueError for an empty prompt or one the model cannot encode)."""

    @abstractmethod
    def encode_frame(self, pixel_values: np.ndarray) -> FrameFeatures:
        """pixel_values [1, 3, S, S] float32 (SAM3 preprocessing) -> FrameFeatures."""

    def decode(self, frame: FrameFeatures, memory_features: np.ndarray, memory_mask: np.ndarray,
               prompts: Sequence[PromptFeatures]) -> list[DecodeOutput]:
        """memory_features [1, T, C, G, G] float32, memory_mask [1, T] bool -> one DecodeOutput per prompt,
        in order; ``info.max_prompts`` prompts per call of the model."""
        outputs: list[DecodeOutput] = []
        step = self.info.max_prompts
        for start in range(0, len(prompts), step):
            outputs += self.decode_batch(frame, memory_features, memory_mask, prompts[start:start + step])
        return outputs

    @abstractmethod
    def decode_batch(self, frame: FrameFeatures, memory_features: np.ndarray, memory_mask: np.ndarray,
                     prompts: Sequence[PromptFeatures]) -> list[DecodeOutput]:
        """One decode call for 1 to ``info.max_prompts`` prompts -> one DecodeOutput per prompt."""

    def check_pixels(self, pixel_values: np.ndarray) -> None:
        size = self.info.image_size
        if pixel_values.shape != (1, 3, size, size) or pixel_values.dtype != np.float32:
            raise ValueError(f"pixel_values must be float32 [1, 3, {size}, {size}], "
                             f"got {pixel_values.dtype} {list(pixel_values.shape)}")
