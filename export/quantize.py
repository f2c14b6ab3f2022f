"""Static int8 quantization (PT2E, XNNPACK quantizer) of the per-frame entry points.

What is quantized: every convolution, transposed convolution and linear whose input depends on the
program's inputs (weights per channel, activations per tensor, symmetric int8), calibrated on real
frames, except in the backbone modules ``modules_kept_fp32`` names (TinyViT's patch merging).
Element-wise math, softmax, attention matmuls and normalisation stay fp32: they are cheap, and the
attention logits and LayerNorm statistics are where int8 loses most accuracy. Values computed from
parameters alone (the sine encodings of the learned reference boxes) are never quantized.
``encode_text`` runs once per prompt and stays fp32.

Mode "int8-ffn4" (the smaller on-device file): the feed-forward linears of the transformer stacks
(``int4_weight_modules``: DETR encoder, DETR decoder, geometry encoder, the prompt MLP before scoring; 16.8 M of the edge
preset's 56.7 M frame-program weights) keep 4-bit weights (per output channel, symmetric [-8, 7]; XNNPACK
stores two per byte and runs them as qs8-qc4w) with int8 activations as everywhere else.

Calibration inputs for ``decode`` are built the way the runtime builds them: FPN levels of a real
frame, the level-3 features of the frames before it as memory (slot T-1 = most recent, missing
older slots masked False), and a prompt's text features: frame i's decode sees prompt i mod P of
``calibration_prompts`` (the export's own prompts, then CALIBRATION_PROMPTS). Activations are
observed per tensor, so one prompt alone leaves the prompt-dependent ranges too narrow for other
prompts: on EfficientViT-B0's student (es-ev-s, random weights, its ExecuTorch int8 program) one
decode of parity's 8 prompts kept a mean mask IoU of 0.831 against fp32 (gate 0.85) calibrated on
"red circle" alone, 0.879 with the rotation; the single-prompt decodes moved from 0.874 / 0.876 to
0.861 / 0.883 (frames 0 / 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from efficient_sam3.attention import FeedForward
from export.wrappers import Decode, EncodeFrame

QUANTIZED_OPS = (
    torch.ops.aten.conv2d.default,
    torch.ops.aten.conv_transpose2d.input,
    torch.ops.aten.linear.default,
)


@dataclass
class CalibrationSet:
    """Example inputs for each quantized method (lists of positional-argument tuples)."""

    encode_frame: list[tuple[torch.Tensor, ...]]
    decode: list[tuple[torch.Tensor, ...]]


def _input_dependent_nodes(graph: torch.fx.Graph) -> set[torch.fx.Node]:
    """Nodes whose value depends on a graph input (placeholders of an unlifted module are inputs)."""
    dependent: set[torch.fx.Node] = set()
    for node in graph.nodes:
        if node.op == "placeholder" or any(arg in dependent for arg in node.all_input_nodes):
            dependent.add(node)
    return dependent


def _is_float(node: torch.fx.Node) -> bool:
    value = node.meta.get("val")
    return isinstance(value, torch.Tensor) and value.dtype.is_floating_point


_PAD_OPS = (torch.ops.aten.pad.default, torch.ops.aten.constant_pad_nd.default)
# Ops that only reshape or reorder values: the quantizer shares their input's int8 parameters, so a pad
# after them still pads an int8 tensor (TinyViT: conv -> flatten -> transpose -> view -> window pad).
_SHAPE_OPS = (torch.ops.aten.view.default, torch.ops.aten.reshape.default, torch.ops.aten.flatten.using_ints,
              torch.ops.aten.transpose.int, torch.ops.aten.permute.default, torch.ops.aten.unsqueeze.default,
              torch.ops.aten.squeeze.dim, torch.ops.aten.contiguous.default)


def _feeds_pad(node: torch.fx.Node) -> bool:
    """Whether ``node``'s output reaches a pad directly or through shape-only ops."""
    return any(user.target in _PAD_OPS or (user.target in _SHAPE_OPS and _feeds_pad(user)) for user in node.users)


