"""EfficientSAM3-Edge: a small SAM3 student with compressed temporal memory."""

from efficient_sam3.config import EfficientSam3Config
from efficient_sam3.freeze import freeze_for_video_distillation, set_frozen_eval
from efficient_sam3.memory_attention import MemoryCrossAttention
from efficient_sam3.model import EfficientSam3Model
from efficient_sam3.outputs import SegmentationOutput, TextFeatures, VisionFeatures
from efficient_sam3.perceiver import PerceiverResampler

__all__ = [
    "EfficientSam3Config",
    "EfficientSam3Model",
    "MemoryCrossAttention",
    "PerceiverResampler",
    "SegmentationOutput",
    "TextFeatures",
    "VisionFeatures",
    "freeze_for_video_distillation",
    "set_frozen_eval",
]
