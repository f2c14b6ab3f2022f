"""Loss terms against hand-computed values, plus the combined SegmentationLoss."""

import math

import pytest
import torch

from efficient_sam3.boxes import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh
from efficient_sam3.masks import masks_to_boxes
from training.box_ops import generalized_box_iou, paired_generalized_box_iou
from training.losses import (
    LossWeights,
    SegmentationLoss,
    box_giou_loss,
    box_l1_loss,
    dice_loss,
    iou_prediction_loss,
    mask_iou,
    presence_loss,
    sigmoid_bce_loss,
    sigmoid_focal_loss,
)
from training.matcher import GreedyMatcher

LN3 = math.log(3.0)  # sigmoid(ln 3) = 0.75


def test_dice_loss_2x2_by_hand():
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    # Object 0: p = 0.5 everywhere: inter 1, sum p 2, sum t 2 -> 1 - (2+1)/(2+2+1) = 0.4.
    # Object 1: p = (.75, .75, .25, .25): inter 1.5, sum p 2 -> 1 - (3+1)/(2+2+1) = 0.2.
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [LN3, LN3, -LN3, -LN3]])
    assert dice_loss(logits, targets).item() == pytest.approx((0.4 + 0.2) / 2, abs=1e-6)
    assert dice_loss(logits[:1], targets[:1]).item() == pytest.approx(0.4, abs=1e-6)


def test_bce_matches_manual_formula():
    logits = torch.tensor([[LN3, -LN3, 0.0, 2.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    p = torch.sigmoid(logits)
    manual = -(targets * p.log() + (1 - targets) * (1 - p).log()).mean()
    assert sigmoid_bce_loss(logits, targets).item() == pytest.approx(manual.item(), abs=1e-6)
    # First two pixels are each -log(0.75); third log 2; fourth log(1 + e^2).
    by_hand = (2 * -math.log(0.75) + math.log(2) + math.log(1 + math.e**2)) / 4
    assert sigmoid_bce_loss(logits, targets).item() == pytest.approx(by_hand, abs=1e-6)


def test_empty_object_set_gives_zero_in_graph():
    logits = torch.zeros(0, 16, requires_grad=True)
    targets = torch.zeros(0, 16)
    for loss in (dice_loss(logits, targets), sigmoid_bce_loss(logits, targets)):
        assert loss.item() == 0.0 and loss.requires_grad
    boxes = torch.zeros(0, 4, requires_grad=True)
    assert box_l1_loss(boxes, torch.zeros(0, 4)).item() == 0.0
    assert box_giou_loss(boxes, torch.zeros(0, 4)).item() == 0.0


def test_box_l1_by_hand():
    pred = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 1.0, 1.0]])
    gt = torch.tensor([[0.2, 0.2, 0.5, 0.4], [0.0, 0.0, 1.0, 1.0]])
    # |0.1| + 0 + |0.2| + 0 = 0.3 for box 0, 0 for box 1; mean over boxes.
    assert box_l1_loss(pred, gt).item() == pytest.approx(0.15, abs=1e-6)


def test_giou_by_hand():
    a = torch.tensor([[0.0, 0.0, 0.2, 0.2]])
    # Identical boxes: GIoU 1, loss 0.
    assert box_giou_loss(a, a.clone()).item() == pytest.approx(0.0, abs=1e-6)
    # Disjoint: areas .04 each, union .08, enclosing [0,0,.6,.2] area .12 -> GIoU = -(.04/.12) = -1/3.
    disjoint = torch.tensor([[0.4, 0.0, 0.6, 0.2]])
    assert paired_generalized_box_iou(a, disjoint).item() == pytest.approx(-1 / 3, abs=1e-5)
    assert box_giou_loss(a, disjoint).item() == pytest.approx(4 / 3, abs=1e-5)
    # Half overlap: [0,0,.4,.2] vs [.2,0,.6,.2]: inter .04, union .12, enclosing .12 -> GIoU 1/3.
    left, right = torch.tensor([[0.0, 0.0, 0.4, 0.2]]), torch.tensor([[0.2, 0.0, 0.6, 0.2]])
    assert box_giou_loss(left, right).item() == pytest.approx(2 / 3, abs=1e-5)
    pairwise = generalized_box_iou(torch.cat([a, left]), torch.cat([disjoint, right]))
    assert pairwise.shape == (2, 2)
    assert pairwise[0, 0].item() == pytest.approx(-1 / 3, abs=1e-5)
    assert pairwise[1, 1].item() == pytest.approx(1 / 3, abs=1e-5)