# Modules of a backbone whose convs and linears stay fp32 in int8 exports (module paths in the model).
# TinyViT: its patch-merging convs (1x1 -> depthwise 3x3 stride 2 -> 1x1 between stages). Measured on
# es-tv-m (random weights, 6 held-out synthetic frames, eager int8 simulation of encode_frame, fp32
# decode): mean mask IoU against fp32 0.871 with everything quantized, 0.947 with these convs fp32
# (0.946 with the patch embedding too, 0.960 with the whole backbone), while keeping the attention or
# the MLP linears fp32 instead gains little (0.880 / 0.866). The full int8 export of es-tv-m failed
# parity (mean 0.819 < 0.85) without this.
FP32_BACKBONE_MODULES = {
    "tiny_vit": tuple(f"backbone.layers.{stage}.downsample" for stage in range(4)),
}


def modules_kept_fp32(config) -> tuple[str, ...]:
    """Module paths (in ``EfficientSam3Model``) whose convs and linears an int8 export keeps fp32."""
    return FP32_BACKBONE_MODULES.get(config.backbone.kind, ())


def _in_modules(node: torch.fx.Node, modules: tuple[str, ...]) -> bool:
    """Whether ``node`` was traced inside one of ``modules`` (paths relative to the model; the export
    wrappers hold the model as ``model``)."""
    stack = node.meta.get("nn_module_stack") or {}
    paths = [entry[0] if isinstance(entry, tuple) else str(entry) for entry in stack.values()]
    for path in paths:
        path = path.removeprefix("model.")
        if any(path == module or path.startswith(module + ".") for module in modules):
            return True
    return False


# "int8-ffn4": the linears of the feed-forward blocks of these transformer stacks, and SAM3's prompt MLP
# before scoring, keep 4-bit weights (edge: 2048-wide, 16.8 M weights; the attention projections, the
# perceiver and the backbone stay int8).
INT4_FFN_STACKS = ("detr_encoder", "detr_decoder", "geometry_encoder")
INT4_PROMPT_MLP = "dot_product_scoring.text_mlp"


def int4_weight_modules(model) -> tuple[str, ...]:
    """Module paths (in ``EfficientSam3Model``) of the linears "int8-ffn4" quantizes to 4-bit weights."""
    parents = [name for name, module in model.named_modules()
               if name.split(".")[0] in INT4_FFN_STACKS and isinstance(module, FeedForward)]
    parents.append(INT4_PROMPT_MLP)
    return tuple(f"{parent}.{name}" for parent in parents
                 for name, module in model.get_submodule(parent).named_modules() if isinstance(module, nn.Linear))


def build_quantizer(graph: torch.fx.Graph, fp32_modules: tuple[str, ...] = (), int4_modules: tuple[str, ...] = ()):
    """XNNPACK quantizer: int8 per-channel weights and per-tensor activations for QUANTIZED_OPS on the
    program's inputs, except ``fp32_modules``; 4-bit weights for the linears ``int4_modules`` names
    (module paths in the model)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantizer import ComposableQuantizer

    dependent = _input_dependent_nodes(graph)

    def quantize_node(node: torch.fx.Node) -> bool:
        if node.op == "get_attr":  # weights and biases of a matched conv/linear
            return True
        # XNNPACK (executorch 1.5.1) fails to compile a constant pad of an int8 tensor
        # ("Failed to create StaticConstantPad ... xnn_status_invalid_parameter"), so an op whose
        # output is padded (the DETR decoder's query positions, TinyViT's window padding) stays fp32.
        return (node in dependent and _is_float(node) and not _feeds_pad(node)
                and not _in_modules(node, fp32_modules))

    quantizer = XNNPACKQuantizer()
    for op in QUANTIZED_OPS:
        quantizer.set_operator_type(op, get_symmetric_quantization_config(is_per_channel=True))
    quantizer.set_filter_function(lambda node: quantize_node(node) and not _in_modules(node, int4_modules))
    if not int4_modules:
        return quantizer
    # A second quantizer for the 4-bit linears, by operator type and filter: XNNPACKQuantizer's
    # module-name configs annotate every pattern of the graph's concatenations regardless of the module.
    int4 = XNNPACKQuantizer()
    int4.set_operator_type(torch.ops.aten.linear.default,
                           get_symmetric_quantization_config(is_per_channel=True, weight_qmin=-8, weight_qmax=7))
    int4.set_filter_function(lambda node: quantize_node(node) and _in_modules(node, int4_modules))
    return ComposableQuantizer([quantizer, int4])


def quantize_method(wrapper: nn.Module, calibration: list[tuple[torch.Tensor, ...]],
                    fp32_modules: tuple[str, ...] = (), example: tuple[torch.Tensor, ...] | None = None,
                    dynamic_shapes: tuple | None = None,
                    int4_modules: tuple[str, ...] = ()) -> torch.export.ExportedProgram:
    """export -> prepare_pt2e -> calibrate -> convert_pt2e -> export again (ready for lowering).
    ``fp32_modules``: module paths of the model left in fp32 (``modules_kept_fp32``); ``int4_modules``:
    linears with 4-bit weights (``int4_weight_modules``); ``example`` and ``dynamic_shapes``: what both
    exports trace with (None: the first calibration input, static)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if not calibration:
        raise ValueError("int8 quantization needs at least one calibration input")
    example = calibration[0] if example is None else example
    module = torch.export.export(wrapper, example, dynamic_shapes=dynamic_shapes).module()
    prepared = prepare_pt2e(module, build_quantizer(module.graph, fp32_modules, int4_modules))
    with torch.no_grad():
        for inputs in calibration:
            prepared(*inputs)
    converted = convert_pt2e(prepared)
    return torch.export.export(converted, example, dynamic_shapes=dynamic_shapes)


