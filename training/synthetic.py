"""Synthetic SA-V-format data: MP4 videos + `_manual.json` files the SA-V reader accepts.

    python -m training.synthetic --out DIR --videos N --seed S [--val-fraction F] [--scene default-run]

Writes `DIR/train/sav_XXXXXX.{mp4,_manual.json}` and `DIR/val/...` (with `--val-fraction 0`
everything goes to `DIR/`). Videos are 24 fps, non-square, 48-90 frames (never a multiple
of 4); masks are annotated on every 4th frame like SA-V. Extra JSON fields, ignored by SA-V
tools: `masklet_category` (text prompt per masklet, e.g. "red circle"), `video_np_pairs` (SA-Co/VEval's
field: every phrase of the colour x shape vocabulary with its number of masklets, 0 for the
negatives, i.e. phrases of no object in the video),
`synthetic_degraded_frames` / `synthetic_degradation` (annotated indices whose video frame
was blurred or had an object dropped out, and how) and `synthetic_seed`.
Output is a function of (seed, video index) only.

``--scene default-run`` draws the scenes of the offline default run (``training.config.PipelineConfig.scene``:
3 colours x 3 shapes, 41-63 frames, larger objects): held-out videos for a model trained there, whose
concepts it has seen. The default, ``full``, is the generator's whole vocabulary (6 x 6), of which such a
model knows a quarter of the phrases.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from efficient_sam3.cli import ArgumentParser, fail, non_negative_int, positive_int
from efficient_sam3.files import atomic_path, check_creatable, write_json_atomic
from efficient_sam3.masks import encode_rle

from training.config import PipelineConfig
from training.data.sav import ANNOTATION_STRIDE, VIDEO_FPS
from training.synthetic_scene import (
    Scene,
    SceneConfig,
    degrade_frame,
    render_frame,
    render_object_mask,
    sample_scene,
)

DEFAULT_VAL_FRACTION = 0.25
DEFAULT_FOURCC = "mp4v"
SMALL_AREA, MEDIUM_AREA = 32**2, 96**2  # masklet_size_bucket thresholds (COCO style)


@dataclass(frozen=True)
class SyntheticVideo:
    video_id: str
    split: str
    video_path: Path
    json_path: Path


def generate_dataset(
    out_dir: Path | str,
    num_videos: int,
    seed: int,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    scene_config: SceneConfig = SceneConfig(),
    fourcc: str = DEFAULT_FOURCC,
    show_progress: bool = False,
) -> list[str]:
    """Write `num_videos` synthetic SA-V videos; returns their ids (sav_000001, ...) in order.

    With `val_fraction` > 0, round(num_videos * val_fraction) videos (at least one) go to
    `out_dir/val`, the rest to `out_dir/train`; with 0 all go to `out_dir`.
    """
    if num_videos <= 0:
        raise ValueError(f"num_videos must be positive, got {num_videos}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    out_dir = Path(out_dir)
    video_ids = [f"sav_{index + 1:06d}" for index in range(num_videos)]
    splits = _assign_splits(num_videos, seed, val_fraction)
    child_seeds = np.random.SeedSequence(seed).spawn(num_videos)
    for video_id, split, child_seed in tqdm(
        list(zip(video_ids, splits, child_seeds)), disable=not show_progress, unit="video", desc="synthetic"
    ):
        scene = sample_scene(np.random.default_rng(child_seed), scene_config)
        target_dir = out_dir if val_fraction == 0.0 else out_dir / split
        video_seed = int(child_seed.generate_state(1)[0])
        write_synthetic_video(scene, video_id, split, target_dir, video_seed, fourcc)
    return video_ids


def _assign_splits(num_videos: int, seed: int, val_fraction: float) -> list[str]:
    """"train" or "val" per video; a random round(num_videos * val_fraction) (at least 1) are "val"."""
    if val_fraction == 0.0:
        return ["train"] * num_videos
    num_val = min(max(1, int(round(num_videos * val_fraction))), num_videos - 1) if num_videos > 1 else 0
    val_positions = set(np.random.default_rng(seed).permutation(num_videos)[:num_val].tolist())
    return ["val" if index in val_positions else "train" for index in range(num_videos)]


def write_synthetic_video(
    scene: Scene, video_id: str, split: str, out_dir: Path, video_seed: int, fourcc: str = DEFAULT_FOURCC
) -> SyntheticVideo:
    """Render `scene`, write `<video_id>.mp4` and `<video_id>_manual.json` atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    degradation_at = {degradation.annotated_idx: degradation for degradation in scene.degradations}
    annotated_masks = []  # per annotated frame: bool [O, H, W] visible masks
    frames = []
    for frame_idx in range(scene.num_frames):
        frame, visible = render_frame(scene, frame_idx)
        if frame_idx % ANNOTATION_STRIDE == 0:
            annotated_idx = frame_idx // ANNOTATION_STRIDE
            annotated_masks.append(visible)
            if annotated_idx in degradation_at:
                degradation = degradation_at[annotated_idx]
                target = None
                if degradation.target_slot >= 0:
                    track = scene.objects[degradation.target_slot]
                    target = render_object_mask(track, frame_idx, scene.height, scene.width)
                frame = degrade_frame(frame, degradation, target)
        frames.append(frame)

    video_path = out_dir / f"{video_id}.mp4"
    json_path = out_dir / f"{video_id}_manual.json"
    _write_video_atomic(video_path, frames, fourcc)
    annotation = build_annotation(scene, video_id, split, np.stack(annotated_masks), video_seed)
    write_json_atomic(json_path, annotation)
    return SyntheticVideo(video_id=video_id, split=split, video_path=video_path, json_path=json_path)


