"""SA-V data layer: annotation/video readers, the feature cache format and the clip dataset."""

from training.data.feature_cache import CacheFileError
from training.data.sav import (
    ANNOTATION_FPS,
    ANNOTATION_STRIDE,
    VIDEO_FPS,
    SAVAnnotation,
    SAVFormatError,
    VideoFrameReader,
    find_videos,
    load_annotation,
)
from training.data.video_dataset import BadVideo, SAVVideoDataset, measure_dataset_throughput, video_collate_fn

__all__ = [
    "ANNOTATION_FPS",
    "ANNOTATION_STRIDE",
    "VIDEO_FPS",
    "BadVideo",
    "CacheFileError",
    "SAVAnnotation",
    "SAVFormatError",
    "SAVVideoDataset",
    "VideoFrameReader",
    "find_videos",
    "load_annotation",
    "measure_dataset_throughput",
    "video_collate_fn",
]
