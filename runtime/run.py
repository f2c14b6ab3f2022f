"""Run a session over a whole video: predictions JSON, SA-V PNG folders, overlay video and latency numbers.

Every frame is processed (memory needs every ``memory_stride``-th frame); ``output_stride`` only chooses
which frames are recorded in the JSON (e.g. 4 = the 6 fps annotated frames of a 24 fps SA-V video).
The outputs are one set (``runtime.run_outputs``): checked before any work, locked against other runs,
and moved into place together only when the whole video is done; an error or KeyboardInterrupt before
then writes none of them.

Live sources (a camera, a stream URL, raw frames on stdin: ``runtime.live_sources``) have no end known in
advance: Ctrl-C or SIGTERM during the frame loop ENDS the stream, and the frames processed so far are committed
like a whole video (the summary names the signal); the end of the stream (EOF, the stream closing) does the
same. A stop before the first frame was processed writes nothing (KeyboardInterrupt, as for a file).
With ``realtime`` the source is read in a background thread into a one-slot latest-frame buffer
(``runtime.frame_reader``): the loop always processes the newest frame, frames overwritten before being
processed are counted as dropped, and a video file or frame folder is paced at its fps (``fps`` overrides it)
so it drops frames as a camera would. Frame numbers stay the source's.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from runtime.frame_reader import FrameReader
from runtime.live_sources import MAX_FPS, check_frame_size_option, open_frame_source
from runtime.predictions import MaskletRecorder
from runtime.run_outputs import OutputPaths, signals_held, staged_outputs
from runtime.session import SessionConfig, VideoSession
from runtime.video_io import draw_overlay

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunConfig:
    """video: a video file, a JPEG frame folder, a camera index ("0"), a stream URL or "-" (raw bgr24 frames on
    stdin of ``frame_size`` (width, height)): ``runtime.live_sources``. fps: the source's rate for the overlay
    video and for realtime pacing (None: what the source reports). realtime: drop frames to keep up."""

    model: Path
    video: str | Path
    prompts: tuple[str, ...]
    backend: str | None = None
    out_json: Path | None = None
    out_video: Path | None = None
    out_png: Path | None = None  # SA-V PNG layout root (efficient_sam3.sav_png); the video goes to <out_png>/<video_id>/
    output_stride: int = 1
    max_frames: int | None = None
    num_threads: int | None = None
    show_progress: bool = True
    frame_size: tuple[int, int] | None = None
    fps: float | None = None
    realtime: bool = False
    session: SessionConfig = SessionConfig()

    def __post_init__(self) -> None:
        if self.output_stride <= 0:
            raise ValueError(f"output_stride must be positive, got {self.output_stride}")
        if self.max_frames is not None and self.max_frames <= 0:
            raise ValueError(f"max_frames must be positive, got {self.max_frames}")
        if not self.prompts:
            raise ValueError("give at least one prompt")
        if self.fps is not None and not 0 < self.fps <= MAX_FPS:
            raise ValueError(f"fps must be in (0, {MAX_FPS:g}], got {self.fps}")
        check_frame_size_option(self.video, self.frame_size)


@dataclass(frozen=True)
class RunSummary:
    """latency_*: per-frame ``step`` time (preprocess, model, post-processing, tracking) in ms;
    fps = 1000 / mean step latency; wall_fps also counts decoding the video and writing outputs.
    num_dropped: frames the realtime reader overwrote before they were processed; stop_signal: the signal
    that ended a live stream (None: it ran to its end)."""

    video_id: str
    backend: str
    num_frames: int
    num_recorded: int
    num_objects: int
    latency_p50_ms: float
    latency_p90_ms: float
    fps: float
    wall_fps: float
    realtime: bool = False
    num_dropped: int = 0
    stop_signal: int | None = None

    def format(self) -> str:
        dropped = f", {self.num_dropped} dropped to keep up" if self.realtime else ""
        stopped = "" if self.stop_signal is None else (f"; stopped by signal {self.stop_signal} "
                                                       f"({signal.Signals(self.stop_signal).name}), the frames so far "
                                                       "were written")
        return (f"{self.video_id}: {self.num_frames} frames ({self.num_recorded} recorded{dropped}), "
                f"{self.num_objects} objects, backend {self.backend}; latency p50 {self.latency_p50_ms:.1f} ms, "
                f"p90 {self.latency_p90_ms:.1f} ms; {self.fps:.2f} fps (wall {self.wall_fps:.2f} fps){stopped}")


def run_video(config: RunConfig) -> RunSummary:
    outputs = OutputPaths(json=config.out_json, video=config.out_video, png_root=config.out_png)
    outputs.check()  # a missing folder or an unwritable output fails now, not after the whole video
    # a bad video, an unopenable camera or stream fails before the model loads
    with open_frame_source(config.video, config.frame_size, config.fps) as source:
        info = source.info
        with staged_outputs(outputs, info.video_id, info.fps, (info.height, info.width)) as staged:
            session = VideoSession(config.model, config.backend, config.prompts, config.session, config.num_threads)
            recorder = MaskletRecorder(info.video_id, (info.height, info.width))
            total = config.max_frames if info.num_frames is None else min(info.num_frames,
                                                                          config.max_frames or info.num_frames)
            reader = None
            if info.live or config.realtime:
                reader = FrameReader(source, keep_all=not config.realtime,
                                     pace_fps=info.fps if config.realtime and not info.live else None,
                                     on_stop=getattr(source, "stop", None))
            latencies: list[float] = []
            start = time.perf_counter()
            previous, warned = None, False
            with _stop_requests() if info.live else contextlib.nullcontext(_StopRequest()) as stop:
                with contextlib.ExitStack() as loop:  # leaving it stops and joins the reader
                    frames = source if reader is None else _taken(loop.enter_context(reader), stop)
                    for number, frame in tqdm(frames, total=total, desc=info.video_id, unit="frame",
                                              disable=not config.show_progress):
                        if previous is not None and number != previous + 1 and not warned and not config.realtime:
                            warned = True
                            logger.warning("%s: frame numbers jump from %d to %d; memory is written every %d "
                                           "processed frames, not every %d frame numbers", info.path, previous,
                                           number, session.memory_stride, session.memory_stride)
                        previous = number
                        result = session.step(frame)
                        latencies.append(result.latency_ms)
                        if number % config.output_stride == 0:
                            recorder.add(number, result.objects)
                        if staged.video is not None:
                            staged.video.write(draw_overlay(frame, result.objects))
                        if config.max_frames is not None and len(latencies) >= config.max_frames:
                            break
                dropped = reader.dropped if reader is not None else 0
                if stop.signal_number is not None and not latencies:
                    raise KeyboardInterrupt(f"signal {stop.signal_number}")  # nothing processed: nothing written
                predictions = recorder.to_dict()
                with signals_held():  # from here on the run completes: Ctrl-C / SIGTERM are dropped
                    staged.commit(predictions)
                    return _summary(info.video_id, session.backend.name, latencies, recorder.num_frames,
                                    len(predictions["masklet_id"]), time.perf_counter() - start,
                                    config.realtime, dropped, stop.signal_number)


class _StopRequest:
    """The signal number that asked a live run to end its stream (None: no request)."""

    def __init__(self) -> None:
        self.signal_number: int | None = None

    def is_set(self) -> bool:
        return self.signal_number is not None


@contextlib.contextmanager
def _stop_requests() -> Iterator[_StopRequest]:
    """While a live source is read, Ctrl-C and SIGTERM set the stop request instead of raising, so the loop ends
    the stream at the next frame and the run commits. Signal handlers belong to the main thread: elsewhere the
    request is never set (KeyboardInterrupt keeps its usual meaning)."""
    request = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    numbers = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.getsignal(number) for number in numbers}

    def handler(signum, frame):
        if request.signal_number is None:
            request.signal_number = signum

    for number in numbers:
        signal.signal(number, handler)
    try:
        yield request
    finally:
        for number, old in previous.items():
            signal.signal(number, old if old is not None else signal.SIG_DFL)


def _taken(reader: FrameReader, stop: _StopRequest) -> Iterator[tuple[int, np.ndarray]]:
    """The reader's frames until the source ends or a stop is requested."""
    while not stop.is_set():
        item = reader.take(stop.is_set)
        if item is None:
            return
        yield item


def _summary(video_id: str, backend: str, latencies: list[float], num_recorded: int, num_objects: int,
             wall: float, realtime: bool = False, num_dropped: int = 0, stop_signal: int | None = None) -> RunSummary:
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
        realtime=realtime,
        num_dropped=num_dropped,
        stop_signal=stop_signal,
    )
