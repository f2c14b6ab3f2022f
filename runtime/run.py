"""Run a session over a whole video: predictions JSON, SA-V PNG folders, overlay video and latency numbers.

Every frame is processed (memory needs every ``memory_stride``-th frame); ``output_stride`` only chooses
which frames are recorded in the JSON (e.g. 4 = the 6 fps annotated frames of a 24 fps SA-V video).
The outputs are one set (``runtime.run_outputs``): checked before any work, locked against other runs,
and moved into place together only when the whole video is done; an error or KeyboardInterrupt before
then writes none of them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from runtime.predictions import MaskletRecorder
from runtime.run_outputs import OutputPaths, signals_held, staged_outputs
from runtime.session import SessionConfig, VideoSession
from runtime.video_io import FrameSource, draw_overlay

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunConfig:
    model: Path
    video: Path
    prompts: tuple[str, ...]
    backend: str | None = None
    out_json: Path | None = None
    out_video: Path | None = None
    out_png: Path | None = None  # SA-V PNG layout root (efficient_sam3.sav_png); the video goes to <out_png>/<video_id>/
    output_stride: int = 1
    max_frames: int | None = None
    num_threads: int | None = None
    show_progress: bool = True
    session: SessionConfig = SessionConfig()

    def __post_init__(self) -> None:
        if self.output_stride <= 0:
            raise ValueError(f"output_stride must be positive, got {self.output_stride}")
        if self.max_frames is not None and self.max_frames <= 0:
            raise ValueError(f"max_frames must be positive, got {self.max_frames}")
        if not self.prompts:
            raise ValueError("give at least one prompt")


@dataclass(frozen=True)
class RunSummary:
    """latency_*: per-frame ``step`` time (preprocess, model, post-processing, tracking) in ms;
    fps = 1000 / mean step latency; wall_fps also counts decoding the video and writing outputs."""

    video_id: str
    backend: str
    num_frames: int
    num_recorded: int
    num_objects: int
    latency_p50_ms: float
    latency_p90_ms: float
    fps: float
    wall_fps: float

    def format(self) -> str:
        return (f"{self.video_id}: {self.num_frames} frames ({self.num_recorded} recorded), {self.num_objects} "
                f"objects, backend {self.backend}; latency p50 {self.latency_p50_ms:.1f} ms, "
                f"p90 {self.latency_p90_ms:.1f} ms; {self.fps:.2f} fps (wall {self.wall_fps:.2f} fps)")


def run_video(config: RunConfig) -> RunSummary:
    outputs = OutputPaths(json=config.out_json, video=config.out_video, png_root=config.out_png)
    outputs.check()  # a missing folder or an unwritable output fails now, not after the whole video
    with FrameSource(config.video) as source:  # a bad video fails before the model loads
        info = source.info
        with staged_outputs(outputs, info.video_id, info.fps, (info.height, info.width)) as staged:
            session = VideoSession(config.model, config.backend, config.prompts, config.session, config.num_threads)
            recorder = MaskletRecorder(info.video_id, (info.height, info.width))
            total = min(info.num_frames, config.max_frames or info.num_frames)
            latencies: list[float] = []
            start = time.perf_counter()
            previous, warned = None, False
            for number, frame in tqdm(source, total=total, desc=info.video_id, unit="frame",
                                      disable=not config.show_progress):
                if previous is not None and number != previous + 1 and not warned:
                    warned = True
                    logger.warning("%s: frame numbers jump from %d to %d; memory is written every %d processed "
                                   "frames, not every %d frame numbers", info.path, previous, number,
                                   session.memory_stride, session.memory_stride)
                previous = number
                result = session.step(frame)
                latencies.append(result.latency_ms)
                if number % config.output_stride == 0:
                    recorder.add(number, result.objects)
                if staged.video is not None:
                    staged.video.write(draw_overlay(frame, result.objects))
                if config.max_frames is not None and len(latencies) >= config.max_frames:
                    break
            predictions = recorder.to_dict()
            with signals_held():  # from here on the run completes: Ctrl-C / SIGTERM are dropped
                staged.commit(predictions)
                return _summary(info.video_id, session.backend.name, latencies, recorder.num_frames,
                                len(predictions["masklet_id"]), time.perf_counter() - start)


def _summary(video_id: str, backend: str, latencies: list[float], num_recorded: int, num_objects: int,
             wall: float) -> RunSummary:
    latency = np.array(latencies)
    return RunSummary(
        video_id=video_id,
        backend=backend,
        num_frames=len(latencies),
        num_recorded=num_recorded,
        num_objects=num_objects,
        latency_p50_ms=float(np.percentile(latency, 50)),
        latency_p90_ms=float(np.percentile(latency, 90)),
        fps=float(1000.0 / latency.mean()),
        wall_fps=float(len(latencies) / wall),
    )
