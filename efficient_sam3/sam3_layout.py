"""Meta's sam3 key layout -> our parameter names.

Meta's ``sam3.pt`` and the public EfficientSAM3 students (``torch.save({"model": state_dict})``) share
one layout, under ``detector.``: ``backbone.vision_backbone.{trunk,convs}`` (image trunk, FPN neck),
``backbone.language_backbone.{encoder,projector|resizer}`` (text tower), ``transformer.{encoder,decoder}``,
``dot_prod_scoring``, ``segmentation_head``, ``geometry_encoder``. Attention there is
``nn.MultiheadAttention`` with one packed ``in_proj`` (q, k, v stacked in that order); ours has three
projections. ``tracker.*`` (SAM3's video tracker) is not ours.

``rename_heads`` covers everything but the image trunk and the text tower; the trunk and text-tower
renames live with their converters (``efficient_sam3.convert``).
"""

from __future__ import annotations

import re

import torch

DETECTOR_PREFIX = "detector."
TRACKER_PREFIX = "tracker."
TRUNK_PREFIX = "backbone.vision_backbone.trunk."
STUDENT_BACKBONE_PREFIX = "backbone.vision_backbone.trunk.model.backbone.model."
STUDENT_HEAD_PREFIX = "backbone.vision_backbone.trunk.model.head."
TEXT_PREFIX = "backbone.language_backbone."

