"""Per-frame CPU latency of the exported programs next to eager PyTorch, and where ExecuTorch spends it.

    python -m export.measure --checkpoint DIR --program model.pte --program int8.pte --program onnx_dir
                             [--threads 2] [--runs 5] [--profile model.pte]

One frame = ``encode_frame`` + ``decode`` (batch 1, all T memory slots valid, one prompt); reported as
the median over ``runs`` timed runs after one warm-up run. Eager PyTorch runs the deployment form
(fused) of the checkpoint's model under ``torch.inference_mode`` with the same thread count.

``operator_time_share`` runs a ``.pte`` with ETDump profiling and splits a frame's time into the
XNNPACK delegate calls and each operator left outside the delegate. ``host_state_cost`` times the
host-side memory update the runtime does per frame (shift the [1, T, 256, 18, 18] ring, write the new
level-3 feature), the price of keeping the programs stateless.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from efficient_sam3 import EfficientSam3Model
from efficient_sam3.cli import INTERRUPTED_EXIT, ArgumentParser, fail, positive_int, sigterm_as_interrupt
from efficient_sam3.programs import load_program, metadata_path
from export.frames import generated_frames, to_pixel_values
from export.fuse import deployment_model
from export.parity import random_memory
from export.metadata import read_metadata
from export.wrappers import Decode, EncodeFrame


@dataclass(frozen=True)
class LatencyResult:
    backend: str  # "eager", or "<backend> <quantization>" with the program path
    encode_ms: float
    decode_ms: float
    frame_ms: float
    runs: int


@dataclass
class OperatorShare:
    frame_ms: float
    delegate_ms: float
    outside_ms: dict[str, float] = field(default_factory=dict)  # per frame, by operator

    @property
    def outside_share(self) -> float:
        return sum(self.outside_ms.values()) / self.frame_ms if self.frame_ms else 0.0


def frame_inputs(model: EfficientSam3Model, seed: int = 0):
    """pixel_values of one generated frame, all-valid random memory and the features of "red circle"."""
    pixel_values = to_pixel_values(generated_frames(1, seed), model.config.image_size)[0]
    memory, memory_mask = random_memory(model, None, torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        text = model.encode_text(*model.tokenize(["red circle"]))
    return pixel_values, memory, memory_mask, text.features, text.mask


def _time_frames(encode, decode, inputs, runs: int, warmup: int) -> tuple[list[float], list[float]]:
    pixel_values, memory, memory_mask, text_features, text_mask = inputs
    encode_ms, decode_ms = [], []
    for index in range(warmup + runs):
        start = time.perf_counter()
        levels = encode(pixel_values)
        middle = time.perf_counter()
        decode(*levels[:3], memory, memory_mask, text_features, text_mask)
        end = time.perf_counter()
        if index >= warmup:
            encode_ms.append((middle - start) * 1e3)
            decode_ms.append((end - middle) * 1e3)
    return encode_ms, decode_ms


def _result(name: str, encode_ms: list[float], decode_ms: list[float]) -> LatencyResult:
    frames = [e + d for e, d in zip(encode_ms, decode_ms)]
    return LatencyResult(name, statistics.median(encode_ms), statistics.median(decode_ms),
                         statistics.median(frames), len(frames))


def measure_latency(checkpoint: str | Path, programs: list[str | Path], num_threads: int = 2, runs: int = 5,
                    warmup: int = 1, include_eager: bool = True) -> list[LatencyResult]:
    """Median per-frame latency of eager PyTorch and each program (.pte or ONNX directory), same inputs."""
    model = EfficientSam3Model.from_pretrained(checkpoint).eval()
    inputs = frame_inputs(model)
    results = []
    if include_eager:
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(num_threads)
        try:
            deployed = deployment_model(model)
            encode, decode = EncodeFrame(deployed), Decode(deployed)
            with torch.inference_mode():
                results.append(_result("eager", *_time_frames(encode, decode, inputs, runs, warmup)))
        finally:
            torch.set_num_threads(previous_threads)
    for path in programs:
        program = load_program(path, num_threads=num_threads)
        name = f"{program.backend} {program.metadata['quantization']} ({Path(path).name})"
        timings = _time_frames(lambda *a: program.run("encode_frame", a),
                               lambda *a: program.run("decode", a), inputs, runs, warmup)
        results.append(_result(name, *timings))
    return results


def operator_time_share(checkpoint: str | Path, pte: str | Path, num_threads: int = 2, runs: int = 3) -> OperatorShare:
    """Per-frame time inside XNNPACK delegate calls vs each operator outside, from an ETDump profile."""
    from executorch.devtools import Inspector

    model = EfficientSam3Model.from_pretrained(checkpoint).eval()
    inputs = frame_inputs(model)
    program = load_program(pte, num_threads=num_threads, enable_etdump=True)
    _time_frames(lambda *a: program.run("encode_frame", a), lambda *a: program.run("decode", a), inputs, runs, 0)
    with tempfile.TemporaryDirectory() as tmp:
        etdump = Path(tmp) / "profile.etdp"
        program.write_etdump(etdump)
        inspector = Inspector(etdump_path=str(etdump))
    totals: dict[str, float] = defaultdict(float)
    for block in inspector.event_blocks:
        for event in block.events:
            if event.perf_data is not None:
                totals[event.name] += sum(event.perf_data.raw)
    outside = {name.removeprefix("native_call_"): total / runs for name, total in totals.items()
               if name.startswith("native_call_")}
    return OperatorShare(frame_ms=totals["Method::execute"] / runs, delegate_ms=totals["DELEGATE_CALL"] / runs,
                         outside_ms=dict(sorted(outside.items(), key=lambda item: -item[1])))


def host_state_cost(context_frames: int = 8, channels: int = 256, grid: int = 18, repeats: int = 200) -> float:
    """Milliseconds per frame for the host-side ring update (shift + write + mask), median of ``repeats``."""
    memory = np.zeros((1, context_frames, channels, grid, grid), dtype=np.float32)
    mask = np.zeros((1, context_frames), dtype=bool)
    feature = np.random.default_rng(0).standard_normal((1, channels, grid, grid), dtype=np.float32)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        memory[:, :-1] = memory[:, 1:]  # numpy copies overlapping slices safely
        memory[:, -1] = feature
        mask[:, :-1] = mask[:, 1:]
        mask[:, -1] = True
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def format_latency(results: list[LatencyResult], num_threads: int) -> str:
    lines = [f"| backend | encode_frame ms | decode ms | frame ms | FPS |  (median of {results[0].runs} runs, "
             f"{num_threads} threads)", "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.backend} | {r.encode_ms:.1f} | {r.decode_ms:.1f} | {r.frame_ms:.1f} | {1e3 / r.frame_ms:.2f} |")
    return "\n".join(lines)


def check_programs(programs: list[Path], profiles: list[Path]) -> None:
    """Each program exists with readable metadata, and each profiled one is a .pte: bad input fails
    before any timing."""
    for path in [*programs, *profiles]:
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: no such program")
        read_metadata(metadata_path(path))
    for path in profiles:
        if Path(path).suffix != ".pte":
            raise ValueError(f"{path}: --profile needs a .pte (ETDump profiling is ExecuTorch's)")


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description="Per-frame latency of eager PyTorch and exported programs.")
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--program", action="append", default=[], type=Path, help=".pte or ONNX directory (repeatable)")
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--runs", type=positive_int, default=5)
    parser.add_argument("--profile", action="append", default=[], type=Path,
                        help=".pte to profile with ETDump (time outside the delegate)")
    args = parser.parse_args(argv)
    sigterm_as_interrupt()
    try:
        check_programs(args.program, args.profile)
        results = measure_latency(args.checkpoint, args.program, args.threads, args.runs)
        print(format_latency(results, args.threads))
        for pte in args.profile:
            share = operator_time_share(args.checkpoint, pte, args.threads)
            ops = ", ".join(f"{name} {ms:.2f} ms" for name, ms in share.outside_ms.items()) or "none"
            print(f"{pte}: frame {share.frame_ms:.1f} ms, delegate {share.delegate_ms:.1f} ms, outside "
                  f"{100 * share.outside_share:.2f}% ({ops})")
    except (OSError, ValueError) as err:
        return fail(err)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
    print(f"host-side memory ring update: {host_state_cost():.3f} ms per frame")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
