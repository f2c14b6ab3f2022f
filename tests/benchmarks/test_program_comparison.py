"""benchmarks.program_comparison and the reuse rule of benchmarks.device_files."""
import json
import shutil

import pytest

from benchmarks.artifacts import export_matches, weights_sha256
from benchmarks.program_comparison import REFERENCE, compare_programs


@pytest.mark.slow  # parity, streaming and J&F of two programs: over a minute on 2 cores
def test_a_program_agrees_fully_with_its_own_copy(executorch_export, sav_videos, tmp_path):
    copy = tmp_path / "copy.pte"
    shutil.copy(executorch_export.program, copy)
    shutil.copy(executorch_export.metadata, tmp_path / "copy.pte.json")
    metrics = compare_programs({REFERENCE: executorch_export.program, "copy": copy}, "executorch",
                               sav_videos / "val", threads=1, frames=2, parity_frames=1, max_video_frames=9)
    assert set(metrics) == {REFERENCE, "copy"}
    for name in metrics:
        assert metrics[name]["parity_passed"] == 1.0 and metrics[name]["p50_ms"] > 0
        assert metrics[name]["frames"] == 2
    copy_metrics = metrics["copy"]
    assert copy_metrics["stream_mask_iou_vs_reference"] == 1.0 == copy_metrics["stream_mask_iou_vs_reference_min"]
    assert copy_metrics["ratio_vs_reference"] > 0
    assert "ratio_vs_reference" not in metrics[REFERENCE]
    # Same program, same frames: identical objects, so scoring the copy against the reference is perfect
    # (None only when the reference kept no object at all).
    assert copy_metrics["jf_vs_reference"] in (100.0, None)
    assert copy_metrics["jf"] == metrics[REFERENCE]["jf"]


def test_an_export_is_reused_only_with_the_expected_metadata(tiny_checkpoint, executorch_export, tmp_path):
    metadata = json.loads(executorch_export.metadata.read_text())
    sha = weights_sha256(tiny_checkpoint)
    path = tmp_path / "m.pte.json"
    path.write_text(json.dumps(metadata))
    assert export_matches(path, sha, {"quantization": "none"})
    assert not export_matches(path, sha, {"quantization": "int8"})
    assert not export_matches(path, "0" * 64)
    path.write_text(json.dumps({**metadata, "format_version": 2}))
    assert not export_matches(path, sha)
    path.write_text("{not json")
    assert not export_matches(path, sha)
    assert not export_matches(tmp_path / "missing.json", sha)


@pytest.mark.parametrize("size_mb, verdict", [(49.0, "meets"), (51.0, "misses")])
def test_device_rows_state_the_size_goal(size_mb, verdict, tmp_path, monkeypatch):
    from benchmarks import device_files

    files = {}
    for file in device_files.DEVICE_FILES:
        path = tmp_path / file.file_name
        path.write_bytes(b"\0" * int((size_mb if file.program == "frame" else 2.0) * 1e6))
        files[file.label] = path
    reference = tmp_path / "reference.pte"
    reference.write_bytes(b"\0" * 1000)
    monkeypatch.setattr(device_files, "compare_programs",
                        lambda programs, *args, **kwargs: {name: {"p50_ms": 1.0} for name in programs})
    rows = {row.name: row for row in device_files.device_file_rows(reference, files, tmp_path)}
    frame = rows["frame program, int8"]
    assert frame.metrics["size_mb"] == pytest.approx(size_mb)
    assert frame.metrics["with_text_mb"] == pytest.approx(size_mb + 2.0)
    assert frame.details["size_goal"].startswith(verdict)
    assert rows[device_files.REFERENCE_LABEL].metrics["size_mb"] == pytest.approx(0.001)
