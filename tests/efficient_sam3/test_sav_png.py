"""SA-V PNG layout writer: the folders sam2's official evaluator reads."""

import json

import numpy as np
import pytest
from PIL import Image

from runtime.predictions import MaskletRecorder
from efficient_sam3.sav_png import write_prediction_pngs, write_video_pngs
from runtime.session import ObjectResult


def _recorded(size=(6, 8)) -> dict:
    recorder = MaskletRecorder("sav_000007", size)
    square = np.zeros(size, bool)
    square[1:4, 2:5] = True
    recorder.add(0, [ObjectResult(obj_id=3, prompt="cat", mask=square, box_xyxy=np.zeros(4), score=0.9)])
    recorder.add(4, [ObjectResult(obj_id=12, prompt="dog", mask=~square, box_xyxy=np.zeros(4), score=0.8)])
    return json.loads(json.dumps(recorder.to_dict()))  # as read back from the JSON file


def test_every_object_has_a_png_at_every_recorded_frame(tmp_path):
    video_dir = write_prediction_pngs(tmp_path, _recorded())
    assert video_dir == tmp_path / "sav_000007"
    files = sorted(str(p.relative_to(video_dir)) for p in video_dir.rglob("*.png"))
    assert files == ["003/00000.png", "003/00004.png", "012/00000.png", "012/00004.png"]
    cat0 = np.array(Image.open(video_dir / "003" / "00000.png"))
    assert cat0.dtype == np.uint8 and cat0.shape == (6, 8) and set(np.unique(cat0)) == {0, 255}
    assert cat0[1:4, 2:5].all() and cat0.sum() == 9 * 255
    assert not np.array(Image.open(video_dir / "003" / "00004.png")).any()  # absent: an empty PNG
    assert [p.name for p in tmp_path.iterdir()] == ["sav_000007"]  # no temp folder left


def test_rewrite_replaces_the_whole_video_folder(tmp_path):
    write_video_pngs(tmp_path, "v", {1: {0: np.ones((2, 2), bool)}, 2: {0: np.ones((2, 2), bool)}})
    write_video_pngs(tmp_path, "v", {5: {8: np.zeros((2, 2), bool)}})
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.png")) == ["v/005/00008.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["v"]


def test_bad_input_names_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing: PNG output folder does not exist"):
        write_video_pngs(tmp_path / "missing", "v", {})
    with pytest.raises(ValueError, match="non-negative"):
        write_video_pngs(tmp_path, "v", {-1: {0: np.ones((2, 2), bool)}})
    with pytest.raises(ValueError, match=r"\[H, W\] mask"):
        write_video_pngs(tmp_path, "v", {1: {0: np.ones((2, 2, 3), bool)}})
    assert list(tmp_path.iterdir()) == []  # nothing half-written
