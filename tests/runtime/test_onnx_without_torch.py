"""The ONNX path runs with numpy + onnxruntime + OpenCV only: the CLI in a subprocess where importing
torch raises ImportError. Uses a contract-shaped ONNX model built in a second (contract_onnx.py); the
real exported tiny model runs the same way in test_exported_backends.py (slow)."""

import json

import cv2
import numpy as np
import pytest
from contract_onnx import write_contract_onnx_dir
from torch_blocked import BLOCK_TORCH, run_runtime_without_torch, run_without_torch

@pytest.fixture(scope="module")
def square_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "square.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24.0, (64, 48))
    for t in range(5):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[10:30, 10 + 2 * t:34 + 2 * t] = 255
        writer.write(frame)
    writer.release()
    return path


def test_blocker_really_blocks_torch():
    result = run_without_torch(BLOCK_TORCH + "import torch\n", timeout=120)
    assert result.returncode != 0 and "torch is blocked" in result.stderr


def test_onnx_cli_runs_without_torch(tmp_path, square_video):
    model = write_contract_onnx_dir(tmp_path / "onnx")
    out_json, out_video = tmp_path / "pred.json", tmp_path / "overlay.mp4"
    result = run_runtime_without_torch(["--model", str(model), "--video", str(square_video), "--prompt", "bright square",
                                "--out-json", str(out_json), "--out-video", str(out_video), "--quiet"])
    assert result.returncode == 0, result.stderr
    assert "TORCH_MODULES []" in result.stdout
    assert "backend onnx" in result.stdout and "fps" in result.stdout
    data = json.loads(out_json.read_text())
    assert data["frame_indices"] == [0, 1, 2, 3, 4] and data["masklet_id"] == [1]  # one square, one stable id
    assert data["masklet_category"] == ["bright square"] and out_video.is_file()


def test_onnx_cli_bad_prompt_without_torch(tmp_path, square_video):
    model = write_contract_onnx_dir(tmp_path / "onnx")
    result = run_runtime_without_torch(["--model", str(model), "--video", str(square_video), "--prompt", "red circle",
                                "--quiet"])
    assert result.returncode == 2
    assert "'red circle' is not stored" in result.stderr and "['bright square']" in result.stderr
