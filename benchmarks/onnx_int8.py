"""ONNX Runtime int8 (export.onnx_int8) beside the fp32 export it came from: latency, size, parity, J&F.

    python -m benchmarks.onnx_int8 --fp32 DIR --int8 DIR --videos HELD_OUT_SAV_ROOT [--threads 2] [--frames 12]

* latency: encode_frame + decode per frame (one prompt, a full memory of real level-3 features) through
  ``runtime.backends.exported_backend.ExportedBackend`` (onnx) with ``threads`` intra-op threads, fp32 and int8 in the same
  process, interleaved frame by frame (the order alternates), so a loaded machine slows both alike; the
  int8 row's ``ratio_vs_fp32`` is the median of the per-frame int8 / fp32 ratios;
* size: encode_frame + decode (the per-frame programs) and the whole directory, MB;
* parity: ``export.parity.check_parity`` of each directory against its checkpoint on the held-out frames,
  with the directory's own tolerance (fp32 or int8): the smallest per-call mean mask IoU and the largest
  |difference| of the gated logits and boxes;
* J&F: fp32 and int8 ``runtime.session.VideoSession``s side by side on every held-out video (stored
  prompts, each session with its own memory), predictions on SA-V's 6 fps grid scored by
  ``training.evaluate`` against the ground truth; for int8 also against the fp32 session's objects as
  ground truth (``jf_vs_fp32``: how much int8 changes what the runtime outputs; objects matched
  one-to-one); and the mean IoU of the two sessions' raw binarised masks per frame and prompt.

With random weights (the benchmark default) J&F against the ground truth is near 0 for both and the
score threshold is lowered (``RANDOM_WEIGHTS_SCORE_THRESHOLD``); the agreement with fp32 is the
informative number there; and as a random model's queries all score about the same (edge: 0.279-0.284),
the int8 logit error (~0.01) reorders them, so the objects each session keeps differ more than their
masks do (``jf_vs_fp32`` well below ``stream_mask_iou_vs_fp32``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.report import Column, Row, Section

FP32_ROW = "ONNX Runtime fp32"
INT8_ROW = "ONNX Runtime int8 (QDQ)"
PER_FRAME_FILES = ("encode_frame.onnx", "decode.onnx")
# Random-weight models score every query about 0.26-0.29 (sigmoid(logit) x sigmoid(presence)), so the
# runtime's default threshold (0.5) keeps nothing and J&F would compare two empty outputs.
RANDOM_WEIGHTS_SCORE_THRESHOLD = 0.2
WARMUP_FRAMES = 2  # untimed frames of each directory before timing
HELD_OUT_SEED = 1  # benchmarks.training_side.write_synthetic (the calibration videos) uses seed 0


def _size_mb(directory: Path, names: tuple[str, ...] | None = None) -> float:
    paths = [directory / n for n in names] if names else [p for p in directory.iterdir() if p.is_file()]
    return sum(p.stat().st_size for p in paths) / 1e6


def _held_out_pixels(videos: Path, count: int, image_size: int) -> list[np.ndarray]:
    from efficient_sam3.contract import preprocess_frame
    from export.frames import read_frames

    return [preprocess_frame(frame, image_size)[None] for frame in read_frames(videos, count, stride=4)]


def interleaved_latency(fp32_dir: Path, int8_dir: Path, videos: Path, threads: int, frames: int,
                        warmup: int = WARMUP_FRAMES) -> dict[str, list[float]]:
    """Seconds per frame (encode_frame + decode) of each directory, timed alternately on the same inputs."""
    from efficient_sam3.memory_ring import empty_memory, memory_window, push_memory
    from runtime.backends.exported_backend import ExportedBackend

    backends = {"fp32": ExportedBackend.from_path(fp32_dir, "onnx", threads),
                "int8": ExportedBackend.from_path(int8_dir, "onnx", threads)}
    info = backends["fp32"].info
    prompt = backends["fp32"].metadata.prompts[0]
    pixels = _held_out_pixels(videos, info.context_frames + 4, info.image_size)
    ring = empty_memory(info.context_frames, info.hidden_size, info.memory_grid)
    for index in range(info.context_frames):  # a full memory of real features (fp32 encoder)
        feature = backends["fp32"].encode_frame(pixels[index % len(pixels)]).memory_feature
        ring = push_memory(ring, feature, index)
    memory, memory_mask = memory_window(ring)
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    for step in range(warmup + frames):
        order = ("fp32", "int8") if step % 2 == 0 else ("int8", "fp32")
        frame = pixels[step % len(pixels)]
        for name in order:
            started = time.perf_counter()
            backends[name].decode(backends[name].encode_frame(frame), memory, memory_mask, [prompt])
            if step >= warmup:
                times[name].append(time.perf_counter() - started)
    return times


def _parity_metrics(directory: Path, videos: Path, num_frames: int) -> dict[str, float]:
    from export.parity import ATOL_OUTPUTS, check_parity
    from efficient_sam3.programs import load_program

    checkpoint = load_program(directory).metadata["source_checkpoint"]
    report = check_parity(checkpoint, directory, videos, num_frames)
    masks = [c for c in report.checks if c.output == "pred_masks"]
    return {"parity_passed": float(report.passed),
            "parity_min_mean_mask_iou": min(c.mean_mask_iou for c in masks),
            "parity_max_abs_diff": max(c.max_abs_diff for c in report.checks if c.output in ATOL_OUTPUTS)}


def _binary_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-query IoU of mask logits binarised at 0: [Q, H, W] x 2 -> [Q] (empty vs empty = 1)."""
    a, b = a > 0, b > 0
    union = (a | b).reshape(len(a), -1).sum(-1)
    return np.where(union > 0, (a & b).reshape(len(a), -1).sum(-1) / np.maximum(union, 1), 1.0)


