"""MobileCLIP-S0-class text encoder: the architecture of transformers' ``Sam3LiteTextTextModel``
(same parameter names), with SAM3's fixed 32-token context.

RepMixer blocks (depthwise convs over the token axis, MobileCLIP style) sit at the first and last
layer; the layers between are pre-norm transformer layers with a padding mask.
"""

from __future__ import annotations

import torch
from torch import nn

from efficient_sam3.attention import attend, merge_heads, padding_bias, split_heads
from efficient_sam3.config import TextEncoderConfig


class TextPositionEmbedding(nn.Module):
    def __init__(self, max_length: int, width: int) -> None:
        super().__init__()
        self.position_embedding = nn.Parameter(torch.empty(1, 1, max_length, width))
        nn.init.normal_(self.position_embedding, std=width**-0.5)


class TextEmbeddings(nn.Module):
    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.position_embedding = TextPositionEmbedding(config.max_length, config.width)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = self.position_embedding.position_embedding[0, 0]  # [L, W]
        return self.token_embedding(input_ids) + positions[None]


class TextSelfAttention(nn.Module):
    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.q_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        q = split_heads(self.q_proj(x), self.num_heads)
        k = split_heads(self.k_proj(x), self.num_heads)
        v = split_heads(self.v_proj(x), self.num_heads)
        return self.out_proj(merge_heads(attend(q, k, v, bias)))


class TextMLP(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class TextTransformerLayer(nn.Module):
    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.self_attn = TextSelfAttention(config.width, config.num_heads)
        self.layer_norm2 = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.mlp = TextMLP(config.width, config.intermediate_size)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), bias)
        return x + self.mlp(self.layer_norm2(x))


class MobileOneBlock(nn.Module):
    def __init__(self, width: int, kernel_size: int) -> None:
        super().__init__()
        self.batchnorm_skip = nn.BatchNorm2d(width)
        self.conv = nn.Conv2d(width, width, (1, kernel_size), padding=(0, kernel_size // 2), groups=width,
                              bias=False)
        self.batchnorm_conv = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.batchnorm_conv(self.conv(x)) + self.batchnorm_skip(x)


class RepMixer(nn.Module):
    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        self.layer_scale = nn.Parameter(config.layer_scale_init_value * torch.ones(config.width, 1, 1))
        self.reference_batchnorm = nn.BatchNorm2d(config.width)
        self.mixer = MobileOneBlock(config.width, config.repmixer_kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layer_scale * (self.mixer(x) - self.reference_batchnorm(x))


class ConvMLP(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(width, hidden, kernel_size=1)
        self.fc2 = nn.Conv2d(hidden, width, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class ConvolutionalFeedForward(nn.Module):
    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        k = config.repmixer_kernel_size
        self.depthwise_conv = nn.Conv2d(config.width, config.width, (1, k), padding=(0, k // 2),
                                        groups=config.width, bias=False)
        self.depthwise_batchnorm = nn.BatchNorm2d(config.width)
        self.mlp = ConvMLP(config.width, config.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.depthwise_batchnorm(self.depthwise_conv(x)))


class RepMixerBlock(nn.Module):
    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        self.layer_scale = nn.Parameter(config.layer_scale_init_value * torch.ones(config.width, 1, 1))
        self.token_mixer = RepMixer(config)
        self.conv_feed_forward = ConvolutionalFeedForward(config)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        # Padding is not masked here: the convolutions see it, exactly as in the reference model.
        x = x.transpose(1, 2).unsqueeze(2)  # [B, L, W] -> [B, W, 1, L]
        x = self.token_mixer(x)
        x = x + self.layer_scale * self.conv_feed_forward(x)
        return x.squeeze(2).transpose(1, 2)  # [B, W, 1, L] -> [B, L, W]


class TextEncoder(nn.Module):
    """input_ids [B, L] (+ attention_mask [B, L], 1 = token) -> token features [B, L, width].

    With ``config.mask_padding`` False (the original MobileCLIP tower of the EfficientSAM3 students)
    every token attends to the padding as well.
    """

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        self.mask_padding = config.mask_padding
        self.embeddings = TextEmbeddings(config)
        repmixer_at = {0, config.num_layers - 1} if config.use_repmixer_blocks else set()
        self.layers = nn.ModuleList(
            RepMixerBlock(config) if i in repmixer_at else TextTransformerLayer(config)
            for i in range(config.num_layers)
        )
        self.final_layer_norm = nn.LayerNorm(config.width, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(input_ids)
        bias = padding_bias(attention_mask, x.dtype) if self.mask_padding else None  # [B, 1, 1, L]
        for layer in self.layers:
            x = layer(x, bias)
        return self.final_layer_norm(x)
