"""Run every benchmark and write ``<out-dir>/<YYYY-MM-DD>-<host>.json`` + ``.md``.

    python -m benchmarks.run [--quick] [--preset edge|tiny] [--out-dir benchmarks/results]
                             [--checkpoint DIR] [--work-dir DIR] [--threads N]
                             [--students all|none|es-rv-m,es-tv-s,...] [--students-only]

Without ``--checkpoint`` the preset is built with random weights (seed 0): speed does not depend on
weight values. The checkpoint is exported with export/ (ONNX, ExecuTorch fp32, ExecuTorch int8) into the
work folder (exports already there for the same checkpoint are reused). ``--quick`` times fewer frames
and skips the exports (unless reusable), the anchors, all but the torch runtime session and the SAM3
teacher; it is the CI smoke run (tiny preset, under 3 minutes on 2 cores), and it skips the students
and times the geometry token in eager only. Sections: latency, memory_path, flops, memory, module_int8
(benchmarks/module_int8.py), onnx_int8, device_files (benchmarks/device_files.py), prompt_batch
(benchmarks/prompt_batch.py), training, geometry_token, students (see each module's docstring for what
is timed; benchmarks/students.py for the last two). The students run first after the synthetic data,
so a failing student export fails the run before the long rows; ``--students-only`` runs just
geometry_token and students.

Only the third-party anchors (benchmarks/anchors.py) may end up "unavailable" (a missing package, or
their own failure). Every other row measures our own code (the synthetic data, our exports and backends,
the runtime sessions, the memory, FLOPs, training-side, geometry-token and student rows): when one fails
the run stops with one line ``error: <row>: <cause>`` and exit status 2, and writes no report.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.anchors import ANCHORS, unavailable_reason
from benchmarks.artifacts import (
    SKIPPED_EXPORT,
    Artifacts,
    export_failures,
    prepare_artifacts,
    save_random_checkpoint,
)
from benchmarks.device_files import device_file_rows, device_files_section, prepare_device_files
from benchmarks.latency import LatencyStats, TimingPlan
from benchmarks.memory import WorkerResult, WorkerSpec, run_in_subprocess
from benchmarks.onnx_int8 import FP32_ROW, INT8_ROW, int8_directory, onnx_int8_rows, onnx_int8_section, \
    write_held_out
from benchmarks.prompt_batch import prompt_batch_rows, prompt_batch_section
from benchmarks.report import Row, Section, build_result, machine_info, render_markdown, write_results
from benchmarks.sections import (
    RowFailed,
    flops_sections,
    latency_section,
    memory_section,
    require_measured,
    training_section,
)
from benchmarks.students import (
    STUDENTS,
    StudentBenchmarkError,
    geometry_token_section,
    parse_students,
    students_section,
)
from benchmarks.training_side import write_synthetic
from efficient_sam3.cli import fail

FULL_PLAN = TimingPlan(warmup=3, frames=20, slow_frames=3)
QUICK_PLAN = TimingPlan(warmup=1, frames=3, slow_frames=3)


@dataclass(frozen=True)
class BenchConfig:
    preset: str = "edge"
    quick: bool = False
    out_dir: Path = Path("benchmarks/results")
    checkpoint: Path | None = None  # None: random weights of the preset
    work_dir: Path | None = None  # None: a temporary folder, removed afterwards
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    prompt: str = "red circle"
    worker_timeout_s: float = 3600.0
    students: tuple[str, ...] = STUDENTS  # es-* presets of the students section
    students_only: bool = False  # only the geometry_token and students sections

    @property
    def plan(self) -> TimingPlan:
        return QUICK_PLAN if self.quick else FULL_PLAN


@dataclass(frozen=True)
class Measured:
    """What one worker process gave, or why it gave nothing: "skipped" (by design, e.g. ``--quick``) or,
    for a third-party anchor only, "unavailable"."""

    name: str
    result: WorkerResult | None = None
    status: str = "ok"
    reason: str | None = None
    details: dict[str, str] = field(default_factory=dict)

    @property
    def latency(self) -> LatencyStats | None:
        return self.result.latency if self.result else None


def _cause(err: BaseException) -> str:
    """``Type: message (file:line)`` of an exception, the line being where it was raised."""
    frames = traceback.extract_tb(err.__traceback__)
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(err).__name__}: {err}{where}"


@contextmanager
def _our_row(name: str):
    """Any exception inside (bar RowFailed and StudentBenchmarkError, which name their row) fails row ``name``."""
    try:
        yield
    except (RowFailed, StudentBenchmarkError):
        raise
    except Exception as err:
        raise RowFailed(name, _cause(err)) from err


def _measure(name: str, spec: WorkerSpec, timeout_s: float, details: dict[str, str],
             third_party: bool = False) -> Measured:
    """Run ``spec`` in its worker process. A failure makes a third-party row "unavailable" and fails ours."""
    print(f"[benchmarks] {name} ...", file=sys.stderr, flush=True)
    try:
        result = run_in_subprocess(spec, timeout_s)
    except Exception as err:  # WorkerError (the worker failed or timed out) or e.g. an unreadable reply
        if not third_party:
            raise RowFailed(name, _cause(err)) from err
        return Measured(name, status="unavailable", reason=_cause(err), details=details)
    return Measured(name, result=result, details={**details, **result.details})


def measure_backends(config: BenchConfig, artifacts: Artifacts) -> list[Measured]:
    """Every way of running our model, then the anchors, each in its own process. A missing export must have
    been skipped (``--quick``); RowFailed when one of our rows fails."""
    plan, threads, timeout = config.plan, config.threads, config.worker_timeout_s
    programs = "encode_frame + decode, 1 prompt, full memory"
    targets = [
        ("PyTorch eager", "eager", artifacts.checkpoint, None,
         {"timed": "model.encode_image + model.forward_video (precomputed text), full memory"}),
        ("PyTorch eager, fused (deployment form)", "eager_fused", artifacts.checkpoint, None,
         {"timed": "as above after fuse_for_deployment"}),
        ("ONNX Runtime", "onnx", artifacts.onnx_dir, artifacts.onnx_reason, {"timed": f"ORT CPU: {programs}"}),
        ("ExecuTorch fp32", "executorch", artifacts.pte_fp32, artifacts.pte_fp32_reason,
         {"timed": f"XNNPACK: {programs}"}),
        ("ExecuTorch int8", "executorch", artifacts.pte_int8, artifacts.pte_int8_reason,
         {"timed": f"XNNPACK int8: {programs}"}),
    ]
    measured = []
    for name, kind, path, reason, details in targets:
        if path is None:
            measured.append(_missing(name, reason, details))
            continue
        spec = WorkerSpec(kind=kind, threads=threads, plan=plan, path=str(path), prompt=config.prompt)
        measured.append(_measure(name, spec, timeout, details))

    sessions = [("torch", artifacts.checkpoint, None), ("onnx", artifacts.onnx_dir, artifacts.onnx_reason),
                ("executorch", artifacts.pte_fp32, artifacts.pte_fp32_reason),
                ("executorch", artifacts.pte_int8, artifacts.pte_int8_reason)]
    for (backend, path, reason), label in zip(sessions, ("torch", "onnx", "executorch fp32", "executorch int8")):
        name = f"runtime.VideoSession.step ({label})"
        details = {"timed": "step(1280x720 uint8 frame): preprocess, programs, masks at frame size, tracking"}
        if config.quick and label != "torch":
            measured.append(Measured(name, status="skipped", reason="--quick", details=details))
        elif path is None:
            measured.append(_missing(name, reason, details))
        else:
            spec = WorkerSpec(kind="session", threads=threads, plan=plan, path=str(path), backend=backend,
                              prompt=config.prompt)
            measured.append(_measure(name, spec, timeout, details))

    for key, anchor in ANCHORS.items():
        missing = unavailable_reason(key)
        if config.quick:
            measured.append(Measured(anchor.label, status="skipped", reason="--quick (anchors take seconds per frame)"))
        elif missing:
            measured.append(Measured(anchor.label, status="unavailable", reason=missing))
        else:
            spec = WorkerSpec(kind="anchor", threads=threads, plan=plan, anchor=key)
            measured.append(_measure(anchor.label, spec, timeout, {}, third_party=True))
    return measured


def _missing(name: str, reason: str | None, details: dict[str, str]) -> Measured:
    """Our row whose export is absent: skipped when the export was skipped, else the run fails."""
    if reason != SKIPPED_EXPORT:
        raise RowFailed(name, reason or "its export is missing")
    return Measured(name, status="skipped", reason=reason, details=details)


@contextmanager
def _stage(name: str, stage_s: dict[str, float]):
    print(f"[benchmarks] stage: {name}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        yield
    finally:
        stage_s[name] = time.perf_counter() - started


def _main_sections(config: BenchConfig, work_dir: Path, sav_root: Path, num_videos: int,
                   stage_s: dict[str, float]) -> tuple[list[Section], Artifacts]:
    """The run preset's exports, backends, anchors and the sections built on them; RowFailed if one of ours fails."""
    with _stage("export", stage_s), _our_row("export"):
        artifacts = prepare_artifacts(config.preset, config.checkpoint, work_dir / "artifacts", config.prompt,
                                      calibration_videos=sav_root,
                                      calibration_frames=None, export_missing=not config.quick)
    failures = export_failures(artifacts)
    if failures:
        raise RowFailed(*next(iter(failures.items())))
    with _stage("backends and anchors", stage_s):
        measured = measure_backends(config, artifacts)
    sections: list[Section] = []
    with _our_row("latency"):
        sections.append(latency_section(measured, config.threads))
    import torch

    torch.set_num_threads(config.threads)
    with _stage("memory path and flops", stage_s), _our_row("memory_path and flops"):
        sections += flops_sections(artifacts.checkpoint, measured, config.plan, config.prompt, config.quick)
    with _our_row("memory"):
        sections.append(memory_section(measured, artifacts))
    with _stage("module int8", stage_s), _our_row("module int8"):
        from benchmarks.module_int8 import measure_modules, module_int8_rows, module_int8_section

        if config.quick:
            rows = [Row.skipped("every module", "--quick (two exports per module take minutes)")]
        else:
            p50 = {m.name: m.latency.p50_ms for m in measured if m.latency is not None}
            rows = module_int8_rows(measure_modules(artifacts.checkpoint, config.threads), p50.get("ExecuTorch int8"),
                                    p50.get(ANCHORS["edgetam_video"].label))
        sections.append(module_int8_section(rows))
    held_out = None if config.quick else write_held_out(work_dir / "sav_held_out", num_videos=1, video_frames=41)
    with _stage("onnx int8", stage_s), _our_row("onnx int8"):
        if config.quick:
            reason = "--quick (quantizing and streaming both directories take minutes)"
            sections.append(onnx_int8_section([Row.skipped(FP32_ROW, reason), Row.skipped(INT8_ROW, reason)]))
        else:
            int8_dir = int8_directory(artifacts.onnx_dir, work_dir / "artifacts" / "onnx_int8", sav_root, held_out)
            sections.append(onnx_int8_section(onnx_int8_rows(artifacts.onnx_dir, int8_dir, held_out, config.threads)))
    with _stage("device files", stage_s), _our_row("device files"):
        if config.quick:
            rows = [Row.skipped("every file", "--quick (two int8 exports take minutes)")]
        else:
            files = prepare_device_files(artifacts.checkpoint, work_dir / "artifacts" / "device", config.prompt,
                                         sav_root)
            rows = device_file_rows(artifacts.pte_fp32, files, held_out, config.threads)
        sections.append(device_files_section(rows))
    with _stage("prompt batch", stage_s), _our_row("prompt batch"):
        programs = (("ExecuTorch fp32", artifacts.pte_fp32), ("ExecuTorch int8", artifacts.pte_int8),
                    ("ONNX Runtime fp32", artifacts.onnx_dir))
        rows = []
        for name, path in programs:
            if config.quick or path is None:
                rows.append(Row.skipped(name, "--quick (P up to 8 decodes per frame take minutes)" if config.quick
                                        else "no export"))
            else:
                rows += prompt_batch_rows(name, path, artifacts.checkpoint, config.threads)
        sections.append(prompt_batch_section(rows))
    with _stage("training side", stage_s), _our_row("training side"):
        sections.append(training_section(artifacts.checkpoint, sav_root, num_videos, work_dir / "training",
                                         config.quick))
    for section in sections:
        require_measured(section)
    return sections, artifacts