def test_giou_finite_for_degenerate_boxes():
    point = torch.tensor([[0.5, 0.5, 0.5, 0.5]])
    flipped = torch.tensor([[0.6, 0.6, 0.4, 0.4]], requires_grad=True)
    loss = box_giou_loss(flipped, point)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(flipped.grad).all()


def test_box_conversions_and_masks_to_boxes():
    xyxy = torch.tensor([[0.1, 0.2, 0.5, 0.8]])
    assert torch.allclose(box_xyxy_to_cxcywh(xyxy), torch.tensor([[0.3, 0.5, 0.4, 0.6]]))
    assert torch.allclose(box_cxcywh_to_xyxy(box_xyxy_to_cxcywh(xyxy)), xyxy)
    masks = torch.zeros(2, 4, 8, dtype=torch.bool)
    masks[0, 1:3, 2:6] = True  # rows 1-2, cols 2-5
    boxes = torch.from_numpy(masks_to_boxes(masks.numpy()))
    assert torch.allclose(boxes[0], torch.tensor([2 / 8, 1 / 4, 6 / 8, 3 / 4]))
    assert torch.equal(boxes[1], torch.zeros(4))


def test_presence_loss_log2_at_zero_logit():
    zero = torch.zeros(1)
    assert presence_loss(zero, torch.tensor([True])).item() == pytest.approx(math.log(2), abs=1e-6)
    assert presence_loss(zero, torch.tensor([False])).item() == pytest.approx(math.log(2), abs=1e-6)
    # logit ln 3 -> p = .75: present -log .75, absent -log .25; mean over the batch.
    both = presence_loss(torch.tensor([LN3, LN3]), torch.tensor([True, False]))
    assert both.item() == pytest.approx((-math.log(0.75) - math.log(0.25)) / 2, abs=1e-6)


def test_iou_prediction_loss_by_hand():
    mask_logits = torch.tensor([[5.0, 5.0, -5.0, -5.0]])  # binarised -> (1, 1, 0, 0)
    targets = torch.tensor([[1.0, 0.0, 0.0, 0.0]])  # inter 1, union 2 -> IoU 0.5
    assert mask_iou(mask_logits, targets).item() == pytest.approx(0.5)
    assert iou_prediction_loss(torch.zeros(1), mask_logits, targets).item() == pytest.approx(0.0, abs=1e-7)
    assert iou_prediction_loss(torch.tensor([LN3]), mask_logits, targets).item() == pytest.approx(0.0625, abs=1e-6)
    # Both empty -> IoU 1.
    assert mask_iou(torch.full((1, 4), -3.0), torch.zeros(1, 4)).item() == 1.0


def test_iou_target_is_detached():
    mask_logits = torch.tensor([[5.0, -5.0]], requires_grad=True)
    iou_logits = torch.ones(1, requires_grad=True)  # predicts .73, actual IoU .5
    iou_prediction_loss(iou_logits, mask_logits, torch.tensor([[1.0, 1.0]])).backward()
    assert mask_logits.grad is None or torch.count_nonzero(mask_logits.grad) == 0
    assert iou_logits.grad.abs().item() > 0


def test_focal_loss_by_hand():
    logits = torch.zeros(2)
    targets = torch.tensor([1.0, 0.0])
    # p_t = .5 for both: 0.25 * .25 * ln2 + 0.75 * .25 * ln2 = 0.25 ln2; divided by 1 object.
    assert sigmoid_focal_loss(logits, targets, num_objects=1).item() == pytest.approx(0.25 * math.log(2), abs=1e-6)
    assert sigmoid_focal_loss(logits, targets, num_objects=2).item() == pytest.approx(0.125 * math.log(2), abs=1e-6)


def test_loss_weights_validated():
    assert LossWeights().as_dict() == {
        "mask": 5.0, "box_l1": 5.0, "box_giou": 2.0, "iou": 2.0, "presence": 1.0, "classification": 2.0,
    }
    with pytest.raises(ValueError, match="box_l1"):
        LossWeights(box_l1=-1.0)
    with pytest.raises(ValueError, match="mask"):
        LossWeights(mask=float("nan"))


def _square_masks(num: int, size: int) -> torch.Tensor:
    masks = torch.zeros(num, size, size, dtype=torch.bool)
    for i in range(num):
        masks[i, 2 * i : 2 * i + 4, 2 * i : 2 * i + 4] = True
    return masks