def _write_video_atomic(video_path: Path, frames: list[np.ndarray], fourcc: str) -> None:
    """Write RGB frames at 24 fps, check that cv2 reads back every frame, then rename into place."""
    height, width = frames[0].shape[:2]

    def check_readable(temp_path: Path) -> None:
        capture = cv2.VideoCapture(str(temp_path))
        readable = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        capture.release()
        if readable != len(frames):
            raise RuntimeError(f"{video_path}: wrote {len(frames)} frames but cv2 reads back {readable}")

    with atomic_path(video_path, suffix=".mp4", verify=check_readable) as temp_path:  # cv2 needs the .mp4
        writer = cv2.VideoWriter(str(temp_path), cv2.VideoWriter_fourcc(*fourcc), VIDEO_FPS, (width, height))
        if not writer.isOpened():
            raise RuntimeError(f"{video_path}: cv2 cannot write fourcc {fourcc!r} videos on this machine")
        try:
            for frame in frames:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()


def build_annotation(
    scene: Scene, video_id: str, split: str, annotated_masks: np.ndarray, video_seed: int
) -> dict:
    """SA-V manual-annotation dict from visible masks bool [K, O, H, W].

    Objects never visible in an annotated frame are left out (SA-V has no empty masklets).
    """
    num_annotated, _, height, width = annotated_masks.shape
    areas = annotated_masks.reshape(num_annotated, len(scene.objects), -1).sum(axis=2)  # [K, O]
    kept = [slot for slot in range(len(scene.objects)) if areas[:, slot].any()]
    masklet = [
        [encode_rle(annotated_masks[annotated_idx, slot]) for slot in kept] for annotated_idx in range(num_annotated)
    ]
    visible = areas[:, kept] > 0  # [K, M]
    frame_counts = visible.sum(axis=0)
    mean_areas = [float(areas[visible[:, column], slot].mean()) for column, slot in enumerate(kept)]
    categories = [scene.objects[slot].category for slot in kept]
    return {
        "video_id": video_id,
        "video_duration": scene.num_frames / VIDEO_FPS,
        "video_frame_count": scene.num_frames,
        "video_height": height,
        "video_width": width,
        "video_resolution": height * width,
        "video_environment": "Synthetic",
        "video_split": split,
        "masklet": masklet,
        "masklet_id": list(range(len(kept))),
        "masklet_size_rel": [area / (height * width) for area in mean_areas],
        "masklet_size_abs": mean_areas,
        "masklet_size_bucket": [_size_bucket(area) for area in mean_areas],
        "masklet_visibility_changes": [int(np.count_nonzero(np.diff(column.astype(int)))) for column in visible.T],
        "masklet_first_appeared_frame": [int(np.argmax(column)) for column in visible.T],
        "masklet_frame_count": [int(count) for count in frame_counts],
        "masklet_edited_frame_count": [int(count) for count in frame_counts],
        "masklet_type": ["manual"] * len(kept),
        "masklet_stability_score": None,
        "masklet_num": len(kept),
        "masklet_category": [scene.objects[slot].category for slot in kept],
        # SA-Co/VEval's field, per video: each phrase to prompt and its number of masklets; 0 = negative
        # (a vocabulary phrase of no object in the scene).
        "video_np_pairs": [{"noun_phrase": phrase, "num_masklets": categories.count(phrase)}
                           for phrase in dict.fromkeys(categories + list(scene.absent_phrases))],
        "synthetic_degraded_frames": [degradation.annotated_idx for degradation in scene.degradations],
        "synthetic_degradation": [degradation.kind for degradation in scene.degradations],
        "synthetic_seed": video_seed,
    }


def _size_bucket(area: float) -> str:
    if area < SMALL_AREA:
        return "small"
    return "medium" if area < MEDIUM_AREA else "large"


def val_fraction(text: str) -> float:
    """argparse type of ``--val-fraction``: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} must be in [0, 1) (0 writes one flat folder)")
    return value


SCENES = ("full", "default-run")  # --scene


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description="Write synthetic SA-V-format videos and annotations.")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--videos", type=positive_int, required=True, help="number of videos")
    parser.add_argument("--seed", type=non_negative_int, required=True)
    parser.add_argument("--val-fraction", type=val_fraction, default=DEFAULT_VAL_FRACTION,
                        help="0 writes one flat folder")
    parser.add_argument("--scene", choices=SCENES, default="full",
                        help="full: the whole 6 x 6 vocabulary; default-run: the offline default run's scenes (3 x 3)")
    args = parser.parse_args(argv)
    scene = PipelineConfig().scene if args.scene == "default-run" else SceneConfig()
    try:
        check_creatable(args.out, "--out folder", folder=True)
        video_ids = generate_dataset(args.out, args.videos, args.seed, args.val_fraction, scene_config=scene,
                                     show_progress=True)
    except (OSError, ValueError) as error:
        return fail(error)
    print(f"wrote {len(video_ids)} videos to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
