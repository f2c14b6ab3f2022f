"""SA-V-style masklet JSON of a processed video (what ``training.evaluate`` reads).

{"video_id", "video_height", "video_width",
 "frame_indices": [video frame number of each entry],
 "masklet_id": [object ids in order of first appearance],
 "masklet_category": [the prompt of each object],
 "masklet": [[COCO RLE per object, in masklet_id order] per recorded frame]}
RLEs are compressed COCO RLE at the video's size with ``counts`` as an ASCII string; an object absent
from a frame has the empty mask's RLE there. Only compressed RLEs are kept while recording, so memory
grows with the number of recorded frames and objects, not with pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from efficient_sam3.files import atomic_path
from efficient_sam3.masks import encode_rle


class MaskletRecorder:
    """Collect per-frame objects of one video, then build the masklet JSON."""

    def __init__(self, video_id: str, frame_size: tuple[int, int]) -> None:
        self.video_id = video_id
        self.frame_size = frame_size
        self._frame_numbers: list[int] = []
        self._entries: list[dict[int, dict]] = []  # per frame: obj_id -> RLE
        self._categories: dict[int, str] = {}  # obj_id -> prompt, in order of first appearance

    @property
    def num_frames(self) -> int:
        return len(self._frame_numbers)

    def add(self, frame_number: int, objects: list) -> None:
        """Record the ``ObjectResult``s of video frame ``frame_number`` (ascending, each once)."""
        if self._frame_numbers and frame_number <= self._frame_numbers[-1]:
            raise ValueError(f"frame {frame_number} recorded after frame {self._frame_numbers[-1]}")
        entry = {}
        for obj in objects:
            if obj.mask.shape != self.frame_size:
                raise ValueError(f"frame {frame_number}: mask of object {obj.obj_id} is {obj.mask.shape}, "
                                 f"the video is {self.frame_size}")
            if obj.obj_id in entry:
                raise ValueError(f"frame {frame_number}: object id {obj.obj_id} appears twice")
            self._categories.setdefault(obj.obj_id, obj.prompt)
            entry[obj.obj_id] = encode_rle(obj.mask)
        self._frame_numbers.append(int(frame_number))
        self._entries.append(entry)

    def to_dict(self) -> dict:
        empty = encode_rle(np.zeros(self.frame_size, dtype=bool))
        obj_ids = list(self._categories)
        return {
            "video_id": self.video_id,
            "video_height": self.frame_size[0],
            "video_width": self.frame_size[1],
            "frame_indices": list(self._frame_numbers),
            "masklet_id": obj_ids,
            "masklet_category": [self._categories[i] for i in obj_ids],
            "masklet": [[entry.get(obj_id, empty) for obj_id in obj_ids] for entry in self._entries],
        }


def write_predictions_to(temp: Path, path: Path, predictions: dict) -> None:
    """Write the JSON to ``temp`` (a staging name of ``path``); a failed write (disk full) is an OSError naming
    ``path``."""
    try:
        with open(temp, "w", encoding="utf-8") as handle:
            json.dump(predictions, handle)
    except OSError as err:
        raise OSError(f"{path}: cannot write the predictions JSON ({err.strerror or err})") from err


def write_predictions(path: str | Path, predictions: dict) -> None:
    """Write the JSON atomically (unique temp name in the same folder, then renamed; see efficient_sam3.files)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: output directory {path.parent} does not exist")
    with atomic_path(path) as temp:
        write_predictions_to(temp, path, predictions)
