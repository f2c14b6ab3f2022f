"""Helpers shared by tests in several folders (tests/ is on sys.path through its conftest.py)."""

import torch
from torch import nn

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


def randomise_batchnorms(model: nn.Module, seed: int) -> None:
    """Non-trivial BN statistics and layer scales, so folding has something to fold."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                module.weight.copy_(0.8 + 0.4 * torch.rand(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
            if hasattr(module, "layer_scale"):
                module.layer_scale.uniform_(0.1, 1.0, generator=generator)


def tiny_sam3_config(**vit_overrides):
    """A tiny random transformers SAM3 config (a feature teacher); ``vit_overrides`` change its ViT."""
    from transformers import Sam3Config

    return Sam3Config(
        vision_config={
            "backbone_config": {
                "model_type": "sam3_vit_model", "hidden_size": 32, "intermediate_size": 64,
                "num_hidden_layers": 2, "num_attention_heads": 2, "patch_size": 14, "window_size": 6,
                "global_attn_indexes": [1], "image_size": 1008, "pretrain_image_size": 56, **vit_overrides,
            },
            "fpn_hidden_size": 256,
        },
        text_config={
            "vocab_size": 1000, "hidden_size": 32, "intermediate_size": 64, "projection_dim": 32,
            "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 32,
            "bos_token_id": 998, "eos_token_id": 999,
        },
        geometry_encoder_config={"num_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
        detr_encoder_config={"num_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
        detr_decoder_config={"num_layers": 1, "num_attention_heads": 2, "intermediate_size": 64, "num_queries": 8},
        mask_decoder_config={"num_attention_heads": 2},
    )
