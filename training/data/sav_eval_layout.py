"""SA-V val/test layout reader (and a writer that converts train-layout videos to it).

Layout, as SA-V ships sav_val / sav_test:

    <root>/JPEGImages_24fps/<video_id>/<frame:05d>.jpg            every video frame, 24 fps
    <root>/Annotations_6fps/<video_id>/<obj_id:03d>/<frame:05d>.png  one binary mask per object,
                                                                    every 4th frame (6 fps)

Frame names are video frame numbers, so annotated PNGs must sit on multiples of 4. Frames are listed
and read by ``efficient_sam3.frames`` (the runtime's frame-folder rule), masks by
``training.masklet_io.read_mask_png`` (SA-V's official evaluator's rule: pixels > 0 are the object).
A PNG that is absent for an object at an annotated frame means the object is absent (for reading;
SA-V's official evaluator instead scores each object only at its own PNGs, and `write_eval_layout`
writes an empty PNG wherever an object is absent).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from efficient_sam3.frames import frame_files, read_frame_file
from efficient_sam3.sav_png import frame_file_name, object_dir_name, write_mask_png
from training.data.sav import (
    ANNOTATION_STRIDE,
    SAVFormatError,
    VideoFrameReader,
    check_video_matches,
    find_videos,
    load_annotation,
)
from training.masklet_io import read_mask_png

FRAMES_DIR = "JPEGImages_24fps"
ANNOTATIONS_DIR = "Annotations_6fps"
JPEG_QUALITY = 95


@dataclass(frozen=True)
class EvalVideo:
    """One video of the val/test layout.

    `frame_indices`: every JPEG frame number, ascending; `frame_files`: their files. `annotated_frames`:
    frame numbers with at least one PNG, ascending, all multiples of 4. `obj_ids`: object folder numbers.
    """

    video_id: str
    frame_dir: Path
    annotation_dir: Path
    frame_indices: tuple[int, ...]
    frame_files: tuple[Path, ...]
    annotated_frames: tuple[int, ...]
    obj_ids: tuple[int, ...]

    def frame_path(self, frame_idx: int) -> Path:
        if frame_idx not in self.frame_indices:
            raise SAVFormatError(f"{self.frame_dir}: no JPEG of frame {frame_idx}")
        return self.frame_files[self.frame_indices.index(frame_idx)]

    def mask_path(self, obj_id: int, frame_idx: int) -> Path:
        return self.annotation_dir / object_dir_name(obj_id) / frame_file_name(frame_idx)


def list_eval_videos(root: Path | str) -> list[EvalVideo]:
    """All videos under `root`, sorted by id. Raises SAVFormatError on a broken layout."""
    root = Path(root)
    frames_root, annotations_root = root / FRAMES_DIR, root / ANNOTATIONS_DIR
    for folder in (frames_root, annotations_root):
        if not folder.is_dir():
            raise SAVFormatError(f"{folder}: missing folder of the SA-V val/test layout")
    videos = []
    for frame_dir in sorted(path for path in frames_root.iterdir() if path.is_dir()):
        videos.append(_scan_video(frame_dir, annotations_root / frame_dir.name))
    return videos


def _scan_video(frame_dir: Path, annotation_dir: Path) -> EvalVideo:
    files = [path for _, path in frame_files(frame_dir)]
    if not files:
        raise SAVFormatError(f"{frame_dir}: no JPEG frames")
    frame_indices = [_frame_number(path) for path in files]
    if not annotation_dir.is_dir():
        raise SAVFormatError(f"{annotation_dir}: missing annotation folder for video {frame_dir.name}")
    obj_ids, annotated = [], set()
    for obj_dir in sorted(path for path in annotation_dir.iterdir() if path.is_dir()):
        if not obj_dir.name.isdigit():
            raise SAVFormatError(f"{obj_dir}: object folders must be numbers like 000")
        obj_ids.append(int(obj_dir.name))
        for png in obj_dir.glob("*.png"):
            frame_idx = _frame_number(png)
            if frame_idx % ANNOTATION_STRIDE != 0:
                raise SAVFormatError(f"{png}: annotated frame {frame_idx} is not a multiple of {ANNOTATION_STRIDE}")
            annotated.add(frame_idx)
    missing = sorted(annotated - set(frame_indices))
    if missing:
        raise SAVFormatError(f"{annotation_dir}: masks for frames {missing[:5]} have no JPEG in {frame_dir}")
    return EvalVideo(
        video_id=frame_dir.name,
        frame_dir=frame_dir,
        annotation_dir=annotation_dir,
        frame_indices=tuple(frame_indices),
        frame_files=tuple(files),
        annotated_frames=tuple(sorted(annotated)),
        obj_ids=tuple(obj_ids),
    )


def _frame_number(path: Path) -> int:
    if not path.stem.isdigit():
        raise SAVFormatError(f"{path}: file name is not a frame number")
    return int(path.stem)


def read_eval_frame(video: EvalVideo, frame_idx: int) -> np.ndarray:
    """RGB uint8 [H, W, 3] of one JPEG frame."""
    return cv2.cvtColor(read_frame_file(video.frame_path(frame_idx), frame_idx), cv2.COLOR_BGR2RGB)


def read_eval_masks(video: EvalVideo, frame_idx: int, height: int, width: int) -> tuple[list[int], np.ndarray]:
    """Masks of every object at an annotated frame: (obj_ids, bool [N, H, W]).

    Objects without a PNG at this frame get an empty mask. Nonzero PNG pixels are foreground
    (``read_mask_png``; its errors come as ``SAVFormatError``).
    """
    if frame_idx % ANNOTATION_STRIDE != 0:
        raise ValueError(f"{video.video_id}: frame {frame_idx} is not an annotated frame (stride {ANNOTATION_STRIDE})")
    masks = np.zeros((len(video.obj_ids), height, width), dtype=bool)
    for row, obj_id in enumerate(video.obj_ids):
        path = video.mask_path(obj_id, frame_idx)
        if not path.exists():
            continue
        try:
            mask = read_mask_png(path)
        except ValueError as error:
            raise SAVFormatError(str(error)) from None
        if mask.shape != (height, width):
            raise SAVFormatError(f"{path}: mask is {mask.shape[0]}x{mask.shape[1]}, frame is {height}x{width}")
        masks[row] = mask
    return list(video.obj_ids), masks


def write_eval_layout(sav_dir: Path | str, out_root: Path | str, annotation_type: str = "manual") -> list[str]:
    """Convert every train-layout video under `sav_dir` to the val/test layout under `out_root`.

    Object folders are named by `masklet_id`; every object gets a PNG at every annotated frame
    (empty where it is absent), as SA-V val/test does, so SA-V's official evaluator scores the
    same frames as the train-layout JSON. Returns the converted video ids.
    """
    out_root = Path(out_root)
    written = []
    for files in find_videos(sav_dir, annotation_type):
        annotation = load_annotation(files.json_path)
        frame_dir = out_root / FRAMES_DIR / files.video_id
        annotation_dir = out_root / ANNOTATIONS_DIR / files.video_id
        frame_dir.mkdir(parents=True, exist_ok=True)
        with VideoFrameReader(files.video_path, (annotation.height, annotation.width)) as reader:
            check_video_matches(reader, annotation)
            for frame_idx in range(reader.frame_count):
                frame_bgr = cv2.cvtColor(reader.read_frame(frame_idx), cv2.COLOR_RGB2BGR)
                jpeg_path = frame_dir / f"{frame_idx:05d}.jpg"
                cv2.imwrite(str(jpeg_path), frame_bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        for obj_id in annotation.obj_ids:
            (annotation_dir / object_dir_name(obj_id)).mkdir(parents=True, exist_ok=True)
        for annotated_idx in range(annotation.num_annotated_frames):
            frame_idx = annotation.video_frame(annotated_idx)
            slots = list(range(annotation.num_objects))  # empty PNGs too, as SA-V val/test ships them
            for slot, mask in zip(slots, annotation.decode_masks(annotated_idx, slots)):
                write_mask_png(annotation_dir / object_dir_name(annotation.obj_ids[slot]) / frame_file_name(frame_idx),
                               mask)
        written.append(files.video_id)
    return written
