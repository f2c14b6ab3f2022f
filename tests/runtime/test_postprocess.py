import numpy as np
import pytest

from runtime.backends.base import DecodeOutput
from runtime.postprocess import PostprocessConfig, detections_from_output, resize_mask_logits, score_probs


def _output(mask_logits: np.ndarray, pred_logits, presence: float = 5.0) -> DecodeOutput:
    queries = mask_logits.shape[0]
    return DecodeOutput(pred_masks=mask_logits.astype(np.float32), pred_boxes=np.zeros((queries, 4), np.float32),
                        pred_logits=np.asarray(pred_logits, np.float32), presence_logit=presence,
                        iou_scores=np.zeros(queries, np.float32))


def _logits(x0: int, y0: int, x1: int, y1: int, side: int = 16) -> np.ndarray:
    logits = np.full((side, side), -10.0, np.float32)
    logits[y0:y1, x0:x1] = 10.0
    return logits


def test_scores_multiply_instance_and_presence_probabilities():
    probs = score_probs(_output(np.zeros((2, 4, 4)), [0.0, 100.0], presence=0.0))
    np.testing.assert_allclose(probs, [0.25, 0.5])


def test_masks_are_resized_to_the_frame_and_boxed_in_pixels():
    output = _output(np.stack([_logits(4, 8, 12, 16)]), [5.0])
    (det,) = detections_from_output(output, "thing", (32, 64), PostprocessConfig())
    assert det.mask.shape == (32, 64) and det.mask.dtype == bool
    # the square covers x in [4, 12) and y in [8, 16) of 16 -> x [16, 48), y [16, 32) at 64 x 32
    np.testing.assert_array_equal(det.box_xyxy, [16, 16, 48, 32])
    assert det.mask[20, 20] and not det.mask[10, 10]
    assert det.prompt == "thing" and det.query == 0
    assert det.coarse_mask.shape == (16, 16) and det.coarse_mask.sum() == 64  # NMS / tracking resolution


def test_threshold_empty_masks_and_nms():
    masks = np.stack([
        _logits(0, 0, 8, 8),             # 0: kept
        _logits(0, 0, 8, 8) + 0.5,       # 1: same mask, higher score: kept first, suppresses 0
        _logits(10, 10, 14, 14),         # 2: below the score threshold
        np.full((16, 16), -3.0),         # 3: empty mask
        _logits(8, 0, 16, 8),            # 4: separate object
    ])
    output = _output(masks, [2.0, 3.0, -2.0, 4.0, 1.0])
    dets = detections_from_output(output, "p", (16, 16), PostprocessConfig(score_threshold=0.5))
    assert [d.query for d in dets] == [1, 4]
    assert dets[0].score_prob > dets[1].score_prob
    dets = detections_from_output(output, "p", (16, 16), PostprocessConfig(score_threshold=0.5, nms_iou_threshold=1.0))
    assert [d.query for d in dets] == [1, 0, 4]


def test_resize_matches_bilinear_half_pixel_interpolation():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((12, 12)).astype(np.float32)
    ours = resize_mask_logits(logits, (30, 42))
    ref = torch.nn.functional.interpolate(torch.from_numpy(logits)[None, None], size=(30, 42), mode="bilinear",
                                          align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-3)


def test_config_checks():
    with pytest.raises(ValueError):
        PostprocessConfig(score_threshold=1.0)
