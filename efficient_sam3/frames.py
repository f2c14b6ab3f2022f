"""Frame folders: which files of a folder are video frames, their numbers, and how one is read
(numpy + cv2, no torch). The one rule for the runtime's frame sources, export's calibration and parity
frames and the SA-V val/test layout reader.

A frame folder holds one JPEG per frame, with a suffix in ``FRAME_SUFFIXES`` (.jpg or .jpeg, in any letter
case; SA-V val/test ships ``JPEGImages_24fps/<video_id>/00000.jpg``); other files are ignored. The native
runner (``runtime/native/src/video_io.cpp``) takes the same set and the same numbering, so both runtimes
read the same folders; widening the set means changing both.
When every frame's name (without its suffix) is a number, that number is its frame number and frames come
in numeric order; otherwise they are numbered 0, 1, 2, ... in name order. A frame is read as BGR uint8
[H, W, 3] (OpenCV's order); an unreadable file is a ``VideoReadError`` naming it, and a JPEG cut short
(which still decodes, grey where data is missing) is a warning naming the file and the frame.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

FRAME_SUFFIXES = (".jpg", ".jpeg")
JPEG_START_OF_SCAN = b"\xff\xda"
JPEG_END_OF_IMAGE = b"\xff\xd9"


class VideoReadError(ValueError):
    """An unreadable video, frame folder or frame; the message starts with the offending path."""


def is_frame_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in FRAME_SUFFIXES


def frame_files(directory: Path) -> list[tuple[int, Path]]:
    """``(frame_number, path)`` of every frame in ``directory``, in frame order; ``[]`` when it holds none."""
    files = [path for path in Path(directory).iterdir() if is_frame_file(path)]
    if all(path.stem.isdigit() for path in files):
        return sorted((int(path.stem), path) for path in files)
    return list(enumerate(sorted(files)))


def jpeg_is_truncated(data: bytes) -> bool:
    """True when no end-of-image marker follows the last start-of-scan marker: the file was cut short
    (libjpeg then fills the missing rows with grey and only prints "Premature end of JPEG file")."""
    scan = data.rfind(JPEG_START_OF_SCAN)
    return scan != -1 and data.find(JPEG_END_OF_IMAGE, scan) == -1


def read_frame_file(path: Path, number: int) -> np.ndarray:
    """BGR uint8 [H, W, 3] of frame ``number`` stored at ``path``."""
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise VideoReadError(f"{path}: unreadable image")
    if jpeg_is_truncated(Path(path).read_bytes()):
        logger.warning("%s: frame %d is a truncated JPEG (no end-of-image marker); its missing part decodes as grey",
                       path, number)
    return frame