# (pattern, replacement) applied in order, first match wins. Attention modules map to a name that
# ends in ".": their packed in_proj is split by ``_expand_attention``.
_HEAD_RULES: tuple[tuple[str, str], ...] = (
    # FPN neck (SAM3's Sam3DualViTDetNeck ``convs``): scale layers, then the two projections.
    (r"backbone\.vision_backbone\.convs\.(\d+)\.dconv_2x2_0\.", r"neck.fpn_layers.\1.scale_layers.0."),
    (r"backbone\.vision_backbone\.convs\.(\d+)\.dconv_2x2_1\.", r"neck.fpn_layers.\1.scale_layers.2."),
    (r"backbone\.vision_backbone\.convs\.(\d+)\.dconv_2x2\.", r"neck.fpn_layers.\1.scale_layers.0."),
    (r"backbone\.vision_backbone\.convs\.(\d+)\.conv_1x1\.", r"neck.fpn_layers.\1.proj1."),
    (r"backbone\.vision_backbone\.convs\.(\d+)\.conv_3x3\.", r"neck.fpn_layers.\1.proj2."),
    # Text projection to the model width (MobileCLIP students: projector; SAM3's own tower: resizer).
    (r"backbone\.language_backbone\.(projector|resizer)\.", r"text_projection."),
    # DETR encoder.
    (r"transformer\.encoder\.layers\.(\d+)\.self_attn\.", r"detr_encoder.layers.\1.self_attn."),
    (r"transformer\.encoder\.layers\.(\d+)\.cross_attn_image\.", r"detr_encoder.layers.\1.cross_attn."),
    (r"transformer\.encoder\.layers\.(\d+)\.linear([12])\.", r"detr_encoder.layers.\1.mlp.fc\2."),
    (r"transformer\.encoder\.layers\.(\d+)\.norm([123])\.", r"detr_encoder.layers.\1.layer_norm\2."),
    # DETR decoder.
    (r"transformer\.decoder\.layers\.(\d+)\.self_attn\.", r"detr_decoder.layers.\1.self_attn."),
    (r"transformer\.decoder\.layers\.(\d+)\.ca_text\.", r"detr_decoder.layers.\1.text_cross_attn."),
    (r"transformer\.decoder\.layers\.(\d+)\.cross_attn\.", r"detr_decoder.layers.\1.vision_cross_attn."),
    (r"transformer\.decoder\.layers\.(\d+)\.linear([12])\.", r"detr_decoder.layers.\1.mlp.fc\2."),
    (r"transformer\.decoder\.layers\.(\d+)\.norm1\.", r"detr_decoder.layers.\1.vision_cross_attn_layer_norm."),
    (r"transformer\.decoder\.layers\.(\d+)\.catext_norm\.", r"detr_decoder.layers.\1.text_cross_attn_layer_norm."),
    (r"transformer\.decoder\.layers\.(\d+)\.norm2\.", r"detr_decoder.layers.\1.self_attn_layer_norm."),
    (r"transformer\.decoder\.layers\.(\d+)\.norm3\.", r"detr_decoder.layers.\1.mlp_layer_norm."),
    (r"transformer\.decoder\.(query_embed|reference_points|presence_token)\.", r"detr_decoder.\1."),
    (r"transformer\.decoder\.presence_token_head\.layers\.(\d+)\.", r"detr_decoder.presence_head.layer<\1+1>."),
    (r"transformer\.decoder\.presence_token_out_norm\.", r"detr_decoder.presence_layer_norm."),
    (r"transformer\.decoder\.norm\.", r"detr_decoder.output_layer_norm."),
    (r"transformer\.decoder\.bbox_embed\.layers\.(\d+)\.", r"detr_decoder.box_head.layer<\1+1>."),
    (r"transformer\.decoder\.ref_point_head\.layers\.(\d+)\.", r"detr_decoder.ref_point_head.layer<\1+1>."),
    (r"transformer\.decoder\.boxRPB_embed_([xy])\.layers\.(\d+)\.", r"detr_decoder.box_rpb_embed_\1.layer<\2+1>."),
    # Scoring.
    (r"dot_prod_scoring\.prompt_mlp\.layers\.(\d+)\.", r"dot_product_scoring.text_mlp.layer<\1+1>."),
    (r"dot_prod_scoring\.prompt_mlp\.out_norm\.", r"dot_product_scoring.text_mlp_out_norm."),
    (r"dot_prod_scoring\.prompt_proj\.", r"dot_product_scoring.text_proj."),
    (r"dot_prod_scoring\.hs_proj\.", r"dot_product_scoring.query_proj."),
    # Mask decoder.
    (r"segmentation_head\.pixel_decoder\.", r"mask_decoder.pixel_decoder."),
    (r"segmentation_head\.mask_predictor\.mask_embed\.", r"mask_decoder.mask_embedder."),
    (r"segmentation_head\.instance_seg_head\.", r"mask_decoder.instance_projection."),
    (r"segmentation_head\.cross_attend_prompt\.", r"mask_decoder.prompt_cross_attn."),
    (r"segmentation_head\.cross_attn_norm\.", r"mask_decoder.prompt_cross_attn_norm."),
    # Geometry encoder, text-prompt path (its CLS token).
    (r"geometry_encoder\.cls_embed\.", r"geometry_encoder.cls_embed."),
    (r"geometry_encoder\.final_proj\.", r"geometry_encoder.final_proj."),
    (r"geometry_encoder\.norm\.", r"geometry_encoder.prompt_layer_norm."),
    (r"geometry_encoder\.encode\.(\d+)\.self_attn\.", r"geometry_encoder.layers.\1.self_attn."),
    (r"geometry_encoder\.encode\.(\d+)\.cross_attn_image\.", r"geometry_encoder.layers.\1.cross_attn."),
    (r"geometry_encoder\.encode\.(\d+)\.linear([12])\.", r"geometry_encoder.layers.\1.mlp.fc\2."),
    (r"geometry_encoder\.encode\.(\d+)\.norm([123])\.", r"geometry_encoder.layers.\1.layer_norm\2."),
    (r"geometry_encoder\.encode_norm\.", r"geometry_encoder.output_layer_norm."),
)

# Keys of the layout that no part of ours reads: SAM3's semantic-segmentation head, the box and point
# prompt parts of the geometry encoder, the decoder's instance-query branch, and the SAM2-style neck
# of SAM3's interactive tracker.
UNUSED_HEAD_PATTERNS: tuple[str, ...] = (
    r"segmentation_head\.semantic_seg_head\.",
    r"geometry_encoder\.(label_embed|img_pre_norm|points_\w+|boxes_\w+|mask_\w+)\.",
    r"transformer\.decoder\.instance_\w+\.",
    r"backbone\.vision_backbone\.sam2_convs\.",
)

_PLUS_ONE = re.compile(r"<(\d+)\+1>")