def stream_videos(fp32_dir: Path, int8_dir: Path, videos: Path, out_dir: Path, threads: int,
                  max_frames: int | None, score_threshold: float) -> list[float]:
    """Run fp32 and int8 ``VideoSession``s side by side on every held-out video (each with its own memory);
    write ``out_dir/{fp32,int8}/<video>.json`` (every 4th frame, the SA-V grid) and the fp32 masks as SA-V
    PNGs under ``out_dir/fp32_png``. Returns the per-frame, per-prompt mean IoU of the raw binarised masks."""
    from runtime.backends.metadata import read_export_metadata
    from runtime.postprocess import PostprocessConfig
    from runtime.predictions import MaskletRecorder, write_predictions
    from efficient_sam3.sav_png import write_prediction_pngs
    from runtime.session import SessionConfig, VideoSession
    from runtime.video_io import FrameSource

    config = SessionConfig(keep_raw_outputs=True, postprocess=PostprocessConfig(score_threshold=score_threshold))
    directories = {"fp32": fp32_dir, "int8": int8_dir}
    for name in (*directories, "fp32_png"):
        (out_dir / name).mkdir(parents=True, exist_ok=True)
    prompts = read_export_metadata(fp32_dir / "metadata.json", "onnx").prompt_texts
    agreement = []
    for video in sorted(videos.glob("*.mp4")):
        sessions = {name: VideoSession(path, "onnx", prompts, config, num_threads=threads)
                    for name, path in directories.items()}
        with FrameSource(video) as source:
            recorders = {name: MaskletRecorder(source.info.video_id, (source.info.height, source.info.width))
                         for name in sessions}
            for number, frame in source:
                if max_frames is not None and number >= max_frames:
                    break
                results = {name: session.step(frame) for name, session in sessions.items()}
                agreement += [float(_binary_iou(results["fp32"].raw_outputs[p].pred_masks,
                                                results["int8"].raw_outputs[p].pred_masks).mean()) for p in prompts]
                if number % 4 == 0:
                    for name, result in results.items():
                        recorders[name].add(number, result.objects)
        for name, recorder in recorders.items():
            write_predictions(out_dir / name / f"{video.stem}.json", recorder.to_dict())
        write_prediction_pngs(out_dir / "fp32_png", recorders["fp32"].to_dict())
    return agreement


def _jf(predictions: Path, ground_truth: Path) -> float | None:
    """Overall J&F (0-100), or None when nothing could be scored (e.g. no object in the ground truth)."""
    from training.evaluate import evaluate

    try:
        return evaluate(predictions, ground_truth, show_progress=False).jf
    except ValueError:
        return None


def onnx_int8_rows(fp32_dir: Path, int8_dir: Path, videos: Path, threads: int = 2, frames: int = 12,
                   parity_frames: int = 2, max_video_frames: int | None = 41,
                   score_threshold: float = RANDOM_WEIGHTS_SCORE_THRESHOLD) -> list[Row]:
    """The fp32 and int8 rows; ``videos`` holds held-out SA-V-format videos (``*.mp4`` + ``*_manual.json``)."""
    fp32_dir, int8_dir, videos = Path(fp32_dir), Path(int8_dir), Path(videos)
    preset = json.loads((fp32_dir / "metadata.json").read_text(encoding="utf-8"))["preset"]
    times = interleaved_latency(fp32_dir, int8_dir, videos, threads, frames)
    ratios = np.asarray(times["int8"]) / np.asarray(times["fp32"])
    with tempfile.TemporaryDirectory(prefix="onnx_int8_bench.") as work:
        work = Path(work)
        agreement = stream_videos(fp32_dir, int8_dir, videos, work, threads, max_video_frames, score_threshold)
        jf = {name: _jf(work / name, videos) for name in ("fp32", "int8")}
        jf_vs_fp32 = _jf(work / "int8", work / "fp32_png")
    rows = []
    for name, directory in (("fp32", fp32_dir), ("int8", int8_dir)):
        ms = np.asarray(times[name]) * 1000.0
        metrics = {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
                   "fps": 1000.0 / float(np.percentile(ms, 50)), "frames": len(ms), "warmup": WARMUP_FRAMES,
                   "size_per_frame_mb": _size_mb(directory, PER_FRAME_FILES),
                   "size_total_mb": _size_mb(directory), "jf": jf[name],
                   **_parity_metrics(directory, videos, parity_frames)}
        if name == "int8":
            metrics.update(ratio_vs_fp32=float(np.median(ratios)), jf_vs_fp32=jf_vs_fp32,
                           stream_mask_iou_vs_fp32=float(np.mean(agreement)),
                           stream_mask_iou_vs_fp32_min=float(np.min(agreement)))
        rows.append(Row.ok(FP32_ROW if name == "fp32" else INT8_ROW, metrics,
                           {"threads": str(threads), "preset": preset, "device": "CPU (onnxruntime)",
                            "directory": str(directory), "score_threshold": f"{score_threshold:g}"}))
    return rows


