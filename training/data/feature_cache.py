"""Teacher/student feature cache files: one safetensors file per video.

`<cache_dir>/<video_id>.safetensors`, written with safetensors.torch.save_file:
    features       float16 [N, 256, 18, 18]   FPN level 3 of each annotated frame
    frame_indices  int64   [N]                video frame numbers (0, 4, 8, ...), ascending
    metadata       {"video_id", "teacher", "image_size", "format_version"} (str -> str)

`training.cache_teacher` writes these files; `SAVVideoDataset` reads rows from them.

A header that checks out is not enough: a file can hold NaN or inf features (a teacher that overflowed,
a disk that flipped bits). `is_complete` (resuming a caching run) reads every row and takes such a file
as incomplete, so it is recomputed; `load_cached_features` checks the rows it returns and raises
`CacheFileError` naming the file and the frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from efficient_sam3 import contract
from efficient_sam3.files import atomic_path

FEATURE_CHANNELS = 256
# The cache holds the memory level (FPN level 3) of the default input size: 18 x 18 at 504 px.
CACHE_IMAGE_SIZE = contract.DEFAULT_IMAGE_SIZE
FEATURE_GRID = contract.memory_grid(CACHE_IMAGE_SIZE)
FORMAT_VERSION = "1"
CACHE_SUFFIX = ".safetensors"
BYTES_PER_FRAME = FEATURE_CHANNELS * FEATURE_GRID * FEATURE_GRID * 2  # float16: 165,888


class CacheFileError(ValueError):
    """A feature cache file that is missing, unreadable or inconsistent. The message names the file."""


@dataclass(frozen=True)
class CacheHeader:
    """What a valid cache file holds, without its features."""

    path: Path
    frame_indices: tuple[int, ...]
    metadata: dict[str, str]


def cache_path(cache_dir: Path | str, video_id: str) -> Path:
    return Path(cache_dir) / f"{video_id}{CACHE_SUFFIX}"


def read_cache_header(path: Path | str) -> CacheHeader:
    """Open a cache file and check its tensors' shapes and dtypes. Raises CacheFileError."""
    path = Path(path)
    if not path.is_file():
        raise CacheFileError(f"{path}: feature cache file is missing")
    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = set(handle.keys())
            if keys != {"features", "frame_indices"}:
                raise CacheFileError(f"{path}: expected tensors features and frame_indices, found {sorted(keys)}")
            metadata = handle.metadata() or {}
            features = handle.get_slice("features")
            feature_shape, feature_dtype = tuple(features.get_shape()), features.get_dtype()
            frame_indices = handle.get_tensor("frame_indices")
    except (SafetensorError, OSError, RuntimeError) as error:
        raise CacheFileError(f"{path}: unreadable cache file ({error})") from error
    expected_tail = (FEATURE_CHANNELS, FEATURE_GRID, FEATURE_GRID)
    if feature_dtype != "F16" or len(feature_shape) != 4 or feature_shape[1:] != expected_tail:
        raise CacheFileError(
            f"{path}: features are {feature_dtype} {list(feature_shape)}, expected F16 "
            f"[N, {FEATURE_CHANNELS}, {FEATURE_GRID}, {FEATURE_GRID}]"
        )
    if frame_indices.dtype != torch.int64 or tuple(frame_indices.shape) != (feature_shape[0],):
        raise CacheFileError(
            f"{path}: frame_indices is {frame_indices.dtype} {list(frame_indices.shape)}, expected int64 "
            f"[{feature_shape[0]}] (one per feature row)"
        )
    indices = tuple(int(value) for value in frame_indices.tolist())
    if any(later <= earlier for earlier, later in zip(indices, indices[1:])):
        raise CacheFileError(f"{path}: frame_indices are not strictly ascending")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CacheFileError(f"{path}: format_version {metadata.get('format_version')!r}, expected {FORMAT_VERSION!r}")
    return CacheHeader(path=path, frame_indices=indices, metadata=dict(metadata))


def load_cached_features(header: CacheHeader, frame_indices: list[int]) -> torch.Tensor:
    """float16 [len(frame_indices), 256, 18, 18] rows for the given video frames, in that order."""
    row_of = {frame_idx: row for row, frame_idx in enumerate(header.frame_indices)}
    missing = [frame_idx for frame_idx in frame_indices if frame_idx not in row_of]
    if missing:
        raise CacheFileError(f"{header.path}: frames {missing} are not in the cache")
    rows = [row_of[frame_idx] for frame_idx in frame_indices]
    if not rows:
        return torch.zeros(0, FEATURE_CHANNELS, FEATURE_GRID, FEATURE_GRID, dtype=torch.float16)
    try:
        with safe_open(str(header.path), framework="pt") as handle:
            features = handle.get_slice("features")
            if rows == list(range(rows[0], rows[0] + len(rows))):
                loaded = features[rows[0] : rows[0] + len(rows)]  # contiguous rows: one read
            else:
                loaded = torch.cat([features[row : row + 1] for row in rows])
    except (SafetensorError, OSError, RuntimeError) as error:
        raise CacheFileError(f"{header.path}: unreadable cache file ({error})") from error
    _check_finite(header.path, loaded, list(frame_indices))
    return loaded


def _check_finite(path: Path, features: torch.Tensor, frame_indices: list[int]) -> None:
    """Raise CacheFileError naming ``path`` and the frames whose rows of ``features`` [N, C, h, w] hold NaN/inf."""
    finite = torch.isfinite(features).flatten(1).all(dim=1)  # [N]
    if not bool(finite.all()):
        bad = [frame_indices[row] for row in torch.nonzero(~finite).flatten().tolist()]
        raise CacheFileError(f"{path}: features of frames {bad[:8]}{' ...' if len(bad) > 8 else ''} hold NaN or inf "
                             f"(a corrupt cache file: delete it and rerun training.cache_teacher)")


def check_cache_data(header: CacheHeader, rows_per_read: int = 64) -> None:
    """Read every feature row of a cache file (``rows_per_read`` at a time) and raise CacheFileError
    naming the file and the frames unless all are finite."""
    try:
        with safe_open(str(header.path), framework="pt") as handle:
            features = handle.get_slice("features")
            for start in range(0, len(header.frame_indices), rows_per_read):
                block = features[start : start + rows_per_read]
                _check_finite(header.path, block, list(header.frame_indices[start : start + rows_per_read]))
    except (SafetensorError, OSError, RuntimeError) as error:
        raise CacheFileError(f"{header.path}: unreadable cache file ({error})") from error


def write_cache_file(path: Path, features: torch.Tensor, frame_indices: list[int], metadata: dict[str, str]) -> int:
    """Atomically write one cache file; returns its size in bytes."""
    features = features.to("cpu", torch.float16).contiguous()
    indices = torch.tensor(frame_indices, dtype=torch.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temp:
        save_file({"features": features, "frame_indices": indices}, str(temp), metadata=metadata)
    return path.stat().st_size


def is_complete(path: Path, video_id: str, frame_indices: list[int], teacher_identity: str, image_size: int) -> bool:
    """Whether `path` already holds this video's features from this teacher, all of them finite."""
    try:
        header = read_cache_header(path)
        matches = (
            list(header.frame_indices) == list(frame_indices)
            and header.metadata.get("video_id") == video_id
            and header.metadata.get("teacher") == teacher_identity
            and header.metadata.get("image_size") == str(image_size)
        )
        if matches:
            check_cache_data(header)
    except CacheFileError:
        return False
    return matches
