"""The native C++ runner (runtime/native) against the Python references.

Builds ``build/native`` with CMake when needed (skipped only when cmake, a C++ compiler or the OpenCV /
nlohmann-json dev headers are missing), then checks:
- COCO RLE strings byte-equal pycocotools', and the Hungarian assignment equals scipy's (ties included);
- bad input (missing model or metadata, wrong program, unreadable video, unknown prompt) exits 2 with a
  message naming the file, never a crash.
With a tiny program exported by ``export.executorch`` (168 px, 2 memory slots):
- on a held-out synthetic video, ``esam3_run`` writes the same predictions as the Python ExecuTorch
  backend (``runtime.run.run_video``): same object ids, categories and frames, mean mask IoU >= 0.999;
- its resident memory stays flat over a long stream.
With a contract-shaped program (contract_pte.py), its outputs are as safe as python -m runtime's
(test_output_safety.py): runs aimed at the same output exclude each other across the two runners, SIGTERM
writes nothing, a full disk or an unwritable output is one error line with nothing moved into place, temps
of killed runs are removed, bad flags and frames too small for the overlay name the problem, and truncated
inputs are warnings naming the file and the frame.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment
from model_helpers import open_memory_path
from output_checks import WAIT_LIMIT_SECONDS, noise_video, one_error_line, square_video, temps_in, truncated_avi, wait_for

REPO = Path(__file__).resolve().parents[2]
SOURCE_DIR = REPO / "runtime" / "native"
BUILD_DIR = REPO / "build" / "native"
HEADER_DIRS = (Path("/usr/include"), Path("/usr/local/include"))
APT_PACKAGES = ("libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev libopencv-videoio-dev "
                "nlohmann-json3-dev")


def _missing_build_tool() -> str | None:
    """Why the runner cannot be built here (None: it can)."""
    if shutil.which("cmake") is None:
        return "cmake is not installed"
    if shutil.which("c++") is None and shutil.which("g++") is None:
        return "no C++ compiler (c++ / g++)"
    for header in ("opencv4/opencv2/core.hpp", "opencv4/opencv2/videoio.hpp", "nlohmann/json.hpp"):
        if not any((directory / header).is_file() for directory in HEADER_DIRS):
            return f"{header} not found (apt-get install {APT_PACKAGES})"
    return None


def _run(command: list, what: str, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, errors="replace",
                            timeout=timeout)
    if result.returncode != 0:
        pytest.fail(f"{what} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def native_tools() -> dict[str, Path]:
    """Configure (once) and build (incrementally) the runner; {"run": esam3_run, "check": esam3_check}."""
    reason = _missing_build_tool()
    if reason is not None:
        pytest.skip(f"native runner not built: {reason}")
    import executorch

    if not (BUILD_DIR / "CMakeCache.txt").is_file():
        _run(["cmake", "-S", SOURCE_DIR, "-B", BUILD_DIR, "-DCMAKE_BUILD_TYPE=Release",
              f"-DCMAKE_PREFIX_PATH={list(executorch.__path__)[0]}", f"-DESAM3_PYTHON={sys.executable}"],
             "cmake configure")
    _run(["cmake", "--build", BUILD_DIR, "-j2"], "cmake build")
    return {"run": BUILD_DIR / "esam3_run", "check": BUILD_DIR / "esam3_check"}


def _check(native_tools, cases: dict, tmp_path: Path) -> dict:
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    return json.loads(_run([native_tools["check"], path], "esam3_check").stdout)


# Pure pieces -------------------------------------------------------------------------------------------
def test_rle_matches_pycocotools(native_tools, tmp_path):
    rng = np.random.default_rng(0)
    masks = [np.zeros((7, 5), bool), np.ones((4, 9), bool), np.eye(6, dtype=bool), np.zeros((1, 1), bool)]
    for index in range(120):
        height, width = rng.integers(1, 50, size=2)
        density = (0.03, 0.5, 0.97)[index % 3]  # sparse, noisy, nearly full: long and negative deltas
        masks.append(rng.random((height, width)) < density)
    blob = np.zeros((480, 640), bool)
    blob[40:400, 100:600] = True
    blob[200:210] = False
    masks.append(blob)
    cases = {"rle": [{"height": m.shape[0], "width": m.shape[1], "ones": np.flatnonzero(m).tolist()} for m in masks]}
    counts = _check(native_tools, cases, tmp_path)["rle"]
    expected = [mask_utils.encode(np.asfortranarray(m, dtype=np.uint8))["counts"].decode("ascii") for m in masks]
    assert counts == expected


def test_assignment_matches_scipy(native_tools, tmp_path):
    rng = np.random.default_rng(1)
    problems = []
    for index in range(300):
        rows, cols = (int(n) for n in rng.integers(1, 7, size=2))
        if index % 3 == 0:
            cost = rng.integers(0, 3, size=(rows, cols)).astype(float)  # many equal-cost optima
        elif index % 3 == 1:
            cost = rng.random((rows, cols))
        else:
            cost = np.round(rng.random((rows, cols)), 1) * (rng.random((rows, cols)) > 0.5)  # IoU-like, zeros
        problems.append((cost, bool(index % 2)))
    cases = {"assignment": [{"rows": c.shape[0], "cols": c.shape[1], "cost": c.ravel().tolist(), "maximize": m}
                            for c, m in problems]}
    pairs = _check(native_tools, cases, tmp_path)["assignment"]
    for (cost, maximize), got in zip(problems, pairs):
        rows, cols = linear_sum_assignment(cost, maximize=maximize)
        assert got == [[int(r), int(c)] for r, c in zip(rows, cols)], (cost, maximize)


# The exported model, native runs against the Python ExecuTorch backend ----------------------------------
PROMPT = "red circle"
SECOND_PROMPT = "blue square"  # stored too: a run with both decodes them in one call
IMAGE_SIZE = 168  # a multiple of 28 (FPN levels 48/24/12/6): the runner reads every shape from the metadata
CONTEXT_FRAMES = 2
MEMORY_STRIDE = 2  # with 2 slots the ring is full from frame 4 on and evicts every 2nd frame
SCORE_THRESHOLD = 0.2  # random weights score ~0.2-0.3
PARITY_FRAMES = 16
STREAM_FRAMES = 96
RSS_GROWTH = 0.01  # allowed resident-memory growth from frame 10 to the end of the stream


def _write_video(path: Path, num_frames: int, size=(120, 160)) -> Path:
    """A moving red disc and a bouncing blue box on a fixed noisy background (mp4v, 24 fps)."""
    height, width = size
    background = (np.random.default_rng(1).random((height, width, 3)) * 60 + 40).astype(np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24, (width, height))
    for t in range(num_frames):
        frame = background.copy()
        cv2.circle(frame, (int(30 + 90 * (t % 48) / 48), 40), 18, (0, 0, 230), -1)
        top = int(60 + 30 * np.sin(t / 6))
        cv2.rectangle(frame, (100, top), (140, top + 30), (230, 120, 0), -1)
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def exported_model(tmp_path_factory) -> Path:
    """Tiny preset (random weights, memory gate opened so memory changes the output) exported with
    ``export.executorch --program frame`` at a small input size, two stored prompts, decode taking up to 8 at once."""
    import dataclasses

    import torch

    from efficient_sam3 import EfficientSam3Config, EfficientSam3Model
    from efficient_sam3.config import MemoryConfig
    from export.config import ExecutorchExportConfig
    from export.executorch import export_executorch

    torch.manual_seed(0)
    config = dataclasses.replace(EfficientSam3Config.from_preset("tiny"), image_size=IMAGE_SIZE,
                                 memory=MemoryConfig(context_frames=CONTEXT_FRAMES))
    model = EfficientSam3Model(config).eval()
    with torch.no_grad():
        open_memory_path(model, 0.5)
    root = tmp_path_factory.mktemp("native_model")
    model.save_pretrained(root / "checkpoint")
    out = root / "model.pte"
    # The frame program (encode_frame + decode: what a device runs, issue #19): the runner reads stored prompts.
    export_executorch(ExecutorchExportConfig(checkpoint=root / "checkpoint", out=out, prompts=(PROMPT, SECOND_PROMPT),
                                             program="frame"))
    return out


@pytest.fixture(scope="module")
def stream_video(tmp_path_factory) -> Path:
    return _write_video(tmp_path_factory.mktemp("native_video") / "held_out.mp4", STREAM_FRAMES)


def _native(native_tools, exported_model, video: Path, out: Path, *extra) -> dict:
    """esam3_run over ``video`` -> its stats JSON (predictions, if asked for, go where ``extra`` says)."""
    _run([native_tools["run"], "--model", exported_model, "--video", video, "--prompt-id", "0",
          "--stats-json", out / "stats.json", "--memory-stride", MEMORY_STRIDE, "--score-threshold", SCORE_THRESHOLD,
          "--quiet", *extra], "esam3_run")
    return json.loads((out / "stats.json").read_text())


def _objects_per_frame(predictions: dict) -> list[dict[int, tuple[str, dict]]]:
    """Each recorded frame as {obj_id: (category, RLE)} of the objects present in it (non-empty masks)."""
    frames = []
    for entry in predictions["masklet"]:
        present = {}
        for obj_id, category, rle in zip(predictions["masklet_id"], predictions["masklet_category"], entry):
            rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
            if mask_utils.area(rle) > 0:
                present[obj_id] = (category, rle)
        frames.append(present)
    return frames


def test_native_predictions_match_python_executorch(native_tools, exported_model, stream_video, tmp_path):
    from runtime.postprocess import PostprocessConfig
    from runtime.run import RunConfig, run_video
    from runtime.session import SessionConfig

    _native(native_tools, exported_model, stream_video, tmp_path, "--max-frames", PARITY_FRAMES,
            "--out-json", tmp_path / "native.json", "--out-video", tmp_path / "overlay.mp4")
    run_video(RunConfig(model=exported_model, video=stream_video, prompts=(PROMPT,), backend="executorch",
                        out_json=tmp_path / "python.json", max_frames=PARITY_FRAMES, show_progress=False,
                        session=SessionConfig(memory_stride=MEMORY_STRIDE,
                                              postprocess=PostprocessConfig(score_threshold=SCORE_THRESHOLD))))
    native = json.loads((tmp_path / "native.json").read_text())
    python = json.loads((tmp_path / "python.json").read_text())

    assert list(native) == list(python)
    for key in ("video_id", "video_height", "video_width", "frame_indices", "masklet_id", "masklet_category"):
        assert native[key] == python[key], key
    assert native["video_id"] == "held_out" and native["frame_indices"] == list(range(PARITY_FRAMES))
    assert len(python["masklet_id"]) >= 2, "too few detections to compare; lower SCORE_THRESHOLD"

    ious = []
    for t, (ours, theirs) in enumerate(zip(_objects_per_frame(native), _objects_per_frame(python))):
        assert set(ours) == set(theirs), f"frame {t}: object ids {sorted(ours)} != {sorted(theirs)}"
        for obj_id, (category, rle) in ours.items():
            assert category == theirs[obj_id][0] == PROMPT
            ious.append(float(mask_utils.iou([rle], [theirs[obj_id][1]], [0])[0, 0]))
    assert ious, "no object in any compared frame"
    assert float(np.mean(ious)) >= 0.999

    overlay = cv2.VideoCapture(str(tmp_path / "overlay.mp4"))
    assert int(overlay.get(cv2.CAP_PROP_FRAME_COUNT)) == PARITY_FRAMES
    ok, frame = overlay.read()
    assert ok and frame.shape == (native["video_height"], native["video_width"], 3)
    overlay.release()


def test_native_batched_prompts_match_python(native_tools, exported_model, stream_video, tmp_path):
    """Two prompts: the C++ runner decodes them in one call (metadata max_prompts 8), Python too; the same
    objects, categories and masks, and the same as the Python runner with one decode call per prompt."""
    from runtime.postprocess import PostprocessConfig
    from runtime.run import RunConfig, run_video
    from runtime.session import SessionConfig

    assert json.loads(Path(f"{exported_model}.json").read_text())["max_prompts"] == 8
    _native(native_tools, exported_model, stream_video, tmp_path, "--prompt-id", "1", "--max-frames", PARITY_FRAMES,
            "--out-json", tmp_path / "native.json")
    session = SessionConfig(memory_stride=MEMORY_STRIDE, postprocess=PostprocessConfig(score_threshold=SCORE_THRESHOLD))
    run_video(RunConfig(model=exported_model, video=stream_video, prompts=(PROMPT, SECOND_PROMPT),
                        backend="executorch", out_json=tmp_path / "python.json", max_frames=PARITY_FRAMES,
                        show_progress=False, session=session))
    # The same program read through version-2 metadata (no max_prompts): Python then decodes one prompt per call.
    single = tmp_path / "single.pte"
    single.symlink_to(exported_model)
    metadata = json.loads(Path(f"{exported_model}.json").read_text())
    del metadata["max_prompts"]
    Path(f"{single}.json").write_text(json.dumps({**metadata, "format_version": 2}))
    run_video(RunConfig(model=single, video=stream_video, prompts=(PROMPT, SECOND_PROMPT), backend="executorch",
                        out_json=tmp_path / "one_by_one.json", max_frames=PARITY_FRAMES, show_progress=False,
                        session=session))
    runs = [json.loads((tmp_path / name).read_text()) for name in ("native.json", "python.json", "one_by_one.json")]
    for run in runs[1:]:
        assert run["masklet_id"] == runs[0]["masklet_id"] and run["masklet_category"] == runs[0]["masklet_category"]
    assert set(runs[0]["masklet_category"]) == {PROMPT, SECOND_PROMPT}, "both prompts must find objects"
    ious = []
    for frames in zip(*(_objects_per_frame(run) for run in runs)):
        assert set(frames[0]) == set(frames[1]) == set(frames[2])
        for obj_id, (_, rle) in frames[0].items():
            ious += [float(mask_utils.iou([rle], [other[obj_id][1]], [0])[0, 0]) for other in frames[1:]]
    assert ious and float(np.mean(ious)) >= 0.999


def test_both_runners_read_the_pixel_spec_from_the_metadata(native_tools, exported_model, stream_video, tmp_path):
    """A metadata file with another mean / std: C++ and Python normalise with it (they agree)."""
    from runtime.postprocess import PostprocessConfig
    from runtime.run import RunConfig, run_video
    from runtime.session import SessionConfig

    metadata = json.loads(Path(f"{exported_model}.json").read_text())
    assert metadata["format_version"] == 3 and metadata["fpn_sizes"] == [48, 24, 12, 6]
    model = tmp_path / "respec.pte"
    model.symlink_to(exported_model)
    Path(f"{model}.json").write_text(json.dumps({**metadata, "image_mean": [0.2, 0.4, 0.6],
                                                 "image_std": [0.3, 0.5, 0.7]}))
    _native(native_tools, model, stream_video, tmp_path, "--max-frames", PARITY_FRAMES,
            "--out-json", tmp_path / "native.json")
    run_video(RunConfig(model=model, video=stream_video, prompts=(PROMPT,), backend="executorch",
                        out_json=tmp_path / "python.json", max_frames=PARITY_FRAMES, show_progress=False,
                        session=SessionConfig(memory_stride=MEMORY_STRIDE,
                                              postprocess=PostprocessConfig(score_threshold=SCORE_THRESHOLD))))
    native = _objects_per_frame(json.loads((tmp_path / "native.json").read_text()))
    python = _objects_per_frame(json.loads((tmp_path / "python.json").read_text()))
    ious = []
    for t, (ours, theirs) in enumerate(zip(native, python)):
        assert set(ours) == set(theirs), f"frame {t}: object ids {sorted(ours)} != {sorted(theirs)}"
        ious += [float(mask_utils.iou([rle], [theirs[obj_id][1]], [0])[0, 0]) for obj_id, (_, rle) in ours.items()]
    assert ious and float(np.mean(ious)) >= 0.999


def test_native_refuses_metadata_it_cannot_read(native_tools, exported_model, tmp_path):
    video = _write_video(tmp_path / "clip.mp4", 3)
    metadata = json.loads(Path(f"{exported_model}.json").read_text())
    model = tmp_path / "bad.pte"
    model.symlink_to(exported_model)
    for change, expected in (({"format_version": 4}, "format_version 4 is not supported"),
                             ({"max_prompts": 0}, "missing or non-positive integer field 'max_prompts'"),
                             ({"max_prompts": 2}, "method 'decode' input 5 is"),  # the program takes 8
                             ({"memory_grid": 7}, "mask_size / memory_grid disagree with fpn_sizes"),
                             ({"slot_order": "newest_first"}, "field 'slot_order' is \"newest_first\"")):
        Path(f"{model}.json").write_text(json.dumps({**metadata, **change}))
        _fails_cleanly(native_tools, ["--model", model, "--video", video, "--prompt-id", "0"], expected)


def test_native_memory_stays_flat(native_tools, exported_model, stream_video, tmp_path):
    # Record only frame 0: the JSON's RLE strings grow with the frames by design (as in Python); the
    # session (memory ring, tracker, program buffers) must not.
    stats = _native(native_tools, exported_model, stream_video, tmp_path, "--output-stride", STREAM_FRAMES)
    assert stats["num_frames"] == STREAM_FRAMES and stats["num_recorded"] == 1
    assert stats["fps"] > 0 and stats["latency_p90_ms"] >= stats["latency_p50_ms"] > 0
    samples = dict((frame, rss) for frame, rss in stats["rss_samples_kib"])
    assert samples[10] > 0 and STREAM_FRAMES in samples
    growth = samples[STREAM_FRAMES] / samples[10] - 1.0
    assert growth < RSS_GROWTH, f"resident memory grew {100 * growth:.2f}% from frame 10 to {STREAM_FRAMES}: {samples}"
    assert stats["peak_rss_kib"] >= max(samples.values())


# Bad input -----------------------------------------------------------------------------------------------
def _fails_cleanly(native_tools, args: list, expected: str) -> None:
    result = subprocess.run([str(native_tools["run"]), *[str(a) for a in args], "--quiet"], capture_output=True,
                            text=True, errors="replace", timeout=120)
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])  # not a crash (negative) or 0
    assert "error: " in result.stderr and expected in result.stderr, result.stderr[-2000:]


def _toy_program(path: Path) -> Path:
    """A valid ExecuTorch program with one method 'forward' (not an EfficientSAM3 export)."""
    import torch
    from executorch.exir import to_edge

    class Double(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    program = to_edge(torch.export.export(Double(), (torch.ones(1, 3),))).to_executorch()
    path.write_bytes(program.buffer)
    return path


def test_native_rejects_bad_files(native_tools, tmp_path):
    video = _write_video(tmp_path / "clip.mp4", 3)
    metadata = {"format_version": 1, "backend": "executorch", "preset": "tiny", "image_size": 504,
                "context_frames": 8, "memory_stride": 4, "num_queries": 32, "max_text_length": 32,
                "hidden_size": 256, "quantization": "none", "prompts": []}
    _fails_cleanly(native_tools, ["--model", tmp_path / "missing.pte", "--video", video, "--prompt-id", "0"],
                   "missing.pte: model not found")
    toy = _toy_program(tmp_path / "toy.pte")
    _fails_cleanly(native_tools, ["--model", toy, "--video", video, "--prompt-id", "0"],
                   "toy.pte.json: export metadata not found")
    (tmp_path / "toy.pte.json").write_text(json.dumps(metadata))
    _fails_cleanly(native_tools, ["--model", toy, "--video", video, "--prompt-id", "0"],
                   "toy.pte: the program has no method 'encode_frame' (it has: forward)")
    (tmp_path / "junk.pte").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "junk.pte.json").write_text(json.dumps(metadata))
    _fails_cleanly(native_tools, ["--model", tmp_path / "junk.pte", "--video", video, "--prompt-id", "0"],
                   "junk.pte: not a loadable ExecuTorch program")
    (tmp_path / "broken.pte").write_bytes(toy.read_bytes())
    (tmp_path / "broken.pte.json").write_text('{"format_version": 1')
    _fails_cleanly(native_tools, ["--model", tmp_path / "broken.pte", "--video", video, "--prompt-id", "0"],
                   "broken.pte.json: unreadable metadata JSON")
    _fails_cleanly(native_tools, ["--model", toy, "--video", video], "give at least one prompt")
    _fails_cleanly(native_tools, ["--model", toy, "--video", video, "--prompt-id", "0", "--threads", "x"],
                   "error: --threads: 'x' is not an integer")


def test_native_rejects_bad_program_and_video(native_tools, exported_model, tmp_path):
    video = _write_video(tmp_path / "clip.mp4", 3)
    metadata = json.loads(Path(f"{exported_model}.json").read_text())
    wrong = tmp_path / "wrong_slots.pte"
    wrong.symlink_to(exported_model)
    Path(f"{wrong}.json").write_text(json.dumps({**metadata, "context_frames": CONTEXT_FRAMES + 2}))
    _fails_cleanly(native_tools, ["--model", wrong, "--video", video, "--prompt-id", "0"],
                   f"method 'decode' input 3 is Float [1, {CONTEXT_FRAMES}, 256")
    (tmp_path / "not_a_video.mp4").write_text("not a video")
    _fails_cleanly(native_tools, ["--model", exported_model, "--video", tmp_path / "not_a_video.mp4", "--prompt-id", "0"],
                   "not_a_video.mp4: cannot decode a first frame")
    _fails_cleanly(native_tools, ["--model", exported_model, "--video", tmp_path / "nothing.mp4", "--prompt-id", "0"],
                   "nothing.mp4: no such video file or frame directory")
    _fails_cleanly(native_tools, ["--model", exported_model, "--video", video, "--prompt-id", "2"],
                   "prompt id 2 is out of range")
    _fails_cleanly(native_tools, ["--model", exported_model, "--video", video, "--prompt", "green triangle"],
                   "prompt 'green triangle' is not stored in")
    _fails_cleanly(native_tools, ["--model", exported_model, "--video", video, "--prompt-id", "0",
                                  "--out-json", tmp_path / "missing_dir" / "pred.json"], "does not exist")


# Output safety (the contract-shaped program of contract_pte.py: built in seconds, ~1 ms a frame) -----------
@pytest.fixture(scope="module")
def contract_model(tmp_path_factory) -> Path:
    from contract_pte import write_contract_pte

    return write_contract_pte(tmp_path_factory.mktemp("contract_pte") / "contract.pte")


def _start_native(native_tools, model: Path, video: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen([str(native_tools["run"]), "--model", str(model), "--video", str(video), "--prompt",
                             CONTRACT_PROMPT, "--quiet", *map(str, extra)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace")


def _native_result(native_tools, model: Path, video: Path, *extra, umask: int | None = None):
    return subprocess.run([str(native_tools["run"]), "--model", str(model), "--video", str(video), "--prompt",
                           CONTRACT_PROMPT, "--quiet", *map(str, extra)], capture_output=True, text=True,
                          errors="replace", timeout=120,
                          preexec_fn=None if umask is None else (lambda: os.umask(umask)))


CONTRACT_PROMPT = "bright square"


def test_native_refuses_at_once_an_output_another_run_is_writing(native_tools, contract_model, tmp_path):
    from efficient_sam3.files import OutputLock

    video = square_video(tmp_path / "clip.mp4", 4)
    out_json, out_video, stats = tmp_path / "pred.json", tmp_path / "overlay.mp4", tmp_path / "stats.json"
    out_json.write_text("old")
    for held in (out_json, out_video, stats):
        with OutputLock(held):  # a python -m runtime run (or another esam3_run) writing `held`
            result = _native_result(native_tools, contract_model, video, "--out-json", out_json, "--out-video",
                                    out_video, "--stats-json", stats)
        assert result.returncode == 2
        assert one_error_line(result.stderr) == (f"error: {held}: another run (pid {os.getpid()}) is writing this "
                                                 "output; wait for it or choose another output")
        assert out_json.read_text() == "old" and not out_video.exists() and not stats.exists()
        assert temps_in(tmp_path) == []


def test_native_and_python_runs_exclude_each_other_and_sigterm_writes_nothing(native_tools, contract_model,
                                                                              tmp_path, capsys):
    from contract_onnx import write_contract_onnx_dir

    from runtime.__main__ import main

    video = noise_video(tmp_path / "long.mp4", 2000, size=(96, 128))  # ~2 s of work for esam3_run
    onnx_model = write_contract_onnx_dir(tmp_path / "onnx")
    out_json, out_video = tmp_path / "pred.json", tmp_path / "overlay.mp4"
    out_json.write_text("old predictions")
    out_video.write_bytes(b"old video")
    run = _start_native(native_tools, contract_model, video, "--out-json", out_json, "--out-video", out_video)
    temp_video = re.compile(rf"^\.overlay\.mp4\.{run.pid}-[0-9a-f]{{8}}\.tmp\.mp4$")  # efficient_sam3.files' names

    def frames_being_written() -> bool:  # FFmpeg writes in 256 KiB chunks past a 44-byte header
        temps = [tmp_path / name for name in temps_in(tmp_path) if temp_video.match(name)]
        return bool(temps) and temps[0].stat().st_size > 1000

    wait_for(frames_being_written, "overlay frames in the run's temp video", run)
    assert (tmp_path / ".pred.json.lock").read_text() == str(run.pid)

    code = main(["--model", str(onnx_model), "--video", str(video), "--prompt", CONTRACT_PROMPT, "--quiet",
                 "--out-json", str(out_json)])
    assert code == 2
    assert f"error: {out_json}: another run (pid {run.pid}) is writing this output" in capsys.readouterr().err

    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=WAIT_LIMIT_SECONDS)
    assert run.returncode == 130, err
    assert err == f"error: {video}: interrupted (signal {int(signal.SIGTERM)}); nothing was written\n"
    assert out_json.read_text() == "old predictions" and out_video.read_bytes() == b"old video"
    assert temps_in(tmp_path) == []


@pytest.mark.parametrize("flag, name, what", [("--out-json", "pred.json", "predictions JSON"),
                                              ("--out-video", "overlay.mp4", "overlay video"),
                                              ("--stats-json", "stats.json", "stats JSON")])
def test_native_unwritable_output_fails_before_the_model_is_read(flag, name, what, native_tools, tmp_path,
                                                                 read_only_dir):
    video = square_video(tmp_path / "clip.mp4", 2)
    result = _native_result(native_tools, tmp_path / "not_read_yet.pte", video, flag, read_only_dir / name)
    assert result.returncode == 2
    assert one_error_line(result.stderr).startswith(f"error: {read_only_dir / name}: cannot write the {what} (")


@pytest.mark.parametrize("full", ["video", "json"])
def test_native_full_disk_is_an_error_and_nothing_moves_into_place(full, native_tools, contract_model, tmp_path,
                                                                   mount_tmpfs):
    disk = mount_tmpfs("small_disk", "size=48k")
    video = noise_video(tmp_path / "noise.mp4", 100, size=(48, 64))  # overlay ~80 KB, JSON ~95 KB
    out_json = (disk if full == "json" else tmp_path) / "pred.json"
    out_video = (disk if full == "video" else tmp_path) / "overlay.mp4"
    result = _native_result(native_tools, contract_model, video, "--out-json", out_json, "--out-video", out_video)
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    if full == "video":
        assert line.startswith(f"error: {out_video}: the overlay video was not written completely (")
        assert "of 100 frames read back" in line
    else:
        assert line == f"error: {out_json}: cannot write the predictions JSON (No space left on device)"
    assert [p.name for p in disk.iterdir()] == [f".{'overlay.mp4' if full == 'video' else 'pred.json'}.lock"]
    assert not out_json.exists() and not out_video.exists() and temps_in(tmp_path) == []


def test_native_removes_temps_of_killed_runs_and_writes_the_usual_mode(native_tools, contract_model, tmp_path,
                                                                       dead_pid):
    stale = [tmp_path / f".pred.json.{dead_pid}-0123abcd.tmp", tmp_path / f".overlay.mp4.{dead_pid}-89abcdef.tmp.mp4"]
    for path in stale:
        path.write_bytes(b"half")
    (tmp_path / f".old_run.{dead_pid}-00ff00ff.tmp").mkdir()  # a staging folder of python -m runtime --out-png
    live = tmp_path / f".pred.json.{os.getpid()}-00000000.tmp"  # a live process's temp is not touched
    live.write_bytes(b"in progress")
    video = square_video(tmp_path / "clip.mp4", 3)
    result = _native_result(native_tools, contract_model, video, "--out-json", tmp_path / "pred.json",
                            "--out-video", tmp_path / "overlay.mp4", umask=0o027)
    assert result.returncode == 0, result.stderr
    assert temps_in(tmp_path) == [live.name]
    for output in (tmp_path / "pred.json", tmp_path / "overlay.mp4"):
        assert output.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("flag, value, problem", [
    ("--threads", "0", "0 must be a positive integer"),
    ("--threads", "x", "'x' is not an integer"),
    ("--max-frames", "-3", "-3 must be a positive integer"),
    ("--output-stride", "0", "0 must be a positive integer"),
    ("--memory-stride", "0", "0 must be a positive integer"),
    ("--max-missed-frames", "-1", "-1 must be an integer >= 0"),
    ("--prompt-id", "-1", "-1 must be an integer >= 0"),
    ("--score-threshold", "1.5", "1.5 must be between 0 and 1"),
    ("--score-threshold", "1", "1 must be below 1 (no score is above 1)"),
    ("--score-threshold", "nan", "'nan' is not a number"),
    ("--min-iou", "0", "0 must be above 0 (an IoU of 0 would match unrelated masks)"),
    ("--out-json", None, "expects a value"),
    ("--bogus", "1", "unknown argument (esam3_run --help lists the flags)"),
])
def test_native_bad_flag_is_one_line_naming_it(flag, value, problem, native_tools, contract_model, tmp_path):
    video = square_video(tmp_path / "clip.mp4", 2)
    result = _native_result(native_tools, contract_model, video, *([flag] if value is None else [flag, value]))
    assert result.returncode == 2
    assert result.stderr == f"error: {flag}: {problem}\n"


def test_native_frames_too_small_for_the_overlay_codec_are_named(native_tools, contract_model, tmp_path):
    frames = tmp_path / "tiny"
    frames.mkdir()
    for number in range(2):
        cv2.imwrite(str(frames / f"{number:05d}.jpg"), np.full((1, 1, 3), 200, np.uint8))
    out_video = tmp_path / "overlay.mp4"
    result = _native_result(native_tools, contract_model, frames, "--out-json", tmp_path / "pred.json",
                            "--out-video", out_video)
    assert result.returncode == 2
    assert result.stderr == (f"error: {out_video}: the frame size 1x1 is too small for the mp4v codec of the overlay "
                             "video (it needs at least 2x2 pixels)\n")
    assert not (tmp_path / "pred.json").exists() and temps_in(tmp_path) == []


def test_native_warns_about_truncated_inputs_naming_file_and_frame(native_tools, contract_model, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for number in range(3):
        cv2.imwrite(str(frames / f"{number:05d}.jpg"), rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    cut = frames / "00002.jpg"
    cut.write_bytes(cut.read_bytes()[:-300])
    result = _native_result(native_tools, contract_model, frames)
    assert result.returncode == 0, result.stderr
    assert (f"warning: {cut}: frame 2 is a truncated JPEG (no end-of-image marker); its missing part decodes as "
            "grey") in result.stderr

    avi = truncated_avi(tmp_path / "cut.avi", num_frames=10, keep=0.55)
    result = _native_result(native_tools, contract_model, avi)
    assert result.returncode == 0, result.stderr
    assert re.search(rf"warning: {re.escape(str(avi))}: decoding stopped at frame (\d+), the container lists 10 "
                     r"frames \(the file is truncated or corrupt\); the \1 decoded frames are used", result.stderr)
