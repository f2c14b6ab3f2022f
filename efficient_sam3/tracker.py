"""Object ids across frames: match each frame's detections to live tracks by mask IoU (Hungarian).

Per prompt, the detections of a frame are matched one-to-one to the live tracks of the same prompt,
maximising the total IoU between a detection's mask and the track's last known mask; a pair counts
only when its IoU is at least ``min_iou``. A matched detection takes the track's id, an unmatched one
starts a new track with a new id (ids are unique over all prompts and never reused), and a track that
goes unmatched for more than ``max_missed_frames`` consecutive frames is retired.

Masks may have any resolution as long as it is the same for every frame; the session passes the
model's [144, 144] masks (the frame resized per axis keeps IoU), so association cost does not grow
with the frame size. Pure functions over frozen dataclasses (numpy + scipy only), tested on their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class TrackerConfig:
    min_iou: float = 0.3
    max_missed_frames: int = 8

    def __post_init__(self) -> None:
        if not 0.0 < self.min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {self.min_iou}")
        if self.max_missed_frames < 0:
            raise ValueError(f"max_missed_frames must be >= 0, got {self.max_missed_frames}")


@dataclass(frozen=True)
class Track:
    """A live object: ``mask`` [H, W] bool is its last matched mask; ``missed`` counts the consecutive
    frames since it was last matched."""

    obj_id: int
    prompt: str
    mask: np.ndarray
    missed: int = 0


@dataclass(frozen=True)
class TrackerState:
    tracks: tuple[Track, ...] = ()
    next_id: int = 1


def mask_iou_matrix(masks_a: list[np.ndarray], masks_b: list[np.ndarray]) -> np.ndarray:
    """IoU between every pair of equally sized bool masks [H, W] -> [len(a), len(b)] float64."""
    if not masks_a or not masks_b:
        return np.zeros((len(masks_a), len(masks_b)))
    flat_a = np.stack([m.reshape(-1) for m in masks_a]).astype(np.float32)  # [A, H*W]
    flat_b = np.stack([m.reshape(-1) for m in masks_b]).astype(np.float32)  # [B, H*W]
    intersection = (flat_a @ flat_b.T).astype(np.float64)  # [A, B]
    union = flat_a.sum(1, dtype=np.float64)[:, None] + flat_b.sum(1, dtype=np.float64)[None, :] - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1.0), 0.0)


def _match(track_masks: list[np.ndarray], det_masks: list[np.ndarray], min_iou: float) -> dict[int, int]:
    """Hungarian matching -> {detection index: track index} for pairs with IoU >= min_iou."""
    iou = mask_iou_matrix(det_masks, track_masks)  # [D, T]
    if iou.size == 0:
        return {}
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return {int(r): int(c) for r, c in zip(rows, cols) if iou[r, c] >= min_iou}


def update_tracks(
    state: TrackerState, prompts: list[str], masks: list[np.ndarray], config: TrackerConfig
) -> tuple[TrackerState, list[int]]:
    """One frame of association.

    prompts[i], masks[i] ([H, W] bool): the prompt and mask of detection ``i``.
    Returns the new state and the object id of each detection (aligned with ``masks``).
    """
    if len(prompts) != len(masks):
        raise ValueError(f"{len(prompts)} prompts but {len(masks)} masks")
    obj_ids: list[int | None] = [None] * len(masks)
    matched_tracks: dict[int, np.ndarray] = {}  # track index -> new mask
    for prompt in dict.fromkeys(prompts):  # each prompt once, in order of first appearance
        det_index = [i for i, p in enumerate(prompts) if p == prompt]
        track_index = [t for t, track in enumerate(state.tracks) if track.prompt == prompt]
        pairs = _match([state.tracks[t].mask for t in track_index], [masks[i] for i in det_index], config.min_iou)
        for d, t in pairs.items():
            obj_ids[det_index[d]] = state.tracks[track_index[t]].obj_id
            matched_tracks[track_index[t]] = masks[det_index[d]]

    tracks = []
    for index, track in enumerate(state.tracks):
        if index in matched_tracks:
            tracks.append(Track(track.obj_id, track.prompt, matched_tracks[index], missed=0))
        elif track.missed + 1 <= config.max_missed_frames:
            tracks.append(Track(track.obj_id, track.prompt, track.mask, missed=track.missed + 1))
    next_id = state.next_id
    for i, obj_id in enumerate(obj_ids):
        if obj_id is None:
            obj_ids[i] = next_id
            tracks.append(Track(next_id, prompts[i], masks[i], missed=0))
            next_id += 1
    return TrackerState(tracks=tuple(tracks), next_id=next_id), [int(i) for i in obj_ids]
