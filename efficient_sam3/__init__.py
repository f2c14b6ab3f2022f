"""EfficientSAM3-Edge: a small SAM3 student with compressed temporal memory.

The names below load on first use, so the package's standard-library modules (``config``,
``files``) import without torch: the torch-free runtime reads them.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "EfficientSam3Config": "efficient_sam3.config",
    "EfficientSam3Model": "efficient_sam3.model",
    "MemoryCrossAttention": "efficient_sam3.memory_attention",
    "PerceiverResampler": "efficient_sam3.perceiver",
    "SegmentationOutput": "efficient_sam3.outputs",
    "TextFeatures": "efficient_sam3.outputs",
    "VisionFeatures": "efficient_sam3.outputs",
    "freeze_for_video_distillation": "efficient_sam3.freeze",
    "set_frozen_eval": "efficient_sam3.freeze",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'efficient_sam3' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
