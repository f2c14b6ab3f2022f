"""Exported backends on the tiny preset: ONNX and ExecuTorch sessions give the torch session's outputs
frame by frame (and so forward_video's, see test_torch_streaming.py), and the real ONNX export runs
with torch blocked. The programs are the session's shared exports (tests/conftest.py)."""

import json

import cv2
import numpy as np
import pytest
from torch_blocked import run_runtime_without_torch

from runtime.backends.base import BackendError
from runtime.postprocess import PostprocessConfig
from runtime.session import SessionConfig, VideoSession
from runtime.video_io import FrameSource

PROMPTS = ("red circle", "blue square")
CONFIG = SessionConfig(memory_stride=1, keep_raw_outputs=True, postprocess=PostprocessConfig(score_threshold=0.2))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint


@pytest.fixture(scope="module")
def onnx_dir(onnx_export):
    return onnx_export.directory


@pytest.fixture(scope="module")
def pte(executorch_export):
    return executorch_export.program


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    rng = np.random.default_rng(3)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24.0, (56, 40))
    for _ in range(4):
        writer.write(cv2.resize(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8), (56, 40),
                                interpolation=cv2.INTER_CUBIC))
    writer.release()
    with FrameSource(path) as source:
        frames = [frame for _, frame in source]
    return path, frames


@pytest.fixture(scope="module")
def torch_results(checkpoint, video):
    session = VideoSession(checkpoint, "torch", PROMPTS, CONFIG, num_threads=1)
    return [session.step(frame) for frame in video[1]]


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


@pytest.mark.parametrize("backend", ["onnx", "executorch"])
def test_exported_session_matches_torch(backend, request, video, torch_results):
    model_path = request.getfixturevalue("onnx_dir" if backend == "onnx" else "pte")
    session = VideoSession(model_path, None, PROMPTS, CONFIG)
    assert session.backend.name == backend and session.memory_stride == 1
    detections = 0
    for frame, expected in zip(video[1], torch_results):
        result = session.step(frame)
        assert result.memory_frames == expected.memory_frames
        for prompt in PROMPTS:
            got, ref = result.raw_outputs[prompt], expected.raw_outputs[prompt]
            np.testing.assert_allclose(got.pred_logits, ref.pred_logits, atol=1e-3)
            np.testing.assert_allclose(got.presence_logit, ref.presence_logit, atol=1e-3)
            np.testing.assert_allclose(got.pred_boxes, ref.pred_boxes, atol=1e-3)
            np.testing.assert_allclose(got.iou_scores, ref.iou_scores, atol=1e-3)
            np.testing.assert_allclose(got.pred_masks, ref.pred_masks, atol=5e-3)
            assert _mask_iou(got.pred_masks > 0, ref.pred_masks > 0) > 0.995
        assert [o.obj_id for o in result.objects] == [o.obj_id for o in expected.objects]
        for obj, ref_obj in zip(result.objects, expected.objects):
            assert obj.prompt == ref_obj.prompt and _mask_iou(obj.mask, ref_obj.mask) > 0.97
        detections += len(result.objects)
    assert detections > 0


def test_exported_prompts_and_backend_mismatch(onnx_dir, pte):
    session = VideoSession(onnx_dir, "onnx", ["  Blue Square"])
    assert session.prompts == ["  Blue Square"]
    with pytest.raises(ValueError, match=r"'green' is not stored.*\['red circle', 'blue square'\]"):
        VideoSession(pte, None, ["green"])
    with pytest.raises(BackendError, match="does not match backend 'onnx'"):
        VideoSession(pte, "onnx", ["red circle"])


def test_real_onnx_export_runs_without_torch(onnx_dir, video, torch_results, tmp_path):
    out_json = tmp_path / "pred.json"
    result = run_runtime_without_torch(["--model", str(onnx_dir), "--video", str(video[0]), "--prompt", "red circle",
                                "--prompt", "blue square", "--memory-stride", "1", "--score-threshold", "0.2",
                                "--out-json", str(out_json), "--quiet"])
    assert result.returncode == 0, result.stderr
    assert "TORCH_MODULES []" in result.stdout
    data = json.loads(out_json.read_text())
    from pycocotools import mask as mask_utils

    for entry, expected in zip(data["masklet"], torch_results):
        by_id = {obj_id: rle for obj_id, rle in zip(data["masklet_id"], entry)}
        for obj in expected.objects:
            rle = by_id[obj.obj_id]
            mask = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)
            assert _mask_iou(mask, obj.mask) > 0.97
