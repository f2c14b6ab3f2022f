"""The public EfficientSAM3 students side by side, and the cost of SAM3's geometry token.

students: for each chosen ``es-*`` preset (random weights, seed 0, 504 px): its ONNX, ExecuTorch fp32 and
ExecuTorch int8 exports (export/, each parity-gated; an export already in ``<work-dir>/students/<preset>``
for the same weights is reused), each timed per streamed frame (encode_frame + decode, 1 prompt, full
memory; ONNX under ONNX Runtime) in a process of its own, its GFLOP per frame (benchmarks.flops) and its
file sizes. These rows are our own
code: an export or a timing that fails raises ``StudentBenchmarkError`` and fails the run, it is never
an "unavailable" row.

geometry_token: the original prompt path adds the geometry encoder's CLS token to every prompt (one
token per frame: it depends on the image only). Its cost per frame, on the run's preset: eager decode
(``forward_video`` on precomputed FPN levels and text) with the token and without it (the same weights,
geometry encoder removed), the geometry encoder alone in eager and, outside ``--quick``, as an
ExecuTorch fp32 program (XNNPACK).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

from benchmarks.artifacts import Artifacts, file_size_mb, prepare_artifacts
from benchmarks.latency import TimingPlan, time_steps
from benchmarks.memory import WorkerError, WorkerSpec, run_in_subprocess
from benchmarks.report import Column, Row, Section
from efficient_sam3.presets import PRESETS

STUDENTS = tuple(name for name in PRESETS if name.startswith("es-"))
STUDENT_EXPORTS = ("onnx", "executorch_fp32", "executorch_int8")


class StudentBenchmarkError(RuntimeError):
    """A student's export or timing failed (our own code: the run fails)."""


def parse_students(text: str) -> tuple[str, ...]:
    """``"all"``, ``"none"`` or a comma-separated list of STUDENTS -> the presets, in the order given."""
    if text == "all":
        return STUDENTS
    if text == "none":
        return ()
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in STUDENTS]
    if unknown or not names:
        raise ValueError(f"unknown student {', '.join(unknown) or repr(text)}; choose from all, none or "
                         f"{','.join(STUDENTS)}")
    return names


def _time_program(preset: str, label: str, kind: str, path: Path, threads: int, plan: TimingPlan, prompt: str,
                  timeout_s: float):
    spec = WorkerSpec(kind=kind, threads=threads, plan=plan, path=str(path), prompt=prompt)
    try:
        return run_in_subprocess(spec, timeout_s)
    except WorkerError as err:
        raise StudentBenchmarkError(f"{preset} {label}: timing failed: {err}") from err


def student_artifacts(preset: str, directory: Path, prompt: str, calibration_videos: Path | None) -> Artifacts:
    """Random-weight checkpoint + ONNX, ExecuTorch fp32 and int8 exports of ``preset`` (reused when present)."""
    artifacts = prepare_artifacts(preset, None, directory, prompt, calibration_videos=calibration_videos,
                                  calibration_frames=None, exports=STUDENT_EXPORTS)
    for label, reason in (("ONNX", artifacts.onnx_reason), ("ExecuTorch fp32", artifacts.pte_fp32_reason),
                          ("ExecuTorch int8", artifacts.pte_int8_reason)):
        if reason:
            raise StudentBenchmarkError(f"{preset} {label}: {reason}")
    return artifacts


