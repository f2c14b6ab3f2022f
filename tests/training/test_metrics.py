"""J&F metric against hand-made masks."""

import numpy as np
import pytest

from training.metrics import (
    assign_predictions,
    boundary_f_measure,
    boundary_map,
    boundary_radius,
    evaluated_frames,
    region_similarity,
    score_concept_video,
    score_video,
)


def _square(top: int, left: int, size: int = 20, shape: tuple[int, int] = (100, 100)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


EMPTY = np.zeros((100, 100), dtype=bool)


def test_empty_empty_is_perfect():
    assert region_similarity(EMPTY, EMPTY) == 1.0
    assert boundary_f_measure(EMPTY, EMPTY) == 1.0


def test_one_side_empty_scores_zero():
    square = _square(20, 20)
    assert region_similarity(EMPTY, square) == 0.0
    assert region_similarity(square, EMPTY) == 0.0
    assert boundary_f_measure(EMPTY, square) == 0.0
    assert boundary_f_measure(square, EMPTY) == 0.0


def test_identical_masks_are_perfect():
    square = _square(20, 20)
    assert region_similarity(square, square.copy()) == 1.0
    assert boundary_f_measure(square, square.copy()) == 1.0


def test_region_similarity_of_shifted_square():
    # 20x20 squares shifted by 1 column: intersection 20*19 = 380, union 420.
    assert region_similarity(_square(20, 21), _square(20, 20)) == pytest.approx(380 / 420)


def test_boundary_map_of_square_is_a_ring():
    ring = boundary_map(_square(20, 20))
    # seg2bmap puts the boundary half a pixel towards the origin: rows/cols 19 and 39,
    # a 21x21 ring of 4 * 20 = 80 pixels.
    assert ring.sum() == 80
    assert ring[19, 19:40].all() and ring[39, 19:40].all() and ring[19:40, 19].all() and ring[19:40, 39].all()


def test_tolerance_is_0008_of_diagonal():
    # 100x100: diagonal 141.4 -> radius ceil(1.13) = 2 pixels.
    assert boundary_radius((100, 100)) == 2
    assert boundary_radius((848, 480)) == 8  # ceil(0.008 * 974.4)
    assert boundary_radius((100, 100), bound_th=3) == 3  # >= 1: absolute pixels, as in DAVIS
    gt = _square(20, 20)
    assert boundary_f_measure(_square(20, 22), gt) == 1.0  # every boundary pixel within 2 px
    assert boundary_f_measure(_square(20, 23), gt) < 1.0


def test_shifted_boundary_by_hand():
    # Rings (see above) of GT cols 19..39 and prediction cols 29..49, rows 19..39, radius 2.
    # Prediction ring pixels within distance 2 of the GT ring: top row x 29..41 (13), bottom
    # row 13, left column y 20, 21, 37, 38 (4, near the GT's top/bottom rows) -> 30 of 80.
    # Recall is the same by symmetry, so F = 30/80 = 0.375.
    assert boundary_f_measure(_square(20, 30), _square(20, 20)) == pytest.approx(0.375)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="shape"):
        region_similarity(np.zeros((4, 4), bool), np.zeros((4, 5), bool))


def test_score_video_skips_first_and_last_frames():
    gt = np.stack([_square(20, 20)] * 4)[None]  # [O=1, F=4, H, W]
    pred = gt.copy()
    pred[0, 0] = False  # first frame wrong: skipped
    pred[0, 3] = False  # last frame wrong: skipped
    pred[0, 2] = _square(20, 21)  # a scored frame, J = 380/420
    score = score_video(gt, pred)
    assert score.num_frames == 2
    assert score.j[0] == pytest.approx((1 + 380 / 420) / 2)
    assert score.f[0] == pytest.approx(1.0)
    assert score.jf[0] == pytest.approx((score.j[0] + 1.0) / 2)
    unskipped = score_video(gt, pred, skip_first_last=False)
    assert unskipped.num_frames == 4 and unskipped.j[0] < score.j[0]


def test_evaluated_frames_needs_three():
    assert list(evaluated_frames(5)) == [1, 2, 3]
    assert list(evaluated_frames(2, skip_first_last=False)) == [0, 1]
    with pytest.raises(ValueError, match=">= 3"):
        evaluated_frames(2)


def test_assign_predictions_respects_category_and_empty_option():
    mean_j = np.array([[0.9, 0.8], [0.85, 0.1]])
    # Both objects prefer prediction 0; Hungarian gives object 1 prediction 0 and object 0 prediction 1.
    assert assign_predictions(mean_j, np.zeros(2), np.ones((2, 2), bool)) == [1, 0]
    # Object 1 may not take prediction 0 (other category) and scores better empty than with prediction 1.
    allowed = np.array([[True, True], [False, True]])
    assert assign_predictions(mean_j, np.array([0.0, 0.5]), allowed) == [0, None]
    assert assign_predictions(np.zeros((2, 0)), np.array([0.3, 0.0]), np.zeros((2, 0), bool)) == [None, None]


def test_score_concept_video_matches_unordered_predictions():
    frames = 5
    cat = np.stack([_square(10, 10)] * frames)  # [F, H, W]
    dog = np.stack([_square(60, 60)] * frames)
    gt = np.stack([cat, dog])  # [O=2, F, H, W]
    pred = np.stack([dog, np.zeros_like(cat), cat])  # [P=3, F, H, W], unordered, one empty
    score = score_concept_video(gt, pred, ["cat", "dog"], ["dog", "dog", "cat"])
    assert score.j.tolist() == [1.0, 1.0] and score.f.tolist() == [1.0, 1.0]
    # With the categories swapped no prediction may be matched to its own object: both empty.
    swapped = score_concept_video(gt, pred, ["cat", "dog"], ["cat", "cat", "dog"])
    assert swapped.j.tolist() == [0.0, 0.0]
