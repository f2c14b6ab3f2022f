"""Convert checkpoints people hold into ours. Three sources:

* ``efficientsam3``: a public EfficientSAM3 student (``torch.save({"model": state_dict})`` in Meta's sam3
  layout): every module converts (backbone, projection head, neck, MobileCLIP text tower, heads,
  geometry encoder); the variant is detected from key names and shapes. ``convert_from_efficientsam3``.
* ``sam3``: Meta's ``sam3.pt``: SAM3's heads, neck and geometry encoder into a student preset (the ViT
  and the CLIP text tower are SAM3's, not the student's). ``convert_from_sam3_checkpoint``.
* ``transformers``: a transformers ``Sam3Model`` directory (or the model in memory), below.

``python -m efficient_sam3.convert --from {efficientsam3,sam3,transformers} PATH --out CKPT``.

Initialise a student's SAM3 heads from a transformers ``Sam3Model`` (local directory or in memory).

Copied: FPN neck, text projection (when the student's text width equals SAM3's), DETR encoder, DETR
decoder, dot-product scoring and mask decoder. Not copied: SAM3's ViT and CLIP text tower (the
student has its own), the geometry encoder (no box prompts here) and the semantic-segmentation head.
The neck is copied only when the student's trunk has SAM3's width (1024 for the edge preset).
transformers is imported only here, and only for an in-memory model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from efficient_sam3.config import (
    BackboneConfig,
    DetrDecoderConfig,
    DetrEncoderConfig,
    EfficientSam3Config,
    GeometryEncoderConfig,
    TextEncoderConfig,
)
from efficient_sam3.model import EfficientSam3Model

HEAD_PREFIXES = ("detr_encoder.", "detr_decoder.", "dot_product_scoring.", "mask_decoder.")
GEOMETRY_PREFIX = "geometry_encoder."
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
    found: str = ""            # what the source was detected to be


def student_config_for_sam3(sam3_config: dict, base: EfficientSam3Config) -> EfficientSam3Config:
    """The ``base`` student config with its head sizes taken from a SAM3 config dict."""
    enc, dec = sam3_config["detr_encoder_config"], sam3_config["detr_decoder_config"]
    geo = sam3_config.get("geometry_encoder_config") or {}
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
        geometry_encoder=GeometryEncoderConfig(num_layers=geo.get("num_layers", 3),
                                               num_heads=geo.get("num_attention_heads", 8),
                                               intermediate_size=geo.get("intermediate_size", 2048)),
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
    wanted = (*HEAD_PREFIXES, GEOMETRY_PREFIX, TEACHER_NECK_PREFIX, TEXT_PROJECTION_PREFIX)
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


def convert_from_sam3(sam3, base: EfficientSam3Config, prompt_path: str = "transformers") -> ConversionReport:
    """Build a student whose heads (and neck, where shapes allow) come from SAM3.

    ``sam3`` is a transformers ``Sam3Model`` or the path of its checkpoint directory. The student runs
    transformers' prompt path (text tokens only), as the source does; ``prompt_path="original"`` also
    loads transformers' ``geometry_encoder.*`` and runs SAM3's original path.
    """
    if isinstance(sam3, (str, Path)):
        sam3_config, teacher = _read_sam3_directory(Path(sam3))
    else:
        sam3_config = sam3.config.to_dict()
        teacher = {k.removeprefix(VIDEO_DETECTOR_PREFIX): v for k, v in sam3.state_dict().items()}
    config = replace(student_config_for_sam3(sam3_config, base), prompt_path=prompt_path)
    model = EfficientSam3Model(config)
    student = model.state_dict()

    mapping: dict[str, str] = {}
    skipped: list[str] = []
    for key in student:
        if key.startswith(HEAD_PREFIXES) or key.startswith(GEOMETRY_PREFIX):
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


# --- Meta's sam3 layout: sam3.pt and the public EfficientSAM3 students -----------------------------

# Modules a student or sam3.pt does not hold: they start from initialisation and are listed by name.
INIT_ONLY_PREFIXES = ("perceiver_resampler.", "memory_cross_attn.", "iou_head.")
# Text towers of the EfficientSAM3 students, told apart by (width, layers, RepMixer blocks).
MOBILECLIP_VARIANTS = {(512, 6, True): "MobileCLIP-S0", (512, 12, False): "MobileCLIP-S1",
                       (768, 12, False): "MobileCLIP2-L"}
REPVIT_VARIANTS = {((48, 96, 192, 384), (2, 2, 14, 2)): "m0.9", ((64, 128, 256, 512), (2, 2, 12, 2)): "m1.1",
                   ((80, 160, 320, 640), (6, 6, 34, 2)): "m2.3"}


def read_sam3_layout(path: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint in Meta's sam3 layout -> its detector state dict (``detector.`` stripped, float32).

    Accepts a plain state dict or ``{"model": state_dict, ...}`` (EfficientSAM3's files).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a corrupt or foreign file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path}: not a readable torch checkpoint ({reason[:160]})") from None
    return detector_state(checkpoint, path)


def detector_state(checkpoint, source: str | Path) -> dict[str, torch.Tensor]:
    """A loaded checkpoint in Meta's sam3 layout -> its detector state dict (``detector.`` stripped,
    float32); ``source`` names it in errors."""
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        checkpoint = checkpoint["model"]
    if not isinstance(checkpoint, dict) or not checkpoint or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise ValueError(f"{source}: not a state dict (expected tensors by name, or {{'model': state_dict}})")
    from efficient_sam3.sam3_layout import strip_detector

    state = strip_detector(checkpoint)
    if not state:
        raise ValueError(f"{source}: no detector keys (only {sorted(checkpoint)[:3]}...)")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _count(state: dict, pattern: str) -> int:
    return len({m.group(1) for key in state if (m := re.match(pattern, key))})


def _head_configs(state: dict, path: Path) -> dict:
    """DETR encoder / decoder and geometry encoder sizes read from the weights' shapes."""
    def required(key: str) -> torch.Tensor:
        if key not in state:
            raise ValueError(f"{path}: missing {key} (not a SAM3 detector in Meta's layout?)")
        return state[key]

    encoder_layers = _count(state, r"transformer\.encoder\.layers\.(\d+)\.")
    decoder_layers = _count(state, r"transformer\.decoder\.layers\.(\d+)\.")
    geometry_layers = _count(state, r"geometry_encoder\.encode\.(\d+)\.")
    hidden = required("transformer.decoder.query_embed.weight").shape[1]
    return dict(
        hidden_size=hidden,
        detr_encoder=DetrEncoderConfig(num_layers=encoder_layers, num_heads=hidden // 32,
                                       intermediate_size=required("transformer.encoder.layers.0.linear1.weight").shape[0]),
        detr_decoder=DetrDecoderConfig(num_layers=decoder_layers, num_heads=hidden // 32,
                                       intermediate_size=required("transformer.decoder.layers.0.linear1.weight").shape[0],
                                       num_queries=required("transformer.decoder.query_embed.weight").shape[0]),
        geometry_encoder=GeometryEncoderConfig(
            num_layers=geometry_layers, num_heads=hidden // 32,
            intermediate_size=required("geometry_encoder.encode.0.linear1.weight").shape[0]),
    )


