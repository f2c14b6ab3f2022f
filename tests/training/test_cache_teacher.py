import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from efficient_sam3.contract import preprocess_frame
from training import cache_teacher as cache_teacher_module
from training.cache_teacher import CacheConfig, cache_features, main
from training.data.feature_cache import BYTES_PER_FRAME, cache_path, read_cache_header, write_cache_file
from training.data.sav import VideoFrameReader, find_videos, load_annotation
from training.synthetic import generate_dataset
from training.synthetic_scene import SceneConfig
from model_helpers import tiny_sam3_config
from training.teacher import load_teacher

SHORT = SceneConfig(min_frames=5, max_frames=11)  # 2-3 annotated frames per video


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    from transformers import Sam3Model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher") / "tiny_sam3"
    Sam3Model(tiny_sam3_config()).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def sav_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sav")
    generate_dataset(root, 3, seed=4, val_fraction=0.0, scene_config=SHORT)
    return root


def config_for(sav_root, out_dir, teacher_dir, **overrides):
    return CacheConfig(sav_root=sav_root, out_dir=out_dir, teacher=teacher_dir, show_progress=False, **overrides)


@pytest.fixture(scope="module")
def cached_run(sav_root, teacher_dir, tmp_path_factory):
    """One full caching run (batch size 4) shared by the read-only tests."""
    out_dir = tmp_path_factory.mktemp("cache")
    return cache_features(config_for(sav_root, out_dir, teacher_dir)), out_dir


def test_cache_equals_get_vision_features(sav_root, teacher_dir, cached_run):
    from transformers import Sam3Model

    summary, tmp_path = cached_run
    assert summary.cached == ["sav_000001", "sav_000002", "sav_000003"] and not summary.failed
    files = find_videos(sav_root)[0]
    annotation = load_annotation(files.json_path)
    assert annotation.num_annotated_frames >= 2
    cached = load_file(cache_path(tmp_path, files.video_id))
    header = read_cache_header(cache_path(tmp_path, files.video_id))
    assert cached["features"].dtype == torch.float16
    assert cached["features"].shape == (annotation.num_annotated_frames, 256, 18, 18)
    assert cached["frame_indices"].tolist() == annotation.annotated_frame_indices()
    assert header.metadata["video_id"] == files.video_id and header.metadata["image_size"] == "504"
    assert header.metadata["teacher"] == summary.teacher and summary.teacher.startswith("tiny_sam3:")

    reference_model = Sam3Model.from_pretrained(teacher_dir, image_size=504).eval()
    with VideoFrameReader(files.video_path) as reader:
        frames = reader.read_frames([0, 4])
    pixels = torch.from_numpy(preprocess_frame(frames[0])[None]), torch.from_numpy(preprocess_frame(frames[1])[None])
    with torch.no_grad():
        reference = torch.cat([reference_model.get_vision_features(px).fpn_hidden_states[3] for px in pixels])
    assert reference.abs().max() > 0.1  # the comparison is not between near-zero tensors
    torch.testing.assert_close(cached["features"][:2].float(), reference.half().float(), atol=2e-3, rtol=2e-3)


def test_rope_positions_cover_the_36x36_grid(teacher_dir):
    teacher = load_teacher(teacher_dir, image_size=504)
    global_layer = teacher.vision_model.backbone.layers[1]
    assert global_layer.window_size == 0
    assert global_layer.position_ids.shape == (36 * 36, 2)
    window_layer = teacher.vision_model.backbone.layers[0]
    assert window_layer.position_ids.shape == (6 * 6, 2)
    assert teacher.encode(torch.zeros(2, 3, 504, 504)).shape == (2, 256, 18, 18)


def test_resume_redoes_only_missing_corrupt_or_foreign_outputs(sav_root, teacher_dir, cached_run, tmp_path):
    first, first_dir = cached_run
    shutil.copytree(first_dir, tmp_path, dirs_exist_ok=True)
    config = config_for(sav_root, tmp_path, teacher_dir)
    paths = {video_id: cache_path(tmp_path, video_id) for video_id in first.cached}
    untouched_mtime = paths["sav_000003"].stat().st_mtime_ns
    data = paths["sav_000001"].read_bytes()
    paths["sav_000001"].write_bytes(data[: len(data) - 1000])  # truncated (partial) file
    header = read_cache_header(paths["sav_000002"])
    features = load_file(paths["sav_000002"])
    write_cache_file(
        paths["sav_000002"], features["features"], list(header.frame_indices), {**header.metadata, "teacher": "other:0"}
    )
    third = cache_features(config)
    assert third.cached == ["sav_000001", "sav_000002"] and third.skipped == ["sav_000003"]
    assert paths["sav_000003"].stat().st_mtime_ns == untouched_mtime
    assert read_cache_header(paths["sav_000001"]).metadata["teacher"] == first.teacher
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(path.name for path in paths.values())


