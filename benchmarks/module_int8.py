"""Where ExecuTorch time goes, fp32 and int8: each top-level module of one frame as its own XNNPACK program.

    python -m benchmarks.module_int8 --checkpoint DIR [--threads 2] [--runs 10]

One streaming step of the deployment-form model (``export.fuse.deployment_model``; encode_image +
forward_video with a full memory and precomputed text, as ``benchmarks.flops``) runs with forward hooks
that record each top-level submodule's call arguments. Each submodule then becomes a program taking those
tensors (its other arguments fixed as recorded), exported and lowered exactly as the exporters do
(``export.lowering.lower_to_xnnpack``), in fp32 and in int8 (``export.quantize.quantize_method``: the same
quantizer, the same modules kept fp32; calibrated on the recorded inputs of ``CALIBRATION_STEPS`` steps).
Both programs of every module are timed in this process (ExecuTorch pybindings, threadpool pinned),
alternating fp32 / int8 run by run, so a loaded machine slows both alike.

The sum over modules is not the whole frame's time: the frame program fuses across module boundaries
and skips the per-call overhead; the table shows what each module costs and how much int8 gains there,
which is what decides how far int8 can go. Ops that stay outside the delegate are listed per module.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from benchmarks.flops import _streaming_step, module_gflops
from benchmarks.report import Column, Row, Section

CALIBRATION_STEPS = 2  # streaming steps whose recorded inputs calibrate each int8 module
DEFAULT_RUNS = 10


def _tensors(value) -> list[torch.Tensor]:
    """Every tensor in an output: tensors, tuples, lists, dicts and dataclasses (in field order)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = [getattr(value, field.name) for field in dataclasses.fields(value)]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [tensor for item in value for tensor in _tensors(item)]
    return []


class ModuleCall(nn.Module):
    """``module(*args, **kwargs)`` as recorded, with the recorded tensors as this wrapper's inputs.

    The module sits at ``model.<name>``, its path in the export wrappers, so the quantizer's module choices
    (``export.quantize.modules_kept_fp32``) apply to it unchanged."""

    def __init__(self, name: str, module: nn.Module, args: tuple, kwargs: dict):
        super().__init__()
        self.model = nn.Module()
        self.model.add_module(name, module)
        self.name = name
        leaves, self.spec = tree_flatten((args, kwargs))
        self.tensor_slots = [i for i, leaf in enumerate(leaves) if isinstance(leaf, torch.Tensor)]
        self.fixed = [None if isinstance(leaf, torch.Tensor) else leaf for leaf in leaves]

    def inputs(self, args: tuple, kwargs: dict) -> tuple[torch.Tensor, ...]:
        leaves, _ = tree_flatten((args, kwargs))
        return tuple(leaves[i].contiguous() for i in self.tensor_slots)  # ExecuTorch takes dense inputs

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        leaves = list(self.fixed)
        for slot, tensor in zip(self.tensor_slots, tensors):
            leaves[slot] = tensor
        args, kwargs = tree_unflatten(leaves, self.spec)
        return tuple(_tensors(getattr(self.model, self.name)(*args, **kwargs)))


def record_module_calls(model, steps: int, prompt: str) -> dict[str, list[tuple[tuple, dict]]]:
    """Top-level submodule name -> its (args, kwargs) in each of ``steps`` streaming steps (every call)."""
    step, pixels, _ = _streaming_step(model, prompt)
    calls: dict[str, list[tuple[tuple, dict]]] = {}
    handles = []
    for name, child in model.named_children():
        def hook(module, args, kwargs, name=name):
            calls.setdefault(name, []).append((args, kwargs))
        handles.append(child.register_forward_pre_hook(hook, with_kwargs=True))
    generator = torch.Generator().manual_seed(1)
    try:
        with torch.no_grad():
            for index in range(steps):
                step(pixels[index] if index < len(pixels) else
                     torch.randn(pixels[0].shape, generator=generator))
    finally:
        for handle in handles:
            handle.remove()
    return calls


@dataclass
class ModuleTiming:
    name: str
    calls_per_frame: int
    gflops: float  # per frame (all calls)
    fp32_ms: float  # per frame (median of one call x calls)
    int8_ms: float
    outside_int8: dict[str, int]
    outside_fp32: dict[str, int]


def _lowered(program: torch.export.ExportedProgram):
    from executorch.extension.pybindings.portable_lib import _load_for_executorch_from_buffer

    from export.lowering import lower_to_xnnpack, ops_outside_delegate

    edge = lower_to_xnnpack({"forward": program})
    outside = dict(ops_outside_delegate(edge, "forward"))
    buffer = edge.to_executorch().buffer
    return _load_for_executorch_from_buffer(buffer), outside, buffer  # the program reads the buffer: keep it


