"""The output files of one run as one set: checked before any work, locked against other runs, staged under
unique temp names and moved into place together, or not at all.

A run writes up to three outputs: the predictions JSON, the overlay video and the SA-V PNG folder of its
video (``<png_root>/<video_id>``). Files are written the one way ``efficient_sam3.files`` writes them.
- ``OutputPaths.check()``, before any work: removes the temps that killed runs left in the output folders,
  then fails (OSError naming the path) when an output folder is missing or an output cannot be written.
- ``staged_outputs(...)``: takes an ``OutputLock`` on every output, so a second run aimed at any of them
  refuses at once naming this run's process (the C++ runner takes the same locks on the same files);
  opens the overlay video under a temp name and yields ``StagedOutputs``.
- ``StagedOutputs.commit(predictions)``: reads the video back (every frame must be there), writes the JSON
  and the PNG folder under temp names, and only then renames all of them into place, with Ctrl-C and
  SIGTERM held off for those few renames. Any failure or interruption before that removes every temp: the
  run leaves all its outputs or none, and the earlier files at those paths stay as they were.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from efficient_sam3.files import OutputLock, atomic_directory, atomic_path, check_writable, remove_stale_temps
from efficient_sam3.sav_png import prediction_masks, video_folder, write_masks_into
from runtime.predictions import write_predictions_to
from runtime.video_io import OverlayVideoWriter


@dataclass(frozen=True)
class OutputPaths:
    """json: predictions JSON; video: overlay video; png_root: SA-V PNG root (the run writes its video's
    folder in it). None: not written."""

    json: Path | None = None
    video: Path | None = None
    png_root: Path | None = None

    def check(self) -> None:
        """Before any work: stale temps of killed runs removed, every output folder present and writable."""
        if self.json is not None and self.video is not None and Path(self.json).resolve() == Path(self.video).resolve():
            raise ValueError(f"{self.json}: the same path is given for the predictions JSON and the overlay video")
        for path, what in ((self.json, "predictions JSON"), (self.video, "overlay video")):
            if path is not None:
                remove_stale_temps(Path(path).parent)
                check_writable(path, what)
        if self.png_root is not None:
            if not Path(self.png_root).is_dir():
                raise FileNotFoundError(f"{self.png_root}: PNG output folder does not exist")
            remove_stale_temps(Path(self.png_root))

    def png_folder(self, video_id: str) -> Path:
        return video_folder(self.png_root, video_id)

    def locks(self, video_id: str) -> list[OutputLock]:
        """One OutputLock per output, in a fixed order. A video's PNG folder is locked through
        ``.<root name>.<video_id>.lock`` beside the PNG root, so the root holds only video folders."""
        locks = [OutputLock(path) for path in (self.json, self.video) if path is not None]
        if self.png_root is not None:
            root = Path(self.png_root).resolve()
            locks.append(OutputLock(self.png_folder(video_id), lock_path=root.parent / f".{root.name}.{video_id}.lock"))
        return sorted(locks, key=lambda lock: str(lock.lock_path.resolve()))


class StagedOutputs:
    """The outputs of a run in progress: ``video`` receives the overlay frames (None: no --out-video);
    ``commit`` writes the rest and moves everything into place."""

    def __init__(self, paths: OutputPaths, video_id: str, stack: contextlib.ExitStack,
                 video: OverlayVideoWriter | None) -> None:
        self.paths = paths
        self.video_id = video_id
        self.video = video
        self._stack = stack

    def commit(self, predictions: dict) -> None:
        """Check the video, stage the JSON and PNG folder, then rename all of them (nothing renamed on failure)."""
        if self.video is not None:
            self.video.finish()
        if self.paths.json is not None:
            temp = self._stack.enter_context(atomic_path(self.paths.json))
            write_predictions_to(temp, Path(self.paths.json), predictions)
        if self.paths.png_root is not None:
            staging = self._stack.enter_context(atomic_directory(self.paths.png_folder(self.video_id)))
            write_masks_into(staging, prediction_masks(predictions))
        with signals_held():
            self._stack.close()  # renames (PNG folder, JSON, video), then the locks are released


@contextlib.contextmanager
def staged_outputs(paths: OutputPaths, video_id: str, fps: float,
                   frame_size: tuple[int, int]) -> Iterator[StagedOutputs]:
    """Lock every output and open the overlay video under a temp name; on leaving the block without
    ``commit`` (an error, Ctrl-C, SIGTERM) every temp is removed and the locks released."""
    if paths.png_root is not None:
        check_writable(paths.png_folder(video_id), "folder")
    with contextlib.ExitStack() as stack:
        for lock in paths.locks(video_id):
            stack.enter_context(lock)
        video = None
        if paths.video is not None:
            video = stack.enter_context(OverlayVideoWriter(paths.video, fps, frame_size))
        yield StagedOutputs(paths, video_id, stack, video)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while the staged outputs are renamed into place, so a run never stops
    between two renames; one arriving then is dropped and the run completes (the renames take
    milliseconds). Signal handlers belong to the main thread: elsewhere this does nothing."""
    numbers = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.getsignal(number) for number in numbers} if _in_main_thread() else {}
    if not previous or None in previous.values():  # None: a handler installed outside Python, left alone
        yield
        return
    for number in numbers:
        signal.signal(number, signal.SIG_IGN)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
