"""Which parameters train in each stage."""

from __future__ import annotations

from torch import nn

VIDEO_TRAINABLE_MODULES = ("perceiver_resampler", "memory_cross_attn")


def freeze_for_video_distillation(model: nn.Module, modules: tuple[str, ...] = VIDEO_TRAINABLE_MODULES) -> list[str]:
    """Leave exactly the parameters of ``modules`` (by default ``perceiver_resampler`` and
    ``memory_cross_attn``) trainable; return their names.

    Frozen parts should also run in eval mode during training (BatchNorm statistics must not move):
    call ``set_frozen_eval(model)`` after ``model.train()``.
    """
    for param in model.parameters():
        param.requires_grad_(False)
    for name in modules:
        for param in getattr(model, name).parameters():
            param.requires_grad_(True)
    return [name for name, p in model.named_parameters() if p.requires_grad]


def set_frozen_eval(model: nn.Module) -> None:
    """Put every top-level submodule without trainable parameters into eval mode."""
    for child in model.children():
        if not any(p.requires_grad for p in child.parameters()):
            child.eval()
