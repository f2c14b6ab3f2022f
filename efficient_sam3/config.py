"""Typed configuration of the EfficientSAM3 student: one frozen dataclass per submodule.

The shared width (``hidden_size``) and the input contract (``image_size``) are declared once on
``EfficientSam3Config``; every grid size is derived from them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from efficient_sam3 import contract


# How the backbone's maps become SAM3's trunk map [B, trunk_channels, G, G]:
#   "two_stage": ours, the stride-16 and stride-32 maps resized to G and mixed by a 1x1 conv + BN;
#   "efficientsam3": the public EfficientSAM3 students' head on the stride-32 map (1x1 conv + BN + GELU
#                    + 3x3 conv, then bilinear resize to G).
TRUNK_PROJECTIONS = ("two_stage", "efficientsam3")
# Backbone families: "repvit" is sized by embed_dims / depths below; the others by ``variant``, a key of
# their table (TINY_VIT_VARIANTS in tiny_vit.py, EFFICIENT_VIT_VARIANTS in efficient_vit.py).
BACKBONE_KINDS = ("repvit", "tiny_vit", "efficient_vit")


@dataclass(frozen=True)
class BackboneConfig:
    """The image backbone plus a projection to SAM3's trunk shape."""

    kind: str = "repvit"
    variant: str = ""
    # RepViT (timm ``repvit_*`` layout; THU-MIG's flat ``features.N`` layout converts to it).
    embed_dims: tuple[int, ...] = (64, 128, 256, 512)
    depths: tuple[int, ...] = (4, 4, 14, 2)
    mlp_ratio: int = 2
    kernel_size: int = 3
    # Channels of the projected trunk map that enters the FPN neck (SAM3's ViT width is 1024).
    trunk_channels: int = 1024
    projection: str = "two_stage"

    def __post_init__(self) -> None:
        if self.kind not in BACKBONE_KINDS:
            raise ValueError(f"backbone.kind must be one of {BACKBONE_KINDS}, got {self.kind!r}")
        if self.kind != "repvit" and self.projection != "efficientsam3":
            raise ValueError(f"backbone.kind {self.kind!r} has only a stride-32 output: projection must be 'efficientsam3'")
        if self.projection not in TRUNK_PROJECTIONS:
            raise ValueError(f"backbone.projection must be one of {TRUNK_PROJECTIONS}, got {self.projection!r}")


@dataclass(frozen=True)
class TextEncoderConfig:
    """MobileCLIP-S0-class text encoder (transformers' ``Sam3LiteTextTextModel`` architecture)."""

    vocab_size: int = 49408
    width: int = 512
    intermediate_size: int = 2048
    num_layers: int = 12
    num_heads: int = 8
    max_length: int = 32
    use_repmixer_blocks: bool = True
    repmixer_kernel_size: int = 11
    layer_norm_eps: float = 1e-5
    layer_scale_init_value: float = 1e-5
    # Token id after <eot>. The original CLIP tokenizer of SAM3 / EfficientSAM3 pads with 0;
    # transformers' pads with 49407 (<eot>).
    pad_token_id: int = 49407
    # Whether the transformer layers mask the padding. The original MobileCLIP text tower of the
    # EfficientSAM3 students does not: every token attends to the padding. The prompt mask that the
    # heads see marks the real tokens either way.
    mask_padding: bool = True


@dataclass(frozen=True)
class GeometryEncoderConfig:
    """SAM3's geometry encoder on the text-prompt path (its CLS token; see geometry_encoder.py)."""

    num_layers: int = 3
    num_heads: int = 8
    intermediate_size: int = 2048


@dataclass(frozen=True)
class DetrEncoderConfig:
    num_layers: int = 6
    num_heads: int = 8
    intermediate_size: int = 2048


@dataclass(frozen=True)
class DetrDecoderConfig:
    num_layers: int = 6
    num_heads: int = 8
    intermediate_size: int = 2048
    num_queries: int = 200


@dataclass(frozen=True)
class MaskDecoderConfig:
    num_heads: int = 8
    # Opt-in fast mask path (issue #19): the pixel decoder's last stage runs at FPN level 1's size (72x72 at
    # 504 px) without level 0, and the mask logits are upsampled 2x (bilinear) to the usual mask size: the
    # per-prompt 3x3 conv, projection and mask product run on a quarter of the pixels. Same weights, same
    # outputs' shapes. False: SAM3's mask path.
    coarse_masks: bool = False