def _mobileclip_config(state: dict, path: Path) -> tuple[TextEncoderConfig, str]:
    from efficient_sam3.sam3_layout import MOBILECLIP_PREFIX

    embedding = MOBILECLIP_PREFIX + "embedding_layer.weight"
    if embedding not in state:
        if MOBILECLIP_PREFIX + "token_embedding.weight" in state:
            raise ValueError(f"{path}: the text tower is SAM3's own 24-layer CLIP, not a MobileCLIP student; "
                             "only MobileCLIP text towers convert into a student")
        raise ValueError(f"{path}: no MobileCLIP text tower ({embedding} missing)")
    vocab, width = state[embedding].shape
    layers = _count(state, re.escape(MOBILECLIP_PREFIX) + r"transformer\.(\d+)\.")
    repmixer = MOBILECLIP_PREFIX + "transformer.0.token_mixer.layer_scale" in state
    transformer_layer = 1 if repmixer else 0
    fc1 = state[f"{MOBILECLIP_PREFIX}transformer.{transformer_layer}.pre_norm_ffn.1.weight"]
    max_length = state[MOBILECLIP_PREFIX + "positional_embedding.pos_embed.pos_embed"].shape[2]
    kernel = (state[MOBILECLIP_PREFIX + "transformer.0.convffn.conv.conv.weight"].shape[-1] if repmixer else 11)
    config = TextEncoderConfig(vocab_size=vocab, width=width, intermediate_size=fc1.shape[0], num_layers=layers,
                               num_heads=width // 64, max_length=max_length, use_repmixer_blocks=repmixer,
                               repmixer_kernel_size=kernel, pad_token_id=0, mask_padding=False)
    name = MOBILECLIP_VARIANTS.get((width, layers, repmixer), f"MobileCLIP ({width} wide, {layers} layers)")
    return config, f"{name} (context {max_length})"


