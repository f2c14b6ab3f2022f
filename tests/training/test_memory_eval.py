import numpy as np
import pytest
import torch

from training.memory_eval import _instances, _match, _memory


def test_instance_rules():
    logits = torch.full((3, 4, 4), -5.0)
    logits[1, :2, :2] = 5.0  # query 1: top-left quarter
    query_prob = torch.tensor([0.1, 0.3, 0.2])
    strict = _instances(logits, query_prob, torch.tensor(0.9), 0.5, (8, 8), "threshold")
    assert strict.shape == (0, 8, 8)  # no query reaches 0.5
    top1 = _instances(logits, query_prob, torch.tensor(0.9), 0.5, (8, 8), "top1")
    assert top1.shape == (1, 8, 8) and top1[0, :4, :4].all() and not top1[0, 4:, :].any()
    absent = _instances(logits, query_prob, torch.tensor(0.2), 0.5, (8, 8), "top1")
    assert absent.shape == (0, 8, 8)  # concept judged absent: nothing


def test_match_assigns_best_iou_and_leaves_absent_objects_empty():
    gt = np.zeros((2, 6, 6), dtype=bool)
    gt[0, :3, :3] = True  # object 0 visible, object 1 absent
    pred = np.zeros((2, 6, 6), dtype=bool)
    pred[0, 3:, 3:] = True
    pred[1, :3, :2] = True
    matched = _match(gt, pred)
    assert np.array_equal(matched[0], pred[1]) and not matched[1].any()
    assert all(not m.any() for m in _match(gt, np.zeros((0, 6, 6), dtype=bool)))


def test_memory_slots_hold_the_most_recent_frames_last():
    features = [torch.full((2, 1, 1), float(k)) for k in range(5)]
    memory, mask = _memory(features, query_idx=2, slots=4)
    assert mask.tolist() == [False, False, True, True]
    assert memory[:, 0, 0, 0].tolist() == [0.0, 0.0, 0.0, 1.0]
    memory, mask = _memory(features, query_idx=5, slots=3)
    assert mask.all() and memory[:, 0, 0, 0].tolist() == [2.0, 3.0, 4.0]
    # The other-video control may come from a shorter video: its frame indices wrap around.
    memory, mask = _memory(features[:3], query_idx=5, slots=3)
    assert mask.all() and memory[:, 0, 0, 0].tolist() == [2.0, 0.0, 1.0]


def test_evaluate_memory_rejects_unknown_rules(tmp_path):
    from training.memory_eval import evaluate_memory

    with pytest.raises(ValueError, match="rules"):
        evaluate_memory(torch.nn.Linear(1, 1), tmp_path, tmp_path, rules=("best",))
