import numpy as np
import pytest

from efficient_sam3.tracker import TrackerConfig, TrackerState, mask_iou_matrix, update_tracks


def _box(x: int, y: int, side: int = 10, size=(40, 60)) -> np.ndarray:
    mask = np.zeros(size, dtype=bool)
    mask[y:y + side, x:x + side] = True
    return mask


def test_iou_matrix():
    a, b = _box(0, 0), _box(5, 0)
    iou = mask_iou_matrix([a, b], [a, np.zeros_like(a)])
    assert iou.shape == (2, 2)
    assert iou[0, 0] == 1.0 and iou[1, 1] == 0.0
    assert iou[1, 0] == pytest.approx(50 / 150)
    assert mask_iou_matrix([], [a]).shape == (0, 1)


def test_ids_follow_moving_objects_and_new_objects_get_new_ids():
    config = TrackerConfig()
    state, ids = update_tracks(TrackerState(), ["p", "p"], [_box(0, 0), _box(40, 20)], config)
    assert ids == [1, 2]
    # detections listed in the other order, both moved by 2 px
    state, ids = update_tracks(state, ["p", "p"], [_box(42, 20), _box(2, 0)], config)
    assert ids == [2, 1]
    state, ids = update_tracks(state, ["p", "p", "p"], [_box(4, 0), _box(44, 20), _box(20, 25)], config)
    assert ids == [1, 2, 3] and state.next_id == 4


def test_low_iou_does_not_match_and_prompts_never_share_ids():
    config = TrackerConfig(min_iou=0.3)
    state, ids = update_tracks(TrackerState(), ["a"], [_box(0, 0)], config)
    state, ids = update_tracks(state, ["a"], [_box(6, 0)], config)  # IoU 40/160 = 0.25 < 0.3
    assert ids == [2]
    state, ids = update_tracks(state, ["b"], [_box(6, 0)], config)  # same mask, other prompt
    assert ids == [3]


def test_hungarian_maximises_total_iou():
    config = TrackerConfig(min_iou=0.1)
    state, _ = update_tracks(TrackerState(), ["p", "p"], [_box(0, 0), _box(8, 0)], config)
    # greedy would give the first detection (overlapping both tracks) to track 2 (higher IoU) and strand track 1
    state, ids = update_tracks(state, ["p", "p"], [_box(5, 0), _box(12, 0)], config)
    assert ids == [1, 2]


def test_tracks_retire_after_max_missed_frames():
    config = TrackerConfig(max_missed_frames=2)
    state, _ = update_tracks(TrackerState(), ["p"], [_box(0, 0)], config)
    for _ in range(2):
        state, _ = update_tracks(state, [], [], config)
    assert [t.missed for t in state.tracks] == [2]
    state, ids = update_tracks(state, ["p"], [_box(0, 0)], config)  # back within the allowance
    assert ids == [1]
    for _ in range(3):
        state, _ = update_tracks(state, [], [], config)
    assert state.tracks == ()
    state, ids = update_tracks(state, ["p"], [_box(0, 0)], config)
    assert ids == [2]


def test_config_and_argument_checks():
    with pytest.raises(ValueError):
        TrackerConfig(min_iou=0.0)
    with pytest.raises(ValueError):
        TrackerConfig(max_missed_frames=-1)
    with pytest.raises(ValueError, match="prompts"):
        update_tracks(TrackerState(), ["p"], [], TrackerConfig())