def test_interrupted_run_resumes_with_the_missing_videos(sav_root, teacher_dir, tmp_path, monkeypatch):
    real_write = cache_teacher_module.write_cache_file
    calls = []

    def write_then_die(*args, **kwargs):
        if len(calls) == 1:
            raise KeyboardInterrupt
        calls.append(args[0])
        return real_write(*args, **kwargs)

    monkeypatch.setattr(cache_teacher_module, "write_cache_file", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        cache_features(config_for(sav_root, tmp_path, teacher_dir))
    monkeypatch.setattr(cache_teacher_module, "write_cache_file", real_write)
    resumed = cache_features(config_for(sav_root, tmp_path, teacher_dir))
    assert resumed.skipped == ["sav_000001"] and resumed.cached == ["sav_000002", "sav_000003"]


def test_bad_video_is_reported_and_the_rest_cached(sav_root, teacher_dir, tmp_path, capsys):
    root = tmp_path / "sav"
    shutil.copytree(sav_root, root)
    json_path = root / "sav_000002_manual.json"
    json_path.write_text(json_path.read_text()[:100])
    out_dir = tmp_path / "cache"
    exit_code = main(["--sav-root", str(root), "--out", str(out_dir), "--teacher", str(teacher_dir)])
    printed = capsys.readouterr().out
    assert exit_code == 1
    assert "cached 2, skipped 0, failed 1" in printed
    assert "FAILED sav_000002" in printed and "sav_000002_manual.json" in printed
    assert f"{BYTES_PER_FRAME} B features" in printed
    assert not cache_path(out_dir, "sav_000002").exists()


def test_measured_overhead_per_frame_is_small(cached_run):
    summary, tmp_path = cached_run
    on_disk = sum(cache_path(tmp_path, video_id).stat().st_size for video_id in summary.cached)
    assert summary.bytes_written == on_disk
    assert 0 < summary.overhead_bytes_per_frame < 200  # 8 B frame index + header share


def test_shards_partition_videos_and_batch_size_does_not_matter(sav_root, teacher_dir, cached_run, tmp_path):
    shard_0 = cache_features(config_for(sav_root, tmp_path, teacher_dir, num_shards=2, shard_index=0, batch_size=1))
    shard_1 = cache_features(config_for(sav_root, tmp_path, teacher_dir, num_shards=2, shard_index=1, batch_size=2))
    assert shard_0.cached == ["sav_000001", "sav_000003"] and shard_1.cached == ["sav_000002"]
    for video_id in ("sav_000001", "sav_000002", "sav_000003"):
        batched = load_file(cache_path(cached_run[1], video_id))["features"].float()  # batch size 4
        unbatched = load_file(cache_path(tmp_path, video_id))["features"].float()  # batch sizes 1 and 2
        torch.testing.assert_close(unbatched, batched, atol=2e-3, rtol=2e-3)
    with pytest.raises(ValueError):
        cache_features(config_for(sav_root, tmp_path, teacher_dir, num_shards=2, shard_index=2))


def test_features_that_overflow_float16_fail_the_video(sav_root, teacher_dir, tmp_path, monkeypatch):
    teacher = load_teacher(teacher_dir)
    real_encode = teacher.encode
    monkeypatch.setattr(teacher, "encode", lambda pixels: real_encode(pixels) * 1e6)
    monkeypatch.setattr(cache_teacher_module, "load_teacher", lambda *args: teacher)
    summary = cache_features(config_for(sav_root, tmp_path, teacher_dir))
    assert summary.cached == [] and len(summary.failed) == 3
    assert "overflow float16" in summary.failed[0][1] and "sav_000001.mp4" in summary.failed[0][1]
    assert list(tmp_path.iterdir()) == []


def _copy_checkpoint(teacher_dir, destination, rename):
    destination.mkdir()
    shutil.copy(teacher_dir / "config.json", destination / "config.json")
    state = load_file(teacher_dir / "model.safetensors")
    save_file({rename(key): value for key, value in state.items() if rename(key)}, destination / "model.safetensors")


def test_prefix_mismatch_raises_instead_of_leaving_random_weights(teacher_dir, tmp_path):
    renamed = tmp_path / "renamed"
    _copy_checkpoint(teacher_dir, renamed, lambda key: key.replace("vision_encoder.", "vision_model.", 1))
    with pytest.raises(ValueError, match="no weights under prefix 'vision_encoder.'") as error:
        load_teacher(renamed)
    assert str(renamed / "model.safetensors") in str(error.value)
    partial = tmp_path / "partial"
    _copy_checkpoint(teacher_dir, partial, lambda key: None if key.endswith("neck.fpn_layers.3.proj2.weight") else key)
    with pytest.raises(ValueError, match="1 missing") as error:
        load_teacher(partial)
    assert "neck.fpn_layers.3.proj2.weight" in str(error.value)


def test_sharded_checkpoint_and_weights_match_the_file(teacher_dir, tmp_path):
    from transformers import Sam3Model

    sharded = tmp_path / "sharded"
    Sam3Model.from_pretrained(teacher_dir).save_pretrained(sharded, max_shard_size="10MB")
    assert (sharded / "model.safetensors.index.json").is_file()
    teacher = load_teacher(sharded)
    state = load_file(teacher_dir / "model.safetensors")
    for name, tensor in teacher.vision_model.state_dict().items():
        torch.testing.assert_close(tensor, state[f"vision_encoder.{name}"], rtol=0, atol=0)
    single = load_teacher(teacher_dir)
    pixels = torch.randn(1, 3, 504, 504)
    torch.testing.assert_close(teacher.encode(pixels), single.encode(pixels))


def test_unsupported_checkpoint_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    save_file({"x": torch.zeros(1)}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="unsupported model_type 'bert'"):
        load_teacher(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_teacher(tmp_path / "missing")


def _student_importable() -> bool:
    if importlib.util.find_spec("efficient_sam3") is None:
        return False
    import efficient_sam3

    return hasattr(efficient_sam3, "EfficientSam3Model") and hasattr(efficient_sam3, "EfficientSam3Config")


@pytest.mark.skipif(not _student_importable(), reason="efficient_sam3.EfficientSam3Model is not importable yet")
def test_student_checkpoint_caches_its_own_memory_features(tmp_path):
    from efficient_sam3 import EfficientSam3Config, EfficientSam3Model

    sav_root = tmp_path / "sav"
    generate_dataset(sav_root, 1, seed=4, val_fraction=0.0, scene_config=SceneConfig(min_frames=5, max_frames=7))
    torch.manual_seed(0)
    student_dir = tmp_path / "student"
    EfficientSam3Model(EfficientSam3Config.from_preset("tiny")).save_pretrained(student_dir)
    summary = cache_features(config_for(sav_root, tmp_path / "cache", student_dir))
    assert summary.cached == ["sav_000001"] and summary.teacher.startswith("student:")
    files = find_videos(sav_root)[0]
    with VideoFrameReader(files.video_path) as reader:
        pixels = torch.from_numpy(preprocess_frame(reader.read_frame(4))[None])  # annotated index 1
    model = EfficientSam3Model.from_pretrained(student_dir).eval()
    with torch.no_grad():
        reference = model.encode_image(pixels).memory_features
    cached = load_file(cache_path(tmp_path / "cache", files.video_id))["features"][1:2].float()
    torch.testing.assert_close(cached, reference.half().float(), atol=2e-3, rtol=2e-3)


def test_nan_features_behind_a_valid_header_are_recomputed_on_resume(sav_root, teacher_dir, cached_run, tmp_path):
    first, first_dir = cached_run
    shutil.copytree(first_dir, tmp_path, dirs_exist_ok=True)
    path = cache_path(tmp_path, "sav_000002")
    header = read_cache_header(path)
    features = load_file(path)["features"]
    features[0, 0, 0, 0] = float("nan")
    write_cache_file(path, features, list(header.frame_indices), header.metadata)  # header unchanged
    resumed = cache_features(config_for(sav_root, tmp_path, teacher_dir))
    assert resumed.cached == ["sav_000002"] and resumed.skipped == ["sav_000001", "sav_000003"]
    assert torch.isfinite(load_file(path)["features"]).all()


_KILLED_WHILE_WRITING = """
import signal, sys, time
import training.data.feature_cache as feature_cache
from training.cache_teacher import main

real_save, calls = feature_cache.save_file, []

def save_then_hang(tensors, filename, metadata=None):
    calls.append(filename)
    if len(calls) == 1:
        return real_save(tensors, filename, metadata=metadata)
    with open(filename, "wb") as handle:  # the second video: killed halfway through its file
        handle.write(b"partial")
    open(sys.argv[1], "w").close()
    time.sleep(120)

feature_cache.save_file = save_then_hang
signal.signal(signal.SIGINT, signal.default_int_handler)  # a shell's background job starts with SIGINT ignored
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_leaves_the_state_ctrl_c_leaves(tmp_path, signum, capsys):
    """A real signal to a caching run killed while writing its second file: exit 130 with one line,
    the first video kept, no partial or temp file, and the same command continues."""
    from efficient_sam3 import EfficientSam3Config, EfficientSam3Model

    sav = tmp_path / "sav"
    generate_dataset(sav, 3, seed=4, val_fraction=0.0, scene_config=SceneConfig(min_frames=5, max_frames=7))
    torch.manual_seed(0)
    student = tmp_path / "student"
    EfficientSam3Model(EfficientSam3Config.from_preset("tiny")).save_pretrained(student)
    out, ready = tmp_path / "cache", tmp_path / "ready"
    argv = ["--sav-root", str(sav), "--out", str(out), "--teacher", str(student)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", _KILLED_WHILE_WRITING, str(ready), *argv],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), process.communicate()
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert process.returncode == 130, stderr
    assert len(lines) == 1 and lines[0].startswith("interrupted: ") and str(out) in lines[0]
    assert sorted(p.name for p in out.iterdir()) == ["sav_000001.safetensors"]  # no partial file, no temp
    assert main(argv) == 0
    assert "cached 2, skipped 1, failed 0" in capsys.readouterr().out
