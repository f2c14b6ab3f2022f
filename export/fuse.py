"""Deployment form of the model: every BatchNorm folded into a convolution, every multi-branch block
re-parameterised into one convolution.

Backbone: ``efficient_sam3.backbone.fuse_for_deployment`` (RepVGG depthwise blocks and conv+BN pairs,
the RepViT deployment form). Text encoder (MobileCLIP style): each RepMixer, ``x + s * (BN(dwconv(x)) +
BN(x) - BN(x))``, is one depthwise conv with a bias (the identity goes into the centre tap); the
depthwise conv + BN of each convolutional feed-forward is one conv. After fusion no BatchNorm is left.

The FPN neck's 2x2 stride-2 transposed convs become a 1x1 conv to 4 x C_out channels followed by a
depth-to-space permute (``KernelStrideDeconv``): the same math, and XNNPACK's transposed-conv kernel
(Subconv2D) ran 3.7x slower than its conv on these shapes (1024 -> 512 channels at 36x36: 105 ms vs
29 ms). As an ordinary conv it is also quantized like every other conv.

Memory cross-attention keeps nn.MultiheadAttention's packed ``in_proj_weight`` for checkpoint
compatibility; its deployment form has three separate linears, so every projection has a static
weight of its own (XNNPACK and the int8 quantizer both need that).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from efficient_sam3 import EfficientSam3Model
from efficient_sam3.attention import attend, merge_heads, split_heads
from efficient_sam3.backbone import fold_batchnorm, fuse_for_deployment
from efficient_sam3.memory_attention import PackedCrossAttention
from efficient_sam3.text_encoder import ConvolutionalFeedForward, RepMixer


def _batchnorm_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN as y = scale * x + shift, per channel."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


@torch.no_grad()
def reparameterize_repmixer(mixer: RepMixer) -> nn.Conv2d:
    """One depthwise (1, k) conv equal to ``mixer`` in eval mode."""
    block = mixer.mixer
    conv = block.conv  # depthwise, no bias: weight [W, 1, 1, k]
    scale_conv, shift_conv = _batchnorm_affine(block.batchnorm_conv)
    scale_skip, shift_skip = _batchnorm_affine(block.batchnorm_skip)
    scale_ref, shift_ref = _batchnorm_affine(mixer.reference_batchnorm)
    layer_scale = mixer.layer_scale.flatten()  # [W, 1, 1] -> [W]
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      groups=conv.groups, bias=True)
    weight = conv.weight * (layer_scale * scale_conv)[:, None, None, None]
    centre = conv.kernel_size[1] // 2
    weight[:, 0, 0, centre] += 1.0 + layer_scale * (scale_skip - scale_ref)
    fused.weight.copy_(weight)
    fused.bias.copy_(layer_scale * (shift_conv + shift_skip - shift_ref))
    return fused


@torch.no_grad()
def fuse_text_encoder(module: nn.Module) -> nn.Module:
    """In place: replace every RepMixer by one conv and fold every feed-forward's depthwise BN."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, RepMixer):
                setattr(parent, name, reparameterize_repmixer(child))
            elif isinstance(child, ConvolutionalFeedForward) and isinstance(child.depthwise_batchnorm, nn.BatchNorm2d):
                child.depthwise_conv = fold_batchnorm(child.depthwise_conv, child.depthwise_batchnorm)
                child.depthwise_batchnorm = nn.Identity()
    return module


class SplitCrossAttention(nn.Module):
    """PackedCrossAttention with its packed in-projection split into ``q_proj``/``k_proj``/``v_proj``."""

    def __init__(self, packed: PackedCrossAttention) -> None:
        super().__init__()
        self.num_heads = packed.num_heads
        hidden_size = packed.out_proj.in_features
        projections = []
        for weight, bias in zip(packed.in_proj_weight.detach().chunk(3, dim=0),
                                packed.in_proj_bias.detach().chunk(3, dim=0)):
            linear = nn.Linear(hidden_size, hidden_size)
            linear.weight.data.copy_(weight)
            linear.bias.data.copy_(bias)
            projections.append(linear)
        self.q_proj, self.k_proj, self.v_proj = projections
        self.out_proj = packed.out_proj

    def forward(self, query: torch.Tensor, memory: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """query [B, N, C], memory [B, M, C], bias [.., N, M] -> [B, N, C] (same math as PackedCrossAttention)."""
        q = split_heads(self.q_proj(query), self.num_heads)
        k = split_heads(self.k_proj(memory), self.num_heads)
        v = split_heads(self.v_proj(memory), self.num_heads)
        return self.out_proj(merge_heads(attend(q, k, v, bias)))


@torch.no_grad()
def split_packed_attention(module: nn.Module) -> nn.Module:
    """In place: replace every PackedCrossAttention by a SplitCrossAttention."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, PackedCrossAttention):
                setattr(parent, name, SplitCrossAttention(child))
    return module


class KernelStrideDeconv(nn.Module):
    """ConvTranspose2d with kernel == stride (k), no padding and no groups, as conv1x1 + depth-to-space."""

    def __init__(self, deconv: nn.ConvTranspose2d) -> None:
        super().__init__()
        in_channels, out_channels, kernel, _ = deconv.weight.shape  # [C_in, C_out, k, k]
        self.out_channels, self.kernel = out_channels, kernel
        self.conv = nn.Conv2d(in_channels, out_channels * kernel * kernel, 1)
        # Output channel (o, i, j) of the 1x1 conv = output pixel (i, j) of channel o in each k x k block.
        weight = deconv.weight.detach().permute(1, 2, 3, 0)  # [C_out, k, k, C_in]
        self.conv.weight.data.copy_(weight.reshape(out_channels * kernel * kernel, in_channels, 1, 1))
        bias = deconv.bias.detach() if deconv.bias is not None else torch.zeros(out_channels)
        self.conv.bias.data.copy_(bias[:, None].expand(out_channels, kernel * kernel).reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        k = self.kernel
        y = self.conv(x).view(batch, self.out_channels, k, k, height, width)  # [B, C_out, k, k, H, W]
        y = y.permute(0, 1, 4, 2, 5, 3)  # [B, C_out, H, k, W, k]
        return y.reshape(batch, self.out_channels, height * k, width * k)


def _is_kernel_stride_deconv(module: nn.Module) -> bool:
    return (isinstance(module, nn.ConvTranspose2d) and module.kernel_size == module.stride
            and module.kernel_size[0] == module.kernel_size[1] and module.padding == (0, 0)
            and module.output_padding == (0, 0) and module.groups == 1 and module.dilation == (1, 1))


@torch.no_grad()
def replace_kernel_stride_deconvs(module: nn.Module) -> nn.Module:
    """In place: every ConvTranspose2d with kernel == stride becomes a KernelStrideDeconv."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if _is_kernel_stride_deconv(child):
                setattr(parent, name, KernelStrideDeconv(child))
    return module


def count_batchnorms(module: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def deployment_model(model: EfficientSam3Model) -> EfficientSam3Model:
    """A fused copy of ``model`` in eval mode (the original is left untouched)."""
    fused = copy.deepcopy(model).eval()
    fuse_for_deployment(fused)
    fuse_text_encoder(fused)
    split_packed_attention(fused)
    replace_kernel_stride_deconvs(fused)
    remaining = count_batchnorms(fused)
    if remaining:
        raise RuntimeError(f"deployment_model: {remaining} BatchNorm layers were not folded")
    return fused