def run_benchmarks(config: BenchConfig) -> tuple[dict, str, Path, Path]:
    """Run every section; returns (result dict, markdown, json path, markdown path). RowFailed or
    StudentBenchmarkError (nothing written) when one of our own rows fails."""
    started = time.perf_counter()
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    machine = machine_info(config.threads)
    work_dir = config.work_dir or Path(tempfile.mkdtemp(prefix="esam3-bench-"))
    stage_s: dict[str, float] = {}
    num_videos, video_frames = (1, 21) if config.quick else (2, 41)
    try:
        with _stage("synthetic data", stage_s), _our_row("synthetic data"):
            sav_root = write_synthetic(work_dir / "sav", num_videos, video_frames)
        with _stage("geometry token", stage_s), _our_row("geometry_token"):
            checkpoint = config.checkpoint or save_random_checkpoint(config.preset, work_dir / "artifacts"
                                                                     / f"{config.preset}-random")
            geometry, geometry_ms = geometry_token_section(checkpoint, config.threads, config.plan, config.prompt,
                                                           config.quick)
        with _stage("students", stage_s), _our_row("students"):
            students = students_section(config.students, work_dir / "students", sav_root, config.threads,
                                        config.plan, config.prompt, config.worker_timeout_s, geometry_ms,
                                        skip_reason="--quick (each student's exports take minutes)"
                                        if config.quick else None)
        sections: list[Section] = []
        artifacts = None
        if not config.students_only:
            sections, artifacts = _main_sections(config, work_dir, sav_root, num_videos, stage_s)
        sections += [require_measured(geometry), require_measured(students)]
    finally:
        if config.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    run_config = {"preset": config.preset, "quick": config.quick, "checkpoint": str(config.checkpoint or "random"),
                  "threads": config.threads, "prompt": config.prompt, "plan": config.plan.__dict__,
                  "artifacts": artifacts.describe() if artifacts else None, "stage_s": stage_s,
                  "students": list(config.students), "students_only": config.students_only}
    host = socket.gethostname()
    result = build_result(sections, machine, run_config, created, host, time.perf_counter() - started)
    markdown = render_markdown(result, sections)
    json_path, md_path = write_results(result, markdown, config.out_dir)
    return result, markdown, json_path, md_path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke run: few frames, no anchors, no students")
    parser.add_argument("--preset", default="edge", choices=["edge", "tiny"])
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--checkpoint", type=Path, help="benchmark this checkpoint instead of random weights")
    parser.add_argument("--work-dir", type=Path, help="keep exports and synthetic data here (default: temporary)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads per backend")
    parser.add_argument("--students", default="all",
                        help=f"students section: all (default), none, or a comma list of {','.join(STUDENTS)}")
    parser.add_argument("--students-only", action="store_true",
                        help="run only the geometry_token and students sections")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads < 1:
        print(f"error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    try:
        students = parse_students(args.students)
    except ValueError as err:
        print(f"error: --students: {err}", file=sys.stderr)
        return 2
    if args.students_only and not students:
        print("error: --students-only needs at least one student (--students none selects none)", file=sys.stderr)
        return 2
    config = BenchConfig(preset=args.preset, quick=args.quick, out_dir=args.out_dir, checkpoint=args.checkpoint,
                         work_dir=args.work_dir, threads=args.threads, students=students,
                         students_only=args.students_only)
    try:
        _, markdown, json_path, md_path = run_benchmarks(config)
    except RowFailed as err:
        return fail(err)
    except StudentBenchmarkError as err:
        return fail(f"students section: {err}")
    print(markdown)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
