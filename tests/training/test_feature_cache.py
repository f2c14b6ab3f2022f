"""training.data.feature_cache: files written whole with the usual mode; data checked, not only the header."""

import os
import stat

import pytest
import torch

from training.data.feature_cache import (
    CacheFileError,
    FORMAT_VERSION,
    cache_path,
    check_cache_data,
    is_complete,
    load_cached_features,
    read_cache_header,
    write_cache_file,
)
from training.data.sav import find_videos, load_annotation
from training.data.video_dataset import SAVVideoDataset
from training.synthetic import generate_dataset
from training.synthetic_scene import SceneConfig

FRAMES = [0, 4, 8]
METADATA = {"video_id": "sav_000001", "teacher": "t:0", "image_size": "504", "format_version": FORMAT_VERSION}


def _write(path, features=None):
    features = torch.randn(len(FRAMES), 256, 18, 18).half() if features is None else features
    return write_cache_file(path, features, FRAMES, METADATA)


def test_files_get_the_usual_mode_and_stale_temps_of_dead_runs_go(tmp_path):
    stale = tmp_path / ".sav_000001.safetensors.999999999-0123abcd.tmp"  # a SIGKILLed run's temp file
    stale.write_bytes(b"partial")
    old = os.umask(0o022)
    try:
        _write(tmp_path / "sav_000001.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "sav_000001.safetensors").stat().st_mode) == 0o644  # mkstemp's 0600 before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sav_000001.safetensors"]


def test_nan_features_behind_a_valid_header_are_found_naming_the_file_and_frame(tmp_path):
    path = tmp_path / "sav_000001.safetensors"
    features = torch.randn(len(FRAMES), 256, 18, 18).half()
    features[1, 7, 3, 3] = float("nan")
    _write(path, features)
    header = read_cache_header(path)  # the header is fine
    assert not is_complete(path, "sav_000001", FRAMES, "t:0", 504)  # so a resumed caching run recomputes it
    with pytest.raises(CacheFileError, match=r"frames \[4\] hold NaN or inf") as error:
        check_cache_data(header)
    assert str(path) in str(error.value)
    with pytest.raises(CacheFileError, match=r"frames \[4\]") as error:
        load_cached_features(header, [0, 4])
    assert str(path) in str(error.value)
    assert load_cached_features(header, [0, 8]).shape == (2, 256, 18, 18)  # the finite rows still load
    _write(path)
    assert is_complete(path, "sav_000001", FRAMES, "t:0", 504)


def test_video_dataset_reports_a_nan_cache_by_its_file(tmp_path):
    sav_root = tmp_path / "sav"
    generate_dataset(sav_root, 1, seed=0, val_fraction=0.0,
                     scene_config=SceneConfig(frame_sizes=((64, 48),), min_frames=13, max_frames=15))
    files = find_videos(sav_root)[0]
    frames = load_annotation(files.json_path).annotated_frame_indices()
    features = torch.full((len(frames), 256, 18, 18), float("inf")).half()
    target = cache_path(tmp_path / "cache", files.video_id)
    write_cache_file(target, features, frames, {**METADATA, "video_id": files.video_id})
    strict = SAVVideoDataset(sav_root, tmp_path / "cache", context_frames=2)
    with pytest.raises(CacheFileError, match="hold NaN or inf") as error:
        strict[0]
    assert str(target) in str(error.value)
    lenient = SAVVideoDataset(sav_root, tmp_path / "cache", context_frames=2, skip_bad_videos=True)
    with pytest.raises(ValueError, match="every video of the dataset failed"):
        lenient[0]
    assert str(target) in lenient.bad_videos[0].reason
