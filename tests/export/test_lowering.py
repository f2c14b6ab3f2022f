import pytest
import torch
import torch.nn.functional as F
from torch import nn

from export.lowering import count_delegates, lower_to_xnnpack, ops_outside_delegate, xnnpack_decompositions


class NormsAndResizes(nn.Module):
    """The ops XNNPACK lacks, as the model uses them."""

    def __init__(self) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(64)
        self.group_norm = nn.GroupNorm(8, 64)
        with torch.no_grad():
            for norm in (self.layer_norm, self.group_norm):
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.uniform_(-0.5, 0.5)

    def forward(self, tokens: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = tokens * 8
        box_bias = torch.sign(d) * torch.log2(torch.abs(d) + 1.0)
        up = F.interpolate(image, scale_factor=2.0, mode="nearest")
        return self.layer_norm(tokens) + box_bias, torch.relu(self.group_norm(up))


def _inputs():
    generator = torch.Generator().manual_seed(0)
    tokens = 2.0 * torch.randn(1, 50, 64, generator=generator)
    tokens[0, 0, :4] = 0.0  # sign(0) must stay 0
    return tokens, torch.randn(1, 64, 24, 24, generator=generator) + 1.0


def test_rewrites_equal_the_original_ops():
    module, inputs = NormsAndResizes().eval(), _inputs()
    program = torch.export.export(module, inputs)
    rewritten = program.run_decompositions(xnnpack_decompositions())
    targets = {str(node.target) for node in rewritten.graph.nodes if node.op == "call_function"}
    assert not {"aten.layer_norm.default", "aten.group_norm.default", "aten.upsample_nearest2d.vec",
                "aten.sign.default", "aten.log2.default"} & targets
    with torch.no_grad():
        for expected, got in zip(module(*inputs), rewritten.module()(*inputs)):
            assert (expected - got).abs().max() <= 1e-5


def test_lowered_rewrites_run_whole_inside_xnnpack():
    from executorch.extension.pybindings.portable_lib import _load_for_executorch_from_buffer

    module, inputs = NormsAndResizes().eval(), _inputs()
    edge = lower_to_xnnpack({"forward": torch.export.export(module, inputs)})
    assert count_delegates(edge, "forward") == 1
    assert not ops_outside_delegate(edge, "forward")
    buffer = edge.to_executorch().buffer
    outputs = _load_for_executorch_from_buffer(buffer).run_method("forward", inputs)
    with torch.no_grad():
        for expected, got in zip(module(*inputs), outputs):
            assert (expected - got).abs().max() <= 1e-5
