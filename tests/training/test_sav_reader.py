import json

import cv2
import numpy as np
import pytest

from efficient_sam3.masks import encode_rle
from training.data.sav import (
    ANNOTATION_FPS,
    ANNOTATION_STRIDE,
    VIDEO_FPS,
    SAVFormatError,
    VideoFrameReader,
    check_video_matches,
    decode_rle,
    find_videos,
    load_annotation,
)
from training.data.sav_eval_layout import list_eval_videos, read_eval_frame, read_eval_masks, write_eval_layout
from training.synthetic import generate_dataset
from training.synthetic_scene import SceneConfig

HEIGHT, WIDTH, NUM_FRAMES = 48, 64, 23  # 23 frames: annotated 0, 4, ..., 20 (6 frames)


def frame_level(frame_idx: int) -> int:
    """Grey level that identifies a video frame after lossy coding."""
    return 10 + 10 * frame_idx


def write_video(path, num_frames=NUM_FRAMES, height=HEIGHT, width=WIDTH):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS, (width, height))
    for frame_idx in range(num_frames):
        writer.write(np.full((height, width, 3), frame_level(frame_idx), np.uint8))
    writer.release()


def rect_mask(annotated_idx: int, slot: int, height=HEIGHT, width=WIDTH) -> np.ndarray:
    """Object 0: rows 5+k..14+k, cols 10..29. Object 1: visible only at even k, rows 30..39, cols 40..59."""
    mask = np.zeros((height, width), np.uint8)
    if slot == 0:
        mask[5 + annotated_idx : 15 + annotated_idx, 10:30] = 1
    elif annotated_idx % 2 == 0:
        mask[30:40, 40:60] = 1
    return mask


def annotation_dict(video_id="sav_000001", num_frames=NUM_FRAMES, height=HEIGHT, width=WIDTH):
    num_annotated = (num_frames - 1) // ANNOTATION_STRIDE + 1
    return {
        "video_id": video_id,
        "video_duration": num_frames / VIDEO_FPS,
        "video_frame_count": float(num_frames),  # SA-V stores floats
        "video_height": float(height),
        "video_width": float(width),
        "masklet": [[encode_rle(rect_mask(k, slot, height, width)) for slot in range(2)] for k in range(num_annotated)],
        "masklet_id": [3, 7],
        "masklet_first_appeared_frame": [0.0, 0.0],
        "masklet_num": 2,
        "masklet_category": ["red square", "blue circle"],
    }


def write_sample(folder, video_id="sav_000001", **overrides):
    folder.mkdir(parents=True, exist_ok=True)
    write_video(folder / f"{video_id}.mp4")
    data = annotation_dict(video_id)
    data.update(overrides)
    json_path = folder / f"{video_id}_manual.json"
    json_path.write_text(json.dumps(data))
    return folder / f"{video_id}.mp4", json_path


def test_rates_are_sav_rates():
    assert (VIDEO_FPS, ANNOTATION_FPS, ANNOTATION_STRIDE) == (24, 6, 4)


def test_annotation_fields_and_exact_masks(tmp_path):
    _, json_path = write_sample(tmp_path)
    annotation = load_annotation(json_path)
    assert (annotation.frame_count, annotation.height, annotation.width) == (23, 48, 64)
    assert annotation.num_annotated_frames == 6 and annotation.obj_ids == (3, 7)
    assert annotation.annotated_frame_indices() == [0, 4, 8, 12, 16, 20]
    assert annotation.categories == ("red square", "blue circle")
    for k in range(6):
        masks = annotation.decode_masks(k, [0, 1])
        assert masks.dtype == bool and masks.shape == (2, 48, 64)
        np.testing.assert_array_equal(masks[0], rect_mask(k, 0).astype(bool))
        np.testing.assert_array_equal(masks[1], rect_mask(k, 1).astype(bool))
        assert annotation.visible_slots(k) == ([0, 1] if k % 2 == 0 else [0])


def test_video_frame_asserts_alignment(tmp_path):
    _, json_path = write_sample(tmp_path)
    annotation = load_annotation(json_path)
    assert annotation.video_frame(5) == 20
    with pytest.raises(IndexError):
        annotation.video_frame(6)


