"""Initialise a student's SAM3 heads from a transformers ``Sam3Model`` (local directory or in memory).

Copied: FPN neck, text projection (when the student's text width equals SAM3's), DETR encoder, DETR
decoder, dot-product scoring and mask decoder. Not copied: SAM3's ViT and CLIP text tower (the
student has its own), the geometry encoder (no box prompts here) and the semantic-segmentation head.
The neck is copied only when the student's trunk has SAM3's width (1024 for the edge preset).
transformers is imported only here, and only for an in-memory model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from efficient_sam3.config import DetrDecoderConfig, DetrEncoderConfig, EfficientSam3Config
from efficient_sam3.model import EfficientSam3Model

HEAD_PREFIXES = ("detr_encoder.", "detr_decoder.", "dot_product_scoring.", "mask_decoder.")
NECK_PREFIX = "neck."
TEACHER_NECK_PREFIX = "vision_encoder.neck."
TEXT_PROJECTION_PREFIX = "text_projection."
# SAM3 keys with no counterpart in the student.
UNUSED_TEACHER_PREFIXES = ("mask_decoder.semantic_projection.",)
# Prefix under which a SAM3 video checkpoint stores the detector.
VIDEO_DETECTOR_PREFIX = "detector_model."


@dataclass
class ConversionReport:
    model: EfficientSam3Model
    copied: list[str]          # student keys taken from SAM3
    kept_at_init: list[str]    # student keys with no SAM3 counterpart (backbone, text tower, memory...)
    skipped_groups: list[str]  # human-readable reasons for groups not copied


def student_config_for_sam3(sam3_config: dict, base: EfficientSam3Config) -> EfficientSam3Config:
    """The ``base`` student config with its head sizes taken from a SAM3 config dict."""
    enc, dec = sam3_config["detr_encoder_config"], sam3_config["detr_decoder_config"]
    hidden = enc.get("hidden_size", 256)
    if hidden != base.hidden_size:
        raise ValueError(f"SAM3 DETR width {hidden} differs from the student's hidden_size {base.hidden_size}")
    return replace(
        base,
        detr_encoder=DetrEncoderConfig(num_layers=enc.get("num_layers", 6), num_heads=enc.get("num_attention_heads", 8),
                                       intermediate_size=enc.get("intermediate_size", 2048)),
        detr_decoder=DetrDecoderConfig(num_layers=dec.get("num_layers", 6), num_heads=dec.get("num_attention_heads", 8),
                                       intermediate_size=dec.get("intermediate_size", 2048),
                                       num_queries=dec.get("num_queries", 200)),
    )


def _read_sam3_directory(directory: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors import safe_open

    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: not a SAM3 checkpoint directory (no config.json)")
    config = json.loads(config_path.read_text())
    if config.get("model_type") == "sam3_video":
        config = config["detector_config"]
    if "detr_encoder_config" not in config:
        raise ValueError(f"{config_path}: not a SAM3 config (no detr_encoder_config)")
    index = directory / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else ["model.safetensors"]
    wanted = (*HEAD_PREFIXES, TEACHER_NECK_PREFIX, TEXT_PROJECTION_PREFIX)
    state = {}
    for name in files:
        path = directory / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: weights file listed by the checkpoint is missing")
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                plain = key.removeprefix(VIDEO_DETECTOR_PREFIX)
                if plain.startswith(wanted):
                    state[plain] = handle.get_tensor(key)
    return config, state


def convert_from_sam3(sam3, base: EfficientSam3Config) -> ConversionReport:
    """Build a student whose heads (and neck, where shapes allow) come from SAM3.

    ``sam3`` is a transformers ``Sam3Model`` or the path of its checkpoint directory.
    """
    if isinstance(sam3, (str, Path)):
        sam3_config, teacher = _read_sam3_directory(Path(sam3))
    else:
        sam3_config = sam3.config.to_dict()
        teacher = {k.removeprefix(VIDEO_DETECTOR_PREFIX): v for k, v in sam3.state_dict().items()}
    config = student_config_for_sam3(sam3_config, base)
    model = EfficientSam3Model(config)
    student = model.state_dict()

    mapping: dict[str, str] = {}
    skipped: list[str] = []
    for key in student:
        if key.startswith(HEAD_PREFIXES):
            mapping[key] = key
    teacher_trunk = sam3_config["vision_config"]["backbone_config"].get("hidden_size", 1024)
    if teacher_trunk == config.backbone.trunk_channels:
        mapping.update({k: TEACHER_NECK_PREFIX + k.removeprefix(NECK_PREFIX) for k in student if k.startswith(NECK_PREFIX)})
    else:
        skipped.append(f"neck: SAM3 trunk width {teacher_trunk} != student trunk_channels {config.backbone.trunk_channels}")
    teacher_text = sam3_config["text_config"].get("hidden_size", 1024)
    if teacher_text == config.text.width:
        mapping.update({k: k for k in student if k.startswith(TEXT_PROJECTION_PREFIX)})
    else:
        skipped.append(f"text_projection: SAM3 text width {teacher_text} != student text width {config.text.width}")

    new_state = {}
    for student_key, teacher_key in mapping.items():
        if teacher_key not in teacher:
            raise ValueError(f"SAM3 checkpoint lacks {teacher_key} (needed for the student's {student_key})")
        value = teacher[teacher_key]
        if value.shape != student[student_key].shape:
            raise ValueError(f"{teacher_key}: SAM3 shape {list(value.shape)} != student {list(student[student_key].shape)}")
        new_state[student_key] = value.to(student[student_key].dtype)
    unmatched_heads = sorted(k for k in teacher if k.startswith(HEAD_PREFIXES)
                             and k not in new_state and not k.startswith(UNUSED_TEACHER_PREFIXES))
    if unmatched_heads:
        raise ValueError(f"SAM3 head keys with no student counterpart: {unmatched_heads[:10]}")
    model.load_state_dict(new_state, strict=False)
    kept = sorted(set(student) - set(new_state))
    return ConversionReport(model=model, copied=sorted(new_state), kept_at_init=kept, skipped_groups=skipped)
