import json

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from efficient_sam3.contract import preprocess_frame
from efficient_sam3.masks import encode_rle, masks_to_boxes
from training.data import CacheFileError, SAVFormatError, SAVVideoDataset, measure_dataset_throughput, video_collate_fn
from training.data.feature_cache import cache_path, write_cache_file
from training.data.sav import VideoFrameReader, find_videos, load_annotation
from training.data.video_dataset import resize_masks
from training.synthetic import generate_dataset
from training.synthetic_scene import SceneConfig

HEIGHT, WIDTH, NUM_FRAMES = 48, 64, 23  # annotated frames 0, 4, ..., 20 (K = 6)
NUM_ANNOTATED = 6
ITEM_KEYS = {
    "pixel_values", "memory_features", "memory_mask", "gt_masks", "gt_boxes",
    "video_id", "query_frame", "context_frames", "prompts", "obj_ids",
}


def frame_level(frame_idx: int) -> int:
    return 10 + 10 * frame_idx


def rect_mask(annotated_idx: int, slot: int) -> np.ndarray:
    """Object 0: rows 5+k..14+k, cols 10..29, absent at k=3. Object 1: rows 30..39, cols 40..59 at even k."""
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    if slot == 0 and annotated_idx != 3:
        mask[5 + annotated_idx : 15 + annotated_idx, 10:30] = 1
    elif slot == 1 and annotated_idx % 2 == 0:
        mask[30:40, 40:60] = 1
    return mask


def write_video(path, num_frames=NUM_FRAMES):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24, (WIDTH, HEIGHT))
    for frame_idx in range(num_frames):
        writer.write(np.full((HEIGHT, WIDTH, 3), frame_level(frame_idx), np.uint8))
    writer.release()


def write_fake_cache(cache_dir, video_id, frame_indices, shape_tail=(256, 18, 18)):
    """Row i is filled with its frame number, so a test can see which frame landed in which slot."""
    features = torch.tensor(frame_indices, dtype=torch.float16).view(-1, 1, 1, 1).expand(-1, *shape_tail)
    metadata = {"video_id": video_id, "teacher": "fake:0", "image_size": "504", "format_version": "1"}
    write_cache_file(cache_path(cache_dir, video_id), features.contiguous(), list(frame_indices), metadata)


def write_video_sample(root, cache_dir, video_id, with_categories=True):
    root.mkdir(parents=True, exist_ok=True)
    write_video(root / f"{video_id}.mp4")
    data = {
        "video_id": video_id,
        "video_frame_count": NUM_FRAMES,
        "video_height": HEIGHT,
        "video_width": WIDTH,
        "masklet": [[encode_rle(rect_mask(k, slot)) for slot in range(2)] for k in range(NUM_ANNOTATED)],
        "masklet_id": [3, 7],
        "masklet_first_appeared_frame": [0, 0],
        "masklet_num": 2,
    }
    if with_categories:
        data["masklet_category"] = ["red square", "blue circle"]
    (root / f"{video_id}_manual.json").write_text(json.dumps(data))
    write_fake_cache(cache_dir, video_id, [4 * k for k in range(NUM_ANNOTATED)])


@pytest.fixture
def sample(tmp_path):
    root, cache_dir = tmp_path / "sav", tmp_path / "cache"
    write_video_sample(root, cache_dir, "sav_000001")
    write_video_sample(root, cache_dir, "sav_000002", with_categories=False)
    return root, cache_dir


def item_for(dataset, video_id, query_frame):
    for index in range(len(dataset)):
        item = dataset[index]
        if item["video_id"] == video_id and item["query_frame"] == query_frame:
            return item
    raise KeyError((video_id, query_frame))


def test_item_fields_shapes_and_dtypes(sample):
    dataset = SAVVideoDataset(sav_root=sample[0], cache_dir=sample[1], context_frames=3)
    assert len(dataset) == 2 * (NUM_ANNOTATED - 1)  # q >= 1 by default
    item = dataset[0]
    assert set(item) == ITEM_KEYS
    assert item["pixel_values"].shape == (3, 504, 504) and item["pixel_values"].dtype == torch.float32
    assert item["memory_features"].shape == (3, 256, 18, 18) and item["memory_features"].dtype == torch.float32
    assert item["memory_mask"].dtype == torch.bool and item["memory_mask"].shape == (3,)
    assert item["gt_masks"].dtype == torch.bool and item["gt_masks"].shape[1:] == (504, 504)
    assert item["gt_boxes"].dtype == torch.float32 and item["gt_boxes"].shape == (item["gt_masks"].shape[0], 4)