def test_find_videos_selects_annotation_type_and_lists_missing_files(tmp_path):
    write_sample(tmp_path / "sav_000")
    (tmp_path / "sav_001").mkdir()
    write_video(tmp_path / "sav_001" / "sav_000002.mp4")
    (tmp_path / "sav_000" / "sav_000003_auto.json").write_text("{}")
    manual = find_videos(tmp_path, "manual")
    assert [video.video_id for video in manual] == ["sav_000001", "sav_000002"]
    assert manual[0].json_path.is_file() and manual[0].video_path.is_file()
    assert not manual[1].json_path.exists()  # listed so the caller can report it
    auto = find_videos(tmp_path, "auto")
    assert [video.video_id for video in auto] == ["sav_000001", "sav_000002", "sav_000003"]
    assert auto[2].json_path.name == "sav_000003_auto.json" and not auto[2].video_path.exists()
    with pytest.raises(ValueError):
        find_videos(tmp_path, "both")


def test_uncompressed_rle_is_accepted(tmp_path):
    mask = rect_mask(0, 0)
    runs, value, count = [], 0, 0
    for pixel in mask.flatten(order="F"):
        if pixel == value:
            count += 1
        else:
            runs.append(count)
            value, count = pixel, 1
    runs.append(count)
    decoded = decode_rle({"size": [HEIGHT, WIDTH], "counts": runs}, tmp_path)
    np.testing.assert_array_equal(decoded, mask.astype(bool))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("masklet"), "missing field 'masklet'"),
        (lambda d: d.update(video_height=47), "disagrees with the video size"),
        (lambda d: d["masklet"][2].pop(), "must list 2 RLEs"),
        (lambda d: d.update(video_frame_count=20), "need video frame 20"),
        (lambda d: d.update(video_frame_count=22.5), "must be integral"),
        (lambda d: d.update(masklet_num=3), "masklet_num=3"),
        (lambda d: d.update(masklet_id=[3, 3]), "duplicate masklet ids"),
        (lambda d: d.update(masklet_category=["red square"]), "masklet_category"),
        (lambda d: d["masklet"][1][0].pop("counts"), "not a COCO RLE"),
    ],
)
def test_invalid_annotation_names_file_and_problem(tmp_path, mutate, message):
    data = annotation_dict()
    mutate(data)
    path = tmp_path / "sav_000001_manual.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SAVFormatError, match=message) as error:
        load_annotation(path)
    assert str(path) in str(error.value)


def test_malformed_json_and_missing_json(tmp_path):
    path = tmp_path / "sav_000001_manual.json"
    path.write_text(json.dumps(annotation_dict())[:200])
    with pytest.raises(SAVFormatError, match="malformed JSON") as error:
        load_annotation(path)
    assert str(path) in str(error.value)
    with pytest.raises(SAVFormatError, match="missing"):
        load_annotation(tmp_path / "sav_000009_manual.json")


def test_corrupt_rle_counts_raise_naming_the_file(tmp_path):
    data = annotation_dict()
    data["masklet"][1][0]["counts"] = "not an rle"
    path = tmp_path / "sav_000001_manual.json"
    path.write_text(json.dumps(data))
    annotation = load_annotation(path)  # sizes are fine, counts are only decoded on use
    with pytest.raises(SAVFormatError, match="cannot decode RLE") as error:
        annotation.decode_masks(1, [0])
    assert str(path) in str(error.value)


def test_seeked_frames_equal_sequential_frames_and_carry_their_index(tmp_path):
    video_path, _ = write_sample(tmp_path)
    with VideoFrameReader(video_path, (HEIGHT, WIDTH)) as reader:
        assert reader.frame_count == NUM_FRAMES
        sequential = reader.read_frames(list(range(NUM_FRAMES)))
    levels = np.array([frame_level(frame_idx) for frame_idx in range(NUM_FRAMES)])
    for frame_idx, frame in enumerate(sequential):
        assert np.argmin(np.abs(levels - frame.mean())) == frame_idx
    rng = np.random.default_rng(0)
    with VideoFrameReader(video_path) as reader:
        for frame_idx in rng.permutation(NUM_FRAMES):  # backwards and long forward jumps seek
            np.testing.assert_array_equal(reader.read_frame(int(frame_idx)), sequential[frame_idx])


