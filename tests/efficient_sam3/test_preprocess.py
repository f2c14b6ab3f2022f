import cv2
import numpy as np
import pytest

from efficient_sam3.contract import preprocess_frame


def test_constant_frames_map_to_minus_one_and_one():
    white = preprocess_frame(np.full((48, 64, 3), 255, np.uint8))
    black = preprocess_frame(np.zeros((48, 64, 3), np.uint8))
    assert white.shape == (3, 504, 504) and white.dtype == np.float32
    np.testing.assert_array_equal(white, 1.0)
    np.testing.assert_array_equal(black, -1.0)


def test_matches_resize_then_normalise_and_is_chw():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    pixels = preprocess_frame(frame, image_size=56)
    expected = cv2.resize(frame, (56, 56), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    expected = (expected - 0.5) / 0.5
    np.testing.assert_allclose(pixels, expected.transpose(2, 0, 1), atol=1e-6)
    assert pixels.flags["C_CONTIGUOUS"]


def test_bgr_input_is_converted_to_rgb():
    red_bgr = np.zeros((8, 8, 3), np.uint8)
    red_bgr[..., 2] = 255  # red in BGR order
    pixels = preprocess_frame(red_bgr, image_size=8, rgb=False)
    np.testing.assert_array_equal(pixels[0], 1.0)
    np.testing.assert_array_equal(pixels[1:], -1.0)
    same_as_rgb = preprocess_frame(red_bgr[..., ::-1].copy(), image_size=8)
    np.testing.assert_array_equal(pixels, same_as_rgb)


@pytest.mark.parametrize(
    "frame",
    [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32)],
)
def test_rejects_frames_that_are_not_uint8_rgb(frame):
    with pytest.raises(ValueError):
        preprocess_frame(frame)
