import math

import pytest
import torch
from safetensors.torch import load_file

from efficient_sam3 import EfficientSam3Model
from training.config import ImageStageConfig
from training.frame_dataset import AnnotatedFrameDataset, read_degraded_frames, read_video_facts
from training.image import main, train_image_stage
from training.run_log import read_log
from video_stage_data import write_student, write_videos

MEMORY_PREFIXES = ("perceiver_resampler.", "memory_cross_attn.")


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """Two steps from a saved random student, with FPN level-3 alignment to a (student) teacher."""
    root = tmp_path_factory.mktemp("image_stage")
    sav_root = write_videos(root / "sav", 2)
    init = write_student(root / "init", seed=0)
    teacher = write_student(root / "teacher", seed=1)
    config = ImageStageConfig(sav_root=sav_root, out_dir=root / "run", init_checkpoint=init, teacher=teacher,
                              steps=2, lr=1e-3, warmup_steps=1, show_progress=False)
    return config, train_image_stage(config), init


def test_image_stage_trains_everything_but_the_memory(image_run):
    _, result, init = image_run
    before = load_file(str(init / "model.safetensors"))
    after = load_file(str(result.checkpoint / "model.safetensors"))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert not any(k.startswith(MEMORY_PREFIXES) for k in changed)  # unused on single frames: still identity
    for prefix in ("backbone.", "neck.", "text_encoder.", "detr_encoder.", "detr_decoder.", "mask_decoder."):
        assert any(k.startswith(prefix) for k in changed), prefix


def test_image_stage_logs_every_term_including_feature_alignment(image_run):
    _, result, _ = image_run
    rows = read_log(result.log_path)
    assert [row["step"] for row in rows] == [1, 2]
    for row in rows:
        for name in ("loss", "mask", "box_l1", "box_giou", "iou", "presence", "classification", "feature_align"):
            assert math.isfinite(row[name]), (name, row)
    assert result.plot_path.stat().st_size > 0 and math.isfinite(result.final_loss)


def test_image_stage_checkpoint_is_what_the_video_stage_finds(image_run):
    config, result, _ = image_run
    assert result.checkpoint == config.out_dir / "student"
    from training.video import find_latest_student

    assert find_latest_student(config.out_dir.parent) == result.checkpoint
    assert isinstance(EfficientSam3Model.from_pretrained(result.checkpoint), EfficientSam3Model)


def test_frame_dataset_leaves_out_degraded_frames(tmp_path):
    sav_root = write_videos(tmp_path / "sav", 2, seed=4)
    facts = read_video_facts(sav_root)
    clean = AnnotatedFrameDataset(sav_root)
    everything = AnnotatedFrameDataset(sav_root, include_degraded_frames=True)
    num_degraded = sum(len(f.degraded_frames) for f in facts.values())
    assert num_degraded > 0
    assert len(everything) == sum(f.num_annotated_frames for f in facts.values())
    assert len(clean) == len(everything) - num_degraded
    item = clean[0]
    assert item["pixel_values"].shape == (3, 504, 504)
    assert item["gt_masks"].shape[1:] == (504, 504) and item["gt_masks"].shape[0] == item["gt_boxes"].shape[0]
    assert len(item["prompts"]) == item["gt_masks"].shape[0]


def test_degraded_frames_field_is_validated(tmp_path):
    path = tmp_path / "v_manual.json"
    path.write_text('{"synthetic_degraded_frames": [1, 9]}')
    with pytest.raises(ValueError, match="v_manual.json"):
        read_degraded_frames(path, num_annotated_frames=5)
    path.write_text("{}")
    assert read_degraded_frames(path, 5) == frozenset()


def test_cli_requires_sav_root():
    with pytest.raises(SystemExit):
        main([])
