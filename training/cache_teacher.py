"""Cache teacher FPN level 3 features for every annotated frame of an SA-V folder.

    python -m training.cache_teacher --sav-root DIR --out DIR --teacher CKPT_DIR \
        [--image-size 504] [--batch-size 4] [--device cuda] [--dtype auto] [--num-shards K --shard-index I]

One file per video, `<out>/<video_id>.safetensors` (safetensors.torch.save_file):
    features       float16 [N, 256, 18, 18]   N = number of annotated frames
    frame_indices  int64   [N]                video frame numbers 0, 4, 8, ... ascending
    metadata       {"video_id", "teacher", "image_size", "format_version"}

Resumable: a complete file (right shapes, dtypes, frames and teacher, every feature finite) is skipped,
anything else is recomputed; files are written to a temp name and renamed into place
(``efficient_sam3.files``), so Ctrl-C or SIGTERM keeps the videos cached so far and leaves no partial
file: rerunning the same command continues. Bad input (flags, teacher, an SA-V root without videos) is
one ``error:`` line and exit 2 (``efficient_sam3.cli``); a run with failed videos exits 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from efficient_sam3.cli import INTERRUPTED_EXIT, ArgumentParser, fail, non_negative_int, positive_int, \
    sigterm_as_interrupt
from efficient_sam3.contract import preprocess_frame
from efficient_sam3.files import check_creatable
from training.data.feature_cache import (
    BYTES_PER_FRAME,
    CACHE_IMAGE_SIZE,
    FEATURE_GRID,
    FORMAT_VERSION,
    CacheFileError,
    cache_path,
    is_complete,
    write_cache_file,
)
from training.data.sav import (
    SAVAnnotation,
    SAVFormatError,
    VideoFrameReader,
    check_video_matches,
    find_videos,
    load_annotation,
)
from training.distributed import device_flag
from training.teacher import Teacher, load_teacher
from training.cpu_allocator import keep_freed_memory_mapped

COMPUTE_DTYPES = {"auto": None, "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(frozen=True)
class CacheConfig:
    sav_root: Path
    out_dir: Path
    teacher: Path
    image_size: int = 504
    batch_size: int = 4
    device: str = "cpu"
    dtype: str = "auto"  # compute dtype: auto (float16 on CUDA, float32 elsewhere), float16, bfloat16, float32
    num_shards: int = 1
    shard_index: int = 0
    annotation_type: str = "manual"
    show_progress: bool = True


@dataclass
class CacheSummary:
    """Outcome of one caching run. `failed` holds (video_id, reason)."""

    teacher: str
    cached: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    frames_written: int = 0
    bytes_written: int = 0
    seconds: float = 0.0

    @property
    def frames_per_second(self) -> float:
        """Encoded (not skipped) frames per second of wall time, decoding and writing included."""
        return self.frames_written / self.seconds if self.seconds > 0 else 0.0

    @property
    def bytes_per_frame(self) -> float:
        """Measured file bytes per cached frame (features + indices + header)."""
        return self.bytes_written / self.frames_written if self.frames_written else 0.0

    @property
    def overhead_bytes_per_frame(self) -> float:
        return self.bytes_per_frame - BYTES_PER_FRAME if self.frames_written else 0.0


def cache_features(config: CacheConfig) -> CacheSummary:
    """Cache every video of this shard; bad videos are reported in the summary, not raised."""
    if not 0 <= config.shard_index < config.num_shards:
        raise ValueError(f"shard_index {config.shard_index} must be in [0, {config.num_shards})")
    if config.batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {config.batch_size}")
    if config.image_size != CACHE_IMAGE_SIZE:
        raise ValueError(f"image_size {config.image_size}: the cache stores {FEATURE_GRID} x {FEATURE_GRID} "
                         f"features, which only {CACHE_IMAGE_SIZE} px input gives")
    if config.dtype not in COMPUTE_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(COMPUTE_DTYPES)}, got {config.dtype!r}")
    all_videos = find_videos(config.sav_root, config.annotation_type)
    if not all_videos:
        raise ValueError(f"{config.sav_root}: no SA-V videos (*.mp4 with *_{config.annotation_type}.json) "
                         f"in this folder or below it")
    videos = all_videos[config.shard_index :: config.num_shards]
    teacher = load_teacher(config.teacher, config.image_size, config.device, COMPUTE_DTYPES[config.dtype])
    summary = CacheSummary(teacher=teacher.identity)
    started = time.perf_counter()
    progress = tqdm(videos, unit="video", disable=not config.show_progress, desc="cache_teacher")
    for files in progress:
        target = cache_path(config.out_dir, files.video_id)
        try:
            annotation = load_annotation(files.json_path)
            frame_indices = annotation.annotated_frame_indices()
            if is_complete(target, files.video_id, frame_indices, teacher.identity, config.image_size):
                summary.skipped.append(files.video_id)
                continue
            features = _encode_video(teacher, files.video_path, annotation, frame_indices, config)
        except (SAVFormatError, CacheFileError, FloatingPointError) as error:
            summary.failed.append((files.video_id, str(error)))
            continue
        metadata = {
            "video_id": files.video_id,
            "teacher": teacher.identity,
            "image_size": str(config.image_size),
            "format_version": FORMAT_VERSION,
        }
        summary.bytes_written += write_cache_file(target, features, frame_indices, metadata)
        summary.frames_written += len(frame_indices)
        summary.cached.append(files.video_id)
        summary.seconds = time.perf_counter() - started
        progress.set_postfix(frames_per_s=f"{summary.frames_per_second:.1f}", failed=len(summary.failed))
    summary.seconds = time.perf_counter() - started
    return summary


def _encode_video(
    teacher: Teacher, video_path: Path, annotation: SAVAnnotation, frame_indices: list[int], config: CacheConfig
) -> torch.Tensor:
    """float16 [N, 256, 18, 18] for the annotated frames, decoded in order and encoded in batches."""
    batches = []
    with VideoFrameReader(video_path, (annotation.height, annotation.width)) as reader:
        check_video_matches(reader, annotation)
        for start in range(0, len(frame_indices), config.batch_size):
            frames = reader.read_frames(frame_indices[start : start + config.batch_size])
            pixels = np.stack([preprocess_frame(frame, config.image_size) for frame in frames])  # [B, 3, S, S]
            batches.append(teacher.encode(torch.from_numpy(pixels)).to("cpu", torch.float16))
    features = torch.cat(batches)
    if not torch.isfinite(features).all():
        raise FloatingPointError(
            f"{video_path}: teacher features overflow float16 (computed in {teacher.dtype}); "
            f"try --dtype bfloat16 or float32"
        )
    return features


def format_summary(summary: CacheSummary) -> str:
    lines = [
        f"teacher {summary.teacher}: cached {len(summary.cached)}, skipped {len(summary.skipped)}, "
        f"failed {len(summary.failed)}",
        f"encoded {summary.frames_written} frames in {summary.seconds:.1f} s "
        f"({summary.frames_per_second:.2f} frames/s)",
    ]
    if summary.frames_written:
        lines.append(
            f"file size {summary.bytes_per_frame:.0f} B/frame = {BYTES_PER_FRAME} B features "
            f"+ {summary.overhead_bytes_per_frame:.0f} B overhead"
        )
    lines.extend(f"FAILED {video_id}: {reason}" for video_id, reason in summary.failed)
    return "\n".join(lines)


def cache_image_size(text: str) -> int:
    """argparse type of ``--image-size``: the one size whose features fit the cache."""
    size = positive_int(text)
    if size != CACHE_IMAGE_SIZE:
        raise argparse.ArgumentTypeError(f"{size} is not supported: the cache stores {FEATURE_GRID} x {FEATURE_GRID} "
                                         f"features, which only --image-size {CACHE_IMAGE_SIZE} gives")
    return size


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sav-root", type=Path, required=True, help="SA-V train-layout folder")
    parser.add_argument("--out", type=Path, required=True, help="cache folder (<video_id>.safetensors)")
    parser.add_argument(
        "--teacher", type=Path, required=True, help="Meta's sam3.pt, or a SAM3 (transformers) / EfficientSAM3 checkpoint dir"
    )
    parser.add_argument("--image-size", type=cache_image_size, default=CACHE_IMAGE_SIZE,
                        help=f"input size (only {CACHE_IMAGE_SIZE}: the cache holds {FEATURE_GRID} x {FEATURE_GRID} grids)")
    parser.add_argument("--batch-size", type=positive_int, default=4)
    parser.add_argument("--device", type=device_flag, default="cpu", help="cpu or cuda[:N]")
    parser.add_argument(
        "--dtype", choices=sorted(COMPUTE_DTYPES), default="auto", help="compute dtype; auto: float16 on CUDA"
    )
    parser.add_argument("--num-shards", type=positive_int, default=1)
    parser.add_argument("--shard-index", type=non_negative_int, default=0)
    parser.add_argument("--annotation-type", choices=("manual", "auto"), default="manual")
    args = parser.parse_args(argv)
    if args.shard_index >= args.num_shards:
        parser.error(f"--shard-index: {args.shard_index} must be below --num-shards ({args.num_shards})")
    sigterm_as_interrupt()
    keep_freed_memory_mapped()
    config = CacheConfig(
        sav_root=args.sav_root,
        out_dir=args.out,
        teacher=args.teacher,
        image_size=args.image_size,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        num_shards=args.num_shards,
        shard_index=args.shard_index,
        annotation_type=args.annotation_type,
        show_progress=sys.stderr.isatty(),  # no progress bar in logs: stderr keeps error lines whole
    )
    try:
        check_creatable(args.out, "--out cache folder", folder=True)
        summary = cache_features(config)
    except (OSError, ValueError) as error:  # a teacher, SA-V root or output that cannot be used
        return fail(error)
    except KeyboardInterrupt:
        print(f"interrupted: {args.out} keeps the videos cached so far; rerun the same command to continue",
              file=sys.stderr)
        return INTERRUPTED_EXIT
    print(format_summary(summary))
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
