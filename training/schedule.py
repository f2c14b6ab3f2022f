"""Learning-rate schedule: linear warmup, then cosine decay to ``min_ratio`` of the peak.

``WarmupCosine`` is a callable object rather than a lambda so that ``LambdaLR.state_dict()`` stores
its fields and a resumed run rebuilds the identical schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR


@dataclass
class WarmupCosine:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based).

    Steps ``0 .. warmup_steps - 1`` ramp linearly from ``1 / warmup_steps`` to 1; the remaining
    steps up to ``total_steps`` follow half a cosine from 1 down to ``min_ratio``.
    """

    warmup_steps: int
    total_steps: int
    min_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {self.total_steps}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.min_ratio <= 1.0:
            raise ValueError(f"min_ratio must be in [0, 1], got {self.min_ratio}")

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / decay_steps, 1.0)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_ratio: float = 0.0
) -> LambdaLR:
    """LambdaLR following ``WarmupCosine``; call ``scheduler.step()`` after each optimizer step."""
    return LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps, min_ratio))