def test_every_item_is_frame_aligned(sample):
    context = 3
    dataset = SAVVideoDataset(sav_root=sample[0], cache_dir=sample[1], context_frames=context, image_size=64)
    levels = np.array([frame_level(frame_idx) for frame_idx in range(NUM_FRAMES)])
    seen = set()
    for index in range(len(dataset)):
        item = dataset[index]
        query_frame = item["query_frame"]
        q = query_frame // 4
        seen.add((item["video_id"], query_frame))
        assert query_frame % 4 == 0 and 4 <= query_frame < NUM_FRAMES
        # The decoded pixels are frame `query_frame`, not a neighbour up to 3 frames off.
        mean_level = (item["pixel_values"].mean().item() * 0.5 + 0.5) * 255
        assert np.argmin(np.abs(levels - mean_level)) == query_frame
        expected_context = [4 * (q - context + slot) if q - context + slot >= 0 else -1 for slot in range(context)]
        assert item["context_frames"] == expected_context
        assert item["memory_mask"].tolist() == [frame_idx >= 0 for frame_idx in expected_context]
        for slot, frame_idx in enumerate(expected_context):
            assert frame_idx == -1 or (frame_idx < query_frame and frame_idx % 4 == 0)
            expected_value = float(frame_idx) if frame_idx >= 0 else 0.0  # fake cache rows hold their frame number
            assert torch.all(item["memory_features"][slot] == expected_value)
    assert seen == {(video_id, 4 * q) for video_id in ("sav_000001", "sav_000002") for q in range(1, NUM_ANNOTATED)}


def test_first_frame_only_with_flag_and_fully_masked(sample):
    dataset = SAVVideoDataset(sav_root=sample[0], cache_dir=sample[1], context_frames=3, include_first_frame=True)
    assert len(dataset) == 2 * NUM_ANNOTATED
    item = item_for(dataset, "sav_000001", 0)
    assert item["context_frames"] == [-1, -1, -1]
    assert not item["memory_mask"].any() and torch.all(item["memory_features"] == 0)


def test_exact_masks_boxes_prompts_for_a_known_frame(sample):
    dataset = SAVVideoDataset(sav_root=sample[0], cache_dir=sample[1], context_frames=3)
    item = item_for(dataset, "sav_000001", 8)  # annotated index 2: both objects visible
    assert item["obj_ids"] == [3, 7]
    assert item["prompts"] == ["red square", "blue circle"]
    expected_boxes = [[10 / 64, 7 / 48, 30 / 64, 17 / 48], [40 / 64, 30 / 48, 60 / 64, 40 / 48]]
    np.testing.assert_allclose(item["gt_boxes"].numpy(), expected_boxes, rtol=0, atol=1e-7)
    native = np.stack([rect_mask(2, 0), rect_mask(2, 1)]).astype(bool)
    np.testing.assert_array_equal(item["gt_masks"].numpy(), resize_masks(native, 504))
    # Scaling 64x48 -> 504x504 keeps the rectangle's extent (up to one border pixel).
    rows = np.flatnonzero(item["gt_masks"][0].numpy().any(axis=1))
    cols = np.flatnonzero(item["gt_masks"][0].numpy().any(axis=0))
    assert abs(rows[0] - 7 * 504 / 48) <= 1 and abs(rows[-1] + 1 - 17 * 504 / 48) <= 1
    assert abs(cols[0] - 10 * 504 / 64) <= 1 and abs(cols[-1] + 1 - 30 * 504 / 64) <= 1
    plain = item_for(dataset, "sav_000002", 8)
    assert plain["prompts"] == ["", ""]


def test_frame_without_visible_objects_gives_empty_ground_truth(sample):
    dataset = SAVVideoDataset(sav_root=sample[0], cache_dir=sample[1], context_frames=3)
    item = item_for(dataset, "sav_000001", 12)  # annotated index 3: nothing visible
    assert item["gt_masks"].shape == (0, 504, 504) and item["gt_boxes"].shape == (0, 4)
    assert item["prompts"] == [] and item["obj_ids"] == []
    only_first = item_for(dataset, "sav_000001", 4)  # index 1: object 1 hidden
    assert only_first["obj_ids"] == [3]


def test_max_objects_per_frame(sample):
    dataset = SAVVideoDataset(sav_root=sample[0], cache_dir=sample[1], context_frames=3, max_objects_per_frame=1)
    item = item_for(dataset, "sav_000001", 8)
    assert item["obj_ids"] == [3] and item["gt_masks"].shape[0] == 1


def test_collate_stacks_tensors_and_lists_ground_truth(sample):
    dataset = SAVVideoDataset(sav_root=sample[0], cache_dir=sample[1], context_frames=3)
    loader = DataLoader(dataset, batch_size=4, shuffle=False, collate_fn=video_collate_fn)
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (4, 3, 504, 504)
    assert batch["memory_features"].shape == (4, 3, 256, 18, 18)
    assert batch["memory_mask"].shape == (4, 3) and batch["memory_mask"].dtype == torch.bool
    for key in ("gt_masks", "gt_boxes", "prompts", "obj_ids", "video_id", "query_frame", "context_frames"):
        assert isinstance(batch[key], list) and len(batch[key]) == 4
    assert [masks.shape[0] for masks in batch["gt_masks"]] == [1, 2, 0, 2]  # query frames 4, 8, 12, 16


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