def measure_modules(checkpoint: Path, threads: int, runs: int = DEFAULT_RUNS, prompt: str = "red circle",
                    show_progress: bool = True, modules: tuple[str, ...] | None = None) -> list[ModuleTiming]:
    """Every top-level submodule that one streaming step calls (or those of them ``modules`` names), in call
    order (the text encoder runs once per prompt and is not part of a frame)."""
    from tqdm import tqdm

    from benchmarks.latency import set_executorch_threads
    from efficient_sam3 import EfficientSam3Model
    from export.fuse import deployment_model
    from export.quantize import modules_kept_fp32, quantize_method

    torch.set_num_threads(threads)
    set_executorch_threads(threads)
    model = deployment_model(EfficientSam3Model.from_pretrained(checkpoint).eval()).requires_grad_(False)
    per_step = record_module_calls(model, 1, prompt)
    unknown = set(modules or ()) - set(per_step)
    if unknown:
        raise ValueError(f"modules {sorted(unknown)} are not called in a streaming step; choose from {list(per_step)}")
    calls = record_module_calls(model, CALIBRATION_STEPS + 1, prompt)
    timings = []
    names = [name for name in per_step if modules is None or name in modules]
    for name in tqdm(names, desc="module programs (fp32 + int8 each)", unit="module", disable=not show_progress):
        count = len(per_step[name])
        args, kwargs = calls[name][0]
        module = getattr(model, name)
        wrapper = ModuleCall(name, module, args, kwargs).eval()
        timed = wrapper.inputs(args, kwargs)
        calibration = [wrapper.inputs(a, k) for a, k in calls[name][count::count]]  # first call of later steps
        gflops = module_gflops(wrapper, *timed) * count
        fp32, outside_fp32, _fp32_buffer = _lowered(torch.export.export(wrapper, timed))
        int8, outside_int8, _int8_buffer = _lowered(quantize_method(wrapper, calibration, modules_kept_fp32(model.config),
                                                      example=timed))
        seconds = {"fp32": [], "int8": []}
        for run in range(runs + 1):  # run 0 warms both up
            for label, program in ((("fp32", fp32), ("int8", int8)) if run % 2 else (("int8", int8), ("fp32", fp32))):
                started = time.perf_counter()
                program.run_method("forward", timed)
                if run:
                    seconds[label].append(time.perf_counter() - started)
        timings.append(ModuleTiming(name, count, gflops, float(np.median(seconds["fp32"])) * 1000.0 * count,
                                    float(np.median(seconds["int8"])) * 1000.0 * count, outside_int8, outside_fp32))
    return timings


GOAL_RATIO = 10  # ExecuTorch int8 per frame at least this many times faster than EdgeTAM's video model


def module_int8_rows(timings: list[ModuleTiming], frame_int8_ms: float | None = None,
                     edgetam_ms: float | None = None) -> list[Row]:
    """One row per module, then their sum, and, when given, the whole int8 frame program's p50 (the latency
    row) and the time the EdgeTAM goal allows (EdgeTAM's p50 / GOAL_RATIO)."""
    total_int8 = sum(t.int8_ms for t in timings)
    rows = []
    for t in timings:
        outside = ", ".join(f"{op} x{n}" for op, n in sorted(t.outside_int8.items())) or "none"
        rows.append(Row.ok(t.name, {"gflops": t.gflops, "fp32_ms": t.fp32_ms, "int8_ms": t.int8_ms,
                                    "int8_vs_fp32": t.int8_ms / t.fp32_ms,
                                    "share_int8": 100.0 * t.int8_ms / total_int8,
                                    "int8_gflops_per_s": t.gflops / (t.int8_ms / 1000.0)},
                           {"calls_per_frame": str(t.calls_per_frame), "outside_delegate_int8": outside}))
    total_fp32 = sum(t.fp32_ms for t in timings)
    total_gflops = sum(t.gflops for t in timings)
    rows.append(Row.ok("sum of modules", {"gflops": total_gflops, "fp32_ms": total_fp32, "int8_ms": total_int8,
                                          "int8_vs_fp32": total_int8 / total_fp32, "share_int8": 100.0,
                                          "int8_gflops_per_s": total_gflops / (total_int8 / 1000.0)}))
    if frame_int8_ms is not None:
        rows.append(Row.ok("whole frame program, int8 (latency row)", {"int8_ms": frame_int8_ms}))
    if edgetam_ms is not None:
        rows.append(Row.ok(f"EdgeTAM video model p50 / {GOAL_RATIO} (the int8 goal)", {"int8_ms": edgetam_ms / GOAL_RATIO}))
    return rows


def module_int8_section(rows: list[Row]) -> Section:
    return Section(
        key="module_int8", title="Where ExecuTorch time goes: each module as its own program, fp32 and int8",
        columns=[Column("gflops", "GFLOP"), Column("fp32_ms", "fp32 ms"), Column("int8_ms", "int8 ms"),
                 Column("int8_vs_fp32", "int8 / fp32", "{:.2f}"), Column("share_int8", "% of int8 sum"),
                 Column("int8_gflops_per_s", "int8 GFLOP/s (fp32-equivalent)", "{:.0f}")],
        rows=rows, detail_keys=("calls_per_frame", "outside_delegate_int8"),
        notes=["Each top-level module of one streaming step (full memory, 1 prompt, precomputed text) exported "
               "alone from its recorded inputs, lowered as the exporters do, int8 with export.quantize's recipe "
               "(calibrated on the recorded inputs of 2 other steps); fp32 and int8 timed alternately in one "
               "process (benchmarks/module_int8.py).",
               "The sum of modules exceeds the whole program: one program fuses across module boundaries and "
               "pays the per-call overhead once."])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.module_int8", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--modules", default=None, help="comma list of top-level modules (default: all)")
    args = parser.parse_args(argv)
    from benchmarks.report import render_section

    from efficient_sam3.cli import fail

    modules = tuple(args.modules.split(",")) if args.modules else None
    try:
        timings = measure_modules(args.checkpoint, args.threads, args.runs, modules=modules)
    except (OSError, ValueError) as err:
        return fail(err)
    section = module_int8_section(module_int8_rows(timings))
    print(render_section(section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
