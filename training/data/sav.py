"""SA-V train-layout reader: annotation JSON, COCO RLE masks and MP4 frames.

Layout (as SA-V ships it; sub-folders such as `sav_000/` are allowed):

    <sav_root>/.../sav_XXXXXX.mp4
    <sav_root>/.../sav_XXXXXX_manual.json   (and/or sav_XXXXXX_auto.json)

The JSON has no fps field. SA-V videos are 24 fps and masks are annotated at 6 fps, so
annotated index k is video frame 4k. `masklet` is indexed [annotated frame][object]; an
object that is absent in a frame has an all-zero RLE. Loading checks each RLE's shape and size; its
counts are checked (``training.data.rle``) when it is used, before pycocotools reads them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from training.data.rle import RLEError, check_rle

VIDEO_FPS = 24
ANNOTATION_FPS = 6
ANNOTATION_STRIDE = VIDEO_FPS // ANNOTATION_FPS  # annotated index k == video frame 4k
ANNOTATION_TYPES = ("manual", "auto")
# Forward gaps up to this many frames are decoded with grab() instead of a container seek.
SEQUENTIAL_DECODE_GAP = 2 * ANNOTATION_STRIDE


class SAVFormatError(ValueError):
    """Malformed or inconsistent SA-V input. The message starts with the offending file."""


@dataclass(frozen=True)
class SAVVideoFiles:
    """One video of the train layout. Either path may be missing on disk; the reader reports it."""

    video_id: str
    video_path: Path
    json_path: Path


@dataclass(frozen=True)
class SAVAnnotation:
    """Validated contents of one `sav_XXXXXX_{manual,auto}.json`.

    `masklet[k][slot]` is the COCO RLE (size [H, W]) of object `slot` at annotated index k.
    `obj_ids[slot]` is the SA-V `masklet_id`; `first_appeared[slot]` an annotated index.
    `categories[slot]` is the text prompt (`masklet_category`, an extra field our
    synthetic data writes), or None when the file has no categories.
    `video_np_pairs` lists the noun phrases prompted on this video with the number of masklets of
    each (SA-Co/VEval's field of that name, per video: ``[{"noun_phrase", "num_masklets"}]``); a
    phrase with 0 masklets is a negative (absent from the video). None when the file has no such
    field (SA-V's own files).
    """

    json_path: Path
    video_id: str
    frame_count: int
    height: int
    width: int
    masklet: tuple[tuple[dict, ...], ...]
    obj_ids: tuple[int, ...]
    first_appeared: tuple[int, ...]
    categories: tuple[str, ...] | None
    video_np_pairs: tuple[tuple[str, int], ...] | None = None

    @property
    def negative_phrases(self) -> tuple[str, ...]:
        """Listed phrases with no masklet in this video (empty without ``video_np_pairs``)."""
        return tuple(phrase for phrase, count in self.video_np_pairs or () if count == 0)

    @property
    def num_annotated_frames(self) -> int:
        return len(self.masklet)

    @property
    def num_objects(self) -> int:
        return len(self.obj_ids)

    def video_frame(self, annotated_idx: int) -> int:
        """Video frame number of annotated index `annotated_idx` (asserts alignment)."""
        if not 0 <= annotated_idx < self.num_annotated_frames:
            raise IndexError(
                f"{self.json_path}: annotated index {annotated_idx} outside [0, {self.num_annotated_frames})"
            )
        frame_idx = annotated_idx * ANNOTATION_STRIDE
        assert frame_idx % ANNOTATION_STRIDE == 0 and frame_idx < self.frame_count, (frame_idx, self.frame_count)
        return frame_idx

    def annotated_frame_indices(self) -> list[int]:
        """Video frame numbers of all annotated frames: 0, 4, 8, ..."""
        return [self.video_frame(k) for k in range(self.num_annotated_frames)]

    def visible_slots(self, annotated_idx: int) -> list[int]:
        """Object slots with a non-empty mask at `annotated_idx`, in masklet order (no decoding)."""
        rles = self.masklet[annotated_idx]
        if not rles:
            return []
        checked = [checked_rle(rle, self.rle_source(annotated_idx, slot)) for slot, rle in enumerate(rles)]
        areas = mask_utils.area(checked)
        return [slot for slot, area in enumerate(areas) if area > 0]

    def decode_masks(self, annotated_idx: int, slots: list[int]) -> np.ndarray:
        """bool [len(slots), H, W] masks of the given object slots at `annotated_idx`."""
        masks = np.zeros((len(slots), self.height, self.width), dtype=bool)
        for row, slot in enumerate(slots):
            masks[row] = decode_rle(self.masklet[annotated_idx][slot], self.rle_source(annotated_idx, slot))
        return masks

    def rle_source(self, annotated_idx: int, slot: int) -> str:
        """Where an RLE comes from, for error messages: the file, the frame and the object."""
        return (f"{self.json_path}: masklet[{annotated_idx}][{slot}] (frame {annotated_idx * ANNOTATION_STRIDE}, "
                f"object {self.obj_ids[slot]})")


def checked_rle(rle: dict, source: Path | str) -> dict:
    """One COCO RLE validated (``training.data.rle.check_rle``) and compressed, as pycocotools takes it.
    Raises SAVFormatError("<source>: cannot decode RLE: <problem>")."""
    try:
        return check_rle(rle, f"{source}: cannot decode RLE")
    except RLEError as error:
        raise SAVFormatError(str(error)) from None


def decode_rle(rle: dict, source: Path | str) -> np.ndarray:
    """Decode one COCO RLE (compressed string or uncompressed list counts) to bool [H, W], after checking
    that its counts cover the mask exactly (``checked_rle``)."""
    return mask_utils.decode([checked_rle(rle, source)])[:, :, 0].astype(bool)  # [H, W, 1] -> [H, W]


def find_videos(sav_root: Path | str, annotation_type: str = "manual") -> list[SAVVideoFiles]:
    """All videos under `sav_root` (recursive), sorted by video id.

    A video whose MP4 or JSON is missing is still listed, so the caller reports it.
    """
    if annotation_type not in ANNOTATION_TYPES:
        raise ValueError(f"annotation_type must be one of {ANNOTATION_TYPES}, got {annotation_type!r}")
    root = Path(sav_root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: SA-V root is not a directory")
    suffix = f"_{annotation_type}.json"
    by_id: dict[str, dict[str, Path]] = {}
    for path in root.rglob("*"):
        if path.suffix == ".mp4":
            video_id, kind = path.stem, "video"
        elif path.name.endswith(suffix):
            video_id, kind = path.name[: -len(suffix)], "json"
        else:
            continue
        entry = by_id.setdefault(video_id, {})
        if kind in entry:
            raise SAVFormatError(f"{path}: duplicate video id {video_id!r} (also {entry[kind]})")
        entry[kind] = path
    videos = []
    for video_id in sorted(by_id):
        entry = by_id[video_id]
        folder = (entry.get("video") or entry["json"]).parent
        videos.append(
            SAVVideoFiles(
                video_id=video_id,
                video_path=entry.get("video", folder / f"{video_id}.mp4"),
                json_path=entry.get("json", folder / f"{video_id}{suffix}"),
            )
        )
    return videos


def load_annotation(json_path: Path | str) -> SAVAnnotation:
    """Parse and validate one SA-V annotation JSON. Raises SAVFormatError naming the file."""
    path = Path(json_path)
    if not path.is_file():
        raise SAVFormatError(f"{path}: annotation JSON is missing")
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SAVFormatError(f"{path}: malformed JSON: {error}") from error
    if not isinstance(data, dict):
        raise SAVFormatError(f"{path}: top level must be an object, got {type(data).__name__}")
    for key in ("video_id", "video_frame_count", "video_height", "video_width", "masklet", "masklet_id"):
        if key not in data:
            raise SAVFormatError(f"{path}: missing field {key!r}")

    frame_count = _as_int(data["video_frame_count"], "video_frame_count", path)
    height = _as_int(data["video_height"], "video_height", path)
    width = _as_int(data["video_width"], "video_width", path)
    if frame_count <= 0 or height <= 0 or width <= 0:
        raise SAVFormatError(f"{path}: non-positive frame count or size ({frame_count}, {height}x{width})")
    if not isinstance(data["masklet_id"], list):
        raise SAVFormatError(f"{path}: 'masklet_id' must be a list")
    obj_ids = tuple(_as_int(value, "masklet_id", path) for value in data["masklet_id"])
    num_objects = len(obj_ids)
    if len(set(obj_ids)) != num_objects:
        raise SAVFormatError(f"{path}: duplicate masklet ids {list(obj_ids)}")
    if "masklet_num" in data and _as_int(data["masklet_num"], "masklet_num", path) != num_objects:
        raise SAVFormatError(f"{path}: masklet_num={data['masklet_num']} but {num_objects} masklet ids")

    masklet = _validate_masklet(data["masklet"], num_objects, height, width, frame_count, path)
    first_appeared = _per_object_list(data, "masklet_first_appeared_frame", num_objects, path)
    first_appeared_ids = tuple(_as_int(value, "masklet_first_appeared_frame", path) for value in first_appeared)
    categories = None
    if "masklet_category" in data:
        raw_categories = _per_object_list(data, "masklet_category", num_objects, path)
        if not all(isinstance(category, str) for category in raw_categories):
            raise SAVFormatError(f"{path}: 'masklet_category' must hold strings")
        categories = tuple(raw_categories)
    video_np_pairs = _video_np_pairs(data, categories, path) if "video_np_pairs" in data else None
    return SAVAnnotation(
        json_path=path,
        video_id=str(data["video_id"]),
        frame_count=frame_count,
        height=height,
        width=width,
        masklet=masklet,
        obj_ids=obj_ids,
        first_appeared=first_appeared_ids,
        categories=categories,
        video_np_pairs=video_np_pairs,
    )


def _video_np_pairs(data: dict, categories: tuple[str, ...] | None, path: Path) -> tuple[tuple[str, int], ...]:
    """Validated ``video_np_pairs``: unique phrases; counts agree with ``masklet_category`` when present."""
    entries = data["video_np_pairs"]
    if not isinstance(entries, list):
        raise SAVFormatError(f"{path}: 'video_np_pairs' must be a list of {{noun_phrase, num_masklets}}")
    pairs = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("noun_phrase"), str):
            raise SAVFormatError(f"{path}: video_np_pairs[{index}] needs a string 'noun_phrase'")
        phrase = entry["noun_phrase"]
        expected = None if categories is None else categories.count(phrase)
        raw_count = entry.get("num_masklets", expected)
        if raw_count is None:
            raise SAVFormatError(f"{path}: video_np_pairs[{index}] needs 'num_masklets' (no masklet_category)")
        count = _as_int(raw_count, "num_masklets", path)
        if expected is not None and count != expected:
            raise SAVFormatError(f"{path}: video_np_pairs[{index}] says {count} masklets of {phrase!r}, "
                                 f"masklet_category has {expected}")
        pairs.append((phrase, count))
    phrases = [phrase for phrase, _ in pairs]
    if len(set(phrases)) != len(phrases):
        raise SAVFormatError(f"{path}: 'video_np_pairs' lists a noun phrase twice")
    return tuple(pairs)


def _validate_masklet(
    masklet: object, num_objects: int, height: int, width: int, frame_count: int, path: Path
) -> tuple[tuple[dict, ...], ...]:
    if not isinstance(masklet, list) or not masklet:
        raise SAVFormatError(f"{path}: 'masklet' must be a non-empty list [annotated frame][object]")
    last_frame = (len(masklet) - 1) * ANNOTATION_STRIDE
    if last_frame >= frame_count:
        raise SAVFormatError(
            f"{path}: {len(masklet)} annotated frames need video frame {last_frame}, "
            f"but video_frame_count is {frame_count}"
        )
    frames = []
    for annotated_idx, frame_rles in enumerate(masklet):
        if not isinstance(frame_rles, list) or len(frame_rles) != num_objects:
            raise SAVFormatError(
                f"{path}: masklet[{annotated_idx}] must list {num_objects} RLEs (one per masklet_id)"
            )
        for slot, rle in enumerate(frame_rles):
            if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
                raise SAVFormatError(f"{path}: masklet[{annotated_idx}][{slot}] is not a COCO RLE {{size, counts}}")
            size = [_as_int(value, "RLE size", path) for value in rle["size"]]
            if size != [height, width]:
                raise SAVFormatError(
                    f"{path}: masklet[{annotated_idx}][{slot}] RLE size {size} disagrees with the video "
                    f"size [{height}, {width}]"
                )
            if not isinstance(rle["counts"], (str, list)):
                raise SAVFormatError(f"{path}: masklet[{annotated_idx}][{slot}] counts must be a string or list")
        frames.append(tuple(frame_rles))
    return tuple(frames)


def _per_object_list(data: dict, key: str, num_objects: int, path: Path) -> list:
    values = data.get(key)
    if not isinstance(values, list) or len(values) != num_objects:
        raise SAVFormatError(f"{path}: {key!r} must be a list with one entry per masklet ({num_objects})")
    return values


def _as_int(value: object, field: str, path: Path) -> int:
    """SA-V stores counts and sizes as floats (e.g. 483.0); accept integral numbers only."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SAVFormatError(f"{path}: {field} must be a number, got {value!r}")
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        raise SAVFormatError(f"{path}: {field} must be integral, got {value!r}")
    return int(value)


class VideoFrameReader:
    """Decodes selected frames of one MP4 as RGB uint8 [H, W, 3].

    Reads move forward with grab() when the gap is small (sequential decode is cheaper
    than a seek for stride-4 access) and seek with CAP_PROP_POS_FRAMES otherwise; a seek
    whose reported position differs from the request falls back to decoding from the start.
    """

    def __init__(self, video_path: Path | str, expected_size: tuple[int, int] | None = None) -> None:
        self.video_path = Path(video_path)
        if not self.video_path.is_file():
            raise SAVFormatError(f"{self.video_path}: video file is missing")
        self._capture = cv2.VideoCapture(str(self.video_path))
        if not self._capture.isOpened():
            raise SAVFormatError(f"{self.video_path}: cannot open video (truncated or not an MP4?)")
        self.frame_count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.height = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.width = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        if self.frame_count <= 0:
            self.close()
            raise SAVFormatError(f"{self.video_path}: video reports no frames (truncated?)")
        if expected_size is not None and (self.height, self.width) != tuple(expected_size):
            self.close()
            raise SAVFormatError(
                f"{self.video_path}: video is {self.height}x{self.width} but the annotation says "
                f"{expected_size[0]}x{expected_size[1]}"
            )
        self._next_frame = 0

    def __enter__(self) -> VideoFrameReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._capture.release()

    def read_frame(self, frame_idx: int) -> np.ndarray:
        """RGB uint8 [H, W, 3] of video frame `frame_idx`."""
        if not 0 <= frame_idx < self.frame_count:
            raise SAVFormatError(f"{self.video_path}: frame {frame_idx} outside [0, {self.frame_count})")
        gap = frame_idx - self._next_frame
        if gap < 0 or gap > SEQUENTIAL_DECODE_GAP:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, frame_idx)
            if int(self._capture.get(cv2.CAP_PROP_POS_FRAMES)) != frame_idx:
                self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)  # inexact seek: decode from the start
                self._next_frame = 0
            else:
                self._next_frame = frame_idx
        while self._next_frame < frame_idx:
            if not self._capture.grab():
                raise SAVFormatError(
                    f"{self.video_path}: decoding stopped at frame {self._next_frame} of {self.frame_count} "
                    f"(truncated video?)"
                )
            self._next_frame += 1
        ok, frame_bgr = self._capture.read()
        if not ok or frame_bgr is None:
            raise SAVFormatError(
                f"{self.video_path}: cannot decode frame {frame_idx} of {self.frame_count} (truncated video?)"
            )
        self._next_frame = frame_idx + 1
        return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)

    def read_frames(self, frame_indices: list[int]) -> list[np.ndarray]:
        """RGB uint8 frames in the order given (ascending order decodes fastest)."""
        return [self.read_frame(frame_idx) for frame_idx in frame_indices]


def check_video_matches(reader: VideoFrameReader, annotation: SAVAnnotation) -> None:
    """Raise unless the MP4 holds every annotated frame of `annotation`."""
    last_frame = annotation.video_frame(annotation.num_annotated_frames - 1)
    if reader.frame_count <= last_frame:
        raise SAVFormatError(
            f"{reader.video_path}: video has {reader.frame_count} frames but {annotation.json_path.name} "
            f"annotates frame {last_frame} (truncated video?)"
        )
