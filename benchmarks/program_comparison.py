"""Exported programs of one checkpoint side by side (a reference and its quantized variants): latency,
parity and J&F, measured the same way for ONNX directories and ExecuTorch ``.pte`` files.

* latency: encode_frame + decode per frame (one prompt, a full memory of real level-3 features from the
  reference's encoder) through ``runtime.backends.exported_backend.ExportedBackend``, every program in
  the same process, interleaved frame by frame (the order rotates), so a loaded machine slows all alike;
  ``ratio_vs_reference`` is the median of the per-frame ratios;
* parity: ``export.parity.check_parity`` of each program against its checkpoint on held-out frames, with
  the program's own tolerance (fp32 or int8): the smallest per-call mean mask IoU and the largest
  |difference| of the gated logits and boxes;
* J&F: one ``runtime.session.VideoSession`` per program side by side on every held-out video (stored
  prompts, each session with its own memory), predictions on SA-V's 6 fps grid scored by
  ``training.evaluate`` against the ground truth, and for each variant also against the reference
  session's objects as ground truth (``jf_vs_reference``: how much quantization changes what the runtime
  outputs); and the mean IoU of the raw binarised masks of a variant and the reference per frame and prompt.

With random weights (the benchmark default) J&F against the ground truth is near 0 and the score threshold
is lowered (``RANDOM_WEIGHTS_SCORE_THRESHOLD``); the agreement with the reference is the informative number
there; and as a random model's queries all score about the same (edge: 0.279-0.284), the int8 logit error
(~0.01) reorders them, so the objects each session keeps differ more than their masks do
(``jf_vs_reference`` well below ``stream_mask_iou_vs_reference``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.report import Column

# Random-weight models score every query about 0.26-0.29 (sigmoid(logit) x sigmoid(presence)), so the
# runtime's default threshold (0.5) keeps nothing and J&F would compare two empty outputs.
RANDOM_WEIGHTS_SCORE_THRESHOLD = 0.2
WARMUP_FRAMES = 2  # untimed frames of each program before timing
REFERENCE = "reference"  # the key of the reference program in every dict below
# The report columns of compare_programs' parity and quality metrics (the sections add latency and sizes).
QUALITY_COLUMNS = (Column("parity_min_mean_mask_iou", "parity mean IoU (min)", "{:.3f}"),
                   Column("parity_max_abs_diff", "parity max|diff|", "{:.4f}"), Column("jf", "J&F"),
                   Column("jf_vs_reference", "J&F vs fp32 masks"),
                   Column("stream_mask_iou_vs_reference", "stream mask IoU vs fp32", "{:.3f}"))


def _held_out_pixels(videos: Path, count: int, image_size: int) -> list[np.ndarray]:
    from efficient_sam3.contract import preprocess_frame
    from export.frames import read_frames

    return [preprocess_frame(frame, image_size)[None] for frame in read_frames(videos, count, stride=4)]


def interleaved_latency(programs: dict[str, Path], backend: str, videos: Path, threads: int, frames: int,
                        warmup: int = WARMUP_FRAMES) -> dict[str, list[float]]:
    """Seconds per frame (encode_frame + decode) of each program (``programs[REFERENCE]`` among them), timed
    in rotating order on the same inputs."""
    from efficient_sam3.memory_ring import empty_memory, memory_window, push_memory
    from runtime.backends.exported_backend import ExportedBackend

    backends = {name: ExportedBackend.from_path(path, backend, threads) for name, path in programs.items()}
    reference = backends[REFERENCE]
    info, prompt = reference.info, reference.metadata.prompts[0]
    pixels = _held_out_pixels(videos, info.context_frames + 4, info.image_size)
    ring = empty_memory(info.context_frames, info.hidden_size, info.memory_grid)
    for index in range(info.context_frames):  # a full memory of real features (the reference's encoder)
        feature = reference.encode_frame(pixels[index % len(pixels)]).memory_feature
        ring = push_memory(ring, feature, index)
    memory, memory_mask = memory_window(ring)
    names = list(backends)
    times: dict[str, list[float]] = {name: [] for name in names}
    for step in range(warmup + frames):
        frame = pixels[step % len(pixels)]
        for name in names[step % len(names):] + names[:step % len(names)]:
            started = time.perf_counter()
            backends[name].decode(backends[name].encode_frame(frame), memory, memory_mask, [prompt])
            if step >= warmup:
                times[name].append(time.perf_counter() - started)
    return times


def parity_metrics(program: Path, videos: Path, num_frames: int) -> dict[str, float]:
    """``export.parity`` of ``program`` against its own checkpoint, with the program's own tolerance."""
    from efficient_sam3.programs import load_program
    from export.parity import ATOL_OUTPUTS, check_parity

    checkpoint = load_program(program).metadata["source_checkpoint"]
    report = check_parity(checkpoint, program, videos, num_frames)
    masks = [c for c in report.checks if c.output == "pred_masks"]
    return {"parity_passed": float(report.passed),
            "parity_min_mean_mask_iou": min(c.mean_mask_iou for c in masks),
            "parity_max_abs_diff": max(c.max_abs_diff for c in report.checks if c.output in ATOL_OUTPUTS)}


