"""efficient_sam3.masks: the one COCO RLE encoder and mask-to-box rule (numpy, torch-free)."""

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from efficient_sam3.masks import encode_rle, mask_box, masks_to_boxes

SIZE = (48, 80)


def test_rle_round_trip_with_string_counts():
    mask = np.zeros(SIZE, bool)
    mask[3:9, 10:30] = True
    rle = encode_rle(mask)
    assert rle["size"] == [48, 80] and isinstance(rle["counts"], str)
    decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")})
    np.testing.assert_array_equal(decoded.astype(bool), mask)


def test_mask_box():
    mask = np.zeros((5, 5), bool)
    mask[1, 2] = True
    np.testing.assert_array_equal(mask_box(mask), [2, 1, 3, 2])
    with pytest.raises(ValueError):
        mask_box(np.zeros((3, 3), bool))


def test_masks_to_boxes_covers_whole_pixels():
    masks = np.zeros((2, 10, 20), bool)
    masks[0, 2:5, 3:4] = True
    boxes = masks_to_boxes(masks)
    np.testing.assert_allclose(boxes, [[3 / 20, 2 / 10, 4 / 20, 5 / 10], [0, 0, 0, 0]], atol=1e-7)
