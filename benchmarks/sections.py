"""Turn measurements into the report's sections (latency, memory_path, flops, memory, training).

Which rows may lack numbers: a third-party anchor (benchmarks/anchors.py) may be "unavailable"; every
other row measures our own code, so it has numbers or is "skipped" by design (``--quick``), and a
failure raises ``RowFailed``, which fails the run (benchmarks.run: one ``error:`` line, exit 2).
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.anchors import ANCHORS
from benchmarks.artifacts import SKIPPED_EXPORT, Artifacts, file_size_mb
from benchmarks.latency import TimingPlan
from benchmarks.report import Column, Row, Section

REFERENCE_ROW = "ExecuTorch fp32"
# Rows whose per-frame work is exactly encode_frame + decode of our model (FLOPs apply to them).
PROGRAM_ROWS = ("PyTorch eager", "PyTorch eager, fused (deployment form)", "ONNX Runtime", "ExecuTorch fp32",
                "ExecuTorch int8")
MEMORY_PIECES = ("perceiver resampler", "memory cross-attention")
# The only rows that may be "unavailable": third-party models (a missing package, their own failure).
THIRD_PARTY_ROWS = frozenset(anchor.label for anchor in ANCHORS.values())


class RowFailed(RuntimeError):
    """One of our own rows could not be measured: the run fails, naming the row and the cause."""

    def __init__(self, row: str, cause: str) -> None:
        super().__init__(f"{row}: {cause}")
        self.row, self.cause = row, cause


def require_measured(section: Section) -> Section:
    """``section`` itself; RowFailed for its first "unavailable" row that is not a third-party anchor."""
    for row in section.rows:
        if row.status == "unavailable" and row.name not in THIRD_PARTY_ROWS:
            raise RowFailed(row.name, row.reason)
    return section


def _status_row(measured, metrics: dict, details: dict | None = None) -> Row:
    if measured.status == "ok":
        return Row.ok(measured.name, metrics, details if details is not None else measured.details)
    if measured.status == "skipped":
        return Row.skipped(measured.name, measured.reason, measured.details)
    return Row.unavailable(measured.name, measured.reason, measured.details)


def latency_section(measured: list, threads: int) -> Section:
    reference = next((m.latency for m in measured if m.name == REFERENCE_ROW and m.latency), None)
    section = Section(
        key="latency", title="Streaming per-frame latency (504 px unless stated, 1 prompt / 1 object)",
        columns=[Column("p50_ms", "p50 ms"), Column("p90_ms", "p90 ms"), Column("fps", "FPS", "{:.2f}"),
                 Column("frames", "timed frames", "{:.0f}"), Column("ratio_vs_executorch_fp32", "× ET fp32",
                                                                      "{:.2f}")],
        detail_keys=("timed", "memory_bank", "threads", "image_size", "params_m", "objects_per_frame"),
        notes=[f"Threads pinned to {threads} (torch.set_num_threads, ORT intra_op_num_threads, ExecuTorch "
               "threadpool); each row runs in its own process after its warm-up frames.",
               "× ET fp32 = p50 / p50 of our ExecuTorch fp32 (above 1: slower than ours)."
               + ("" if reference else " ExecuTorch fp32 is not measured in this run, so there is no ratio."),
               "Anchors are transformers models with random weights (speed does not depend on weight values); "
               "rows slower than 1 s/frame are timed over 3 frames."])
    for m in measured:
        metrics = {}
        if m.latency:
            metrics = {"p50_ms": m.latency.p50_ms, "p90_ms": m.latency.p90_ms, "fps": m.latency.fps,
                       "frames": m.latency.frames, "warmup": m.latency.warmup, "mean_ms": m.latency.mean_ms}
            if reference:
                metrics["ratio_vs_executorch_fp32"] = m.latency.p50_ms / reference.p50_ms
        section.rows.append(_status_row(m, metrics))
    return section


def memory_section(measured: list, artifacts: Artifacts) -> Section:
    files = {"PyTorch eager": artifacts.checkpoint / "model.safetensors",
             "PyTorch eager, fused (deployment form)": artifacts.checkpoint / "model.safetensors",
             "ONNX Runtime": artifacts.onnx_dir, "ExecuTorch fp32": artifacts.pte_fp32,
             "ExecuTorch int8": artifacts.pte_int8}
    section = Section(
        key="memory", title="Peak resident memory per process and model file sizes",
        columns=[Column("peak_rss_mib", "peak RSS MiB", "{:.0f}"), Column("start_rss_mib", "RSS at start MiB",
                                                                          "{:.0f}"),
                 Column("load_s", "load s"), Column("file_mib", "file MiB")],
        notes=["Peak RSS = VmHWM of the process that ran the row (imports, model load, warm-up and timed frames);"
               " RSS at start = the interpreter with numpy before any backend is imported.",
               "load s = imports + model/program load before the first frame."])
    for m in measured:
        metrics = {}
        if m.result:
            metrics = {"peak_rss_mib": m.result.peak_rss_mb, "start_rss_mib": m.result.start_rss_mb,
                       "load_s": m.result.load_s}
            path = files.get(m.name)
            if path is not None and path.exists():
                metrics["file_mib"] = file_size_mb(path)
        section.rows.append(_status_row(m, metrics, {}))
    for label, path in artifacts.files().items():
        section.rows.append(Row.ok(f"file: {label}", {"file_mib": file_size_mb(path)}))
    for label, reason in (("ONNX", artifacts.onnx_reason), ("ExecuTorch fp32 .pte", artifacts.pte_fp32_reason),
                          ("ExecuTorch int8 .pte", artifacts.pte_int8_reason)):
        if reason == SKIPPED_EXPORT:
            section.rows.append(Row.skipped(f"file: {label}", reason))
        elif reason:
            raise RowFailed(f"file: {label}", reason)
    return section


def flops_sections(checkpoint: Path, measured: list, plan: TimingPlan, prompt: str, quick: bool) -> list[Section]:
    """memory_path and flops, measured in this process on the eager model."""
    import torch

    from benchmarks.flops import PEAK_MATMUL_SIZE, measure_peak_matmul, piece_breakdown
    from benchmarks.latency import memory_path_steppers, time_steps
    from efficient_sam3 import EfficientSam3Model

    model = EfficientSam3Model.from_pretrained(checkpoint).eval()
    peak = measure_peak_matmul()
    breakdown = piece_breakdown(model, frames=2 if quick else 10, prompt=prompt)
    video_step, image_step = memory_path_steppers(model, prompt)
    video, image = time_steps(video_step, plan), time_steps(image_step, plan)

    flops = Section(
        key="flops", title="FLOPs per frame and achieved GFLOP/s (fp32 peak measured in-process)",
        columns=[Column("gflops", "GFLOP"), Column("share_pct", "% of frame GFLOP"), Column("ms", "ms"),
                 Column("gflops_per_s", "GFLOP/s"), Column("pct_of_peak", "% of peak")],
        detail_keys=("note",),
        notes=[f"Peak: median of a {PEAK_MATMUL_SIZE}x{PEAK_MATMUL_SIZE} fp32 matmul = {peak:.1f} GFLOP/s on "
               f"{torch.get_num_threads()} threads.",
               "FLOPs from torch.utils.flop_counter (matmul/linear/conv/attention; 1 MAC = 2 FLOPs); "
               "piece rows are eager per-module times (forward hooks) from one streaming step.",
               "Backend rows divide the whole frame's FLOPs by that backend's p50 (int8: same op count, "
               "so 'GFLOP/s' is fp32-equivalent work per second)."])
    flops.rows.append(Row.ok(f"fp32 matmul {PEAK_MATMUL_SIZE}³ (machine peak)", {"gflops_per_s": peak,
                                                                                "pct_of_peak": 100.0}))
    for piece in breakdown.pieces:
        share = 100.0 * piece.gflops / breakdown.frame_gflops if piece.per_frame else None
        flops.rows.append(Row.ok(piece.name, {"gflops": piece.gflops, "share_pct": share, "ms": piece.ms,
                                              "gflops_per_s": piece.gflops_per_s,
                                              "pct_of_peak": 100.0 * piece.gflops_per_s / peak},
                                 {"note": "+".join(piece.modules)} if piece.modules else {}))
    flops.rows.append(Row.ok("whole step, eager (hooks attached)", {
        "gflops": breakdown.frame_gflops, "share_pct": 100.0, "ms": breakdown.frame_ms,
        "gflops_per_s": breakdown.frame_gflops / (breakdown.frame_ms / 1000.0),
        "pct_of_peak": 100.0 * breakdown.frame_gflops / (breakdown.frame_ms / 1000.0) / peak}))
    for m in measured:
        if m.name not in PROGRAM_ROWS:
            continue
        name = f"backend: {m.name}"
        if m.latency is None:
            if m.status != "skipped":
                raise RowFailed(name, m.reason or "not measured")
            flops.rows.append(Row.skipped(name, m.reason))
            continue
        achieved = breakdown.frame_gflops / (m.latency.p50_ms / 1000.0)
        flops.rows.append(Row.ok(name, {"gflops": breakdown.frame_gflops, "ms": m.latency.p50_ms,
                                        "gflops_per_s": achieved, "pct_of_peak": 100.0 * achieved / peak}))

    memory_path = Section(
        key="memory_path", title="Cost of the memory path (eager, in-process)",
        columns=[Column("ms", "ms/frame"), Column("gflops", "GFLOP"), Column("share_pct", "% of video step"),
                 Column("ratio", "ratio", "{:.3f}")],
        detail_keys=("note",),
        notes=["Video step = encode_image + forward_video with all T slots valid; image-only step = encode_image "
               "+ forward (no memory); same frames, same precomputed prompt. Module rows come from the FLOPs "
               "breakdown (forward hooks)."])
    memory_path.rows.append(Row.ok("video step (T slots valid)", {"ms": video.p50_ms, "gflops": breakdown.frame_gflops,
                                                                  "share_pct": 100.0}))
    memory_path.rows.append(Row.ok("image-only step", {"ms": image.p50_ms}))
    memory_path.rows.append(Row.ok("video / image-only latency", {"ratio": video.p50_ms / image.p50_ms}))
    for piece in breakdown.pieces:
        if piece.name in MEMORY_PIECES:
            memory_path.rows.append(Row.ok(piece.name, {"ms": piece.ms, "gflops": piece.gflops,
                                                        "share_pct": 100.0 * piece.ms / breakdown.frame_ms}))
    return [memory_path, flops]


def training_section(checkpoint: Path, sav_root: Path, num_videos: int, work_dir: Path, quick: bool) -> Section:
    """The training-side rows (our code: an "unavailable" one fails the run through ``require_measured``)."""
    from benchmarks.training_side import TrainingBenchConfig, run_training_side

    if quick:
        rows = run_training_side(TrainingBenchConfig(checkpoint, sav_root, work_dir, num_videos, dataset_items=5,
                                                     distill_clips=2, sam3_teacher=False))
    else:
        rows = run_training_side(TrainingBenchConfig(checkpoint, sav_root, work_dir, num_videos))
    section = Section(
        key="training", title="Training side (synthetic SA-V-format data, random weights)",
        columns=[Column("frames_per_s", "frames/s", "{:.2f}"), Column("bytes_per_frame", "bytes/frame", "{:.0f}"),
                 Column("items_per_s", "items/s", "{:.2f}"), Column("data_ms", "data ms"),
                 Column("compute_ms", "compute ms"), Column("data_share_pct", "data %")],
        detail_keys=("note",),
        rows=rows,
        notes=["Caching frames/s includes decoding, preprocessing, encoding and writing; bytes/frame is the file "
               "size per cached frame (float16 [256, 18, 18] = 165,888 bytes + index and header)."])
    return section
