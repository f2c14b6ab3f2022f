"""Small on-disk fixtures for the training-stage tests: synthetic SA-V videos, a feature cache and a
random tiny student. Imported by the test modules beside it (pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path

import torch

from efficient_sam3 import EfficientSam3Config, EfficientSam3Model
from training.data.feature_cache import FORMAT_VERSION, cache_path, write_cache_file
from training.data.sav import find_videos, load_annotation
from training.synthetic import generate_dataset
from training.synthetic_scene import SceneConfig

# Short, small videos: 21-27 frames -> 6-7 annotated frames; objects large enough to survive resizing.
SMALL_SCENE = SceneConfig(frame_sizes=((64, 48), (48, 64)), min_frames=21, max_frames=27, min_objects=1,
                          max_objects=2, min_size=0.3, max_size=0.45)


def write_videos(root: Path, num_videos: int, seed: int = 0) -> Path:
    generate_dataset(root, num_videos, seed, val_fraction=0.0, scene_config=SMALL_SCENE)
    return root


def write_random_cache(sav_root: Path, cache_dir: Path, seed: int = 0) -> Path:
    """A valid cache of random features for every video under ``sav_root``."""
    generator = torch.Generator().manual_seed(seed)
    for files in find_videos(sav_root):
        frames = load_annotation(files.json_path).annotated_frame_indices()
        features = torch.randn(len(frames), 256, 18, 18, generator=generator).half()
        metadata = {"video_id": files.video_id, "teacher": "random:0", "image_size": "504",
                    "format_version": FORMAT_VERSION}
        write_cache_file(cache_path(cache_dir, files.video_id), features, frames, metadata)
    return cache_dir


def write_student(directory: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    EfficientSam3Model(EfficientSam3Config.from_preset("tiny")).save_pretrained(directory)
    return directory


def make_clip_data(root: Path, num_videos: int = 2) -> tuple[Path, Path, Path]:
    """(sav_root, cache_dir, student_dir) under ``root``."""
    sav_root = write_videos(root / "sav", num_videos)
    return sav_root, write_random_cache(sav_root, root / "cache"), write_student(root / "student")