def test_missing_truncated_and_wrong_size_videos(tmp_path):
    video_path, json_path = write_sample(tmp_path)
    with pytest.raises(SAVFormatError, match="missing") as error:
        VideoFrameReader(tmp_path / "sav_000404.mp4")
    assert "sav_000404.mp4" in str(error.value)
    with pytest.raises(SAVFormatError, match="48x64 but the annotation says 40x64"):
        VideoFrameReader(video_path, (40, 64))
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(video_path.read_bytes()[: video_path.stat().st_size // 2])
    with pytest.raises(SAVFormatError) as error:
        with VideoFrameReader(truncated) as reader:
            reader.read_frames(list(range(NUM_FRAMES)))
    assert "truncated.mp4" in str(error.value)


def test_video_shorter_than_annotations_is_rejected(tmp_path):
    _, json_path = write_sample(tmp_path)
    short = tmp_path / "short.mp4"
    write_video(short, num_frames=17)  # annotations need frame 20
    with VideoFrameReader(short) as reader:
        with pytest.raises(SAVFormatError, match="annotates frame 20") as error:
            check_video_matches(reader, load_annotation(json_path))
    assert "short.mp4" in str(error.value)


def test_eval_layout_round_trip(tmp_path):
    sav_dir = tmp_path / "sav"
    generate_dataset(sav_dir, 2, seed=3, val_fraction=0.0, scene_config=SceneConfig(min_frames=13, max_frames=19))
    assert write_eval_layout(sav_dir, tmp_path / "eval") == ["sav_000001", "sav_000002"]
    videos = list_eval_videos(tmp_path / "eval")
    assert [video.video_id for video in videos] == ["sav_000001", "sav_000002"]
    for video, files in zip(videos, find_videos(sav_dir)):
        annotation = load_annotation(files.json_path)
        assert video.frame_indices == tuple(range(annotation.frame_count))
        assert all(frame_idx % ANNOTATION_STRIDE == 0 for frame_idx in video.annotated_frames)
        assert video.obj_ids == annotation.obj_ids
        with VideoFrameReader(files.video_path) as reader:
            for annotated_idx in range(annotation.num_annotated_frames):
                frame_idx = annotation.video_frame(annotated_idx)
                obj_ids, masks = read_eval_masks(video, frame_idx, annotation.height, annotation.width)
                assert obj_ids == list(annotation.obj_ids)
                expected = annotation.decode_masks(annotated_idx, list(range(annotation.num_objects)))
                np.testing.assert_array_equal(masks, expected)  # PNG is lossless
                jpeg = read_eval_frame(video, frame_idx).astype(float)
                assert np.abs(jpeg - reader.read_frame(frame_idx)).mean() < 8  # JPEG q95 (noisy frames too)


def test_eval_layout_rejects_unaligned_and_unreadable_masks(tmp_path):
    sav_dir = tmp_path / "sav"
    generate_dataset(sav_dir, 1, seed=0, val_fraction=0.0, scene_config=SceneConfig(min_frames=9, max_frames=11))
    write_eval_layout(sav_dir, tmp_path / "eval")
    obj_dir = next((tmp_path / "eval" / "Annotations_6fps" / "sav_000001").iterdir())
    bad = obj_dir / "00005.png"
    cv2.imwrite(str(bad), np.zeros((4, 4), np.uint8))
    with pytest.raises(SAVFormatError, match="not a multiple of 4") as error:
        list_eval_videos(tmp_path / "eval")
    assert "00005.png" in str(error.value)
    bad.unlink()
    (obj_dir / "00004.png").write_bytes(b"not a png")
    video = list_eval_videos(tmp_path / "eval")[0]
    height, width = read_eval_frame(video, 0).shape[:2]
    with pytest.raises(SAVFormatError, match="unreadable PNG") as error:
        read_eval_masks(video, 4, height, width)
    assert "00004.png" in str(error.value)
    with pytest.raises(SAVFormatError, match=f"frame is {height + 2}x{width}"):
        read_eval_masks(video, 0, height + 2, width)


def test_video_np_pairs_are_optional_and_checked(tmp_path):
    # SA-V's own files have no video_np_pairs: the reader works as before.
    _, plain = write_sample(tmp_path / "plain")
    annotation = load_annotation(plain)
    assert annotation.video_np_pairs is None and annotation.negative_phrases == ()
    pairs = [{"noun_phrase": "red square", "num_masklets": 1}, {"noun_phrase": "blue circle"},
             {"noun_phrase": "green star", "num_masklets": 0}]
    _, listed = write_sample(tmp_path / "listed", video_np_pairs=pairs)
    annotation = load_annotation(listed)
    assert annotation.video_np_pairs == (("red square", 1), ("blue circle", 1), ("green star", 0))
    assert annotation.negative_phrases == ("green star",)
    for bad, message in (([{"noun_phrase": "red square", "num_masklets": 2}], "says 2 masklets"),
                         ([{"noun_phrase": "green star"}, {"noun_phrase": "green star"}], "twice"),
                         ({"noun_phrase": "x"}, "must be a list"), ([{"num_masklets": 0}], "noun_phrase")):
        _, path = write_sample(tmp_path / "bad", video_np_pairs=bad)
        with pytest.raises(SAVFormatError, match=message) as error:
            load_annotation(path)
        assert str(path) in str(error.value)
