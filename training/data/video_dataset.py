"""SA-V clips with cached memory features: `SAVVideoDataset` and `video_collate_fn`.

An item is indexed by (video, query annotated index q). Its context is the T annotated
frames strictly before q (annotated q-T .. q-1, video frames 4(q-T) .. 4(q-1)); slot T-1
holds q-1, the most recent one. When q < T the older, low slots are zero and masked False.
Only the query frame is decoded; the context comes from the feature cache. Every frame
index in an item is a multiple of 4 (ANNOTATION_STRIDE) below the video's frame count.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from efficient_sam3.contract import preprocess_frame
from efficient_sam3.masks import masks_to_boxes
from training.data.feature_cache import (
    FEATURE_CHANNELS,
    FEATURE_GRID,
    CacheFileError,
    CacheHeader,
    cache_path,
    load_cached_features,
    read_cache_header,
)
from training.data.sav import (
    ANNOTATION_STRIDE,
    SAVAnnotation,
    SAVFormatError,
    SAVVideoFiles,
    VideoFrameReader,
    check_video_matches,
    find_videos,
    load_annotation,
)

logger = logging.getLogger(__name__)

STACKED_KEYS = ("pixel_values", "memory_features", "memory_mask")
LISTED_KEYS = ("gt_masks", "gt_boxes", "prompts", "obj_ids", "video_id", "query_frame", "context_frames")


@dataclass(frozen=True)
class BadVideo:
    """A video left out of the dataset, and why (the reason names the file)."""

    video_id: str
    reason: str


@dataclass(frozen=True)
class _VideoEntry:
    files: SAVVideoFiles
    cache: CacheHeader
    num_annotated_frames: int


class SAVVideoDataset(Dataset):
    """Clips of `context_frames` cached context frames + 1 decoded query frame.

    Item keys: pixel_values float32 [3, S, S]; memory_features float32 [T, 256, 18, 18];
    memory_mask bool [T]; gt_masks bool [N, S, S]; gt_boxes float32 [N, 4] normalised xyxy;
    prompts list[str] (N, "" without categories); obj_ids list[int] (N); video_id str;
    query_frame int; context_frames list[int] (T, -1 for masked slots). N <= max_objects_per_frame
    objects visible in the query frame (and still visible at S x S), in masklet order; N may be 0.

    With `skip_bad_videos`, videos that fail validation (here) or decoding (in __getitem__)
    are listed in `bad_videos` instead of raising; a failed item is replaced by the next
    item of another video. Worker processes keep their own list and log each failure.
    """

    def __init__(
        self,
        sav_root: Path | str,
        cache_dir: Path | str,
        context_frames: int = 8,
        annotation_type: str = "manual",
        max_objects_per_frame: int = 20,
        image_size: int = 504,
        skip_bad_videos: bool = False,
        include_first_frame: bool = False,
        annotation_cache_size: int = 32,
    ) -> None:
        if context_frames <= 0:
            raise ValueError(f"context_frames must be positive, got {context_frames}")
        if max_objects_per_frame <= 0:
            raise ValueError(f"max_objects_per_frame must be positive, got {max_objects_per_frame}")
        self.context_frames = context_frames
        self.max_objects_per_frame = max_objects_per_frame
        self.image_size = image_size
        self.skip_bad_videos = skip_bad_videos
        self.bad_videos: list[BadVideo] = []
        self._annotation_cache: OrderedDict[str, SAVAnnotation] = OrderedDict()
        self._annotation_cache_size = annotation_cache_size
        self._videos: list[_VideoEntry] = []
        for files in find_videos(sav_root, annotation_type):
            try:
                self._videos.append(self._validate(files, Path(cache_dir)))
            except (SAVFormatError, CacheFileError) as error:
                self._report_bad(files.video_id, error)
        first_query = 0 if include_first_frame else 1
        self._items = [
            (video_pos, query_idx)
            for video_pos, entry in enumerate(self._videos)
            for query_idx in range(first_query, entry.num_annotated_frames)
        ]
        self._bad_positions: set[int] = set()

    @property
    def video_ids(self) -> list[str]:
        return [entry.files.video_id for entry in self._videos]

    def __len__(self) -> int:
        return len(self._items)

    def item_key(self, index: int) -> tuple[str, int]:
        """(video_id, query annotated index) of item `index`, without loading it."""
        video_pos, query_idx = self._items[index]
        return self._videos[video_pos].files.video_id, query_idx

    def __getitem__(self, index: int) -> dict:
        for offset in range(len(self._items)):
            video_pos, query_idx = self._items[(index + offset) % len(self._items)]
            if video_pos in self._bad_positions:
                continue
            try:
                return self._load_item(self._videos[video_pos], query_idx)
            except (SAVFormatError, CacheFileError) as error:
                self._bad_positions.add(video_pos)
                self._report_bad(self._videos[video_pos].files.video_id, error)
        raise ValueError(f"every video of the dataset failed to load: {[bad.reason for bad in self.bad_videos]}")

    def _report_bad(self, video_id: str, error: Exception) -> None:
        if not self.skip_bad_videos:
            raise error
        logger.warning("skipping video %s: %s", video_id, error)
        self.bad_videos.append(BadVideo(video_id=video_id, reason=str(error)))

    def _validate(self, files: SAVVideoFiles, cache_dir: Path) -> _VideoEntry:
        annotation = load_annotation(files.json_path)
        with VideoFrameReader(files.video_path, (annotation.height, annotation.width)) as reader:
            check_video_matches(reader, annotation)
        header = read_cache_header(cache_path(cache_dir, files.video_id))
        expected = annotation.annotated_frame_indices()
        if list(header.frame_indices) != expected:
            raise CacheFileError(
                f"{header.path}: cache holds {len(header.frame_indices)} frames {list(header.frame_indices[:4])}..., "
                f"{files.json_path.name} has {len(expected)} annotated frames {expected[:4]}..."
            )
        return _VideoEntry(files=files, cache=header, num_annotated_frames=annotation.num_annotated_frames)

    def _annotation(self, entry: _VideoEntry) -> SAVAnnotation:
        """Parsed JSON of a video, from a small per-process LRU cache."""
        video_id = entry.files.video_id
        if video_id in self._annotation_cache:
            self._annotation_cache.move_to_end(video_id)
            return self._annotation_cache[video_id]
        annotation = load_annotation(entry.files.json_path)
        self._annotation_cache[video_id] = annotation
        if len(self._annotation_cache) > self._annotation_cache_size:
            self._annotation_cache.popitem(last=False)
        return annotation

    def _load_item(self, entry: _VideoEntry, query_idx: int) -> dict:
        annotation = self._annotation(entry)
        query_frame = annotation.video_frame(query_idx)
        slot_annotated = [query_idx - self.context_frames + slot for slot in range(self.context_frames)]
        context_frames = [annotation.video_frame(k) if k >= 0 else -1 for k in slot_annotated]
        valid_frames = [frame_idx for frame_idx in context_frames if frame_idx >= 0]
        assert all(frame_idx % ANNOTATION_STRIDE == 0 and frame_idx < query_frame for frame_idx in valid_frames)
        assert query_frame % ANNOTATION_STRIDE == 0 and query_frame < annotation.frame_count

        with VideoFrameReader(entry.files.video_path, (annotation.height, annotation.width)) as reader:
            frame = reader.read_frame(query_frame)
        pixel_values = torch.from_numpy(preprocess_frame(frame, self.image_size))  # [3, S, S]

        memory_features = torch.zeros(self.context_frames, FEATURE_CHANNELS, FEATURE_GRID, FEATURE_GRID)
        num_valid = len(valid_frames)
        if num_valid:
            rows = load_cached_features(entry.cache, valid_frames)  # [num_valid, 256, 18, 18] float16
            memory_features[self.context_frames - num_valid :] = rows.float()
        memory_mask = torch.tensor([frame_idx >= 0 for frame_idx in context_frames], dtype=torch.bool)

        slots = annotation.visible_slots(query_idx)
        native_masks = annotation.decode_masks(query_idx, slots)  # [N, H, W]
        masks = resize_masks(native_masks, self.image_size)
        # An object smaller than a pixel at model resolution cannot be supervised: leave it out.
        keep = np.flatnonzero(masks.any(axis=(1, 2)))[: self.max_objects_per_frame]
        slots = [slots[i] for i in keep]
        native_masks, masks = native_masks[keep], masks[keep]
        return {
            "pixel_values": pixel_values,
            "memory_features": memory_features,
            "memory_mask": memory_mask,
            "gt_masks": torch.from_numpy(masks),
            "gt_boxes": torch.from_numpy(masks_to_boxes(native_masks)),
            "video_id": entry.files.video_id,
            "query_frame": query_frame,
            "context_frames": context_frames,
            "prompts": [annotation.categories[slot] if annotation.categories else "" for slot in slots],
            "obj_ids": [annotation.obj_ids[slot] for slot in slots],
        }


def resize_masks(masks: np.ndarray, image_size: int) -> np.ndarray:
    """bool [N, H, W] -> bool [N, S, S], bilinear (like the frame) then >= 0.5."""
    resized = np.zeros((masks.shape[0], image_size, image_size), dtype=bool)
    for row, mask in enumerate(masks):
        scaled = cv2.resize(mask.astype(np.float32), (image_size, image_size), interpolation=cv2.INTER_LINEAR)
        resized[row] = scaled >= 0.5
    return resized


def video_collate_fn(items: list[dict]) -> dict:
    """Stack pixel_values [B, 3, S, S], memory_features [B, T, 256, 18, 18], memory_mask [B, T];
    keep per-frame ground truth (variable N) and traceability fields as lists of length B."""
    batch = {key: torch.stack([item[key] for item in items]) for key in STACKED_KEYS}
    batch.update({key: [item[key] for item in items] for key in LISTED_KEYS})
    return batch


def measure_dataset_throughput(dataset: Dataset, num_items: int, seed: int = 0) -> float:
    """Items per second of `dataset[i]` over `num_items` random indices (one warm-up item first)."""
    if len(dataset) == 0:
        raise ValueError("cannot measure an empty dataset")
    generator = np.random.default_rng(seed)
    indices = generator.integers(0, len(dataset), size=num_items + 1)
    dataset[int(indices[0])]
    started = time.perf_counter()
    for index in indices[1:]:
        dataset[int(index)]
    return num_items / (time.perf_counter() - started)
