"""Read a frame source in a background thread, so the processing loop never blocks on the source and can
see a stop request (Ctrl-C, SIGTERM) while a live source has nothing new.

Two policies:
- ``keep_all`` (a live source without --realtime): a small queue; the reader waits when it is full, so every
  frame is processed;
- latest frame (--realtime): a one-slot buffer the reader overwrites; the loop always takes the newest frame,
  and a frame overwritten before the loop took it counts in ``dropped``. With ``pace_fps`` (a video file or
  frame folder under --realtime) frame i becomes available at t0 + i / pace_fps, as a camera would deliver it.
Frame numbers stay the source's. An exception in the reader (a bad frame in a folder) is raised again by
``take`` in the loop's thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

import numpy as np

QUEUE_FRAMES = 4  # keep_all: frames read ahead of the loop
WAIT_SECONDS = 0.05  # how often a waiting take() looks at its stop check
JOIN_SECONDS = 5.0  # close(): how long to wait for a reader blocked in the source (a stalled stream)


class FrameReader:
    """``take()`` the next ``(frame_number, frame)`` from ``frames`` read in a daemon thread; use as a context
    manager (leaving it stops and joins the thread). ``on_stop`` is called from ``close()`` to end a read the
    source is blocked in (``runtime.live_sources``' ``stop``)."""

    def __init__(self, frames: Iterable[tuple[int, np.ndarray]], keep_all: bool, pace_fps: float | None = None,
                 on_stop: Callable[[], None] | None = None) -> None:
        if pace_fps is not None and pace_fps <= 0:
            raise ValueError(f"pace_fps must be positive, got {pace_fps}")
        self.keep_all = keep_all
        self.pace_fps = pace_fps
        self.dropped = 0
        self._frames = frames
        self._on_stop = on_stop
        self._buffer: deque[tuple[int, np.ndarray]] = deque()
        self._condition = threading.Condition()
        self._stopping = threading.Event()
        self._ended = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, name="frame-reader", daemon=True)

    def __enter__(self) -> "FrameReader":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._stopping.set()
        if self._on_stop is not None:
            self._on_stop()
        with self._condition:
            self._condition.notify_all()
        if self._thread.is_alive():
            self._thread.join(JOIN_SECONDS)

    def _read(self) -> None:
        start = time.monotonic()
        try:
            for index, item in enumerate(self._frames):
                if self.pace_fps is not None and self._stopping.wait(max(0.0, start + index / self.pace_fps
                                                                         - time.monotonic())):
                    return
                with self._condition:
                    while self.keep_all and len(self._buffer) >= QUEUE_FRAMES and not self._stopping.is_set():
                        self._condition.wait(WAIT_SECONDS)
                    if self._stopping.is_set():
                        return
                    if not self.keep_all and self._buffer:
                        self._buffer.popleft()  # overwritten before the loop took it
                        self.dropped += 1
                    self._buffer.append(item)
                    self._condition.notify_all()
        except BaseException as error:  # raised again in the loop's thread by take()
            self._error = error
        finally:
            with self._condition:
                self._ended = True
                self._condition.notify_all()

    def take(self, stop_requested: Callable[[], bool] = lambda: False) -> tuple[int, np.ndarray] | None:
        """The next frame (the newest one under the latest-frame policy); None when the source has ended or
        ``stop_requested()`` became true while waiting."""
        with self._condition:
            while not self._buffer:
                if self._error is not None:
                    raise self._error
                if self._ended or stop_requested():
                    return None
                self._condition.wait(WAIT_SECONDS)
            item = self._buffer.popleft()
            self._condition.notify_all()
            return item