def students_section(students: tuple[str, ...], work_dir: Path, calibration_videos: Path | None, threads: int,
                     plan: TimingPlan, prompt: str, timeout_s: float, geometry_ms: float | None,
                     skip_reason: str | None = None) -> Section:
    """One row per student; ``geometry_ms``: the geometry token's ExecuTorch fp32 ms per frame (or None)."""
    import torch

    from benchmarks.flops import frame_gflops
    from efficient_sam3 import EfficientSam3Model

    section = Section(
        key="students", title="EfficientSAM3 students at 504 px (random weights; ExecuTorch XNNPACK, ONNX Runtime)",
        columns=[Column("fp32_ms", "fp32 p50 ms"), Column("int8_ms", "int8 p50 ms"),
                 Column("int8_speedup", "int8 speed-up", "{:.2f}"), Column("onnx_ms", "ORT fp32 p50 ms"),
                 Column("gflops", "GFLOP/frame"),
                 Column("fp32_mib", "fp32 .pte MiB"), Column("int8_mib", "int8 .pte MiB"),
                 Column("onnx_mib", "ONNX MiB"),
                 Column("params_m", "params M"), Column("geometry_pct", "geometry token % of fp32 frame")],
        detail_keys=("backbone", "text", "export_s"),
        notes=["ms = p50 per streamed frame: encode_frame + decode, 1 prompt, all T memory slots valid, each program "
               f"in its own process after its warm-up frames, threads pinned to {threads}; fp32 / int8 = "
               "ExecuTorch .pte, ORT = the ONNX export under ONNX Runtime.",
               "GFLOP = one streaming step of the eager model (torch.utils.flop_counter; int8 runs the same ops).",
               "Each export passed export.parity before it was written; export_s = ONNX / fp32 / int8 export wall time "
               "(reused exports show 'reused').",
               "geometry token % = the geometry encoder alone as an ExecuTorch fp32 program (geometry_token "
               "section) / the student's fp32 frame; the encoder is the same in every student."])
    if skip_reason:
        section.rows.append(Row.skipped("students", skip_reason))
        return section
    for preset in students:
        print(f"[benchmarks] student {preset} ...", file=sys.stderr, flush=True)
        artifacts = student_artifacts(preset, work_dir / preset, prompt, calibration_videos)
        fp32 = _time_program(preset, "ExecuTorch fp32", "executorch", artifacts.pte_fp32, threads, plan, prompt,
                             timeout_s)
        int8 = _time_program(preset, "ExecuTorch int8", "executorch", artifacts.pte_int8, threads, plan, prompt,
                             timeout_s)
        onnx = _time_program(preset, "ONNX fp32", "onnx", artifacts.onnx_dir, threads, plan, prompt, timeout_s)
        model = EfficientSam3Model.from_pretrained(artifacts.checkpoint).eval()
        torch.set_num_threads(threads)
        config = model.config
        backbone = config.backbone.variant or f"dims {config.backbone.embed_dims}, depths {config.backbone.depths}"
        export_s = " / ".join(f"{artifacts.export_s[key]:.0f} s" if key in artifacts.export_s else "reused"
                              for key in STUDENT_EXPORTS)
        section.rows.append(Row.ok(preset, {
            "fp32_ms": fp32.latency.p50_ms, "int8_ms": int8.latency.p50_ms,
            "int8_speedup": fp32.latency.p50_ms / int8.latency.p50_ms, "onnx_ms": onnx.latency.p50_ms,
            "gflops": frame_gflops(model, prompt),
            "fp32_mib": file_size_mb(artifacts.pte_fp32), "int8_mib": file_size_mb(artifacts.pte_int8),
            "onnx_mib": file_size_mb(artifacts.onnx_dir),
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "geometry_pct": 100.0 * geometry_ms / fp32.latency.p50_ms if geometry_ms else None,
        }, {"backbone": f"{config.backbone.kind} {backbone}",
            "text": f"{config.text.num_layers} layers x {config.text.width}, context {config.text.max_length}",
            "export_s": export_s}))
    return section


def _geometry_encoder_alone(model):
    """A module running only the geometry encoder: level-2 tokens [1, G*G, C] -> the token [1, 1, C]."""
    from torch import nn

    class GeometryToken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = model.geometry_encoder
            self.register_buffer("position", model.encoder_pos)

        def forward(self, level_tokens):
            return self.encoder(level_tokens, self.position)

    return GeometryToken().eval()