def _student_backbone(state: dict, path: Path) -> tuple[BackboneConfig, dict[str, torch.Tensor], str]:
    from efficient_sam3.sam3_layout import STUDENT_BACKBONE_PREFIX, STUDENT_HEAD_PREFIX, rename_repvit, rename_student_head

    head = STUDENT_HEAD_PREFIX + "0.weight"
    if head not in state:
        raise ValueError(f"{path}: no EfficientSAM3 projection head ({head}); is this a student checkpoint?")
    trunk_channels = state[head].shape[0]
    ours = rename_student_head(state)
    if STUDENT_BACKBONE_PREFIX + "features.0.0.c.weight" in state:
        backbone_state, dims, depths = rename_repvit(state)
        variant = REPVIT_VARIANTS.get((dims, depths))
        name = f"RepViT-{variant.upper()}" if variant else f"RepViT (dims {dims}, depths {depths})"
        config = BackboneConfig(kind="repvit", embed_dims=dims, depths=depths, trunk_channels=trunk_channels,
                                projection="efficientsam3")
        return config, {**ours, **backbone_state}, name
    local = {k.removeprefix(STUDENT_BACKBONE_PREFIX): v for k, v in state.items()
             if k.startswith(STUDENT_BACKBONE_PREFIX) and not k.endswith("attention_bias_idxs")}
    for kind, name, variants, build in _named_backbones():
        if kind == "tiny_vit" and "patch_embed.seq.0.c.weight" not in local:
            continue
        if kind == "efficient_vit" and "input_stem.op_list.0.conv.weight" not in local:
            continue
        for variant in variants:
            expected = {k: v.shape for k, v in build(variant).state_dict().items()}
            if expected == {k: v.shape for k, v in local.items()}:
                config = BackboneConfig(kind=kind, variant=variant, trunk_channels=trunk_channels,
                                        projection="efficientsam3")
                return config, {**ours, **{"backbone." + k: v for k, v in local.items()}}, f"{name}-{variant.upper()}"
        raise ValueError(f"{path}: {name} weights match none of the variants {sorted(variants)}")
    sample = sorted(local)[:3]
    raise ValueError(f"{path}: unknown student backbone layout (first keys: {sample})")


def _named_backbones():
    """(kind, display name, variant table, builder) of the backbones identified by their weights."""
    from efficient_sam3.efficient_vit import EFFICIENT_VIT_VARIANTS, EfficientVitBackbone
    from efficient_sam3.tiny_vit import TINY_VIT_VARIANTS, TinyVitBackbone

    return (("tiny_vit", "TinyViT", TINY_VIT_VARIANTS, TinyVitBackbone.from_variant),
            ("efficient_vit", "EfficientViT", EFFICIENT_VIT_VARIANTS, EfficientVitBackbone.from_variant))


def convert_from_efficientsam3(path: str | Path, image_size: int = 504) -> ConversionReport:
    """A public EfficientSAM3 student file in Meta's layout -> our model (prompt path "original")."""
    return convert_efficientsam3_state(read_sam3_layout(path), Path(path), image_size)


