"""Named model presets.

``es-{rv,tv,ev}-{s,m,l}`` are the public EfficientSAM3 students (SimonZeng7108/efficientsam3, stage 3:
RepViT / TinyViT / EfficientViT backbones with the students' projection head, MobileCLIP text with a
16-token context, SAM3's heads on SAM3's original prompt path); ``python -m efficient_sam3.convert
--from efficientsam3`` detects which one a downloaded file is. They run at 504 px here (the plan's
size; the students were trained at 1008). ``edge`` is ``es-rv-m``, the deployment default.
``tiny`` keeps the tensor contract of the students at a fraction of the cost (tests, CI, the offline
demo).
"""

from efficient_sam3.config import (
    BackboneConfig,
    DetrDecoderConfig,
    DetrEncoderConfig,
    EfficientSam3Config,
    GeometryEncoderConfig,
    MemoryConfig,
    TextEncoderConfig,
)

# The students' MobileCLIP text towers at the published 16-token context (original padding: id 0, unmasked).
_MOBILECLIP = {
    "s0": TextEncoderConfig(num_layers=6, max_length=16, pad_token_id=0, mask_padding=False),
    "s1": TextEncoderConfig(num_layers=12, max_length=16, use_repmixer_blocks=False, pad_token_id=0,
                            mask_padding=False),
    "l": TextEncoderConfig(width=768, intermediate_size=3072, num_layers=12, num_heads=12, max_length=16,
                           use_repmixer_blocks=False, pad_token_id=0, mask_padding=False),
}
_REPVIT = {
    "m0.9": dict(embed_dims=(48, 96, 192, 384), depths=(2, 2, 14, 2)),
    "m1.1": dict(embed_dims=(64, 128, 256, 512), depths=(2, 2, 12, 2)),
    "m2.3": dict(embed_dims=(80, 160, 320, 640), depths=(6, 6, 34, 2)),
}
# Student name -> (backbone, text tower). S and L as in EfficientSAM3's stage-3 table; M as the published
# stage-3 files (efficientsam3_ft/efficientsam3_{repvit,tinyvit,efficientvit}.pt) hold it: MobileCLIP-S0
# (42.5 M text parameters). A student with another tower converts too, under the preset name "custom".
_STUDENTS = {
    "es-rv-s": (BackboneConfig(kind="repvit", **_REPVIT["m0.9"], projection="efficientsam3"), "s0"),
    "es-rv-m": (BackboneConfig(kind="repvit", **_REPVIT["m1.1"], projection="efficientsam3"), "s0"),
    "es-rv-l": (BackboneConfig(kind="repvit", **_REPVIT["m2.3"], projection="efficientsam3"), "l"),
    "es-tv-s": (BackboneConfig(kind="tiny_vit", variant="5m", projection="efficientsam3"), "s0"),
    "es-tv-m": (BackboneConfig(kind="tiny_vit", variant="11m", projection="efficientsam3"), "s0"),
    "es-tv-l": (BackboneConfig(kind="tiny_vit", variant="21m", projection="efficientsam3"), "l"),
    "es-ev-s": (BackboneConfig(kind="efficient_vit", variant="b0", projection="efficientsam3"), "s0"),
    "es-ev-m": (BackboneConfig(kind="efficient_vit", variant="b1", projection="efficientsam3"), "s0"),
    "es-ev-l": (BackboneConfig(kind="efficient_vit", variant="b2", projection="efficientsam3"), "l"),
}

PRESETS: dict[str, EfficientSam3Config] = {
    name: EfficientSam3Config(preset=name, backbone=backbone, text=_MOBILECLIP[text], prompt_path="original")
    for name, (backbone, text) in _STUDENTS.items()
}
PRESETS["edge"] = EfficientSam3Config(preset="edge", backbone=PRESETS["es-rv-m"].backbone,
                                      text=PRESETS["es-rv-m"].text, prompt_path="original")
# Tests, CI and the offline demo: same 504 px input, same 256-d FPN/memory, far fewer layers, and the
# students' prompt path (so every export and runtime test carries the geometry token).
PRESETS["tiny"] = EfficientSam3Config(
    preset="tiny",
    prompt_path="original",
    geometry_encoder=GeometryEncoderConfig(num_layers=1, intermediate_size=512),
    backbone=BackboneConfig(embed_dims=(16, 32, 64, 128), depths=(1, 1, 2, 1), trunk_channels=64),
    text=TextEncoderConfig(width=64, intermediate_size=256, num_layers=3, num_heads=4),
    detr_encoder=DetrEncoderConfig(num_layers=1, intermediate_size=512),
    detr_decoder=DetrDecoderConfig(num_layers=2, intermediate_size=512, num_queries=32),
    memory=MemoryConfig(),
)
