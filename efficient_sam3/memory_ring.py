"""The memory ring of one video stream: the last T level-3 features, in the slot convention of
``efficient_sam3.contract`` (slot T-1 is the most recent frame, empty slots sit at the low indices).

Numpy only, fixed size (memory use does not grow with the video). The runtime's stream state and the
int8 ONNX export's calibration both write memory through these functions, so the policy is one:
frame ``i`` is decoded with the memory of the frames written before it; then, when
``i % memory_stride == 0``, its own level-3 feature is written (shift left, write at T-1). With
``memory_stride = 4`` on a 24 fps video the written frames are 0, 4, 8, ... (the 6 fps SA-V annotation
grid), so a query frame ``4q`` sees frames ``4(q-T) .. 4(q-1)``: the training context.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EMPTY_SLOT = -1


@dataclass(frozen=True)
class MemoryRing:
    """features [T, C, G, G] float32 (zeros in empty slots); mask [T] bool (True = valid);
    frame_indices [T] int64 (stream index held by each slot, -1 = empty)."""

    features: np.ndarray
    mask: np.ndarray
    frame_indices: np.ndarray

    @property
    def context_frames(self) -> int:
        return int(self.mask.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.features.nbytes + self.mask.nbytes + self.frame_indices.nbytes)


def empty_memory(context_frames: int, channels: int = 256, grid: int = 18) -> MemoryRing:
    """A ring with every slot empty and masked False."""
    if context_frames <= 0:
        raise ValueError(f"context_frames must be positive, got {context_frames}")
    return MemoryRing(
        features=np.zeros((context_frames, channels, grid, grid), dtype=np.float32),
        mask=np.zeros(context_frames, dtype=bool),
        frame_indices=np.full(context_frames, EMPTY_SLOT, dtype=np.int64),
    )


def push_memory(ring: MemoryRing, feature: np.ndarray, frame_index: int) -> MemoryRing:
    """Write ``feature`` [C, G, G] (or [1, C, G, G]) as the most recent slot; the oldest slot is evicted.

    Returns a new ring; ``ring`` is left unchanged.
    """
    expected = ring.features.shape[1:]
    if feature.shape == (1, *expected):
        feature = feature[0]
    if feature.shape != expected:
        raise ValueError(f"memory feature must be {list(expected)}, got {list(feature.shape)}")
    if ring.mask[-1] and frame_index <= ring.frame_indices[-1]:
        raise ValueError(f"memory frames must be written in order: {frame_index} after {ring.frame_indices[-1]}")
    features = np.empty_like(ring.features)
    features[:-1] = ring.features[1:]  # shift left: slot t takes slot t+1
    features[-1] = feature
    mask = np.concatenate([ring.mask[1:], np.ones(1, dtype=bool)])
    frame_indices = np.concatenate([ring.frame_indices[1:], np.array([frame_index], dtype=np.int64)])
    return MemoryRing(features=features, mask=mask, frame_indices=frame_indices)


def memory_window(ring: MemoryRing) -> tuple[np.ndarray, np.ndarray]:
    """The decoder's memory inputs with a batch of one: features [1, T, C, G, G] f32, mask [1, T] bool."""
    return ring.features[None], ring.mask[None]


def is_memory_frame(frame_index: int, memory_stride: int) -> bool:
    """Whether stream frame ``frame_index`` is written into memory after it is decoded."""
    return frame_index % memory_stride == 0


def context_frame_indices(frame_index: int, memory_stride: int, context_frames: int) -> list[int]:
    """Stream indices in memory when frame ``frame_index`` is decoded, oldest first (slot order of the
    valid slots): the last ``context_frames`` memory frames strictly before it."""
    if memory_stride <= 0:
        raise ValueError(f"memory_stride must be positive, got {memory_stride}")
    written = range(0, frame_index, memory_stride)  # memory frames before this one
    return list(written[-context_frames:]) if context_frames > 0 else []
