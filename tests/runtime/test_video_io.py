import cv2
import numpy as np
import pytest

from output_checks import truncated_avi

from runtime.video_io import FrameSource, OverlayVideoWriter, VideoReadError, draw_overlay, object_colour


def _write_video(path, frames, fps=24.0):
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()


def _frames(count, size=(32, 48)):
    return [np.full((*size, 3), 20 * (i + 1), np.uint8) for i in range(count)]


def test_video_file_frames_are_numbered_from_zero(tmp_path):
    path = tmp_path / "clip.mp4"
    _write_video(path, _frames(5))
    with FrameSource(path) as source:
        assert (source.info.video_id, source.info.height, source.info.width) == ("clip", 32, 48)
        assert source.info.fps == pytest.approx(24.0)
        items = list(source)
    assert [n for n, _ in items] == [0, 1, 2, 3, 4]
    assert all(f.shape == (32, 48, 3) and f.dtype == np.uint8 for _, f in items)
    assert abs(int(items[2][1].mean()) - 60) <= 3


def test_jpeg_directory_uses_file_numbers(tmp_path):
    video = tmp_path / "sav_000123"
    video.mkdir()
    for number, frame in zip((0, 1, 2, 10), _frames(4)):
        cv2.imwrite(str(video / f"{number:05d}.jpg"), frame)
    (video / "notes.txt").write_text("ignored")
    with FrameSource(video) as source:
        assert source.info.video_id == "sav_000123" and source.info.num_frames == 4
        assert [n for n, _ in source] == [0, 1, 2, 10]


def test_bad_sources_raise_clear_errors(tmp_path):
    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(b"\x00not a video" * 50)
    with pytest.raises(VideoReadError, match="broken.mp4"):
        FrameSource(garbage)
    empty_video = tmp_path / "empty.mp4"
    writer = cv2.VideoWriter(str(empty_video), cv2.VideoWriter_fourcc(*"mp4v"), 24, (48, 32))
    writer.release()  # zero frames
    with pytest.raises(VideoReadError, match="zero frames"):
        FrameSource(empty_video)
    with pytest.raises(VideoReadError, match="no such"):
        FrameSource(tmp_path / "missing.mp4")
    empty_dir = tmp_path / "frames"
    empty_dir.mkdir()
    with pytest.raises(VideoReadError, match="no .jpg"):
        FrameSource(empty_dir)
    cv2.imwrite(str(empty_dir / "00000.jpg"), _frames(1)[0])
    cv2.imwrite(str(empty_dir / "00001.jpg"), _frames(1, size=(16, 16))[0])
    (empty_dir / "00002.jpg").write_bytes(b"corrupt")
    with FrameSource(empty_dir) as source, pytest.raises(VideoReadError, match="00001.jpg.*first frame"):
        list(source)
    (empty_dir / "00001.jpg").unlink()
    with FrameSource(empty_dir) as source, pytest.raises(VideoReadError, match="00002.jpg: unreadable"):
        list(source)


class _Obj:
    def __init__(self, obj_id, mask, box):
        self.obj_id, self.mask, self.box_xyxy, self.prompt, self.score = obj_id, mask, box, "thing", 0.9


def test_overlay_writer_is_atomic_and_draws_objects(tmp_path):
    frame = np.zeros((32, 48, 3), np.uint8)
    mask = np.zeros((32, 48), bool)
    mask[8:20, 10:30] = True
    drawn = draw_overlay(frame, [_Obj(3, mask, np.array([10, 8, 30, 20], np.float32))])
    assert drawn[14, 20].any() and not drawn[30, 2].any() and not frame.any()
    assert object_colour(3) != object_colour(4)
    out = tmp_path / "overlay.mp4"
    with OverlayVideoWriter(out, 24.0, (32, 48)) as writer:
        writer.write(drawn)
        writer.write(drawn)
        assert not out.exists()
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 2
    capture.release()
    with pytest.raises(RuntimeError), OverlayVideoWriter(tmp_path / "failed.mp4", 24.0, (32, 48)) as writer:
        writer.write(drawn)
        raise RuntimeError("stop")
    assert list(tmp_path.glob("*failed*")) == []


def test_a_truncated_jpeg_frame_is_a_warning_naming_the_file_and_frame(tmp_path, caplog):
    video = tmp_path / "frames"
    video.mkdir()
    rng = np.random.default_rng(0)
    for number in (0, 4, 8):
        cv2.imwrite(str(video / f"{number:05d}.jpg"), rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    cut = video / "00004.jpg"
    cut.write_bytes(cut.read_bytes()[:-200])  # still decodes: libjpeg fills the rest with grey
    with FrameSource(video) as source:
        assert [n for n, _ in source] == [0, 4, 8]
    (record,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert record.getMessage() == f"{cut}: frame 4 is a truncated JPEG (no end-of-image marker); its missing part " \
                                  "decodes as grey"


def test_a_truncated_video_file_is_a_warning_naming_the_file_and_frame(tmp_path, caplog):
    avi = truncated_avi(tmp_path / "cut.avi", num_frames=10, keep=0.55)
    with FrameSource(avi) as source:
        assert source.info.num_frames == 10
        decoded = len(list(source))
    assert 0 < decoded < 10
    (record,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert record.getMessage() == (f"{avi}: decoding stopped at frame {decoded}, the container lists 10 frames (the "
                                   f"file is truncated or corrupt); the {decoded} decoded frames are used")
    caplog.clear()
    with FrameSource(avi) as source:  # stopping early (--max-frames) is not a truncation
        next(iter(source))
    assert caplog.records == []


def test_the_overlay_writer_refuses_a_video_that_does_not_read_back_whole(tmp_path):
    out = tmp_path / "overlay.mp4"
    frame = np.zeros((32, 48, 3), np.uint8)
    with pytest.raises(OSError, match=r"overlay.mp4: the overlay video was not written completely \(0 of 2 frames"):
        with OverlayVideoWriter(out, 24.0, (32, 48)) as writer:
            writer.write(frame)
            writer.write(frame)
            writer._writer.release()
            writer._temp.write_bytes(b"\0" * 8192)  # what a full disk leaves: no readable video
    assert list(tmp_path.iterdir()) == []


def test_frames_too_small_for_mp4v_are_named_before_writing(tmp_path):
    with pytest.raises(ValueError, match=r"tiny.mp4: the frame size 1x7 is too small for the mp4v codec"):
        OverlayVideoWriter(tmp_path / "tiny.mp4", 24.0, (1, 7))
    with OverlayVideoWriter(tmp_path / "small.mp4", 24.0, (2, 2)) as writer:
        writer.write(np.zeros((2, 2, 3), np.uint8))
    assert (tmp_path / "small.mp4").is_file()
