"""What P prompts cost per frame: one decode call for all P (metadata ``max_prompts`` >= P) against P
separate single-prompt calls (what every export did before metadata version 3), P = 1, 2, 4, 8.

    python -m benchmarks.prompt_batch --program model.pte|ONNX_DIR --checkpoint DIR [--threads 2] [--repeats 3]

Per P, in one process: encode_frame once, then decode for P different prompts (the export's stored
prompts, repeated if it stores fewer; a full memory of random level-3 features), batched and separate
interleaved (the order alternates), each timed ``repeats`` times after one untimed round; medians.

The budget is the issue's goal "batching adds nothing": encode_frame + the prompt-independent part of
decode (memory tokens, geometry token) once, plus P x the prompt-dependent GFLOP at the single-prompt
decode's GFLOP/s. FLOPs are counted on the eager checkpoint (torch FlopCounterMode); ``ratio_vs_budget``
<= 1 meets the goal, ``speedup_vs_separate`` is what batching buys over P calls.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.report import Column, Row, Section

PROMPT_COUNTS = (1, 2, 4, 8)
DEFAULT_REPEATS = 3


def decode_gflops(checkpoint: Path, prompts: int, coarse_masks: bool = False) -> dict[str, float]:
    """Eager GFLOP of one decode call for ``prompts`` prompts, and of its prompt-independent modules
    (``coarse_masks``: with the fast mask path, as an export made with ``--coarse-masks``)."""
    return model_decode_gflops(_flops_model(checkpoint, coarse_masks), prompts)


def _flops_model(checkpoint: Path, coarse_masks: bool):
    from efficient_sam3 import EfficientSam3Model

    model = EfficientSam3Model.from_pretrained(checkpoint).eval().requires_grad_(False)  # FlopCounterMode: no autograd
    return model.set_coarse_masks(coarse_masks)


def model_decode_gflops(model, prompts: int) -> dict[str, float]:
    """``decode_gflops`` of a loaded model."""
    import torch

    from benchmarks.flops import module_gflops
    from export.wrappers import Decode

    decode = Decode(model)
    inputs = decode.example_inputs(num_prompts=prompts)
    shared = module_gflops(model.perceiver_resampler, inputs[3], inputs[4])
    if model.geometry_encoder is not None:
        tokens = inputs[2].flatten(2).transpose(1, 2)
        shared += module_gflops(model.geometry_encoder, tokens, model.encoder_pos)
    with torch.no_grad():
        total = module_gflops(decode, *inputs)
    return {"decode": total, "shared": shared}


def _prompt_rows(metadata: dict, count: int) -> tuple[np.ndarray, np.ndarray]:
    """text_features [count, L, C], text_mask [count, L] from the stored prompts (cycled)."""
    stored = metadata["prompts"]
    if not stored:
        raise ValueError("the export stores no prompt; export with --prompt")
    rows = [stored[i % len(stored)] for i in range(count)]
    features = np.stack([np.asarray(p["text_features"], np.float32) for p in rows])
    masks = np.stack([np.asarray(p["attention_mask"], np.int64) for p in rows])
    return features, masks


def _median_ms(times: list[float]) -> float:
    return 1000.0 * float(np.median(times))


def time_prompt_counts(program_path: Path, threads: int, repeats: int = DEFAULT_REPEATS,
                       counts: tuple[int, ...] = PROMPT_COUNTS) -> tuple[dict[int, dict[str, float]], dict]:
    """({P: {"encode_ms", "batched_ms", "separate_ms"}}, the program's metadata) of one exported program
    (decode times exclude encode)."""
    from benchmarks.latency import set_executorch_threads
    from efficient_sam3.programs import load_program

    if not program_path.is_dir():
        set_executorch_threads(threads)
    program = load_program(program_path, num_threads=threads if program_path.is_dir() else None,
                           methods=("encode_frame", "decode"))
    metadata = program.metadata
    if metadata["max_prompts"] < max(counts):
        raise ValueError(f"{program_path}: decode takes at most {metadata['max_prompts']} prompts per call; "
                         f"export with --max-prompts {max(counts)}")
    rng = np.random.default_rng(0)
    size, frames, grid = metadata["image_size"], metadata["context_frames"], metadata["memory_grid"]
    pixels = rng.standard_normal((1, 3, size, size), dtype=np.float32)
    memory = rng.standard_normal((1, frames, metadata["hidden_size"], grid, grid), dtype=np.float32)
    memory_mask = np.ones((1, frames), np.bool_)

    results = {}
    for count in counts:
        features, masks = _prompt_rows(metadata, count)
        times: dict[str, list[float]] = {"encode": [], "batched": [], "separate": []}
        for round_index in range(repeats + 1):
            started = time.perf_counter()
            levels = program.run("encode_frame", [pixels])[:3]
            encode_s = time.perf_counter() - started
            order = ("batched", "separate") if round_index % 2 == 0 else ("separate", "batched")
            for mode in order:
                started = time.perf_counter()
                if mode == "batched":
                    program.run("decode", [*levels, memory, memory_mask, features, masks])
                else:
                    for p in range(count):
                        program.run("decode", [*levels, memory, memory_mask, features[p:p + 1], masks[p:p + 1]])
                if round_index:  # round 0 warms up
                    times[mode].append(time.perf_counter() - started)
            if round_index:
                times["encode"].append(encode_s)
        results[count] = {f"{key}_ms": _median_ms(values) for key, values in times.items()}
    return results, metadata


def prompt_batch_rows(name: str, program_path: Path, checkpoint: Path, threads: int,
                      repeats: int = DEFAULT_REPEATS, counts: tuple[int, ...] = PROMPT_COUNTS) -> list[Row]:
    """One row per P in ``counts`` (which must include 1, the rate's reference) for the program ``name``."""
    if 1 not in counts:
        raise ValueError(f"prompt counts must include 1 (the single-prompt rate sets the budget), got {counts}")
    timed, metadata = time_prompt_counts(program_path, threads, repeats, counts)
    coarse = bool(metadata.get("coarse_masks", False))
    model = _flops_model(checkpoint, coarse)  # loaded once for every P
    flops = {count: model_decode_gflops(model, count) for count in timed}
    single = flops[1]
    rate = single["decode"] / (timed[1]["batched_ms"] / 1000.0)  # GFLOP/s of the single-prompt decode
    dependent = single["decode"] - single["shared"]
    rows = []
    for count, t in timed.items():
        budget_ms = t["encode_ms"] + 1000.0 * (single["shared"] + count * dependent) / rate
        batched_frame_ms = t["encode_ms"] + t["batched_ms"]
        separate_frame_ms = t["encode_ms"] + t["separate_ms"]
        rows.append(Row.ok(f"{name}, P={count}", {
            "prompts": count, "frame_ms": batched_frame_ms, "separate_frame_ms": separate_frame_ms,
            "speedup_vs_separate": separate_frame_ms / batched_frame_ms, "budget_ms": budget_ms,
            "ratio_vs_budget": batched_frame_ms / budget_ms, "decode_gflop": flops[count]["decode"],
            "encode_ms": t["encode_ms"]},
            {"program": str(program_path), "threads": str(threads), "mask_path": "coarse" if coarse else "full"}))
    return rows


def prompt_batch_section(rows: list[Row]) -> Section:
    return Section(
        key="prompt_batch", title="Prompts per frame: one decode for P prompts vs P decodes (issue #19)",
        columns=[Column("frame_ms", "ms/frame, one decode"), Column("separate_frame_ms", "ms/frame, P decodes"),
                 Column("speedup_vs_separate", "speed-up", "{:.2f}"), Column("budget_ms", "budget ms"),
                 Column("ratio_vs_budget", "÷ budget", "{:.2f}"), Column("decode_gflop", "decode GFLOP"),
                 Column("encode_ms", "encode_frame ms")],
        rows=rows, detail_keys=("threads", "mask_path"),
        notes=["One frame: encode_frame once, then decode for P prompts in one call or in P calls (interleaved, "
               "medians); full memory of random features.",
               "Budget = encode_frame + prompt-independent decode (memory and geometry tokens) once + P x the "
               "prompt-dependent GFLOP at the single-prompt decode's GFLOP/s; ÷ budget <= 1: batching adds nothing."])


def main(argv: list[str] | None = None) -> int:
    from benchmarks.report import render_section

    parser = argparse.ArgumentParser(prog="python -m benchmarks.prompt_batch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--program", type=Path, required=True, help=".pte or export.onnx directory")
    parser.add_argument("--checkpoint", type=Path, required=True, help="the checkpoint it was exported from (FLOPs)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    args = parser.parse_args(argv)
    name = "ONNX Runtime" if args.program.is_dir() else "ExecuTorch"
    rows = prompt_batch_rows(name, args.program, args.checkpoint, args.threads, args.repeats)
    print(render_section(prompt_batch_section(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