@dataclass(frozen=True)
class MemoryConfig:
    """Perceiver resampler (context frames -> latent tokens) and the memory cross-attention."""

    context_frames: int = 8
    num_latents: int = 64
    perceiver_depth: int = 2
    perceiver_ff_mult: int = 3
    num_heads: int = 8
    # Spatial prior: the latents tile the image as a sqrt(num_latents)^2 grid, and both the perceiver
    # (latent -> context token) and the memory cross-attention (vision token -> latent) start with a
    # Gaussian attention-logit bias of this width, in latent cells. Learned from there on. Without it
    # every latent starts as the same average of all context tokens and a short video stage never
    # learns where in the frame a memory came from.
    locality_sigma: float = 0.75
    # Perceiver logit bias per context slot starts at -recency_bias * (age in slots): recent frames
    # count more at the start of training.
    recency_bias: float = 0.5
    # One stream frame in every memory_stride is written into memory (24 fps -> 6 fps, the spacing the
    # memory was trained on). Configs saved before this field load with the default.
    memory_stride: int = contract.DEFAULT_MEMORY_STRIDE
    # QK-norm in the perceiver's attention: each head's queries and keys pass a LayerNorm before the dot
    # product, which bounds the attention logits (a trained perceiver cannot make its attention one-hot
    # by growing them). False: the attention of before (checkpoints and exports without it load as is).
    perceiver_qk_norm: bool = False
    # Whether the perceiver's values carry the context tokens' position and slot encodings (as its keys
    # always do). With them, a trained perceiver can answer every video with the same per-location map
    # read from the encodings alone (the collapse of issue #16); False: values hold the features only.
    # True: the perceiver of before.
    perceiver_value_pos: bool = True

    def __post_init__(self) -> None:
        contract.check_memory_stride(self.memory_stride)
        side = math.isqrt(self.num_latents)
        if side * side != self.num_latents:
            raise ValueError(f"num_latents must be a square number (the latents tile the image), got {self.num_latents}")

    @property
    def latent_grid(self) -> int:
        return math.isqrt(self.num_latents)


# What the heads receive as the prompt of a text query:
#   "original":     the text tokens plus the geometry encoder's CLS token, as SAM3's own code (and every
#                   EfficientSAM3 student, trained with it) runs a text prompt;
#   "transformers": the text tokens alone, as transformers' Sam3Model runs a text prompt.
PROMPT_PATHS = ("original", "transformers")


@dataclass(frozen=True)
class EfficientSam3Config:
    # The name of the preset this config came from (``from_preset``); a config built field by field is
    # "custom": its defaults are no preset's (the students and edge differ in backbone, text and prompt path).
    preset: str = "custom"
    image_size: int = 504
    hidden_size: int = 256
    # SAM3 normalisation: pixel / 255, then (x - mean) / std (efficient_sam3/contract.py).
    image_mean: tuple[float, float, float] = contract.PIXEL_MEAN
    image_std: tuple[float, float, float] = contract.PIXEL_STD
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    detr_encoder: DetrEncoderConfig = field(default_factory=DetrEncoderConfig)
    detr_decoder: DetrDecoderConfig = field(default_factory=DetrDecoderConfig)
    mask_decoder: MaskDecoderConfig = field(default_factory=MaskDecoderConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    prompt_path: str = "transformers"
    geometry_encoder: GeometryEncoderConfig = field(default_factory=GeometryEncoderConfig)

    def __post_init__(self) -> None:
        if self.prompt_path not in PROMPT_PATHS:
            raise ValueError(f"prompt_path must be one of {PROMPT_PATHS}, got {self.prompt_path!r}")
        contract.check_image_size(self.image_size)
        for name, heads in (
            ("detr_encoder", self.detr_encoder.num_heads),
            ("detr_decoder", self.detr_decoder.num_heads),
            ("mask_decoder", self.mask_decoder.num_heads),
            ("memory", self.memory.num_heads),
            ("geometry_encoder", self.geometry_encoder.num_heads),
        ):
            if self.hidden_size % heads != 0:
                raise ValueError(f"hidden_size {self.hidden_size} is not divisible by {name}.num_heads {heads}")

    # Derived grid sizes -------------------------------------------------------------------
    @property
    def trunk_grid(self) -> int:
        """Side of the trunk map entering the neck (36 at 504 px)."""
        return contract.trunk_grid(self.image_size)

    @property
    def fpn_sizes(self) -> tuple[int, ...]:
        """Side of each FPN level: (144, 72, 36, 18) at 504 px."""
        return contract.fpn_sizes(self.image_size)

    @property
    def memory_grid(self) -> int:
        """Side of the FPN level the memory stores (18 at 504 px)."""
        return contract.memory_grid(self.image_size)

    @property
    def mask_size(self) -> int:
        """Side of the predicted mask logits (the finest FPN level, 144 at 504 px)."""
        return contract.mask_size(self.image_size)

    # Serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EfficientSam3Config":
        sub_types = {f.name: f.type for f in dataclasses.fields(cls)}
        nested = {
            "backbone": BackboneConfig,
            "text": TextEncoderConfig,
            "detr_encoder": DetrEncoderConfig,
            "detr_decoder": DetrDecoderConfig,
            "mask_decoder": MaskDecoderConfig,
            "memory": MemoryConfig,
            "geometry_encoder": GeometryEncoderConfig,
        }
        unknown = set(data) - set(sub_types)
        if unknown:
            raise ValueError(f"unknown EfficientSam3Config fields: {sorted(unknown)}")
        kwargs = {}
        for key, value in data.items():
            if key in nested:
                kwargs[key] = _build_frozen(nested[key], value)
            elif isinstance(value, list):
                kwargs[key] = tuple(value)
            else:
                kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def from_preset(cls, name: str) -> "EfficientSam3Config":
        from efficient_sam3.presets import PRESETS

        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; available: {sorted(PRESETS)}")
        return PRESETS[name]


def _build_frozen(sub_cls, values: dict):
    known = {f.name for f in dataclasses.fields(sub_cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {sub_cls.__name__} fields: {sorted(unknown)}")
    return sub_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
