"""Peak resident memory: each backend (and each anchor) is measured in a process of its own.

The parent runs ``python -m benchmarks.memory '<WorkerSpec JSON>'``. The child pins its thread count,
builds the stepper, times it with ``benchmarks.latency.time_steps`` and prints one line
``BENCH_RESULT {json}`` with the latency, its peak RSS (``VmHWM`` of /proc/self/status: the high-water
mark of the whole process, library imports and model load included) and the RSS it had before loading
anything heavier than numpy. One process per backend keeps thread pools and allocators apart, so the
peaks do not leak into each other.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.latency import (
    STEPPER_KINDS,
    LatencyStats,
    TimingPlan,
    build_stepper,
    set_executorch_threads,
    time_steps,
)

RESULT_PREFIX = "BENCH_RESULT "
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class WorkerSpec:
    """What one child process measures. kind: a latency.STEPPER_KINDS entry, or "anchor"."""

    kind: str
    threads: int
    plan: TimingPlan
    path: str | None = None
    backend: str | None = None  # for kind "session": torch | onnx | executorch
    anchor: str | None = None  # for kind "anchor": a benchmarks.anchors.ANCHORS key
    prompt: str = "red circle"
    quick: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "WorkerSpec":
        data = json.loads(text)
        data["plan"] = TimingPlan(**data["plan"])
        return cls(**data)


@dataclass(frozen=True)
class WorkerResult:
    latency: LatencyStats
    peak_rss_mb: float
    start_rss_mb: float  # python + numpy, before the backend's libraries and model are loaded
    load_s: float  # imports + model / program load + first-call setup before the warm-up frames
    details: dict[str, str] = field(default_factory=dict)


class WorkerError(RuntimeError):
    """The child failed or timed out; the message carries the reason (last lines of its stderr)."""


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB."""
    status = Path("/proc/self/status")
    if status.is_file():
        fields = {}
        for line in status.read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = float(value.split()[0]) / 1024.0  # kB -> MiB
        if len(fields) == 2:
            return fields["VmRSS"], fields["VmHWM"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports kB
    return float("nan"), peak


def run_in_subprocess(spec: WorkerSpec, timeout_s: float) -> WorkerResult:
    """Measure ``spec`` in a fresh interpreter; WorkerError with the reason if it fails or times out."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "benchmarks.memory", spec.to_json()]
    try:
        completed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                                   timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as err:
        raise WorkerError(f"timed out after {timeout_s:.0f} s") from err
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            data = json.loads(line[len(RESULT_PREFIX):])
            return WorkerResult(latency=LatencyStats(**data["latency"]), peak_rss_mb=data["peak_rss_mb"],
                                start_rss_mb=data["start_rss_mb"], load_s=data["load_s"], details=data["details"])
    tail = [line for line in completed.stderr.strip().splitlines() if line.strip()][-3:]
    raise WorkerError(f"worker exited with code {completed.returncode}: {' | '.join(tail) or 'no output'}")


def _measure(spec: WorkerSpec) -> dict:
    start_rss, _ = rss_mb()
    started = time.perf_counter()
    details: dict[str, str] = {}
    if spec.kind == "anchor":
        from benchmarks.anchors import build_anchor

        anchor = build_anchor(spec.anchor, spec.threads, spec.quick)
        step, plan = anchor.step, anchor.plan
        details.update(anchor.details)
        details["threads"] = f"torch {spec.threads}"
    elif spec.kind in STEPPER_KINDS:
        details["threads"] = _pin_threads(spec)
        step = build_stepper(spec.kind, Path(spec.path), spec.threads, spec.prompt, spec.backend)
        plan = spec.plan
    else:
        raise ValueError(f"unknown worker kind {spec.kind!r}")
    load_s = time.perf_counter() - started
    latency = time_steps(step, plan)
    _, peak = rss_mb()
    if hasattr(step, "details"):
        details.update(step.details())
    if spec.kind == "anchor" and anchor.dynamic_details is not None:
        details.update(anchor.dynamic_details(latency.frames))
    return {"latency": asdict(latency), "peak_rss_mb": peak, "start_rss_mb": start_rss, "load_s": load_s,
            "details": details}


def _pin_threads(spec: WorkerSpec) -> str:
    """Pin the thread count of the libraries this row uses; returns how (for the row's details)."""
    if spec.kind == "onnx":
        return f"ORT intra-op {spec.threads}, inter-op 1"  # set on the session options
    if spec.kind == "session":
        return f"VideoSession(num_threads={spec.threads}) ({spec.backend} backend)"
    import torch

    torch.set_num_threads(spec.threads)
    if spec.kind == "executorch":
        return f"ExecuTorch threadpool {set_executorch_threads(spec.threads)}"
    return f"torch {spec.threads}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m benchmarks.memory '<WorkerSpec JSON>' (started by benchmarks.run)", file=sys.stderr)
        return 2
    result = _measure(WorkerSpec.from_json(args[0]))
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