CORRUPTIONS = {
    "cache_wrong_shape": (
        lambda root, cache: write_fake_cache(cache, "sav_000002", [0, 4, 8, 12, 16, 20], (128, 18, 18)),
        CacheFileError, "sav_000002.safetensors",
    ),
    "cache_wrong_frame_count": (
        lambda root, cache: write_fake_cache(cache, "sav_000002", [0, 4, 8, 12]),
        CacheFileError, "sav_000002.safetensors",
    ),
    "cache_missing": (lambda root, cache: cache_path(cache, "sav_000002").unlink(), CacheFileError, "sav_000002"),
    "cache_truncated": (lambda root, cache: _truncate(cache_path(cache, "sav_000002")), CacheFileError, "sav_000002"),
    "json_malformed": (
        lambda root, cache: _truncate(root / "sav_000002_manual.json"), SAVFormatError, "sav_000002_manual.json"
    ),
    "mp4_truncated": (lambda root, cache: _truncate(root / "sav_000002.mp4"), SAVFormatError, "sav_000002.mp4"),
    "mp4_missing": (lambda root, cache: (root / "sav_000002.mp4").unlink(), SAVFormatError, "sav_000002.mp4"),
    "rle_size_mismatch": (
        lambda root, cache: (root / "sav_000002_manual.json").write_text(
            (root / "sav_000002_manual.json").read_text().replace('"size": [48, 64]', '"size": [64, 48]', 1)
        ),
        SAVFormatError, "sav_000002_manual.json",
    ),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_bad_video_raises_naming_the_file_or_is_skipped_and_reported(sample, corruption):
    root, cache_dir = sample
    corrupt, error_type, file_name = CORRUPTIONS[corruption]
    corrupt(root, cache_dir)
    with pytest.raises(error_type) as error:
        SAVVideoDataset(sav_root=root, cache_dir=cache_dir, context_frames=3)
    assert file_name in str(error.value)
    dataset = SAVVideoDataset(sav_root=root, cache_dir=cache_dir, context_frames=3, skip_bad_videos=True)
    assert dataset.video_ids == ["sav_000001"]
    assert [bad.video_id for bad in dataset.bad_videos] == ["sav_000002"]
    assert file_name in dataset.bad_videos[0].reason
    assert {dataset[index]["video_id"] for index in range(len(dataset))} == {"sav_000001"}


def test_video_failing_during_an_epoch_is_skipped_and_reported(sample):
    root, cache_dir = sample
    strict = SAVVideoDataset(sav_root=root, cache_dir=cache_dir, context_frames=3)
    skipping = SAVVideoDataset(sav_root=root, cache_dir=cache_dir, context_frames=3, skip_bad_videos=True)
    (root / "sav_000001.mp4").unlink()
    with pytest.raises(SAVFormatError, match="sav_000001.mp4"):
        strict[0]
    items = [skipping[index] for index in range(len(skipping))]
    assert {item["video_id"] for item in items} == {"sav_000002"}
    assert [bad.video_id for bad in skipping.bad_videos] == ["sav_000001"]


def test_synthetic_videos_through_the_dataset(tmp_path):
    root, cache_dir = tmp_path / "sav", tmp_path / "cache"
    generate_dataset(root, 2, seed=5, val_fraction=0.0, scene_config=SceneConfig(min_frames=17, max_frames=23))
    for files in find_videos(root):
        annotation = load_annotation(files.json_path)
        write_fake_cache(cache_dir, files.video_id, annotation.annotated_frame_indices())
    dataset = SAVVideoDataset(sav_root=root, cache_dir=cache_dir, context_frames=2, image_size=128)
    assert len(dataset) > 0
    for index in range(len(dataset)):
        item = dataset[index]
        annotation = load_annotation(root / f"{item['video_id']}_manual.json")
        q = item["query_frame"] // 4
        slots = annotation.visible_slots(q)
        assert item["obj_ids"] == [annotation.obj_ids[slot] for slot in slots]
        assert item["prompts"] == [annotation.categories[slot] for slot in slots]
        native = annotation.decode_masks(q, slots)
        np.testing.assert_array_equal(item["gt_masks"].numpy(), resize_masks(native, 128))
        np.testing.assert_array_equal(item["gt_boxes"].numpy(), masks_to_boxes(native))
        with VideoFrameReader(root / f"{item['video_id']}.mp4") as reader:
            frame = reader.read_frame(item["query_frame"])
        np.testing.assert_array_equal(item["pixel_values"].numpy(), preprocess_frame(frame, 128))


def test_measure_dataset_throughput(sample):
    dataset = SAVVideoDataset(sav_root=sample[0], cache_dir=sample[1], context_frames=3)
    assert measure_dataset_throughput(dataset, num_items=4) > 0
