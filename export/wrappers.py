"""The three exported entry points: modules that take and return flat tensors (batch 1).

The streaming state (ring buffer of the last T level-3 features and its valid mask) lives on the
host, so every program is stateless:

    encode_frame(pixel_values [1,3,S,S]) -> (fpn0 [1,256,144,144], fpn1 [1,256,72,72],
                                             fpn2 [1,256,36,36], memory_feature [1,256,18,18])
    decode(fpn0, fpn1, fpn2, memory_features [1,T,256,18,18], memory_mask bool [1,T],
           text_features [P,L,256], text_mask int64 [P,L])
        -> (pred_masks [P,Q,144,144], pred_boxes [P,Q,4], pred_logits [P,Q],
            presence_logits [P,1], iou_scores [P,Q])
    encode_text(input_ids int64 [1,L], attention_mask int64 [1,L]) -> text_features [1,L,256]

decode segments one frame for P prompts at once (1 <= P <= ``max_prompts`` of the export's metadata):
the memory tokens and the geometry token are computed once, the prompt-dependent heads run batched,
and row p of every output equals decode with prompt p alone. An export with ``max_prompts`` 1 is
static (P = 1), as exports of metadata versions 1 and 2 were.

Each wrapper holds the model and supplies ``example_inputs()`` with the exact shapes and dtypes of
the contract. This is the only place where typed outputs are flattened to tuples.
"""

from __future__ import annotations

import torch
from torch import nn

from efficient_sam3 import EfficientSam3Model, contract
from efficient_sam3.outputs import TextFeatures, VisionFeatures

METHOD_NAMES = contract.ENTRY_POINTS
INPUT_NAMES: dict[str, tuple[str, ...]] = {
    "encode_frame": ("pixel_values",),
    "decode": contract.DECODE_INPUTS,
    "encode_text": ("input_ids", "attention_mask"),
}
OUTPUT_NAMES: dict[str, tuple[str, ...]] = {
    "encode_frame": ("fpn0", "fpn1", "fpn2", "memory_feature"),
    "decode": ("pred_masks", "pred_boxes", "pred_logits", "presence_logits", "iou_scores"),
    "encode_text": ("text_features",),
}


class EncodeFrame(nn.Module):
    def __init__(self, model: EfficientSam3Model) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """pixel_values [1, 3, S, S] -> FPN levels 0-2 (for decode) and level 3 (for the host's memory)."""
        levels = self.model.encode_image(pixel_values).fpn_hidden_states
        return levels[0], levels[1], levels[2], levels[3]

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        size = self.model.config.image_size
        return (torch.randn(1, 3, size, size),)


class Decode(nn.Module):
    def __init__(self, model: EfficientSam3Model) -> None:
        super().__init__()
        self.model = model

    def forward(self, fpn0: torch.Tensor, fpn1: torch.Tensor, fpn2: torch.Tensor, memory_features: torch.Tensor,
                memory_mask: torch.Tensor, text_features: torch.Tensor,
                text_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One frame's predictions from its FPN levels 0-2, T memory slots and the prompt tokens."""
        # Level 3 is only written to memory, never read by the heads, so decode does not take it.
        vision = VisionFeatures(fpn_hidden_states=(fpn0, fpn1, fpn2))
        text = TextFeatures(features=text_features, mask=text_mask)
        out = self.model.forward_video(None, None, memory_features, memory_mask, vision=vision, text=text)
        return out.pred_masks, out.pred_boxes, out.pred_logits, out.presence_logits, out.iou_scores

    def example_inputs(self, num_prompts: int = 1) -> tuple[torch.Tensor, ...]:
        config = self.model.config
        width, frames, length = config.hidden_size, config.memory.context_frames, config.text.max_length
        fpn = [torch.randn(1, width, size, size) for size in config.fpn_sizes[:3]]
        memory_mask = torch.ones(1, frames, dtype=torch.bool)
        memory_mask[0, : frames // 2] = False  # a stream's start: older slots empty
        text_mask = torch.zeros(num_prompts, length, dtype=torch.long)
        text_mask[:, :4] = 1
        return (*fpn, torch.randn(1, frames, width, config.memory_grid, config.memory_grid), memory_mask,
                torch.randn(num_prompts, length, width), text_mask)

    def export_arguments(self, max_prompts: int) -> tuple[tuple[torch.Tensor, ...], tuple | None]:
        """(example inputs, ``dynamic_shapes``) for torch.export / torch.onnx.export of a decode taking 1 to
        ``max_prompts`` prompts (max_prompts 1: a static program). The example holds two prompts: an
        export that sees a dimension of size 1 fixes it to 1."""
        if max_prompts < 1:
            raise ValueError(f"max_prompts must be positive, got {max_prompts}")
        if max_prompts == 1:
            return self.example_inputs(), None
        prompts = torch.export.Dim("prompts", min=1, max=max_prompts)
        return self.example_inputs(num_prompts=2), (None, None, None, None, None, {0: prompts}, {0: prompts})


class EncodeText(nn.Module):
    def __init__(self, model: EfficientSam3Model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask int64 [1, L] -> prompt tokens [1, L, 256]."""
        return self.model.encode_text(input_ids, attention_mask).features

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        return self.model.tokenize(["red circle"])


def build_entry_points(model: EfficientSam3Model) -> dict[str, nn.Module]:
    """The three wrappers around one (deployment-form, eval) model, keyed by method name."""
    # A new wrapper is in training mode even around an eval model; exporters read the top module's flag.
    wrappers = {"encode_frame": EncodeFrame(model), "decode": Decode(model), "encode_text": EncodeText(model)}
    return {name: wrapper.eval() for name, wrapper in wrappers.items()}
