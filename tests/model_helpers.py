"""Helpers shared by tests in several folders (tests/ is on sys.path through its conftest.py)."""

import torch

from efficient_sam3 import EfficientSam3Model


@torch.no_grad()
def open_memory_path(model: EfficientSam3Model, gate: float = 0.5, seed: int = 0) -> EfficientSam3Model:
    """A freshly built model's memory path is an exact identity (zero ``out_proj``). Give it random
    out-projection weights and the gate ``gate`` so memory changes the outputs, as after training."""
    generator = torch.Generator().manual_seed(seed)
    out_proj = model.memory_cross_attn.attn.out_proj.weight
    out_proj.copy_(torch.randn(out_proj.shape, generator=generator) * out_proj.shape[1] ** -0.5)
    model.memory_cross_attn.gate.fill_(gate)
    return model