# Generic concept prompts that calibrate ``decode`` after the export's own prompts. None of them is
# among the prompts export.parity checks a batched decode with (BATCH_FILL_PROMPTS; tested), so the
# parity gate stays a check on prompts calibration did not see.
CALIBRATION_PROMPTS = ("a photo of a cat", "white truck", "people walking", "the leftmost bottle", "green leaf",
                       "a wooden chair", "bird", "orange ball on the grass")


def calibration_prompts(prompts: tuple[str, ...] | list[str]) -> list[str]:
    """The prompts ``decode`` is calibrated with, in rotation order: ``prompts`` (the export's stored
    prompts), then CALIBRATION_PROMPTS, without repeats."""
    return list(dict.fromkeys([*prompts, *CALIBRATION_PROMPTS]))


@torch.no_grad()
def build_calibration_set(model, frames: list[torch.Tensor],
                          prompts: list[tuple[torch.Tensor, torch.Tensor]]) -> CalibrationSet:
    """frames: pixel_values [1, 3, S, S] in stream order (one or more streams concatenated is fine);
    prompts: (text_features [1, L, 256], text_mask [1, L]) of each calibration prompt; frame i's decode
    input holds prompt i mod len(prompts)."""
    if not prompts:
        raise ValueError("calibrating decode needs at least one prompt")
    encode, frames_t = EncodeFrame(model), model.config.memory.context_frames
    memory = torch.zeros(1, frames_t, model.config.hidden_size, model.config.memory_grid, model.config.memory_grid)
    memory_mask = torch.zeros(1, frames_t, dtype=torch.bool)
    encode_inputs, decode_inputs = [], []
    for index, pixel_values in enumerate(frames):
        fpn0, fpn1, fpn2, level3 = encode(pixel_values)
        encode_inputs.append((pixel_values,))
        text_features, text_mask = prompts[index % len(prompts)]
        decode_inputs.append((fpn0, fpn1, fpn2, memory.clone(), memory_mask.clone(), text_features, text_mask))
        # Host-side ring buffer: shift left, newest frame in slot T-1.
        memory = torch.cat([memory[:, 1:], level3[:, None]], dim=1)
        memory_mask = torch.cat([memory_mask[:, 1:], torch.ones(1, 1, dtype=torch.bool)], dim=1)
    return CalibrationSet(encode_frame=encode_inputs, decode=decode_inputs)


def quantize_entry_points(model, calibration: CalibrationSet, max_prompts: int,
                          int4_ffn: bool = False) -> dict[str, torch.export.ExportedProgram]:
    """int8 programs for encode_frame and decode (1 to ``max_prompts`` prompts, calibrated one prompt per call);
    ``int4_ffn``: the feed-forward linears with 4-bit weights ("int8-ffn4"). encode_text is exported
    in fp32 by the caller."""
    decode = Decode(model)
    example, dynamic_shapes = decode.export_arguments(max_prompts)
    int4_modules = int4_weight_modules(model) if int4_ffn else ()
    return {
        "encode_frame": quantize_method(EncodeFrame(model), calibration.encode_frame, modules_kept_fp32(model.config),
                                        int4_modules=int4_modules),
        "decode": quantize_method(decode, calibration.decode, example=example, dynamic_shapes=dynamic_shapes,
                                  int4_modules=int4_modules),
    }
