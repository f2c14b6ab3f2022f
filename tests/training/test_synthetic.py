import json

import cv2
import numpy as np
import pytest

from training.data.sav import VideoFrameReader, find_videos, load_annotation
from training.synthetic import generate_dataset, main, write_synthetic_video
from training.synthetic_scene import (
    COLOURS_RGB,
    DROPOUT_GREY,
    SHAPES,
    SceneConfig,
    render_frame,
    render_object_mask,
    sample_scene,
)

SAV_FIELDS = {
    "video_id", "video_duration", "video_frame_count", "video_height", "video_width", "video_resolution",
    "video_environment", "video_split", "masklet", "masklet_id", "masklet_size_rel", "masklet_size_abs",
    "masklet_size_bucket", "masklet_visibility_changes", "masklet_first_appeared_frame", "masklet_frame_count",
    "masklet_edited_frame_count", "masklet_type", "masklet_stability_score", "masklet_num",
}
SHORT = SceneConfig(min_frames=25, max_frames=35)


def test_dataset_layout_split_and_sav_fields(tmp_path):
    video_ids = generate_dataset(tmp_path, 4, seed=0, val_fraction=0.25, scene_config=SHORT)
    assert video_ids == ["sav_000001", "sav_000002", "sav_000003", "sav_000004"]
    train, val = find_videos(tmp_path / "train"), find_videos(tmp_path / "val")
    assert len(train) == 3 and len(val) == 1
    for split, videos in (("train", train), ("val", val)):
        for files in videos:
            data = json.loads(files.json_path.read_text())
            assert SAV_FIELDS <= set(data)
            assert data["video_split"] == split
            annotation = load_annotation(files.json_path)
            assert annotation.frame_count % 4 != 0
            assert annotation.height != annotation.width
            assert annotation.num_annotated_frames == (annotation.frame_count - 1) // 4 + 1
            assert len(annotation.categories) == annotation.num_objects >= 1
            for category in annotation.categories:
                colour, shape = category.split(" ")
                assert colour in COLOURS_RGB and shape in SHAPES
            for slot, first in enumerate(annotation.first_appeared):
                assert annotation.visible_slots(first).count(slot) == 1
                assert all(slot not in annotation.visible_slots(k) for k in range(first))
            capture = cv2.VideoCapture(str(files.video_path))
            assert capture.get(cv2.CAP_PROP_FPS) == 24
            assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == annotation.frame_count
            capture.release()


def test_flat_layout_without_val_split(tmp_path):
    generate_dataset(tmp_path, 2, seed=0, val_fraction=0.0, scene_config=SHORT)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "sav_000001.mp4", "sav_000001_manual.json", "sav_000002.mp4", "sav_000002_manual.json",
    ]


def test_deterministic_for_a_seed(tmp_path):
    generate_dataset(tmp_path / "a", 2, seed=7, scene_config=SHORT)
    generate_dataset(tmp_path / "b", 2, seed=7, scene_config=SHORT)
    generate_dataset(tmp_path / "c", 2, seed=8, scene_config=SHORT)
    files_a = sorted(path.relative_to(tmp_path / "a") for path in (tmp_path / "a").rglob("sav_*"))
    assert len(files_a) == 4
    for relative in files_a:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()
    json_a = list((tmp_path / "a").rglob("sav_000001_manual.json"))[0].read_text()
    other = list((tmp_path / "c").rglob("sav_000001_manual.json"))[0].read_text()
    assert json_a != other


def test_masks_match_rendered_objects_and_pixels(tmp_path):
    rng = np.random.default_rng(11)
    scene = sample_scene(rng, SceneConfig(min_frames=41, max_frames=47, min_objects=3, max_objects=3))
    files = write_synthetic_video(scene, "sav_000042", "train", tmp_path, video_seed=1)
    annotation = load_annotation(files.json_path)
    data = json.loads(files.json_path.read_text())
    degraded = dict(zip(data["synthetic_degraded_frames"], data["synthetic_degradation"]))
    kept = [slot for slot, track in enumerate(scene.objects) if track.category in annotation.categories]
    with VideoFrameReader(files.video_path) as reader:
        for k in range(annotation.num_annotated_frames):
            clean, visible = render_frame(scene, 4 * k)
            masks = annotation.decode_masks(k, list(range(annotation.num_objects)))
            np.testing.assert_array_equal(masks, visible[kept])  # exact masks
            frame = reader.read_frame(4 * k).astype(float)
            if k not in degraded:
                assert np.abs(frame - clean).mean() < 4  # only codec error
                for slot, mask in zip(kept, masks):
                    core = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
                    if core.sum() > 20:
                        colour = frame[core].mean(axis=0)
                        assert np.abs(colour - scene.objects[slot].rgb).max() < 25
            elif degraded[k] == "blur":
                assert np.abs(frame - clean).mean() > 8
            else:
                assert min(
                    np.abs(frame[render_object_mask(track, 4 * k, scene.height, scene.width)] - DROPOUT_GREY).mean()
                    for track in scene.objects
                    if render_object_mask(track, 4 * k, scene.height, scene.width).any()
                ) < 4  # one object is hidden under the grey rectangle


