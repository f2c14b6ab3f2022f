"""``python -m runtime`` end to end on the tiny preset (torch backend), and its bad-input errors."""

import json

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from contract_onnx import write_contract_onnx_dir

from efficient_sam3 import EfficientSam3Config, EfficientSam3Model
from runtime.__main__ import main
from runtime.backends.base import BackendError
from runtime.backends.registry import infer_backend, open_backend
from training.evaluate import load_prediction_json
from model_helpers import open_memory_path

SIZE = (36, 52)


@pytest.fixture(scope="module", autouse=True)
def restore_threads():
    threads = torch.get_num_threads()  # --threads 1 below sets torch's global thread count
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = EfficientSam3Model(EfficientSam3Config.from_preset("tiny"))
    with torch.no_grad():
        open_memory_path(model, 0.5)
    directory = tmp_path_factory.mktemp("tiny_ckpt")
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24.0, (SIZE[1], SIZE[0]))
    for _ in range(3):
        writer.write(cv2.resize(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8), (SIZE[1], SIZE[0])))
    writer.release()
    return path


def test_cli_writes_predictions_overlay_and_latency(checkpoint, video, tmp_path, capsys):
    out_json, out_video = tmp_path / "pred.json", tmp_path / "overlay.mp4"
    code = main(["--model", str(checkpoint), "--video", str(video), "--prompt", "red circle",
                 "--out-json", str(out_json), "--out-video", str(out_video), "--output-stride", "2",
                 "--score-threshold", "0.2", "--threads", "1", "--quiet"])
    assert code == 0
    summary = capsys.readouterr().out
    assert "3 frames (2 recorded)" in summary and "p50" in summary and "p90" in summary and "fps" in summary
    data = json.loads(out_json.read_text())
    assert data["video_id"] == "clip" and data["frame_indices"] == [0, 2]
    assert data["masklet_id"], "random tiny weights at threshold 0.2 give detections"
    assert set(data["masklet_category"]) == {"red circle"}
    prediction = load_prediction_json(out_json)
    assert all(rle["size"] == list(SIZE) for m in prediction.masklets for rle in m.frames.values())
    capture = cv2.VideoCapture(str(out_video))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    assert (capture.get(cv2.CAP_PROP_FRAME_HEIGHT), capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == SIZE
    capture.release()


def test_backend_follows_the_path_and_mismatches_are_clear(checkpoint, tmp_path):
    assert infer_backend(checkpoint) == "torch"
    with pytest.raises(BackendError, match="does not match backend 'onnx'"):
        open_backend(checkpoint, "onnx")
    with pytest.raises(BackendError, match="not a model this runtime knows"):
        infer_backend(tmp_path)
    with pytest.raises(FileNotFoundError, match="model not found"):
        infer_backend(tmp_path / "nope")
    bogus_pte = tmp_path / "model.pte"
    bogus_pte.write_bytes(b"not a program")
    with pytest.raises(BackendError, match="does not match backend 'torch'"):
        open_backend(bogus_pte, "torch")


@pytest.mark.parametrize("case", ["bad_video", "empty_prompt", "wrong_backend", "no_model", "bad_stride"])
def test_cli_bad_input_is_one_clear_line(case, checkpoint, video, tmp_path, capsys):
    args = {"--model": str(checkpoint), "--video": str(video), "--prompt": "red circle"}
    expected = {
        "bad_video": "cannot decode a first frame",
        "empty_prompt": "empty prompt",
        "wrong_backend": "does not match backend 'executorch'",
        "no_model": "model not found",
        "bad_stride": "error: --output-stride: 0 must be a positive integer",
    }[case]
    extra = []
    if case == "bad_video":
        broken = tmp_path / "broken.mp4"
        broken.write_bytes(b"garbage" * 100)
        args["--video"] = str(broken)
    elif case == "empty_prompt":
        args["--prompt"] = "  "
    elif case == "wrong_backend":
        extra = ["--backend", "executorch"]
    elif case == "no_model":
        args["--model"] = str(tmp_path / "missing")
    else:
        extra = ["--output-stride", "0"]
    argv = [token for pair in args.items() for token in pair] + extra + ["--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and "Traceback" not in err


def test_cli_reads_a_jpeg_directory_with_sav_frame_numbers(tmp_path, capsys, caplog):
    frames_dir = tmp_path / "JPEGImages_24fps" / "sav_000001"
    frames_dir.mkdir(parents=True)
    for number in (0, 4, 8, 12):  # only the 6 fps frames: the CLI warns that memory counts processed frames
        frame = np.zeros((40, 60, 3), np.uint8)
        frame[5:25, 10 + number:30 + number] = 255
        cv2.imwrite(str(frames_dir / f"{number:05d}.jpg"), frame)
    out_json = tmp_path / "sav_000001.json"
    code = main(["--model", str(write_contract_onnx_dir(tmp_path / "onnx")), "--video", str(frames_dir),
                 "--prompt", "bright square", "--output-stride", "8", "--out-json", str(out_json), "--quiet"])
    assert code == 0
    assert "frame numbers jump from 0 to 4" in caplog.text
    prediction = load_prediction_json(out_json)
    assert prediction.video_id == "sav_000001" and prediction.frame_indices == {0, 8}
    (square,) = prediction.masklets
    assert square.category == "bright square" and all(rle["size"] == [40, 60] for rle in square.frames.values())
    assert oct(out_json.stat().st_mode & 0o777) != "0o600"


def test_cli_writes_sav_png_folders_that_training_evaluate_reads(tmp_path, capsys):
    frames_dir = tmp_path / "JPEGImages_24fps" / "sav_000003"
    frames_dir.mkdir(parents=True)
    for number in range(9):
        frame = np.zeros((40, 60, 3), np.uint8)
        frame[5:25, 10 + number:30 + number] = 255
        cv2.imwrite(str(frames_dir / f"{number:05d}.jpg"), frame)
    out_json, out_png = tmp_path / "pred.json", tmp_path / "png"
    argv = ["--model", str(write_contract_onnx_dir(tmp_path / "onnx")), "--video", str(frames_dir),
            "--prompt", "bright square", "--output-stride", "4", "--out-json", str(out_json), "--quiet"]
    assert main(argv + ["--out-png", str(out_png)]) == 2  # the PNG folder must exist
    assert "png: PNG output folder does not exist" in capsys.readouterr().err and not out_json.exists()
    out_png.mkdir()
    assert main(argv + ["--out-png", str(out_png)]) == 0
    prediction = load_prediction_json(out_json)
    (square,) = prediction.masklets
    video_dir = out_png / "sav_000003" / f"{square.obj_id:03d}"
    assert sorted(p.name for p in video_dir.iterdir()) == ["00000.png", "00004.png", "00008.png"]
    for frame, rle in square.frames.items():
        png = cv2.imread(str(video_dir / f"{frame:05d}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(png > 0, mask_utils.decode(rle).astype(bool))
    assert [p.name for p in out_png.iterdir()] == ["sav_000003"]


def test_a_prompt_over_the_text_context_is_a_warning_naming_it_and_the_limit(checkpoint, video, tmp_path, capsys,
                                                                             caplog):
    long_prompt = "a small bright red circle " * 8  # 40 words: over the tiny text encoder's 32 tokens
    code = main(["--model", str(checkpoint), "--video", str(video), "--prompt", long_prompt, "--prompt", "red circle",
                 "--max-frames", "1", "--threads", "1", "--quiet"])
    assert code == 0, capsys.readouterr().err
    (record,) = [r for r in caplog.records if r.levelname == "WARNING"]  # the short prompt gives none
    message = record.getMessage()
    assert message.startswith(f"prompt {long_prompt!r} is 42 tokens with its start and end tokens, over the text "
                              "encoder's context of 32: only 'a small bright red circle a small")
