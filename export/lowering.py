"""ATen-level rewrites that let the XNNPACK delegate take the whole per-frame graph (executorch 1.5.1).

XNNPACK in executorch 1.5.1 has no kernel for LayerNorm, GroupNorm, nearest upsampling, ``sign`` or
``log2``; left in the graph, each runs as a portable kernel and splits the delegate in two. Before
lowering, each is rewritten into ops XNNPACK does take:

- ``layer_norm`` over the last dim C: mean and variance as a linear with a constant [1, C] weight of
  1/C (an XNNPACK fully-connected), then rsqrt, mul, add.
- ``group_norm``: the same per group, reduced one dim at a time ([B, G, C/G, H, W]: over W, then H,
  then C/G). One linear over all C/G * H * W values (663k at 144x144) accumulates enough fp32
  rounding to move mask logits by 1e-4; the portable kernel is no better.
- ``upsample_nearest2d`` by an integer factor f: a broadcast multiply of the [B, C, H, 1, W, 1] view by
  ones [1, 1, 1, f, 1, f] (each output pixel is exactly 1.0 * its source pixel). A depthwise transposed
  conv would be exact too, but XNNPACK's Subconv2D took 67 ms for 256 x 72x72 -> 144x144 against 9 ms.
- ``sign(x)`` -> ``clamp(x * 1e30, -1, 1)``: exact for |x| >= 1e-30 and 0 at 0. Its only use, SAM3's
  box bias ``sign(d) * log2(|d| + 1)``, is 0 near 0 anyway.
- ``log2(x)`` -> ``log(x) / ln 2``.

A decode that takes 1 to N prompts has a symbolic prompt dimension. XNNPACK takes a reshape whose
target shape has one inferred (-1) dimension but not one with a symbolic size, so a ``view_copy`` whose
shape holds exactly one symbolic size gets -1 there (the other sizes are static, so it is the same
shape); without this every reshape of the prompt-batched graph ran outside the delegate.

Then every value computed from parameters alone (sine encodings of the learned reference boxes,
split packed projections, expanded latents) is folded into a constant, and no-op ``expand_copy``
nodes (from ``matmul`` on equal batch shapes) are removed. Every rewrite equals the original up to
float rounding; ``export.parity`` checks the lowered program against eager PyTorch.
"""

from __future__ import annotations

import math
from collections import Counter

import torch
import torch.nn.functional as F
from torch.export import ExportedProgram

aten = torch.ops.aten

SIGN_SCALE = 1.0e30
# Edge-dialect call targets that are not work: delegate calls and tuple indexing.
_BOOKKEEPING = ("executorch_call_delegate", "getitem")
# Edge ops that carry the work (issue #13: none of them may run outside the XNNPACK delegate, where
# each would be a slow portable kernel).
WORK_OPS = frozenset({"convolution", "linear", "mm", "addmm", "bmm", "matmul", "_softmax", "softmax"})


def _row_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over the last dim as a linear with constant weights: [..., C] -> [..., 1]."""
    channels = x.shape[-1]
    return F.linear(x, torch.full((1, channels), 1.0 / channels, dtype=x.dtype))


def _trailing_mean(x: torch.Tensor, dims: int) -> torch.Tensor:
    """Mean over the last ``dims`` dims, one dim at a time: [..., d1, ..., dn] -> [..., 1, ..., 1]."""
    kept = x.shape[: x.dim() - dims]
    for _ in range(dims):
        x = _row_mean(x).reshape(x.shape[:-1])  # [..., d] -> [..., 1] -> [...]
    return x.reshape(*kept, *([1] * dims))


def _normalise(x: torch.Tensor, eps: float, dims: int = 1) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) over the last ``dims`` dims (biased variance, as the norms)."""
    centred = x - _trailing_mean(x, dims)
    return centred * torch.rsqrt(_trailing_mean(centred * centred, dims) + eps)