def convert_efficientsam3_state(state: dict[str, torch.Tensor], path: Path,
                                image_size: int = 504) -> ConversionReport:
    """The detector state dict of a student (``detector_state``) -> our model; ``path`` names it in errors."""
    from efficient_sam3.presets import PRESETS
    from efficient_sam3.sam3_layout import STUDENT_BACKBONE_PREFIX, STUDENT_HEAD_PREFIX, TEXT_PREFIX, rename_heads, rename_mobileclip

    backbone, backbone_state, backbone_name = _student_backbone(state, path)
    text, text_name = _mobileclip_config(state, path)
    config = EfficientSam3Config(preset="custom", image_size=image_size, backbone=backbone, text=text,
                                 prompt_path="original", **_head_configs(state, path))
    preset = next((name for name, preset in PRESETS.items()
                   if replace(preset, image_size=image_size) == replace(config, preset=name)), None)
    if preset is not None:
        config = replace(config, preset=preset)
    heads, unused, rest = rename_heads(state)
    text_state, text_unused, text_unmatched = rename_mobileclip(state)
    converted = {**heads, **text_state, **backbone_state}
    handled = (STUDENT_BACKBONE_PREFIX, STUDENT_HEAD_PREFIX, TEXT_PREFIX + "encoder.")
    unmatched = [k for k in rest if not k.startswith(handled)] + text_unmatched
    if unmatched:
        raise ValueError(f"{path}: keys with no counterpart in our model: {unmatched[:5]}")
    report = _load_converted(config, converted, path)
    report.found = f"{preset or 'custom'}: {backbone_name} + {text_name}, prompt path 'original'"
    report.skipped_groups.extend(f"unused: {k}" for k in unused + text_unused)
    return report


def convert_from_sam3_checkpoint(path: str | Path, base: EfficientSam3Config) -> ConversionReport:
    """Meta's ``sam3.pt`` -> a ``base``-shaped student whose neck (when the trunk is 1024 wide), heads and
    geometry encoder come from SAM3, on the original prompt path."""
    from efficient_sam3.sam3_layout import TEXT_PREFIX, TRUNK_PREFIX, rename_heads

    path = Path(path)
    state = read_sam3_layout(path)
    config = replace(base, prompt_path="original", **_head_configs(state, path))
    heads, unused, rest = rename_heads(state)
    unmatched = [k for k in rest if not k.startswith((TRUNK_PREFIX, TEXT_PREFIX))]
    if unmatched:
        raise ValueError(f"{path}: keys with no counterpart in our model: {unmatched[:5]}")
    skipped = []
    student_shapes = {k: v.shape for k, v in EfficientSam3Model(config).state_dict().items()}
    for group, prefix in (("neck", NECK_PREFIX), ("text_projection", TEXT_PROJECTION_PREFIX)):
        keys = [k for k in heads if k.startswith(prefix)]
        if any(heads[k].shape != student_shapes.get(k) for k in keys):
            skipped.append(f"{group}: SAM3's shapes differ from the student's (kept at initialisation)")
            for key in keys:
                heads.pop(key)
    report = _load_converted(config, heads, path, partial=True)
    report.found = f"SAM3 ({len(state)} detector tensors): heads, geometry encoder{', neck' if not skipped else ''}"
    report.skipped_groups.extend(skipped)
    return report


