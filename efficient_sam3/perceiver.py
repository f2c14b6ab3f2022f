"""Perceiver resampler: compress T context frames of FPN level 3 ([B, T, 256, 18, 18], 2592 tokens at
T = 8) into a fixed set of latent memory tokens ([B, 64, 256]).

Flamingo style: each layer lets the latents attend to concat(context tokens, latents), then applies a
feed-forward. Context tokens carry a 2D sine encoding of their grid cell and a learned embedding of
their slot. Each latent owns a cell of a sqrt(M) x sqrt(M) grid over the image: a learned logit bias,
initialised to a Gaussian around that cell plus a recency ramp over the slots, makes it start as a
summary of "what was recently here" (``MemoryConfig.locality_sigma``), which the memory
cross-attention reads back by location. Slot convention (shared by the dataset and the runtime): slot T-1 holds the most recent
context frame, older frames fill the slots before it; ``memory_mask`` [B, T] marks valid slots (a
stream's first frames have fewer than T), and invalid slots are never attended to.

Two options of ``MemoryConfig`` (both off by default, which is the perceiver of before): ``perceiver_qk_norm``
normalises each head's queries and keys; ``perceiver_value_pos`` False makes the values read the context
features without the position and slot encodings (the keys keep them, so attention still routes by place
and time). With the encodings in the values, a perceiver trained at the cross-attention's rate learned to
answer every video with the same map read from the encodings (issue #16's collapse: layer 0's attention
output grew 170x and was the same for every video); without them, what it passes on is the features.
"""

from __future__ import annotations

import torch
from torch import nn

from efficient_sam3.attention import Attention, attend, merge_heads, padding_bias, split_heads
from efficient_sam3.config import MemoryConfig
from efficient_sam3.position_encoding import gaussian_locality_bias, sine_grid_encoding