def geometry_token_section(checkpoint: Path, threads: int, plan: TimingPlan, prompt: str,
                           quick: bool) -> tuple[Section, float | None]:
    """The section and the ExecuTorch fp32 ms of the geometry encoder alone (None under ``--quick``)."""
    import torch

    from benchmarks.flops import module_gflops
    from benchmarks.latency import set_executorch_threads
    from efficient_sam3 import EfficientSam3Model
    from efficient_sam3.model import ENCODER_FPN_LEVEL
    from export.lowering import DelegationError, check_delegation, lower_to_xnnpack

    section = Section(
        key="geometry_token", title="Cost of SAM3's geometry token per frame (original prompt path)",
        columns=[Column("ms", "p50 ms/frame"), Column("gflops", "GFLOP"), Column("share_pct", "% of decode")],
        detail_keys=("note",),
        notes=["decode = forward_video on precomputed FPN levels and text (1 prompt, all T memory slots valid); "
               "'without' is the same model with its geometry encoder removed (prompt = text tokens only).",
               "The token depends on the frame, not on the prompt: one per frame, whatever the number of prompts."])
    model = EfficientSam3Model.from_pretrained(checkpoint).eval()
    if model.geometry_encoder is None:
        section.rows.append(Row.skipped("geometry token", f"preset {model.config.preset} uses the transformers "
                                                          "prompt path (no geometry token)"))
        return section, None
    torch.set_num_threads(threads)
    config = model.config
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        vision = model.encode_image(torch.randn(1, 3, config.image_size, config.image_size, generator=generator))
        text = model.encode_text(*model.tokenize([prompt]))
    grid = config.memory_grid
    memory = torch.randn(1, config.memory.context_frames, config.hidden_size, grid, grid, generator=generator)
    memory_mask = torch.ones(1, config.memory.context_frames, dtype=torch.bool)
    without = copy.copy(model)  # shares every weight; only the geometry encoder slot differs
    without._modules = dict(model._modules, geometry_encoder=None)

    def decode_step(decoder):
        @torch.inference_mode()
        def step(frame_number: int):
            return decoder.forward_video(None, None, memory, memory_mask, vision=vision, text=text)
        return step

    with_token, without_token = time_steps(decode_step(model), plan), time_steps(decode_step(without), plan)
    level_tokens = vision.fpn_hidden_states[ENCODER_FPN_LEVEL].flatten(2).transpose(1, 2).contiguous()  # [1, G*G, C]
    alone = _geometry_encoder_alone(model)

    @torch.inference_mode()
    def alone_step(frame_number: int):
        return alone(level_tokens)

    eager_alone = time_steps(alone_step, plan)
    gflops = module_gflops(alone, level_tokens)
    decode_ms = with_token.p50_ms
    section.rows += [
        Row.ok("decode with the geometry token (eager)", {"ms": decode_ms, "share_pct": 100.0}),
        Row.ok("decode without it (eager)", {"ms": without_token.p50_ms,
                                             "share_pct": 100.0 * without_token.p50_ms / decode_ms}),
        Row.ok("difference = the token's cost (eager)", {"ms": decode_ms - without_token.p50_ms, "gflops": gflops,
                                                         "share_pct": 100.0 * (decode_ms - without_token.p50_ms)
                                                         / decode_ms},
               {"note": "timing noise can exceed it; the encoder-alone rows are the direct measurement"}),
        Row.ok("geometry encoder alone (eager)", {"ms": eager_alone.p50_ms, "gflops": gflops,
                                                  "share_pct": 100.0 * eager_alone.p50_ms / decode_ms},
               {"note": f"{config.geometry_encoder.num_layers} layer(s) over {config.trunk_grid}x{config.trunk_grid} "
                        "FPN level-2 tokens"}),
    ]
    if quick:
        section.rows.append(Row.skipped("geometry encoder alone (ExecuTorch fp32)", "--quick (lowering takes minutes)"))
        return section, None
    from executorch.extension.pybindings.portable_lib import _load_for_executorch_from_buffer

    edge = lower_to_xnnpack({"forward": torch.export.export(alone, (level_tokens,))})
    try:
        check_delegation(edge, ("forward",))
    except DelegationError as err:
        raise StudentBenchmarkError(f"geometry encoder: {err}") from err
    buffer = edge.to_executorch().buffer  # kept alive: the loaded program reads from it
    program = _load_for_executorch_from_buffer(buffer)
    set_executorch_threads(threads)
    reference = alone(level_tokens)
    got = program.run_method("forward", (level_tokens,))[0]
    difference = float((reference - got).abs().max())
    if difference > 1e-4:
        raise StudentBenchmarkError(f"geometry encoder program differs from eager by {difference:.3g}")
    lowered = time_steps(lambda frame_number: program.run_method("forward", (level_tokens,)), plan)
    section.rows.append(Row.ok("geometry encoder alone (ExecuTorch fp32)", {"ms": lowered.p50_ms, "gflops": gflops},
                               {"note": f"max |diff| vs eager {difference:.2g}"}))
    return section, lowered.p50_ms