def strip_detector(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The detector's keys without their ``detector.`` prefix; ``tracker.*`` dropped."""
    if any(key.startswith(DETECTOR_PREFIX) for key in state):
        return {k.removeprefix(DETECTOR_PREFIX): v for k, v in state.items() if k.startswith(DETECTOR_PREFIX)}
    return {k: v for k, v in state.items() if not k.startswith(TRACKER_PREFIX)}


def _rename(key: str) -> str | None:
    for pattern, replacement in _HEAD_RULES:
        match = re.match(pattern, key)
        if match:
            renamed = match.expand(replacement)
            renamed = _PLUS_ONE.sub(lambda m: str(int(m.group(1)) + 1), renamed)
            return renamed + key[match.end():]
    return None


def split_packed_qkv(head: str, kind: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    """A packed projection (q, k, v stacked along dim 0, as every layout here packs it) -> ``head.{q,k,v}_proj.kind``."""
    q, k, v = value.chunk(3, dim=0)
    return {f"{head}.q_proj.{kind}": q, f"{head}.k_proj.{kind}": k, f"{head}.v_proj.{kind}": v}


def _expand_attention(ours: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    """``x.in_proj_weight`` / ``x.in_proj_bias`` -> q/k/v projections; ``x.out_proj.*`` -> ``x.o_proj.*``."""
    head, _, leaf = ours.rpartition(".")
    if leaf in ("in_proj_weight", "in_proj_bias"):
        return split_packed_qkv(head, "weight" if leaf == "in_proj_weight" else "bias", value)
    if ".out_proj." in ours and not ours.startswith("text_encoder."):
        return {ours.replace(".out_proj.", ".o_proj."): value}
    return {ours: value}


def rename_heads(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Detector keys (``detector.`` stripped) -> (our keys for neck, text projection, heads and geometry
    encoder; keys known to be unused; keys left for the trunk / text-tower converters)."""
    ours: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    rest: list[str] = []
    for key, value in state.items():
        renamed = _rename(key)
        if renamed is not None:
            ours.update(_expand_attention(renamed, value))
        elif any(re.match(pattern, key) for pattern in UNUSED_HEAD_PATTERNS):
            unused.append(key)
        else:
            rest.append(key)
    return ours, unused, rest


# Text tower: MobileCLIP as packaged by EfficientSAM3 (``backbone.language_backbone.encoder.*``).
MOBILECLIP_PREFIX = TEXT_PREFIX + "encoder."
_MOBILECLIP_RULES: tuple[tuple[str, str], ...] = (
    (r"embedding_layer\.", r"embeddings.token_embedding."),
    (r"positional_embedding\.pos_embed\.pos_embed$", r"embeddings.position_embedding.position_embedding"),
    (r"final_layer_norm\.", r"final_layer_norm."),
    (r"transformer\.(\d+)\.pre_norm_mha\.0\.", r"layers.\1.layer_norm1."),
    (r"transformer\.(\d+)\.pre_norm_mha\.1\.qkv_proj\.", r"layers.\1.self_attn.qkv."),
    (r"transformer\.(\d+)\.pre_norm_mha\.1\.out_proj\.", r"layers.\1.self_attn.out_proj."),
    (r"transformer\.(\d+)\.pre_norm_ffn\.0\.", r"layers.\1.layer_norm2."),
    (r"transformer\.(\d+)\.pre_norm_ffn\.1\.", r"layers.\1.mlp.fc1."),
    (r"transformer\.(\d+)\.pre_norm_ffn\.4\.", r"layers.\1.mlp.fc2."),
    (r"transformer\.(\d+)\.token_mixer\.norm\.rbr_skip\.", r"layers.\1.token_mixer.reference_batchnorm."),
    (r"transformer\.(\d+)\.token_mixer\.mixer\.rbr_skip\.", r"layers.\1.token_mixer.mixer.batchnorm_skip."),
    (r"transformer\.(\d+)\.token_mixer\.mixer\.rbr_conv\.0\.conv\.", r"layers.\1.token_mixer.mixer.conv."),
    (r"transformer\.(\d+)\.token_mixer\.mixer\.rbr_conv\.0\.bn\.", r"layers.\1.token_mixer.mixer.batchnorm_conv."),
    (r"transformer\.(\d+)\.token_mixer\.layer_scale$", r"layers.\1.token_mixer.layer_scale"),
    (r"transformer\.(\d+)\.convffn\.conv\.conv\.", r"layers.\1.conv_feed_forward.depthwise_conv."),
    (r"transformer\.(\d+)\.convffn\.conv\.bn\.", r"layers.\1.conv_feed_forward.depthwise_batchnorm."),
    (r"transformer\.(\d+)\.convffn\.fc([12])\.", r"layers.\1.conv_feed_forward.mlp.fc\2."),
    (r"transformer\.(\d+)\.layer_scale$", r"layers.\1.layer_scale"),
)
# MobileCLIP's own CLIP-space projection (unused: SAM3 reads the token features through ``projector``).
MOBILECLIP_UNUSED = ("projection_layer",)


def rename_mobileclip(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """``backbone.language_backbone.encoder.*`` -> (our ``text_encoder.*``, unused keys, unmatched keys)."""
    ours: dict[str, torch.Tensor] = {}
    unused, unmatched = [], []
    for key, value in state.items():
        if not key.startswith(MOBILECLIP_PREFIX):
            continue
        local = key.removeprefix(MOBILECLIP_PREFIX)
        if local in MOBILECLIP_UNUSED:
            unused.append(key)
            continue
        for pattern, replacement in _MOBILECLIP_RULES:
            match = re.match(pattern, local)
            if match:
                renamed = "text_encoder." + match.expand(replacement) + local[match.end():]
                if ".self_attn.qkv." in renamed:
                    ours.update(split_packed_qkv(*renamed.split(".qkv."), value))
                else:
                    ours[renamed] = value
                break
        else:
            unmatched.append(key)
    return ours, unused, unmatched


def rename_student_head(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The students' projection head ``trunk.model.head.{0,1,3}`` -> ``trunk_projection.{proj.c,proj.bn,conv}``."""
    parts = {"0": "proj.c", "1": "proj.bn", "3": "conv"}
    ours = {}
    for key, value in state.items():
        if key.startswith(STUDENT_HEAD_PREFIX):
            index, _, leaf = key.removeprefix(STUDENT_HEAD_PREFIX).partition(".")
            if index not in parts:
                raise ValueError(f"{key}: unexpected module in the student projection head")
            ours[f"trunk_projection.{parts[index]}.{leaf}"] = value
    return ours


def rename_repvit(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], tuple[int, ...], tuple[int, ...]]:
    """THU-MIG's flat RepViT (``features.N``, what EfficientSAM3 packages) -> our timm-style stages.

    THU-MIG runs blocks in one list; a stride-2 block (its token mixer has a third module: the 1x1
    channel conv) starts a new stage, and the block just before it becomes that stage's
    ``downsample.pre_block`` (as timm splits it). Returns (our backbone keys, embed_dims, depths).
    """
    local = {k.removeprefix(STUDENT_BACKBONE_PREFIX): v for k, v in state.items() if k.startswith(STUDENT_BACKBONE_PREFIX)}
    indices = sorted({int(key.split(".")[1]) for key in local if key.startswith("features.")})
    if not indices or indices[0] != 0:
        raise ValueError("RepViT weights have no patch embedding (features.0)")
    blocks = indices[1:]
    is_down = {j: f"features.{j}.token_mixer.2.c.weight" in local for j in blocks}
    targets: dict[int, tuple[str, str]] = {}
    stage, count, depths = 0, 0, []
    for position, j in enumerate(blocks):
        following = blocks[position + 1] if position + 1 < len(blocks) else None
        if is_down[j]:
            targets[j] = (f"stages.{stage + 1}.downsample", "downsample")
            depths.append(count)
            stage, count = stage + 1, 0
        elif following is not None and is_down[following]:
            targets[j] = (f"stages.{stage + 1}.downsample.pre_block", "block")
        else:
            targets[j] = (f"stages.{stage}.blocks.{count}", "block")
            count += 1
    depths.append(count)
    block_parts = (("token_mixer.0.conv.", "token_mixer.conv."), ("token_mixer.0.conv1.", "token_mixer.conv1."),
                   ("token_mixer.0.bn.", "token_mixer.bn."), ("token_mixer.1.", "se."),
                   ("channel_mixer.m.0.", "channel_mixer.conv1."), ("channel_mixer.m.2.", "channel_mixer.conv2."))
    down_parts = (("token_mixer.0.", "spatial_downsample."), ("token_mixer.2.", "channel_downsample."),
                  ("channel_mixer.m.0.", "ffn.conv1."), ("channel_mixer.m.2.", "ffn.conv2."))
    ours = {}
    for key, value in local.items():
        _, index, rest = key.split(".", 2)
        index = int(index)
        if index == 0:
            part, _, leaf = rest.partition(".")
            stem = {"0": "stem.conv1.", "2": "stem.conv2."}.get(part)
            if stem is None:
                raise ValueError(f"{STUDENT_BACKBONE_PREFIX}{key}: unexpected module in RepViT's patch embedding")
            ours["backbone." + stem + leaf] = value
            continue
        target, kind = targets[index]
        for old, new in (down_parts if kind == "downsample" else block_parts):
            if rest.startswith(old):
                ours[f"backbone.{target}.{new}{rest.removeprefix(old)}"] = value
                break
        else:
            raise ValueError(f"{STUDENT_BACKBONE_PREFIX}{key}: not a RepViT block parameter")
    stem_width = local["features.0.2.c.weight"].shape[0]
    dims = [stem_width]
    for j in blocks:
        if is_down[j]:
            dims.append(local[f"features.{j}.token_mixer.2.c.weight"].shape[0])
    return ours, tuple(dims), tuple(depths)


# SAM3's ViT in sam3.pt -> transformers' ``Sam3VisionModel`` names (the feature teacher; see training/teacher.py).
_VIT_RULES: tuple[tuple[str, str], ...] = (
    (r"pos_embed$", r"backbone.embeddings.position_embeddings"),
    (r"patch_embed\.proj\.", r"backbone.embeddings.patch_embeddings.projection."),
    (r"ln_pre\.", r"backbone.layer_norm."),
    (r"blocks\.(\d+)\.norm([12])\.", r"backbone.layers.\1.layer_norm\2."),
    (r"blocks\.(\d+)\.attn\.qkv\.", r"backbone.layers.\1.attention.qkv."),
    (r"blocks\.(\d+)\.attn\.proj\.", r"backbone.layers.\1.attention.o_proj."),
    (r"blocks\.(\d+)\.mlp\.fc([12])\.", r"backbone.layers.\1.mlp.fc\2."),
)
# Rotary tables SAM3 stores per block: not weights (transformers recomputes them), but their length tells
# each block's attention span (window_size^2, or the whole grid for a global block).
VIT_ROPE_SUFFIX = ".attn.freqs_cis"


def rename_sam3_vision(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[int, int]]:
    """sam3.pt's ViT and FPN neck (``detector.`` stripped) -> (transformers ``Sam3VisionModel`` state dict,
    {block index: rotary table length}). The ViT's position embedding loses its class-token row (SAM3
    stores [1, 1 + P, C], transformers [1, P, C]); packed qkv is split into q, k, v."""
    vision: dict[str, torch.Tensor] = {}
    rope_lengths: dict[int, int] = {}
    for key, value in state.items():
        if key.startswith(TRUNK_PREFIX):
            local = key.removeprefix(TRUNK_PREFIX)
            if local.endswith(VIT_ROPE_SUFFIX):
                rope_lengths[int(local.split(".")[1])] = value.shape[0]
                continue
            for pattern, replacement in _VIT_RULES:
                match = re.match(pattern, local)
                if match:
                    renamed = match.expand(replacement) + local[match.end():]
                    break
            else:
                raise ValueError(f"{key}: not a parameter of SAM3's ViT")
            if renamed == "backbone.embeddings.position_embeddings":
                value = value[:, 1:, :]
            if ".attention.qkv." in renamed:
                vision.update(split_packed_qkv(*renamed.split(".qkv."), value))
            else:
                vision[renamed] = value
        elif key.startswith("backbone.vision_backbone.convs."):
            renamed = _rename(key)
            vision[renamed] = value
    return vision, rope_lengths
