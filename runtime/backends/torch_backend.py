"""Eager PyTorch backend: a checkpoint directory (``config.json`` + ``model.safetensors``).

The reference the exported backends are compared against. Runs the model's own entry points
(``encode_image``, ``encode_text``, ``forward_video`` with precomputed features), batch 1, under
inference mode; numpy in, numpy out. Any prompt works: the model's offline tokenizer encodes it,
and each prompt's text features are computed once and cached. A prompt longer than the text encoder's
context (``max_text_length`` tokens with the start and end tokens) is cut to fit, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from efficient_sam3 import EfficientSam3Model, contract
from efficient_sam3.checkpoint import CONFIG_FILE
from efficient_sam3.outputs import TextFeatures, VisionFeatures
from runtime.backends.base import (
    Backend,
    BackendError,
    DecodeOutput,
    FrameFeatures,
    ModelInfo,
    PromptFeatures,
    check_outputs,
    decode_outputs_from_arrays,
    normalise_prompt,
    stack_prompts,
)

logger = logging.getLogger(__name__)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().float().numpy()


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: EfficientSam3Model, memory_stride: int | None = None,
                 num_threads: int | None = None) -> None:
        """memory_stride: None for the checkpoint's own (``config.memory.memory_stride``)."""
        self.model = model.eval()
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        config = model.config
        self.info = ModelInfo(
            preset=config.preset,
            image_size=config.image_size,
            context_frames=config.memory.context_frames,
            memory_stride=config.memory.memory_stride if memory_stride is None else memory_stride,
            num_queries=config.detr_decoder.num_queries,
            hidden_size=config.hidden_size,
            max_text_length=config.text.max_length,
            pixel_mean=tuple(config.image_mean),
            pixel_std=tuple(config.image_std),
            max_prompts=contract.DEFAULT_MAX_PROMPTS,  # eager takes any number; this bounds one call's memory
        )
        self._prompt_cache: dict[str, PromptFeatures] = {}

    @classmethod
    def from_path(cls, path: str | Path, num_threads: int | None = None) -> "TorchBackend":
        path = Path(path)
        if not (path.is_dir() and (path / CONFIG_FILE).is_file()):
            raise BackendError(f"{path}: the torch backend needs a checkpoint directory with {CONFIG_FILE} "
                               "(written by save_pretrained)")
        try:
            model = EfficientSam3Model.from_pretrained(path)
        except (ValueError, FileNotFoundError) as err:
            raise BackendError(f"{path}: cannot load checkpoint ({err})") from err
        return cls(model, num_threads=num_threads)

    @torch.inference_mode()
    def prompt_features(self, text: str) -> PromptFeatures:
        key = normalise_prompt(text)
        if key not in self._prompt_cache:
            self._warn_if_cut(text)
            input_ids, attention_mask = self.model.tokenize([text])  # [1, L] each
            features = self.model.encode_text(input_ids, attention_mask).features  # [1, L, C]
            self._prompt_cache[key] = PromptFeatures(text=text, features=_numpy(features),
                                                     mask=attention_mask.numpy().astype(np.int64))
        cached = self._prompt_cache[key]
        return PromptFeatures(text=text, features=cached.features, mask=cached.mask)

    def _warn_if_cut(self, text: str) -> None:
        warning = self.model.tokenizer.truncation_warning(text, self.info.max_text_length)
        if warning:
            logger.warning(warning)

    @torch.inference_mode()
    def encode_frame(self, pixel_values: np.ndarray) -> FrameFeatures:
        self.check_pixels(pixel_values)
        levels = self.model.encode_image(torch.from_numpy(pixel_values)).fpn_hidden_states
        fpn0, fpn1, fpn2, memory = check_outputs([_numpy(level) for level in levels], list(self.info.fpn_shapes),
                                                 "encode_frame")
        return FrameFeatures(fpn=(fpn0, fpn1, fpn2), memory_feature=memory)

    @torch.inference_mode()
    def decode_batch(self, frame: FrameFeatures, memory_features: np.ndarray, memory_mask: np.ndarray,
                     prompts: Sequence[PromptFeatures]) -> list[DecodeOutput]:
        vision = VisionFeatures(fpn_hidden_states=tuple(
            torch.from_numpy(level) for level in (*frame.fpn, frame.memory_feature)))
        text_features, text_mask = stack_prompts(prompts)
        text = TextFeatures(features=torch.from_numpy(text_features), mask=torch.from_numpy(text_mask))
        out = self.model.forward_video(None, None, torch.from_numpy(memory_features),
                                       torch.from_numpy(memory_mask), vision=vision, text=text)
        arrays = [out.pred_masks, out.pred_boxes, out.pred_logits, out.presence_logits, out.iou_scores]
        return decode_outputs_from_arrays([_numpy(a) for a in arrays], self.info, len(prompts), "decode")
