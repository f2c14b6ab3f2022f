"""Single annotated frames of SA-V train-layout videos (the image stage's data), and per-video facts
the stages need besides the clips: each video's categories and its synthetic degraded frames.

An item of ``AnnotatedFrameDataset`` has the keys of a ``SAVVideoDataset`` item that concern the
frame itself: pixel_values float32 [3, S, S] (SAM3 preprocessing), gt_masks bool [N, S, S],
gt_boxes float32 [N, 4] normalised xyxy, prompts list[str] (N), video_id, annotated_idx.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from efficient_sam3.contract import preprocess_frame
from efficient_sam3.masks import masks_to_boxes
from training.data.sav import (
    SAVAnnotation,
    SAVFormatError,
    VideoFrameReader,
    check_video_matches,
    find_videos,
    load_annotation,
)
from training.data.video_dataset import resize_masks

logger = logging.getLogger(__name__)

DEGRADED_FIELD = "synthetic_degraded_frames"


def read_degraded_frames(json_path: Path, num_annotated_frames: int) -> frozenset[int]:
    """Annotated indices the synthetic data degraded (``synthetic_degraded_frames``); empty for real
    SA-V files, which have no such field."""
    with open(json_path, encoding="utf-8") as handle:
        data = json.load(handle)
    values = data.get(DEGRADED_FIELD, [])
    if not isinstance(values, list) or not all(isinstance(v, int) and 0 <= v < num_annotated_frames for v in values):
        raise SAVFormatError(f"{json_path}: {DEGRADED_FIELD} must list annotated indices in "
                             f"[0, {num_annotated_frames}), got {values!r}")
    return frozenset(values)


@dataclass(frozen=True)
class VideoFacts:
    video_id: str
    categories: tuple[str, ...]  # one per masklet ("" when the file has none)
    degraded_frames: frozenset[int]  # annotated indices
    num_annotated_frames: int


def read_video_facts(sav_root: Path, annotation_type: str = "manual") -> dict[str, VideoFacts]:
    """Facts of every video with a readable annotation under ``sav_root`` (bad files are skipped and
    logged; the datasets report them in full)."""
    facts = {}
    for files in find_videos(sav_root, annotation_type):
        try:
            annotation = load_annotation(files.json_path)
            degraded = read_degraded_frames(files.json_path, annotation.num_annotated_frames)
        except SAVFormatError as error:
            logger.warning("skipping %s: %s", files.video_id, error)
            continue
        categories = annotation.categories or ("",) * annotation.num_objects
        facts[files.video_id] = VideoFacts(files.video_id, tuple(categories), degraded,
                                           annotation.num_annotated_frames)
    return facts


class AnnotatedFrameDataset(Dataset):
    """Every annotated frame of every readable video (degraded ones only if asked), in video order."""

    def __init__(
        self,
        sav_root: Path | str,
        image_size: int = 504,
        max_objects_per_frame: int = 20,
        include_degraded_frames: bool = False,
        annotation_type: str = "manual",
    ) -> None:
        self.image_size = image_size
        self.max_objects_per_frame = max_objects_per_frame
        self.bad_videos: list[tuple[str, str]] = []
        self._annotations: dict[str, SAVAnnotation] = {}
        self._video_paths: dict[str, Path] = {}
        self.facts: dict[str, VideoFacts] = {}
        self._items: list[tuple[str, int]] = []
        videos = find_videos(sav_root, annotation_type)
        if not videos:
            raise ValueError(f"{sav_root}: no SA-V videos (*.mp4 with *_{annotation_type}.json) in this folder or below it")
        for files in videos:
            try:
                annotation = load_annotation(files.json_path)
                degraded = read_degraded_frames(files.json_path, annotation.num_annotated_frames)
                with VideoFrameReader(files.video_path, (annotation.height, annotation.width)) as reader:
                    check_video_matches(reader, annotation)
            except SAVFormatError as error:
                logger.warning("skipping %s: %s", files.video_id, error)
                self.bad_videos.append((files.video_id, str(error)))
                continue
            self._annotations[files.video_id] = annotation
            self._video_paths[files.video_id] = files.video_path
            categories = annotation.categories or ("",) * annotation.num_objects
            self.facts[files.video_id] = VideoFacts(files.video_id, tuple(categories), degraded,
                                                    annotation.num_annotated_frames)
            self._items += [(files.video_id, k) for k in range(annotation.num_annotated_frames)
                            if include_degraded_frames or k not in degraded]
        if not self._items:
            reasons = "; ".join(reason for _, reason in self.bad_videos[:3])
            raise ValueError(f"{sav_root}: no usable annotated frames ({len(self.bad_videos)} bad videos: {reasons})")

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> dict:
        video_id, annotated_idx = self._items[index]
        annotation = self._annotations[video_id]
        with VideoFrameReader(self._video_paths[video_id], (annotation.height, annotation.width)) as reader:
            frame = reader.read_frame(annotation.video_frame(annotated_idx))
        slots = annotation.visible_slots(annotated_idx)[: self.max_objects_per_frame]
        native_masks = annotation.decode_masks(annotated_idx, slots)  # [N, H, W]
        categories = self.facts[video_id].categories
        return {
            "pixel_values": torch.from_numpy(preprocess_frame(frame, self.image_size)),  # [3, S, S]
            "gt_masks": torch.from_numpy(resize_masks(native_masks, self.image_size)),  # [N, S, S]
            "gt_boxes": torch.from_numpy(masks_to_boxes(native_masks)),  # [N, 4]
            "prompts": [categories[slot] for slot in slots],
            "video_id": video_id,
            "annotated_idx": annotated_idx,
        }