class PerceiverLayer(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, ff_mult: int, qk_norm: bool = False) -> None:
        super().__init__()
        self.norm_media = nn.LayerNorm(hidden_size)
        self.norm_latents = nn.LayerNorm(hidden_size)
        self.attn = Attention(hidden_size, num_heads)
        # MemoryConfig.perceiver_qk_norm: per-head LayerNorm of queries and keys (no parameters without it)
        self.q_norm = nn.LayerNorm(hidden_size // num_heads) if qk_norm else None
        self.k_norm = nn.LayerNorm(hidden_size // num_heads) if qk_norm else None
        self.ff = nn.Sequential(
            nn.LayerNorm(hidden_size),
            nn.Linear(hidden_size, ff_mult * hidden_size),
            nn.GELU(),
            nn.Linear(ff_mult * hidden_size, hidden_size),
        )

    def forward(self, media: torch.Tensor, latents: torch.Tensor, key_bias: torch.Tensor,
                value_media: torch.Tensor | None = None) -> torch.Tensor:
        """media [B, T*HW, C], latents [B, M, C], key_bias [B, 1, M, T*HW + M] -> latents [B, M, C].
        ``value_media`` [B, T*HW, C]: what the values read in place of ``media`` (None: ``media``)."""
        normed_latents = self.norm_latents(latents)
        keys = torch.cat([self.norm_media(media), normed_latents], dim=1)  # [B, T*HW + M, C]
        values = keys if value_media is None else torch.cat([self.norm_media(value_media), normed_latents], dim=1)
        if self.q_norm is None:
            latents = latents + self.attn(normed_latents, keys, values, key_bias)
        else:
            q, k, v = self.heads(normed_latents, keys, values)
            latents = latents + self.attn.o_proj(merge_heads(attend(q, k, v, key_bias)))
        return latents + self.ff(latents)

    def heads(self, normed_latents: torch.Tensor, keys: torch.Tensor,
              values: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Per-head queries [B, h, M, d], keys and values [B, h, T*HW + M, d] of the attention (queries
        and keys normalised under QK-norm; ``values`` None: the keys' tokens)."""
        heads = self.attn.num_heads
        q = split_heads(self.attn.q_proj(normed_latents), heads)
        k = split_heads(self.attn.k_proj(keys), heads)
        v = split_heads(self.attn.v_proj(keys if values is None else values), heads)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        return q, k, v


class PerceiverResampler(nn.Module):
    def __init__(self, hidden_size: int, config: MemoryConfig, grid: int) -> None:
        super().__init__()
        self.context_frames = config.context_frames
        self.grid = grid
        self.value_pos = config.perceiver_value_pos
        self.latents = nn.Parameter(torch.randn(config.num_latents, hidden_size) * 0.02)
        self.temporal_embed = nn.Parameter(torch.randn(config.context_frames, hidden_size) * 0.02)
        spatial = sine_grid_encoding(grid, grid, hidden_size).flatten(1).transpose(0, 1)  # [HW, C]
        self.register_buffer("spatial_pos", spatial.contiguous(), persistent=False)
        latent_grid = config.latent_grid
        self.spatial_bias = nn.Parameter(  # [M, HW]
            gaussian_locality_bias(latent_grid, grid, config.locality_sigma / latent_grid))
        age = torch.arange(config.context_frames - 1, -1, -1, dtype=torch.float32)  # slot T-1 is newest
        self.slot_bias = nn.Parameter(-config.recency_bias * age)  # [T]
        self.layers = nn.ModuleList(
            PerceiverLayer(hidden_size, config.num_heads, config.perceiver_ff_mult, config.perceiver_qk_norm)
            for _ in range(config.perceiver_depth))
        self.norm = nn.LayerNorm(hidden_size)

    @property
    def qk_norm(self) -> bool:
        return self.layers[0].q_norm is not None

    def enable_qk_norm(self) -> None:
        """Switch a perceiver built without ``MemoryConfig.perceiver_qk_norm`` to QK-norm (fresh per-head
        LayerNorms on queries and keys, on the parameters' device and dtype); the caller records it in the
        model's config so that ``save_pretrained`` writes it."""
        if self.qk_norm:
            return
        reference = self.latents
        for layer in self.layers:
            head_dim = layer.attn.q_proj.out_features // layer.attn.num_heads
            layer.q_norm = nn.LayerNorm(head_dim).to(reference.device, reference.dtype)
            layer.k_norm = nn.LayerNorm(head_dim).to(reference.device, reference.dtype)

    def forward(self, memory_features: torch.Tensor, memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        """memory_features [B, T, C, H, W], memory_mask [B, T] bool (True = valid) -> [B, M, C]."""
        batch, frames, channels, height, width = memory_features.shape
        if frames != self.context_frames or height != self.grid or width != self.grid:
            raise ValueError(
                f"memory_features must be [B, {self.context_frames}, C, {self.grid}, {self.grid}], "
                f"got {list(memory_features.shape)}")
        if memory_mask is None:
            memory_mask = torch.ones(batch, frames, dtype=torch.bool, device=memory_features.device)
        tokens = height * width
        features = memory_features.flatten(3).transpose(2, 3)  # [B, T, C, HW] -> [B, T, HW, C]
        media = features + self.spatial_pos[None, None] + self.temporal_embed[None, :, None, :]
        media = media.reshape(batch, frames * tokens, channels)  # [B, T*HW, C]
        value_media = None if self.value_pos else features.reshape(batch, frames * tokens, channels)

        latents = self.latents[None].expand(batch, -1, -1)  # [B, M, C]
        media_valid = memory_mask[:, :, None].expand(batch, frames, tokens).reshape(batch, frames * tokens)
        num_latents = latents.shape[1]
        latent_valid = torch.ones(batch, num_latents, dtype=torch.bool, device=media.device)
        key_bias = padding_bias(torch.cat([media_valid, latent_valid], dim=1), media.dtype)  # [B,1,1,T*HW+M]
        prior = self.spatial_bias[:, None, :] + self.slot_bias[None, :, None]  # [M, T, HW]
        prior = torch.cat([prior.reshape(num_latents, frames * tokens),
                           prior.new_zeros(num_latents, num_latents)], dim=1)  # [M, T*HW+M], latent keys: 0
        key_bias = key_bias + prior[None, None]  # [B, 1, M, T*HW+M]
        for layer in self.layers:
            latents = layer(media, latents, key_bias, value_media)
        return self.norm(latents)