def _load_converted(config: EfficientSam3Config, converted: dict[str, torch.Tensor], source: Path,
                    partial: bool = False) -> ConversionReport:
    """Build the model and load ``converted``: shapes must match, unknown keys are an error, and every
    student key must be covered unless it is init-only (or ``partial``: the student's own towers)."""
    model = EfficientSam3Model(config)
    student = model.state_dict()
    unknown = sorted(set(converted) - set(student))
    if unknown:
        raise ValueError(f"{source}: converted keys with no counterpart in our model: {unknown[:5]}")
    for key, value in converted.items():
        if value.shape != student[key].shape:
            raise ValueError(f"{source}: {key} has shape {list(value.shape)}, our model {list(student[key].shape)}")
    missing = sorted(k for k in set(student) - set(converted) if not k.startswith(INIT_ONLY_PREFIXES))
    if missing and not partial:
        raise ValueError(f"{source}: the checkpoint lacks {len(missing)} of our keys, e.g. {missing[:5]}")
    model.load_state_dict({k: v.to(student[k].dtype) for k, v in converted.items()}, strict=False)
    kept = sorted(set(student) - set(converted))
    return ConversionReport(model=model, copied=sorted(converted), kept_at_init=kept, skipped_groups=[])


def _init_only_modules(kept: list[str]) -> list[str]:
    return sorted({key.split(".")[0] for key in kept})


def _save_atomically(model: EfficientSam3Model, out: Path) -> None:
    """Write the checkpoint into a staging folder beside ``out``, then move it into place
    (``efficient_sam3.files.atomic_directory``: unique staging name, usual mode, stale ones removed)."""
    from efficient_sam3.files import atomic_directory

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(out) as staging:
        model.save_pretrained(staging)


def image_size_flag(text: str) -> int:
    """argparse type of ``--image-size``: a positive multiple of 28 (every FPN level an integer size)."""
    import argparse

    from efficient_sam3.cli import positive_int
    from efficient_sam3.contract import PATCH_SIZE

    size = positive_int(text)
    if size % (2 * PATCH_SIZE):
        raise argparse.ArgumentTypeError(f"{size} is not a multiple of {2 * PATCH_SIZE} (valid sizes: "
                                         f"{', '.join(str(n * 2 * PATCH_SIZE) for n in (16, 18, 20, 36))}, ...; "
                                         f"the students run at 504)")
    return size


def main(argv: list[str] | None = None) -> int:
    from efficient_sam3.cli import ArgumentParser, fail
    from efficient_sam3.files import check_creatable
    from efficient_sam3.presets import PRESETS

    parser = ArgumentParser(prog="python -m efficient_sam3.convert",
                            description="Convert a checkpoint people hold into an EfficientSAM3-Edge checkpoint.")
    parser.add_argument("--from", dest="source", required=True, choices=("efficientsam3", "sam3", "transformers"),
                        help="efficientsam3: a public EfficientSAM3 student .pt; sam3: Meta's sam3.pt; "
                             "transformers: a transformers Sam3Model directory")
    parser.add_argument("path", type=Path, help="the checkpoint file (or directory for --from transformers)")
    parser.add_argument("--out", type=Path, required=True, help="output checkpoint directory")
    parser.add_argument("--image-size", type=image_size_flag, default=504,
                        help="input size the student runs at, a multiple of 28 (default 504)")
    parser.add_argument("--preset", default="edge", choices=sorted(PRESETS),
                        help="student shape for --from sam3 / transformers (default edge)")
    args = parser.parse_args(argv)
    try:
        check_creatable(args.out, "--out checkpoint folder", folder=True)
        if args.out.exists() and any(args.out.iterdir()):
            raise ValueError(f"{args.out}: output directory exists and is not empty")
        if args.source == "efficientsam3":
            report = convert_from_efficientsam3(args.path, args.image_size)
        else:
            base = replace(PRESETS[args.preset], image_size=args.image_size)
            report = (convert_from_sam3_checkpoint(args.path, base) if args.source == "sam3"
                      else convert_from_sam3(args.path, base))
        _save_atomically(report.model, args.out)
    except (OSError, ValueError) as error:
        return fail(error)
    print(f"found: {report.found}")
    print(f"converted {len(report.copied)} tensors; at initialisation: {', '.join(_init_only_modules(report.kept_at_init)) or 'none'}")
    for line in report.skipped_groups:
        if not line.startswith("unused: "):
            print(f"note: {line}")
    unused = sum(line.startswith("unused: ") for line in report.skipped_groups)
    if unused:
        print(f"ignored {unused} tensors our model does not use (box/point prompt parts, semantic head)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
