import numpy as np
import pytest

from efficient_sam3.memory_ring import (
    EMPTY_SLOT,
    context_frame_indices,
    empty_memory,
    is_memory_frame,
    memory_window,
    push_memory,
)


def _feature(value: float) -> np.ndarray:
    return np.full((256, 18, 18), value, np.float32)


def test_empty_memory_is_fixed_size_and_masked():
    ring = empty_memory(8)
    assert ring.features.shape == (8, 256, 18, 18) and ring.features.dtype == np.float32
    assert ring.mask.dtype == bool and not ring.mask.any()
    assert (ring.frame_indices == EMPTY_SLOT).all()
    features, mask = memory_window(ring)
    assert features.shape == (1, 8, 256, 18, 18) and mask.shape == (1, 8)


def test_push_fills_from_the_last_slot_and_evicts_the_oldest():
    ring = empty_memory(3)
    for frame in (0, 4, 8):
        ring = push_memory(ring, _feature(frame), frame)
    assert ring.frame_indices.tolist() == [0, 4, 8] and ring.mask.all()
    first = ring
    ring = push_memory(ring, _feature(12)[None], 12)  # [1, C, G, G] is accepted too
    assert ring.frame_indices.tolist() == [4, 8, 12]
    assert [float(ring.features[t, 0, 0, 0]) for t in range(3)] == [4.0, 8.0, 12.0]
    assert ring.nbytes == first.nbytes
    # pure: the previous ring is untouched
    assert first.frame_indices.tolist() == [0, 4, 8] and float(first.features[0, 0, 0, 0]) == 0.0


def test_partial_ring_keeps_empty_slots_low_and_zero():
    ring = push_memory(push_memory(empty_memory(4), _feature(1), 0), _feature(2), 4)
    assert ring.mask.tolist() == [False, False, True, True]
    assert ring.frame_indices.tolist() == [EMPTY_SLOT, EMPTY_SLOT, 0, 4]
    assert not ring.features[:2].any()


def test_push_rejects_wrong_shapes_and_out_of_order_frames():
    ring = push_memory(empty_memory(2), _feature(0), 4)
    with pytest.raises(ValueError, match="memory feature must be"):
        push_memory(ring, np.zeros((256, 9, 9), np.float32), 8)
    with pytest.raises(ValueError, match="in order"):
        push_memory(ring, _feature(0), 4)


def test_memory_frames_follow_the_stride():
    assert [i for i in range(13) if is_memory_frame(i, 4)] == [0, 4, 8, 12]
    assert context_frame_indices(0, 4, 8) == []
    assert context_frame_indices(5, 2, 2) == [2, 4]
    assert context_frame_indices(4, 4, 8) == [0]
    assert context_frame_indices(5, 4, 8) == [0, 4]


def test_sav_alignment_query_frame_sees_the_t_annotated_frames_before_it():
    # Training context for annotated index q: annotated q-T .. q-1 == video frames 4(q-T) .. 4(q-1).
    for q in range(20):
        expected = [4 * k for k in range(max(0, q - 8), q)]
        assert context_frame_indices(4 * q, 4, 8) == expected