def test_degraded_frames_leave_clean_context():
    rng = np.random.default_rng(0)
    for _ in range(30):
        scene = sample_scene(rng, SceneConfig())
        indices = [degradation.annotated_idx for degradation in scene.degradations]
        num_annotated = scene.num_annotated_frames
        assert min(indices) >= 2 and max(indices) < num_annotated
        assert all(later - earlier > 1 for earlier, later in zip(indices, indices[1:]))
        assert 0.25 * num_annotated <= len(indices) <= 0.5 * num_annotated + 1
        assert {degradation.kind for degradation in scene.degradations} <= {"blur", "dropout"}


def test_scenes_move_rotate_scale_enter_leave_and_occlude():
    rng = np.random.default_rng(1)
    config = SceneConfig()
    seen = {"enter_or_leave": False, "occlusion": False, "rotation": False, "scaling": False}
    for _ in range(25):
        scene = sample_scene(rng, config)
        assert 48 <= scene.num_frames <= 90 and scene.num_frames % 4 != 0
        assert 1 <= len(scene.objects) <= 4
        short = min(scene.width, scene.height)
        for track in scene.objects:
            poses = np.array([track.pose(frame_idx) for frame_idx in range(scene.num_frames)])
            diameters = 2 * poses[:, 2] / short
            assert diameters.min() >= config.min_size - 1e-6 and diameters.max() <= config.max_size + 1e-6
            assert np.ptp(poses[:, 0]) + np.ptp(poses[:, 1]) > 1  # moves
            seen["rotation"] |= np.ptp(poses[:, 3]) > 30 and track.shape != "circle"
            seen["scaling"] |= poses[:, 2].max() > 1.1 * poses[:, 2].min()
            in_view = [
                render_object_mask(track, frame_idx, scene.height, scene.width).any()
                for frame_idx in range(0, scene.num_frames, 4)
            ]
            seen["enter_or_leave"] |= len(set(in_view)) == 2
        for frame_idx in range(0, scene.num_frames, 4):
            _, visible = render_frame(scene, frame_idx)
            full = [render_object_mask(track, frame_idx, scene.height, scene.width) for track in scene.objects]
            seen["occlusion"] |= any(v.sum() < f.sum() for v, f in zip(visible, full))
    assert all(seen.values()), seen


def test_cli(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--videos", "2", "--seed", "3", "--val-fraction", "0.5"]) == 0
    assert "wrote 2 videos" in capsys.readouterr().out
    assert len(find_videos(tmp_path / "train")) == 1 and len(find_videos(tmp_path / "val")) == 1


def test_cli_writes_the_default_runs_scenes(tmp_path):
    """Held-out videos for a model of the offline default run: only its 3 x 3 phrases, its frame counts."""
    from training.config import PipelineConfig

    scene = PipelineConfig().scene
    assert main(["--out", str(tmp_path), "--videos", "2", "--seed", "1000", "--val-fraction", "0",
                 "--scene", "default-run"]) == 0
    vocabulary = {f"{c} {s}" for c in scene.colours for s in scene.shapes}
    for files in find_videos(tmp_path):
        annotation = load_annotation(files.json_path)
        assert set(annotation.categories) <= vocabulary
        assert {phrase for phrase, _ in annotation.video_np_pairs} == vocabulary
        assert scene.min_frames <= json.loads(files.json_path.read_text())["video_frame_count"] <= scene.max_frames


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        generate_dataset(tmp_path, 0, seed=0)
    with pytest.raises(ValueError):
        generate_dataset(tmp_path, 2, seed=0, val_fraction=1.0)


def test_videos_list_absent_vocabulary_phrases_as_negatives(tmp_path):
    config = SceneConfig(min_frames=25, max_frames=35, shapes=("circle", "square", "triangle"),
                         colours=("red", "green", "blue"), max_objects=2)
    generate_dataset(tmp_path, 3, seed=1, val_fraction=0.0, scene_config=config)
    vocabulary = {f"{c} {s}" for c in config.colours for s in config.shapes}
    for files in find_videos(tmp_path):
        annotation = load_annotation(files.json_path)  # the reader checks counts against masklet_category
        phrases = [phrase for phrase, _ in annotation.video_np_pairs]
        assert set(phrases) == vocabulary and len(phrases) == 9
        assert set(annotation.negative_phrases) == vocabulary - set(annotation.categories)
        assert len(annotation.negative_phrases) >= 9 - 2
        assert all(count == annotation.categories.count(p) for p, count in annotation.video_np_pairs)
