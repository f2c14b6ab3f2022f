import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from scripted_backend import ScriptedBackend, draw_squares

from runtime.predictions import MaskletRecorder, write_predictions
from runtime.session import SessionConfig, VideoSession
from training.evaluate import Masklet, PredictionVideo, evaluate_video, load_prediction_json

SIZE = (48, 80)


def test_recorded_session_is_readable_by_training_evaluate(tmp_path):
    session = VideoSession.from_backend(ScriptedBackend(), ["red", "blue"], SessionConfig(rgb=True))
    recorder = MaskletRecorder("vid7", SIZE)
    truth = {}
    for number in range(9):
        squares = {"red": (2 + number, 4, 12)}
        if number >= 4:
            squares["blue"] = (50, 20, 14)  # blue appears later: empty RLE before
        result = session.step(draw_squares(SIZE, squares))
        if number % 4 == 0:
            recorder.add(number, result.objects)
            truth[number] = {o.prompt: o.mask for o in result.objects}
    path = tmp_path / "vid7.json"
    write_predictions(path, recorder.to_dict())
    data = json.loads(path.read_text())
    assert data["frame_indices"] == [0, 4, 8] and data["masklet_id"] == [1, 2]
    assert data["masklet_category"] == ["red", "blue"]
    assert (data["video_height"], data["video_width"]) == SIZE

    prediction = load_prediction_json(path)
    red, blue = prediction.masklets
    assert prediction.video_id == "vid7" and prediction.frame_indices == {0, 4, 8}
    assert mask_utils.area(blue.frames[0]) == 0
    for number in (0, 4, 8):
        np.testing.assert_array_equal(mask_utils.decode(red.frames[number]).astype(bool), truth[number]["red"])
    np.testing.assert_array_equal(mask_utils.decode(blue.frames[8]).astype(bool), truth[8]["blue"])

    gt = [Masklet(obj_id=0, category="red", frames=dict(red.frames))]
    scores = evaluate_video(gt, PredictionVideo("vid7", prediction.frame_indices, prediction.masklets)).objects
    assert scores[0].pred_obj_id == 1 and scores[0].j == pytest.approx(100.0)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temp file


def test_recorder_rejects_inconsistent_input(tmp_path):
    recorder = MaskletRecorder("v", SIZE)
    recorder.add(4, [])
    with pytest.raises(ValueError, match="after frame 4"):
        recorder.add(4, [])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_predictions(tmp_path / "missing" / "p.json", recorder.to_dict())