def _binary_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-query IoU of mask logits binarised at 0: [Q, H, W] x 2 -> [Q] (empty vs empty = 1)."""
    a, b = a > 0, b > 0
    union = (a | b).reshape(len(a), -1).sum(-1)
    return np.where(union > 0, (a & b).reshape(len(a), -1).sum(-1) / np.maximum(union, 1), 1.0)


def stream_videos(programs: dict[str, Path], backend: str, videos: Path, out_dir: Path, threads: int,
                  max_frames: int | None, score_threshold: float) -> dict[str, list[float]]:
    """Run one ``VideoSession`` per program side by side on every held-out video (each with its own memory);
    write ``out_dir/<name>/<video>.json`` (every 4th frame, the SA-V grid) and the reference's masks as SA-V
    PNGs under ``out_dir/reference_png``. Returns, per variant, the per-frame, per-prompt mean IoU of its raw
    binarised masks with the reference's."""
    from efficient_sam3.sav_png import write_prediction_pngs
    from runtime.backends.metadata import read_export_metadata
    from runtime.postprocess import PostprocessConfig
    from runtime.predictions import MaskletRecorder, write_predictions
    from runtime.session import SessionConfig, VideoSession
    from runtime.video_io import FrameSource

    config = SessionConfig(keep_raw_outputs=True, postprocess=PostprocessConfig(score_threshold=score_threshold))
    for name in (*programs, f"{REFERENCE}_png"):
        (out_dir / name).mkdir(parents=True, exist_ok=True)
    prompts = read_export_metadata(_metadata_file(programs[REFERENCE], backend), backend).prompt_texts
    agreement: dict[str, list[float]] = {name: [] for name in programs if name != REFERENCE}
    for video in sorted(videos.glob("*.mp4")):
        sessions = {name: VideoSession(path, backend, prompts, config, num_threads=threads)
                    for name, path in programs.items()}
        with FrameSource(video) as source:
            recorders = {name: MaskletRecorder(source.info.video_id, (source.info.height, source.info.width))
                         for name in sessions}
            for number, frame in source:
                if max_frames is not None and number >= max_frames:
                    break
                results = {name: session.step(frame) for name, session in sessions.items()}
                for name in agreement:
                    agreement[name] += [float(_binary_iou(results[REFERENCE].raw_outputs[p].pred_masks,
                                                          results[name].raw_outputs[p].pred_masks).mean())
                                        for p in prompts]
                if number % 4 == 0:
                    for name, result in results.items():
                        recorders[name].add(number, result.objects)
        for name, recorder in recorders.items():
            write_predictions(out_dir / name / f"{video.stem}.json", recorder.to_dict())
        write_prediction_pngs(out_dir / f"{REFERENCE}_png", recorders[REFERENCE].to_dict())
    return agreement


def _metadata_file(program: Path, backend: str) -> Path:
    from efficient_sam3.programs import metadata_path

    return metadata_path(Path(program)) if backend == "executorch" else Path(program) / "metadata.json"


def _jf(predictions: Path, ground_truth: Path) -> float | None:
    """Overall J&F (0-100), or None when nothing could be scored (e.g. no object in the ground truth)."""
    from training.evaluate import evaluate

    try:
        return evaluate(predictions, ground_truth, show_progress=False).jf
    except ValueError:
        return None


def compare_programs(programs: dict[str, Path], backend: str, videos: Path, threads: int = 2, frames: int = 12,
                     parity_frames: int = 2, max_video_frames: int | None = 41,
                     score_threshold: float = RANDOM_WEIGHTS_SCORE_THRESHOLD) -> dict[str, dict[str, float]]:
    """Metrics per program name (``programs[REFERENCE]`` is the reference): p50_ms, p90_ms, fps, frames,
    warmup, jf, the parity metrics, and for the variants ratio_vs_reference, jf_vs_reference,
    stream_mask_iou_vs_reference (+ its minimum). ``videos`` holds held-out SA-V-format videos."""
    videos = Path(videos)
    times = interleaved_latency(programs, backend, videos, threads, frames)
    with tempfile.TemporaryDirectory(prefix="program_comparison.") as work:
        work = Path(work)
        agreement = stream_videos(programs, backend, videos, work, threads, max_video_frames, score_threshold)
        jf = {name: _jf(work / name, videos) for name in programs}
        jf_vs_reference = {name: _jf(work / name, work / f"{REFERENCE}_png") for name in agreement}
    metrics = {}
    for name, path in programs.items():
        ms = np.asarray(times[name]) * 1000.0
        metrics[name] = {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
                         "fps": 1000.0 / float(np.percentile(ms, 50)), "frames": len(ms), "warmup": WARMUP_FRAMES,
                         "jf": jf[name], **parity_metrics(path, videos, parity_frames)}
        if name in agreement:
            ratios = np.asarray(times[name]) / np.asarray(times[REFERENCE])
            metrics[name].update(ratio_vs_reference=float(np.median(ratios)), jf_vs_reference=jf_vs_reference[name],
                                 stream_mask_iou_vs_reference=float(np.mean(agreement[name])),
                                 stream_mask_iou_vs_reference_min=float(np.min(agreement[name])))
    return metrics
