"""Named model presets. ``tiny`` keeps the exact tensor contract of ``edge`` at a fraction of the cost."""

from efficient_sam3.config import (
    BackboneConfig,
    DetrDecoderConfig,
    DetrEncoderConfig,
    EfficientSam3Config,
    MemoryConfig,
    TextEncoderConfig,
)

PRESETS: dict[str, EfficientSam3Config] = {
    # Deployment model: RepViT-M1.1 backbone, SAM3-sized heads, MobileCLIP-S0-class text encoder.
    # MobileCLIP-S0's text tower: 6 layers (RepMixer first and last), 42M parameters.
    "edge": EfficientSam3Config(preset="edge", text=TextEncoderConfig(num_layers=6)),
    # Tests, CI and the offline demo: same 504 px input, same 256-d FPN/memory, far fewer layers.
    "tiny": EfficientSam3Config(
        preset="tiny",
        backbone=BackboneConfig(embed_dims=(16, 32, 64, 128), depths=(1, 1, 2, 1), trunk_channels=64),
        text=TextEncoderConfig(width=64, intermediate_size=256, num_layers=3, num_heads=4),
        detr_encoder=DetrEncoderConfig(num_layers=1, intermediate_size=512),
        detr_decoder=DetrDecoderConfig(num_layers=2, intermediate_size=512, num_queries=32),
        memory=MemoryConfig(),
    ),
}