def _predictions(batch: int, queries: int, size: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(batch, queries, 2, generator=gen) * 0.5
    return dict(
        pred_masks=torch.randn(batch, queries, size, size, generator=gen).requires_grad_(),
        pred_boxes=torch.cat([xy, xy + 0.3], dim=-1).requires_grad_(),
        pred_logits=torch.randn(batch, queries, generator=gen).requires_grad_(),
        presence_logits=torch.randn(batch, 1, generator=gen).requires_grad_(),
        iou_scores=torch.randn(batch, queries, generator=gen).requires_grad_(),
    )


def test_single_query_single_object_equals_pure_terms():
    preds = _predictions(1, 1, 8)
    gt_masks = [_square_masks(1, 8)]
    gt_boxes = [torch.from_numpy(masks_to_boxes(gt_masks[0].numpy()))]
    out = SegmentationLoss()(**preds, gt_masks=gt_masks, gt_boxes=gt_boxes)
    logits = preds["pred_masks"][0].flatten(1)
    targets = gt_masks[0].float().flatten(1)
    expected = {
        "mask": dice_loss(logits, targets) + sigmoid_bce_loss(logits, targets),
        "box_l1": box_l1_loss(preds["pred_boxes"][0], gt_boxes[0]),
        "box_giou": box_giou_loss(preds["pred_boxes"][0], gt_boxes[0]),
        "iou": iou_prediction_loss(preds["iou_scores"][0], logits, targets),
        "presence": presence_loss(preds["presence_logits"][:, 0], torch.tensor([True])),
        "classification": sigmoid_focal_loss(preds["pred_logits"], torch.ones(1, 1), 1),
    }
    assert out.num_matched == 1
    for name, value in expected.items():
        assert out.terms[name].item() == pytest.approx(value.item(), abs=1e-6), name
    weighted = sum(w * expected[k].item() for k, w in LossWeights().as_dict().items())
    assert out.total.item() == pytest.approx(weighted, rel=1e-6)


def test_combined_loss_gradients_reach_every_input():
    preds = _predictions(2, 5, 8)
    gt_masks = [_square_masks(2, 16), torch.zeros(0, 16, 16, dtype=torch.bool)]  # image 1 has N = 0
    gt_boxes = [torch.from_numpy(masks_to_boxes(gt_masks[0].numpy())), torch.zeros(0, 4)]
    out = SegmentationLoss(matcher=GreedyMatcher())(**preds, gt_masks=gt_masks, gt_boxes=gt_boxes)
    assert out.num_matched == 2
    assert set(out.terms) == set(LossWeights().as_dict())
    assert all(torch.isfinite(v) and not v.requires_grad for v in out.terms.values())
    out.total.backward()
    for name, tensor in preds.items():
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0, name
    # Image 1 has no objects: its masks and boxes get no gradient, its class logits do.
    assert preds["pred_masks"].grad[1].abs().sum() == 0
    assert preds["pred_boxes"].grad[1].abs().sum() == 0
    assert preds["pred_logits"].grad[1].abs().sum() > 0


def test_all_empty_batch_is_finite_and_connected():
    preds = _predictions(2, 4, 8)
    gt_masks = [torch.zeros(0, 32, 32, dtype=torch.bool)] * 2
    out = SegmentationLoss()(**preds, gt_masks=gt_masks, gt_boxes=[torch.zeros(0, 4)] * 2)
    assert out.num_matched == 0
    for name in ("mask", "box_l1", "box_giou", "iou"):
        assert out.terms[name].item() == 0.0
    assert out.terms["presence"].item() > 0 and out.terms["classification"].item() > 0
    out.total.backward()
    assert preds["pred_masks"].grad is not None and preds["pred_masks"].grad.abs().sum() == 0
    assert preds["presence_logits"].grad.abs().sum() > 0


def test_loss_rejects_bad_ground_truth():
    preds = _predictions(1, 3, 8)
    loss = SegmentationLoss()
    empty_object = torch.zeros(1, 8, 8, dtype=torch.bool)
    with pytest.raises(ValueError, match="empty masks"):
        loss(**preds, gt_masks=[empty_object], gt_boxes=[torch.zeros(1, 4)])
    with pytest.raises(ValueError, match="bool"):
        loss(**preds, gt_masks=[_square_masks(1, 8).float()], gt_boxes=[torch.zeros(1, 4)])
    with pytest.raises(ValueError, match="gt_boxes"):
        loss(**preds, gt_masks=[_square_masks(1, 8)], gt_boxes=[torch.zeros(2, 4)])
    with pytest.raises(ValueError, match="iou_scores"):
        loss(**{**preds, "iou_scores": torch.zeros(1, 4)}, gt_masks=[_square_masks(1, 8)], gt_boxes=[torch.zeros(1, 4)])
