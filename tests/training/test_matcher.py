"""Hungarian and greedy matchers on edge cases."""

import pytest
import torch

from efficient_sam3.masks import masks_to_boxes
from training.matcher import (
    GreedyMatcher,
    HungarianMatcher,
    build_matcher,
    downsample_masks,
    greedy_assignment,
    hungarian_assignment,
)


def _objects(num: int, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` disjoint-ish squares marching down the diagonal, with their boxes."""
    masks = torch.zeros(num, size, size, dtype=torch.bool)
    for i in range(num):
        start = (3 * i) % (size - 4)
        masks[i, start : start + 4, start : start + 4] = True
    return masks, torch.from_numpy(masks_to_boxes(masks.numpy()))


def _perfect_predictions(masks: torch.Tensor, boxes: torch.Tensor):
    """Predictions that reproduce ``masks``/``boxes`` exactly, confidently."""
    return torch.full((masks.shape[0],), 5.0), boxes.clone(), masks.float() * 20 - 10


@pytest.mark.parametrize("matcher", [HungarianMatcher(), GreedyMatcher()])
def test_identity_when_predictions_equal_gt(matcher):
    masks, boxes = _objects(4)
    logits, pred_boxes, pred_masks = _perfect_predictions(masks, boxes)
    pred_idx, gt_idx = matcher(logits, pred_boxes, pred_masks, boxes, masks)
    assert pred_idx.dtype == torch.int64
    assert pred_idx.tolist() == [0, 1, 2, 3]
    assert gt_idx.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("matcher", [HungarianMatcher(), GreedyMatcher(), HungarianMatcher(num_mask_points=64)])
def test_permuted_gt_is_recovered(matcher):
    masks, boxes = _objects(4)
    logits, pred_boxes, pred_masks = _perfect_predictions(masks, boxes)
    perm = torch.tensor([2, 0, 3, 1])
    pred_idx, gt_idx = matcher(logits, pred_boxes, pred_masks, boxes[perm], masks[perm])
    # Query q predicts object q, which sits at position perm.argsort()[q] of the permuted GT.
    assert pred_idx.tolist() == [0, 1, 2, 3]
    assert gt_idx.tolist() == perm.argsort().tolist()


def test_gt_at_higher_resolution_is_downsampled():
    masks, boxes = _objects(3, size=32)
    logits, pred_boxes, _ = _perfect_predictions(masks, boxes)
    pred_masks = downsample_masks(masks, (8, 8)) * 20 - 10  # predictions at 8x8
    pred_idx, gt_idx = HungarianMatcher()(logits.flip(0), pred_boxes.flip(0), pred_masks.flip(0), boxes, masks)
    assert pred_idx.tolist() == [0, 1, 2]
    assert gt_idx.tolist() == [2, 1, 0]


def test_downsample_masks_is_area_average():
    masks = torch.zeros(1, 4, 4, dtype=torch.bool)
    masks[0, 0, 0] = True  # one pixel of the top-left 2x2 cell
    small = downsample_masks(masks, (2, 2))
    assert small.tolist() == [[[0.25, 0.0], [0.0, 0.0]]]
    assert downsample_masks(torch.zeros(0, 4, 4, dtype=torch.bool), (2, 2)).shape == (0, 2, 2)


@pytest.mark.parametrize("name", ["hungarian", "greedy"])
def test_no_ground_truth_returns_empty(name):
    logits, boxes, masks = torch.randn(5), torch.rand(5, 4), torch.randn(5, 8, 8)
    no_masks = torch.zeros(0, 16, 16, dtype=torch.bool)
    pred_idx, gt_idx = build_matcher(name)(logits, boxes, masks, torch.zeros(0, 4), no_masks)
    assert pred_idx.shape == (0,) and gt_idx.shape == (0,)
    assert pred_idx.dtype == gt_idx.dtype == torch.int64


@pytest.mark.parametrize("matcher", [HungarianMatcher(), GreedyMatcher()])
def test_more_objects_than_queries(matcher):
    masks, boxes = _objects(5)
    logits, pred_boxes, pred_masks = _perfect_predictions(masks, boxes)
    # Two queries, predicting objects 3 and 1.
    pred_idx, gt_idx = matcher(logits[[3, 1]], pred_boxes[[3, 1]], pred_masks[[3, 1]], boxes, masks)
    assert pred_idx.tolist() == [0, 1]
    assert gt_idx.tolist() == [3, 1]


def _strip_box(x: float) -> list[float]:
    return [x, 0.0, x + 0.1, 0.1]  # L1 distance between strips at x and y is 2|x - y|


def test_greedy_and_hungarian_differ():
    # Query 0 at .50 is closest to object 0 (.45) but also near object 1 (.60); query 1 at .38
    # is only near object 0. Greedy takes (0,0) first, then pays for (1,1); Hungarian does not.
    pred_boxes = torch.tensor([_strip_box(0.50), _strip_box(0.38)])
    gt_boxes = torch.tensor([_strip_box(0.45), _strip_box(0.60)])
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[:, 0, 0] = True
    args = (torch.zeros(2), pred_boxes, torch.zeros(2, 4, 4), gt_boxes, masks)
    weights = dict(cost_class=0.0, cost_mask=0.0, cost_dice=0.0, cost_bbox=1.0, cost_giou=0.0)
    hungarian = HungarianMatcher(**weights)(*args)
    greedy = GreedyMatcher(**weights)(*args)
    assert [t.tolist() for t in hungarian] == [[0, 1], [1, 0]]  # cost 2*(.10 + .07) = .34
    assert [t.tolist() for t in greedy] == [[0, 1], [0, 1]]  # cost 2*(.05 + .22) = .54


def test_assignment_functions_on_a_cost_matrix():
    cost = torch.tensor([[1.0, 2.0], [2.0, 100.0], [5.0, 50.0]])
    rows, cols = hungarian_assignment(cost)
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]  # 2 + 2 = 4
    rows, cols = greedy_assignment(cost)
    assert rows.tolist() == [0, 2] and cols.tolist() == [0, 1]  # takes 1 first, then 50


def test_class_cost_prefers_confident_query():
    masks, boxes = _objects(1)
    _, pred_boxes, pred_masks = _perfect_predictions(masks, boxes)
    # Two identical queries; only their class logits differ.
    logits = torch.tensor([-3.0, 3.0])
    pred_idx, gt_idx = HungarianMatcher()(logits, pred_boxes.repeat(2, 1), pred_masks.repeat(2, 1, 1), boxes, masks)
    assert pred_idx.tolist() == [1] and gt_idx.tolist() == [0]


def test_inputs_are_validated():
    masks, boxes = _objects(2)
    with pytest.raises(ValueError, match="pred_boxes"):
        HungarianMatcher()(torch.zeros(3), torch.zeros(2, 4), torch.zeros(3, 8, 8), boxes, masks)
    with pytest.raises(ValueError, match="gt_masks"):
        HungarianMatcher()(torch.zeros(3), torch.zeros(3, 4), torch.zeros(3, 8, 8), boxes, masks[:1])
    with pytest.raises(ValueError, match="NaN"):
        HungarianMatcher()(torch.full((3,), float("nan")), torch.zeros(3, 4), torch.zeros(3, 8, 8), boxes, masks)
    with pytest.raises(ValueError, match="cost_bbox"):
        HungarianMatcher(cost_bbox=-1.0)
    with pytest.raises(ValueError, match="positive"):
        GreedyMatcher(cost_class=0, cost_mask=0, cost_dice=0, cost_bbox=0, cost_giou=0)
    with pytest.raises(ValueError, match="unknown matcher"):
        build_matcher("sinkhorn")


def test_matcher_does_not_track_gradients():
    masks, boxes = _objects(2)
    logits = torch.zeros(3, requires_grad=True)
    pred_idx, _ = HungarianMatcher()(logits, torch.rand(3, 4, requires_grad=True), torch.randn(3, 8, 8), boxes, masks)
    assert not pred_idx.requires_grad and pred_idx.shape == (2,)