def write_held_out(root: Path, num_videos: int, video_frames: int) -> Path:
    """Synthetic SA-V-format videos that no export calibrated on (another seed than the calibration set)."""
    from training.synthetic import generate_dataset
    from training.synthetic_scene import SceneConfig

    scene = SceneConfig(min_frames=video_frames, max_frames=video_frames)
    generate_dataset(root, num_videos, seed=HELD_OUT_SEED, val_fraction=0.0, scene_config=scene)
    return root


def int8_directory(onnx_dir: Path, out_dir: Path, calibration_videos: Path, parity_videos: Path) -> Path:
    """``out_dir``: export.onnx_int8 of ``onnx_dir``, reused when it is already the int8 of the same weights."""
    from export.onnx_int8 import OnnxInt8Config, quantize_onnx_directory

    try:
        fp32 = json.loads((onnx_dir / "metadata.json").read_text(encoding="utf-8"))
        int8 = json.loads((out_dir / "metadata.json").read_text(encoding="utf-8"))
        if int8["quantization"] == "int8" and int8["source_checkpoint_sha256"] == fp32["source_checkpoint_sha256"]:
            return out_dir
    except (OSError, ValueError, KeyError):
        pass
    with contextlib.redirect_stdout(sys.stderr):  # the exporter's progress is not part of the report
        quantize_onnx_directory(OnnxInt8Config(onnx=onnx_dir, out=out_dir, calibration_videos=calibration_videos,
                                               parity_frames=parity_videos))
    return out_dir


def onnx_int8_section(rows: list[Row]) -> Section:
    return Section(
        key="onnx_int8", title="ONNX Runtime int8 (static QDQ, export.onnx_int8) vs fp32",
        columns=[Column("p50_ms", "p50 ms"), Column("fps", "FPS", "{:.2f}"),
                 Column("ratio_vs_fp32", "× fp32", "{:.2f}"),
                 Column("size_per_frame_mb", "encode+decode MB"), Column("size_total_mb", "dir MB"),
                 Column("parity_min_mean_mask_iou", "parity mean IoU (min)", "{:.3f}"),
                 Column("parity_max_abs_diff", "parity max|diff|", "{:.4f}"), Column("jf", "J&F"),
                 Column("jf_vs_fp32", "J&F vs fp32 masks"),
                 Column("stream_mask_iou_vs_fp32", "stream mask IoU vs fp32", "{:.3f}")],
        rows=rows, detail_keys=("preset", "threads", "score_threshold"),
        notes=["Latency: encode_frame + decode, 1 prompt, full memory, fp32 and int8 interleaved in one process; "
               "× fp32 = median of per-frame int8/fp32 ratios.",
               "Parity: against the eager checkpoint on held-out frames (export.parity cases, random memory).",
               "J&F on held-out synthetic videos; 'vs fp32 masks' scores int8 with the fp32 run as ground truth; "
               "stream mask IoU: raw masks of fp32 and int8 sessions run side by side, each with its own memory."])


def main(argv: list[str] | None = None) -> int:
    from benchmarks.report import render_section

    parser = argparse.ArgumentParser(prog="python -m benchmarks.onnx_int8", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fp32", type=Path, required=True, help="export.onnx directory")
    parser.add_argument("--int8", type=Path, required=True, help="export.onnx_int8 directory made from it")
    parser.add_argument("--videos", type=Path, required=True, help="held-out SA-V-format videos")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=12, help="timed frames per directory")
    parser.add_argument("--max-video-frames", type=int, default=41, help="frames of each held-out video streamed")
    args = parser.parse_args(argv)
    print(render_section(onnx_int8_section(onnx_int8_rows(
        args.fp32, args.int8, args.videos, args.threads, args.frames, max_video_frames=args.max_video_frames))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