def _layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    if len(normalized_shape) != 1:
        raise NotImplementedError(f"layer_norm rewrite handles one normalised dim, got {normalized_shape}")
    out = _normalise(x, eps)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def _group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, cudnn_enabled=True):
    batch, channels, height, width = x.shape
    grouped = x.reshape(batch, num_groups, channels // num_groups, height, width)  # [B, G, C/G, H, W]
    out = _normalise(grouped, eps, dims=3).reshape(batch, channels, height, width)  # [B, C, H, W]
    if weight is not None:
        out = out * weight[:, None, None]
    if bias is not None:
        out = out + bias[:, None, None]
    return out


def _upsample_nearest2d(x, output_size, scale_factors=None):
    batch, channels, height, width = x.shape
    if output_size is not None:
        out_h, out_w = output_size
    else:
        out_h, out_w = int(height * scale_factors[0]), int(width * scale_factors[1])
    factor = out_h // height
    if out_h != factor * height or out_w != factor * width or out_w // width != factor:
        raise NotImplementedError(f"nearest upsampling rewrite needs one integer factor, {height}x{width} -> "
                                  f"{out_h}x{out_w}")
    ones = torch.ones(1, 1, 1, factor, 1, factor, dtype=x.dtype)
    # [B, C, H, 1, W, 1] * [1, 1, 1, f, 1, f] -> [B, C, H, f, W, f] -> [B, C, H*f, W*f]
    return (x.reshape(batch, channels, height, 1, width, 1) * ones).reshape(batch, channels, out_h, out_w)


def _sign(x):
    return torch.clamp(x * SIGN_SCALE, -1.0, 1.0)


def _log2(x):
    return torch.log(x) * (1.0 / math.log(2.0))


def xnnpack_decompositions() -> dict:
    """The rewrite table for ``ExportedProgram.run_decompositions``."""
    return {
        aten.layer_norm.default: _layer_norm,
        aten.group_norm.default: _group_norm,
        aten.upsample_nearest2d.vec: _upsample_nearest2d,
        aten.sign.default: _sign,
        aten.log2.default: _log2,
    }


def _symbolic_views_to_inferred():
    """The edge pass that writes -1 for the one symbolic size of a ``view_copy`` shape (see the module doc)."""
    from executorch.exir.dialects._ops import ops as exir_ops
    from executorch.exir.pass_base import ExportPass, PassResult

    class SymbolicViewsToInferred(ExportPass):
        def call(self, graph_module: torch.fx.GraphModule) -> PassResult:
            changed = False
            for node in graph_module.graph.nodes:
                if node.op != "call_function" or node.target != exir_ops.edge.aten.view_copy.default:
                    continue
                shape = list(node.args[1])
                symbolic = [i for i, size in enumerate(shape) if not isinstance(size, int)]
                if len(symbolic) == 1 and -1 not in shape:
                    shape[symbolic[0]] = -1
                    node.args = (node.args[0], shape, *node.args[2:])
                    changed = True
            if changed:
                graph_module.graph.eliminate_dead_code()  # the sizes' sym_size nodes may be unused now
                graph_module.recompile()
            return PassResult(graph_module, changed)

    return SymbolicViewsToInferred()


def _edge_passes():
    """Edge-dialect passes run before partitioning: symbolic reshapes to inferred ones, drop no-op
    expands, fold constants.

    Folding runs on the edge dialect, where every view op is a functional copy with a contiguous
    result (folding the ATen graph stored strided views of parameters as if contiguous). ``full`` is
    folded too (the rewrites above create small constant weights with it); quantize/dequantize
    nodes are kept, so int8 weights stay recognisable to the partitioner.
    """
    from executorch.backends.xnnpack._passes.remove_noop_expand_copy_pass import RemoveNoopExpandCopyPass
    from executorch.exir.dialects._ops import ops as exir_ops
    from executorch.exir.pass_base import ExportedProgramPassBase, ExportedProgramPassResult
    from executorch.exir.pass_manager import ExportedProgramPassManager
    from executorch.exir.passes import constant_prop_pass as constant_prop

    skip = {op for op in constant_prop._DEFAULT_SKIP_TARGETS if op != exir_ops.edge.aten.full.default}

    class FoldConstants(ExportedProgramPassBase):
        def call(self, program: ExportedProgram) -> ExportedProgramPassResult:
            return ExportedProgramPassResult(constant_prop.constant_prop_pass(program, skip), True)

    return ExportedProgramPassManager([_symbolic_views_to_inferred(), RemoveNoopExpandCopyPass(), FoldConstants()])


def _drop_provenance(program: ExportedProgram) -> ExportedProgram:
    """Forget each node's pass history (``meta["from_node"]``): every later pass deep-copies it, which
    made up about a quarter of lowering time. It is debug information only."""
    for node in program.graph.nodes:
        node.meta.pop("from_node", None)
    return program


def lower_to_xnnpack(programs: dict[str, ExportedProgram]):
    """Rewrites -> ``to_edge_transform_and_lower(..., XnnpackPartitioner())``; returns the
    EdgeProgramManager (call ``.to_executorch()`` on it to serialise)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    prepared = {name: _drop_provenance(program.run_decompositions(xnnpack_decompositions()))
                for name, program in programs.items()}
    return to_edge_transform_and_lower(
        prepared,
        transform_passes=_edge_passes(),
        partitioner=[XnnpackPartitioner()],
        # The IR verifier re-checks every node after every pass and doubles lowering time; the
        # program is checked end to end by export.parity instead.
        compile_config=EdgeCompileConfig(_check_ir_validity=False),
    )


def ops_outside_delegate(edge_manager, method: str) -> Counter:
    """Edge-op names (e.g. ``aten.native_layer_norm.default``) left outside the XNNPACK delegate."""
    graph = edge_manager.exported_program(method).graph
    names = Counter()
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target))
        if any(tag in name for tag in _BOOKKEEPING):
            continue
        names[name] += 1
    return names


def work_ops_outside_delegate(edge_manager, method: str) -> Counter:
    """The subset of ``ops_outside_delegate`` that is WORK_OPS (conv, linear, matmul, softmax)."""
    return Counter({name: count for name, count in ops_outside_delegate(edge_manager, method).items()
                    if name.split(".")[1] in WORK_OPS})


class DelegationError(RuntimeError):
    """Work ops (WORK_OPS) were left outside the XNNPACK delegate."""


def check_delegation(edge_manager, methods) -> None:
    """Raise DelegationError naming every method with a conv / linear / matmul / softmax outside XNNPACK."""
    left = {method: work_ops_outside_delegate(edge_manager, method) for method in methods}
    left = {method: ops for method, ops in left.items() if ops}
    if left:
        listed = "; ".join(f"{method}: " + ", ".join(f"{op} x{n}" for op, n in sorted(ops.items()))
                           for method, ops in left.items())
        raise DelegationError(f"work ops outside the XNNPACK delegate ({listed})")


def count_delegates(edge_manager, method: str) -> int:
    graph = edge_manager.exported_program(method).graph
    return sum(1 for node in graph.nodes
               if node.op == "call_function" and "executorch_call_delegate" in str(node.target))
