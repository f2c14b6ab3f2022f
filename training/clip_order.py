"""The video stage's data order: which clip each process trains on at each position of an epoch.

A pure function of (clip keys, seed, epoch, rank, world size), so every process knows its order
without communication and a resumed run re-creates it exactly. Each process owns the videos
``sorted(video ids)[rank::world_size]`` and draws only their clips. With ``degraded_fraction`` set,
each position draws from the degraded query frames with that probability (from the clean ones
otherwise); both pools are walked in reshuffled passes, so clips repeat only after a full pass.
"""

from __future__ import annotations

import math

import numpy as np


def shard_videos(video_ids: list[str], rank: int, world_size: int) -> list[str]:
    """The videos process ``rank`` trains on."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside [0, {world_size})")
    return sorted(set(video_ids))[rank::world_size]


def samples_per_epoch(num_clips: int, world_size: int, clips_per_step: int, steps_per_epoch: int | None) -> int:
    """Clips each process sees per epoch: ``steps_per_epoch`` steps if given, otherwise one pass over
    an equal share of all clips, rounded down to whole steps (at least one step)."""
    if steps_per_epoch is not None:
        return steps_per_epoch * clips_per_step
    share = math.ceil(num_clips / world_size)
    return max(share // clips_per_step, 1) * clips_per_step


class _Pool:
    """Endless reshuffled passes over a list of clip indices."""

    def __init__(self, indices: list[int], rng: np.random.Generator) -> None:
        self._indices = indices
        self._rng = rng
        self._queue: list[int] = []

    def __bool__(self) -> bool:
        return bool(self._indices)

    def draw(self) -> int:
        if not self._queue:
            self._queue = [self._indices[i] for i in self._rng.permutation(len(self._indices))]
        return self._queue.pop()


def epoch_order(
    clip_keys: list[tuple[str, int]],
    degraded_keys: set[tuple[str, int]],
    length: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    degraded_fraction: float | None = None,
    allowed_videos: set[str] | None = None,
) -> list[int]:
    """Indices into ``clip_keys`` ((video_id, query annotated index) per clip) for one epoch of one process.

    ``degraded_keys``: clips whose query frame is degraded; ``allowed_videos`` restricts the videos
    (e.g. a debug run on a few clips) before sharding.
    """
    videos = [video_id for video_id, _ in clip_keys if allowed_videos is None or video_id in allowed_videos]
    mine = set(shard_videos(videos, rank, world_size))
    indices = [index for index, (video_id, _) in enumerate(clip_keys) if video_id in mine]
    if not indices:
        raise ValueError(f"process {rank} of {world_size} has no clips ({len(set(videos))} videos to share)")
    rng = np.random.default_rng([seed, epoch, rank])
    if degraded_fraction is None:
        pool = _Pool(indices, rng)
        return [pool.draw() for _ in range(length)]
    degraded = _Pool([i for i in indices if clip_keys[i] in degraded_keys], rng)
    clean = _Pool([i for i in indices if clip_keys[i] not in degraded_keys], rng)
    order = []
    for _ in range(length):
        take_degraded = rng.random() < degraded_fraction
        pool = degraded if (take_degraded and degraded) or not clean else clean
        order.append(pool.draw())
    return order
