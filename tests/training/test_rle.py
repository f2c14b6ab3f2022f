"""training.data.rle: the one COCO RLE check every reader in training/ uses."""

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from training.data.rle import RLEError, check_rle, compressed_counts


def _runs(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO counts of ``mask`` (column-major, starting with a run of 0s)."""
    runs, value, count = [], 0, 0
    for pixel in mask.flatten(order="F"):
        if pixel == value:
            count += 1
        else:
            runs.append(count)
            value, count = pixel, 1
    runs.append(count)
    return runs


def test_compressed_counts_equal_the_runs_pycocotools_encoded():
    rng = np.random.default_rng(0)
    for trial in range(60):
        height, width = (int(n) for n in rng.integers(1, 70, size=2))
        mask = rng.random((height, width)) < rng.random() if trial % 2 else np.zeros((height, width), bool)
        if trial % 3 == 0:
            mask[: height // 2, width // 3 :] = True  # long runs: multi-character and delta-coded counts
        encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert compressed_counts(encoded["counts"]).tolist() == _runs(mask)
        checked = check_rle({"size": [height, width], "counts": encoded["counts"].decode("ascii")}, "where")
        np.testing.assert_array_equal(mask_utils.decode(checked).astype(bool), mask)


@pytest.mark.parametrize(("rle", "problem"), [
    ({"size": [4, 5], "counts": [3, 2]}, "add up to 5 pixels, the mask has 4 x 5 = 20"),  # too few: uninitialised memory
    ({"size": [4, 5], "counts": [10, 20]}, "add up to 30 pixels"),  # too many: past the mask
    ({"size": [4, 5], "counts": [25, -5]}, "non-negative"),
    ({"size": [4, 5], "counts": "0"}, "add up to 0 pixels"),
    ({"size": [4, 5], "counts": "not an rle"}, "alphabet"),
    ({"size": [4, 5], "counts": "P"}, "truncated"),  # a continuation bit on the last character
    ({"size": [0, 5], "counts": []}, "two positive integers"),
    ({"size": [4], "counts": [4]}, "two positive integers"),
    ({"size": [4, 5], "counts": None}, "string or a list"),
    ({"size": [4, 5]}, "COCO RLE"),
])
def test_bad_rles_are_refused_naming_where(rle, problem):
    with pytest.raises(RLEError, match=problem) as error:
        check_rle(rle, "gt.json: masklet[2][1] (frame 8, object 7)")
    assert str(error.value).startswith("gt.json: masklet[2][1] (frame 8, object 7): ")


def test_a_negative_compressed_count_is_refused():
    # One 6-bit group each: 12, 0, then -3 (bit 4 of a count's last group is its sign); pycocotools
    # would store -3 as a huge unsigned run.
    counts = bytes([48 + 12, 48 + 0, 48 + (0x20 - 3)])
    assert compressed_counts(counts).tolist() == [12, 0, -3]
    with pytest.raises(RLEError, match="non-negative"):
        check_rle({"size": [4, 5], "counts": counts}, "p.json")


def test_valid_rles_come_back_compressed_for_pycocotools():
    assert int(mask_utils.area(check_rle({"size": [4.0, 5.0], "counts": [20]}, "x"))) == 0
    rle = check_rle({"size": [4, 5], "counts": [5, 10, 5]}, "x")
    assert isinstance(rle["counts"], bytes) and int(mask_utils.area(rle)) == 10
    with pytest.raises(RLEError, match="disagrees with the video size"):
        check_rle({"size": [4, 5], "counts": [20]}, "x", expected_size=(5, 4))
