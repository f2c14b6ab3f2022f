"""EfficientSam3Model: the one place where the student's parts are wired together.

Image path:  pixels -> RepViT -> trunk projection -> SAM3 FPN neck -> DETR encoder (with the prompt)
             -> DETR decoder -> scoring, boxes, presence -> mask decoder, mask-quality head.
Video path:  the same, plus late fusion of memory: FPN level 3 of the T context frames is compressed by
             the PerceiverResampler into 64 tokens, and MemoryCrossAttention lets the DETR encoder's
             output attend to them before the decoder and the mask decoder. The encoder is unchanged.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from efficient_sam3.attention import padding_bias
from efficient_sam3.backbone import EfficientSam3Head, RepVitBackbone, TrunkProjection
from efficient_sam3.config import BackboneConfig, EfficientSam3Config
from efficient_sam3.boxes import box_cxcywh_to_xyxy
from efficient_sam3.detr_decoder import DetrDecoder
from efficient_sam3.detr_encoder import DetrEncoder
from efficient_sam3.efficient_vit import EfficientVitBackbone
from efficient_sam3.geometry_encoder import GeometryPromptEncoder
from efficient_sam3.mask_decoder import MaskDecoder, MaskQualityHead
from efficient_sam3.memory_attention import MemoryCrossAttention
from efficient_sam3.neck import FpnNeck
from efficient_sam3.outputs import SegmentationOutput, TextFeatures, VisionFeatures
from efficient_sam3.perceiver import PerceiverResampler
from efficient_sam3.position_encoding import sine_grid_encoding
from efficient_sam3.scoring import DotProductScoring
from efficient_sam3.text_encoder import TextEncoder
from efficient_sam3.tiny_vit import TINY_VIT_VARIANTS, TinyVitBackbone

# Index of the FPN level the DETR encoder reads (36x36 at 504 px); levels 0 and 1 feed the pixel decoder.
ENCODER_FPN_LEVEL = 2


def build_backbone(config: BackboneConfig) -> tuple[nn.Module, int]:
    """The image backbone of ``config.kind`` and the channels of its stride-32 map."""
    if config.kind == "tiny_vit":
        return TinyVitBackbone.from_variant(config.variant), TINY_VIT_VARIANTS[config.variant]["embed_dims"][-1]
    if config.kind == "efficient_vit":
        backbone = EfficientVitBackbone.from_variant(config.variant)
        return backbone, backbone.out_channels
    return RepVitBackbone(config), config.embed_dims[-1]


class EfficientSam3Model(nn.Module):
    def __init__(self, config: EfficientSam3Config) -> None:
        super().__init__()
        self.config = config
        width = config.hidden_size
        self.backbone, backbone_channels = build_backbone(config.backbone)
        if config.backbone.projection == "efficientsam3":
            self.trunk_projection = EfficientSam3Head(backbone_channels, config.backbone.trunk_channels,
                                                      config.trunk_grid)
        else:
            self.trunk_projection = TrunkProjection(config.backbone, config.trunk_grid)
        self.neck = FpnNeck(config.backbone.trunk_channels, width)
        self.text_encoder = TextEncoder(config.text)
        self.text_projection = nn.Linear(config.text.width, width)
        self.detr_encoder = DetrEncoder(width, config.detr_encoder)
        self.detr_decoder = DetrDecoder(width, config.detr_decoder, config.trunk_grid)
        self.dot_product_scoring = DotProductScoring(width, config.detr_decoder.intermediate_size)
        self.mask_decoder = MaskDecoder(width, config.mask_decoder.num_heads, config.mask_decoder.coarse_masks)
        self.iou_head = MaskQualityHead(width)
        # SAM3's original prompt path adds the geometry encoder's CLS token to every text prompt.
        self.geometry_encoder = (GeometryPromptEncoder(width, config.geometry_encoder)
                                 if config.prompt_path == "original" else None)
        self.perceiver_resampler = PerceiverResampler(width, config.memory, config.memory_grid)
        self.memory_cross_attn = MemoryCrossAttention(width, config.memory, config.trunk_grid)
        grid = config.trunk_grid
        encoder_pos = sine_grid_encoding(grid, grid, width).flatten(1).transpose(0, 1)[None]  # [1, G*G, C]
        self.register_buffer("encoder_pos", encoder_pos.contiguous(), persistent=False)
        self._tokenizer = None

    # Costly stages, each with its own entry point --------------------------------------------
    def encode_image(self, pixel_values: torch.Tensor) -> VisionFeatures:
        """pixel_values [B, 3, S, S] (SAM3 preprocessing) -> the four FPN levels."""
        size = self.config.image_size
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != (3, size, size):
            raise ValueError(f"pixel_values must be [B, 3, {size}, {size}], got {list(pixel_values.shape)}")
        maps = self.backbone(pixel_values)  # the stride-32 map, or maps with it last (RepViT)
        trunk = self.trunk_projection(maps)  # [B, trunk_channels, 36, 36]
        return VisionFeatures(fpn_hidden_states=self.neck(trunk))

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> TextFeatures:
        """input_ids [B, L] -> prompt tokens [B, L, 256]."""
        max_length = self.config.text.max_length
        if input_ids.dim() != 2 or input_ids.shape[1] != max_length:
            raise ValueError(f"input_ids must be [B, {max_length}], got {list(input_ids.shape)}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        tokens = self.text_encoder(input_ids, attention_mask)
        return TextFeatures(features=self.text_projection(tokens), mask=attention_mask)

    def encode_memory(self, memory_features: torch.Tensor, memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        """memory_features [B, T, 256, 18, 18], memory_mask [B, T] -> memory tokens [B, 64, 256]."""
        return self.perceiver_resampler(memory_features, memory_mask)

    # Pipelines -------------------------------------------------------------------------------
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        vision: VisionFeatures | None = None,
        text: TextFeatures | None = None,
    ) -> SegmentationOutput:
        """Single-image segmentation of the prompted concept (no memory)."""
        vision, text = self._resolve_inputs(pixel_values, input_ids, attention_mask, vision, text)
        prompt, encoder_tokens = self.encode_prompt(vision, text)
        return self._decode(vision, prompt, encoder_tokens)

    def forward_video(
        self,
        pixel_values: torch.Tensor | None,
        input_ids: torch.Tensor | None,
        memory_features: torch.Tensor,
        memory_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        vision: VisionFeatures | None = None,
        text: TextFeatures | None = None,
    ) -> SegmentationOutput:
        """Segmentation of the query frame with memory of T earlier frames.

        One frame, several prompts: vision and memory of batch 1 with text of batch P segment the frame
        for each of the P prompts in one pass ([P, ...] outputs, each equal to its prompt alone); what
        does not depend on the prompt (the memory tokens, the geometry token) is computed once.

        memory_features [B, T, 256, 18, 18]: FPN level 3 of the context frames (slot T-1 = most recent);
        memory_mask [B, T] bool, True = valid slot (None = all valid). With no valid slot the result
        equals ``forward``.
        """
        vision, text = self._resolve_inputs(pixel_values, input_ids, attention_mask, vision, text)
        batch = vision.fpn_hidden_states[0].shape[0]
        if memory_features.dim() != 5 or memory_features.shape[0] != batch:
            raise ValueError(f"memory_features must be [{batch}, T, C, H, W], got {list(memory_features.shape)}")
        if memory_mask is None:
            memory_mask = torch.ones(memory_features.shape[:2], dtype=torch.bool, device=memory_features.device)
        memory_mask = memory_mask.bool()
        memory_tokens = self.encode_memory(memory_features, memory_mask)  # once per frame, for every prompt
        prompt, encoder_tokens = self.encode_prompt(vision, text)
        return self.decode_with_memory(vision, prompt, encoder_tokens, memory_tokens, memory_mask.any(dim=1))

    def encode_prompt(self, vision: VisionFeatures, text: TextFeatures) -> tuple[TextFeatures, torch.Tensor]:
        """The prompted part before memory enters: (the heads' prompt, ``prompt_tokens``; the DETR encoder's
        output [P, 36*36, 256]). It does not depend on the memory, so one call serves any number of memory
        conditions (``decode_with_memory``)."""
        prompt = self.prompt_tokens(vision, text)
        return prompt, self._encode_prompted(vision, prompt)

    def decode_with_memory(self, vision: VisionFeatures, prompt: TextFeatures, encoder_tokens: torch.Tensor,
                           memory_tokens: torch.Tensor, has_memory: torch.Tensor) -> SegmentationOutput:
        """The rest of ``forward_video``: memory cross-attention on the encoder's output, then the heads.

        encoder_tokens [P, N, C] and prompt (``encode_prompt``); memory_tokens [1 or P, 64, C]
        (``encode_memory``); has_memory [1 or P] bool (False: no valid slot, the result equals ``forward``)."""
        prompts = encoder_tokens.shape[0]
        encoder_tokens = self.memory_cross_attn(encoder_tokens, memory_tokens.expand(prompts, -1, -1),
                                                has_memory.expand(prompts))
        return self._decode(vision, prompt, encoder_tokens)

    def prompt_tokens(self, vision: VisionFeatures, text: TextFeatures) -> TextFeatures:
        """What the heads see as the prompt: the text tokens [B, L, C], plus (``prompt_path`` "original")
        the geometry encoder's CLS token after them -> [B, L+1, C] with its mask entry set."""
        if self.geometry_encoder is None:
            return text
        level = vision.fpn_hidden_states[ENCODER_FPN_LEVEL]
        token = self.geometry_encoder(level.flatten(2).transpose(1, 2), self.encoder_pos)  # [B, 1, C]
        token = token.expand(text.features.shape[0], 1, token.shape[-1]).to(text.features.dtype)
        features = torch.cat([text.features, token], dim=1)
        mask = torch.cat([text.mask, torch.ones_like(text.mask[:, :1])], dim=1)
        return TextFeatures(features=features, mask=mask)

    # Internals -------------------------------------------------------------------------------
    def _resolve_inputs(self, pixel_values, input_ids, attention_mask, vision, text):
        if (pixel_values is None) == (vision is None):
            raise ValueError("pass exactly one of pixel_values or vision")
        if (input_ids is None) == (text is None):
            raise ValueError("pass exactly one of input_ids or text")
        if vision is None:
            vision = self.encode_image(pixel_values)
        if text is None:
            text = self.encode_text(input_ids, attention_mask)
        batch, prompts = vision.fpn_hidden_states[0].shape[0], text.features.shape[0]
        if batch != 1 and batch != prompts:
            raise ValueError(f"vision batch {batch} and prompt batch {prompts} differ (vision of batch 1 serves "
                             "any number of prompts)")
        return vision, text

    def _encode_prompted(self, vision: VisionFeatures, prompt: TextFeatures) -> torch.Tensor:
        """DETR encoder on FPN level 2 -> encoder tokens [P, 36*36, 256], one row per prompt (vision of
        batch 1 serves every prompt; otherwise vision and prompt batches are equal)."""
        level = vision.fpn_hidden_states[ENCODER_FPN_LEVEL]
        prompts = prompt.features.shape[0]
        tokens = level.flatten(2).transpose(1, 2).expand(prompts, -1, -1)  # [B, C, G, G] -> [P, G*G, C]
        return self.detr_encoder(tokens, self.encoder_pos, prompt.features, padding_bias(prompt.mask, tokens.dtype))

    def _decode(self, vision: VisionFeatures, prompt: TextFeatures, encoder_tokens: torch.Tensor) -> SegmentationOutput:
        prompt_bias = padding_bias(prompt.mask, encoder_tokens.dtype)
        decoded = self.detr_decoder(encoder_tokens, self.encoder_pos, prompt.features, prompt_bias)
        pred_masks = self.mask_decoder(decoded.query_states, list(vision.fpn_hidden_states[:ENCODER_FPN_LEVEL]),
                                       encoder_tokens, prompt.features, prompt_bias)
        return SegmentationOutput(
            pred_masks=pred_masks,
            pred_boxes=box_cxcywh_to_xyxy(decoded.boxes_cxcywh),
            pred_logits=self.dot_product_scoring(decoded.query_states, prompt.features, prompt.mask),
            presence_logits=decoded.presence_logits,
            iou_scores=self.iou_head(decoded.query_states),
        )

    # Tokenizer and checkpoints ---------------------------------------------------------------
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from efficient_sam3.tokenizer import ClipTokenizer

            self._tokenizer = ClipTokenizer.default()
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, value) -> None:
        self._tokenizer = value

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts -> (input_ids [B, L], attention_mask [B, L]) with CLIP BPE, fully offline (L = text.max_length)."""
        return self.tokenizer(texts, max_length=self.config.text.max_length, pad_token_id=self.config.text.pad_token_id)

    def save_pretrained(self, directory: str | Path) -> None:
        from efficient_sam3.checkpoint import save_pretrained

        save_pretrained(self, directory)

    def set_coarse_masks(self, coarse: bool) -> "EfficientSam3Model":
        """Switch the mask path (``MaskDecoderConfig.coarse_masks``) of this model and its config; same weights."""
        mask_decoder = dataclasses.replace(self.config.mask_decoder, coarse_masks=coarse)
        self.config = dataclasses.replace(self.config, mask_decoder=mask_decoder)
        self.mask_decoder.coarse_masks = coarse
        return self

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str = "cpu") -> "EfficientSam3Model":
        from efficient_sam3.checkpoint import load_pretrained

        return load_pretrained(directory, map_location=map_location).model
