import cv2
import numpy as np
import pytest

from export.frames import generated_frames, read_frames, to_pixel_values


def _write_video(path, count: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24, (64, 48))
    for index in range(count):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:, :, 2] = 10 * index  # red channel in BGR
        writer.write(frame)
    writer.release()


def test_reads_videos_images_and_directories_of_videos(tmp_path):
    _write_video(tmp_path / "a.mp4", 10)
    frames = read_frames(tmp_path / "a.mp4", max_frames=2, stride=4)
    assert len(frames) == 2 and frames[0].shape == (48, 64, 3)
    assert frames[1][..., 0].mean() == pytest.approx(40, abs=6)  # frame 4, converted to RGB
    (tmp_path / "videos").mkdir()
    _write_video(tmp_path / "videos" / "b.mp4", 3)
    _write_video(tmp_path / "videos" / "c.mp4", 3)
    assert len(read_frames(tmp_path / "videos", max_frames=5)) == 5
    (tmp_path / "jpgs").mkdir()
    for index, frame in enumerate(generated_frames(3)):
        cv2.imwrite(str(tmp_path / "jpgs" / f"{index:05d}.jpg"), frame)
    assert len(read_frames(tmp_path / "jpgs", max_frames=2)) == 2
    (pixels,) = to_pixel_values(frames[:1], 504)
    assert pixels.shape == (1, 3, 504, 504) and float(pixels.min()) >= -1 and float(pixels.max()) <= 1


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such video"):
        read_frames(tmp_path / "missing.mp4", 1)
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="corrupt.mp4"):
        read_frames(tmp_path / "corrupt.mp4", 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        read_frames(tmp_path / "empty", 1)
