import pytest
import torch

from export.config import FP32_TOLERANCE
from export.parity import _compare, mask_iou


def test_mask_iou_per_query_with_empty_masks_and_rounding_band():
    reference = torch.tensor([[[[2.0, -1.0]], [[-1.0, -1.0]], [[1.0, 5e-4]]]])  # [1, 3, 1, 2]
    program = torch.tensor([[[[2.0, 1.0]], [[-3.0, -1.0]], [[1.0, -5e-4]]]])
    assert mask_iou(reference, program).tolist() == [0.5, 1.0, 0.5]  # empty vs empty counts as 1
    assert mask_iou(reference, program, band=1e-3).tolist() == [0.5, 1.0, 1.0]


def test_compare_gates_only_the_named_outputs_and_checks_shapes():
    reference = (torch.zeros(1, 4), torch.zeros(1, 4))
    program = (torch.full((1, 4), 1e-3), torch.full((1, 4), 1e-3))
    checks = _compare("case", ("pred_logits", "fpn0"), reference, program, FP32_TOLERANCE, gated=("pred_logits",))
    assert [c.passed for c in checks] == [False, True] and not checks[1].gated
    with pytest.raises(ValueError, match="pred_logits has shape"):
        _compare("case", ("pred_logits",), (torch.zeros(1, 4),), (torch.zeros(1, 5),), FP32_TOLERANCE, ())
