"""Smoke run of ``python -m benchmarks.run --quick --preset tiny`` and the report's contract.

Benchmarks report; they never assert times. These tests check the JSON's shape: every section is
there, every row has numbers or an explicit reason, nothing is silently dropped, and only third-party
anchors may be "unavailable": a failure of one of our own rows fails the run.
"""

from __future__ import annotations

import json
import math
import time

import pytest

from benchmarks import anchors, run
from benchmarks.artifacts import Artifacts
from benchmarks.latency import LatencyStats, TimingPlan, time_steps
from benchmarks.memory import WorkerError, WorkerResult, WorkerSpec, run_in_subprocess
from benchmarks.report import Column, Row, Section, render_section
from benchmarks.run import BenchConfig, main, measure_backends
from benchmarks.sections import THIRD_PARTY_ROWS, RowFailed, require_measured
from benchmarks.students import STUDENTS, parse_students

SECTIONS = {"latency", "memory_path", "flops", "memory", "module_int8", "onnx_int8", "device_files", "prompt_batch",
            "training", "geometry_token", "students"}
OUR_ROWS = ["PyTorch eager", "PyTorch eager, fused (deployment form)", "ONNX Runtime", "ExecuTorch fp32",
            "ExecuTorch int8"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("bench")
    started = time.perf_counter()
    assert main(["--quick", "--preset", "tiny", "--out-dir", str(out_dir), "--threads", "1"]) == 0
    json_files, md_files = sorted(out_dir.glob("*.json")), sorted(out_dir.glob("*.md"))
    assert len(json_files) == 1 and len(md_files) == 1
    assert json_files[0].stem == md_files[0].stem
    return json.loads(json_files[0].read_text()), md_files[0].read_text(), time.perf_counter() - started


def _rows(result, section):
    return {row["name"]: row for row in result["sections"][section]["rows"]}


def test_quick_run_has_every_section_and_machine_facts(quick_run):
    result, _, _ = quick_run
    assert result["schema_version"] == 1
    assert set(result["sections"]) == SECTIONS
    assert result["config"]["preset"] == "tiny" and result["config"]["quick"] is True
    for key in ("cpu_model", "cpu_count", "threads", "torch", "onnxruntime", "executorch", "transformers"):
        assert key in result["machine"], key
    assert result["host"] and result["created_utc"]


def test_every_row_has_numbers_or_a_reason(quick_run):
    result, _, _ = quick_run
    for key, section in result["sections"].items():
        assert section["rows"], f"section {key} has no rows"
        column_keys = {column["key"] for column in section["columns"]}
        for row in section["rows"]:
            assert row["status"] in ("ok", "unavailable", "skipped"), row
            # Our own rows are measured or skipped by design; only third-party anchors may be unavailable.
            assert row["status"] != "unavailable" or row["name"] in THIRD_PARTY_ROWS, row
            if row["status"] == "ok":
                assert row["metrics"], row
                assert all(isinstance(v, float) and math.isfinite(v) for v in row["metrics"].values()), row
                assert column_keys & set(row["metrics"]), f"{key}: {row['name']} fills no column"
            else:
                assert isinstance(row["reason"], str) and row["reason"], row


def test_latency_lists_our_backends_sessions_and_every_anchor(quick_run):
    result, _, _ = quick_run
    rows = _rows(result, "latency")
    for name in OUR_ROWS:
        assert name in rows, name
    eager = rows["PyTorch eager"]
    assert eager["status"] == "ok"  # eager needs nothing but the model package
    assert eager["metrics"]["frames"] == 3 and eager["metrics"]["warmup"] == 1
    assert {"p50_ms", "p90_ms", "fps"} <= set(eager["metrics"])
    for anchor in anchors.ANCHORS.values():
        assert rows[anchor.label]["status"] == "skipped" and "--quick" in rows[anchor.label]["reason"]
    sessions = [name for name in rows if name.startswith("runtime.VideoSession.step")]
    assert len(sessions) == 4
    reference = rows["ExecuTorch fp32"]
    if reference["status"] == "ok":
        assert eager["metrics"]["ratio_vs_executorch_fp32"] > 0
    else:
        assert "ratio_vs_executorch_fp32" not in eager["metrics"]


def test_flops_pieces_add_up_to_the_whole_step(quick_run):
    result, _, _ = quick_run
    rows = _rows(result, "flops")
    whole = rows["whole step, eager (hooks attached)"]["metrics"]["gflops"]
    per_frame = [row for name, row in rows.items()
                 if row["metrics"].get("share_pct") is not None and not name.startswith("whole")]
    assert "FPN neck" in rows and "perceiver resampler" in rows and "memory cross-attention" in rows
    assert sum(row["metrics"]["gflops"] for row in per_frame) == pytest.approx(whole, rel=1e-6)
    # The hooks see every counted FLOP: nothing of substance happens outside the submodules.
    assert abs(rows["outside submodules"]["metrics"]["gflops"]) < 0.01 * whole
    assert rows["text encoder + projection (once per prompt)"]["metrics"]["gflops"] > 0
    path = _rows(result, "memory_path")
    assert {"video step (T slots valid)", "image-only step", "video / image-only latency", "perceiver resampler",
            "memory cross-attention"} <= set(path)


def test_memory_and_training_sections(quick_run):
    result, _, _ = quick_run
    memory = _rows(result, "memory")
    assert memory["PyTorch eager"]["metrics"]["peak_rss_mib"] >= memory["PyTorch eager"]["metrics"]["start_rss_mib"]
    assert memory["file: checkpoint (model.safetensors)"]["metrics"]["file_mib"] > 0
    training = _rows(result, "training")
    assert len(training) == 4
    cache = training["teacher caching: student checkpoint as teacher"]
    assert cache["status"] == "ok"
    # float16 [256, 18, 18] per frame plus the safetensors header and index, spread over the frames.
    assert 256 * 18 * 18 * 2 < cache["metrics"]["bytes_per_frame"] < 256 * 18 * 18 * 2 + 4096
    assert training["teacher caching: SAM3 vision tower @504 (1 video)"]["status"] == "skipped"


def test_geometry_token_is_timed_and_students_are_skipped_under_quick(quick_run):
    result, _, _ = quick_run
    geometry = _rows(result, "geometry_token")
    with_token = geometry["decode with the geometry token (eager)"]["metrics"]["ms"]
    alone = geometry["geometry encoder alone (eager)"]["metrics"]
    assert 0 < alone["ms"] < with_token and alone["gflops"] > 0
    assert geometry["decode without it (eager)"]["status"] == "ok"
    assert geometry["geometry encoder alone (ExecuTorch fp32)"]["status"] == "skipped"
    students = result["sections"]["students"]["rows"]
    assert [row["status"] for row in students] == ["skipped"] and "--quick" in students[0]["reason"]
    assert result["config"]["students"] == list(STUDENTS)


@pytest.mark.parametrize("argv, message", [
    (["--students", "es-rv-m,es-xx-s"], "error: --students: unknown student es-xx-s"),
    (["--threads", "0"], "error: --threads must be >= 1"),
    (["--students", "none", "--students-only"], "error: --students-only needs at least one student"),
])
def test_bad_arguments_fail_with_one_error_line(argv, message, capsys, tmp_path):
    assert main([*argv, "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("failed, label", [("pte_int8", "ExecuTorch int8"), ("onnx", "ONNX")])
def test_a_failing_student_export_fails_the_section(failed, label, monkeypatch, tmp_path):
    """Student rows are our own code: a failed export raises, it never becomes an "unavailable" row."""
    from benchmarks import students
    from benchmarks.artifacts import Artifacts

    def failed_export(preset, checkpoint, directory, *args, **kwargs):
        artifacts = Artifacts(checkpoint=directory, random_weights=True, onnx_dir=directory / "onnx",
                              pte_fp32=directory / "model_fp32.pte", pte_int8=directory / "model_int8.pte")
        setattr(artifacts, "onnx_dir" if failed == "onnx" else failed, None)
        setattr(artifacts, f"{failed}_reason", "export failed: RuntimeError: boom")
        return artifacts

    monkeypatch.setattr(students, "prepare_artifacts", failed_export)
    with pytest.raises(students.StudentBenchmarkError, match=f"es-tv-s {label}: export failed"):
        students.students_section(("es-tv-s",), tmp_path, None, 1, TimingPlan(warmup=1, frames=1), "red circle",
                                  60.0, None)


def test_a_failing_row_of_ours_fails_the_run(monkeypatch, capsys, tmp_path):
    """A worker of our own (PyTorch eager) fails: one error line naming the row and the cause, exit 2,
    no report. The synthetic data and the geometry token are stubbed to keep this test short."""
    def failing_worker(spec, timeout_s):
        if spec.kind == "eager":
            raise WorkerError("worker exited with code 1: RuntimeError: injected failure")
        raise AssertionError(f"no worker after the failed one, got {spec.kind}")

    geometry = Section("geometry_token", "Geometry", [Column("ms", "ms")], rows=[Row.ok("decode", {"ms": 1.0})])
    monkeypatch.setattr(run, "write_synthetic", lambda root, videos, frames: root)
    monkeypatch.setattr(run, "geometry_token_section", lambda *args: (geometry, None))
    monkeypatch.setattr(run, "run_in_subprocess", failing_worker)
    out_dir = tmp_path / "out"
    assert main(["--quick", "--preset", "tiny", "--out-dir", str(out_dir), "--threads", "1",
                 "--work-dir", str(tmp_path / "work")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: PyTorch eager: WorkerError: worker exited with code 1: RuntimeError: "
                              "injected failure"), err[-1]
    assert not out_dir.exists()


def _fake_result(spec, timeout_s):
    latency = LatencyStats(p50_ms=10.0, p90_ms=11.0, mean_ms=10.0, min_ms=9.0, frames=3, warmup=1)
    return WorkerResult(latency=latency, peak_rss_mb=100.0, start_rss_mb=50.0, load_s=1.0)


def test_only_anchors_may_be_unavailable(monkeypatch, tmp_path):
    """Full run (no --quick): an anchor that fails is an "unavailable" row; our rows that fail, or whose
    export failed, fail the run naming the row and the cause."""
    def anchors_fail(spec, timeout_s):
        if spec.kind == "anchor":
            raise WorkerError(f"worker exited with code 1: {spec.anchor} crashed")
        return _fake_result(spec, timeout_s)

    monkeypatch.setattr(run, "unavailable_reason", lambda key: None)
    monkeypatch.setattr(run, "run_in_subprocess", anchors_fail)
    artifacts = Artifacts(checkpoint=tmp_path, random_weights=True, onnx_dir=tmp_path / "onnx",
                          pte_fp32=tmp_path / "fp32.pte", pte_int8=tmp_path / "int8.pte")
    config = BenchConfig(preset="tiny", threads=1)
    measured = {m.name: m for m in measure_backends(config, artifacts)}
    for anchor in anchors.ANCHORS.values():
        assert measured[anchor.label].status == "unavailable" and "crashed" in measured[anchor.label].reason
    assert all(m.status == "ok" for name, m in measured.items() if name not in THIRD_PARTY_ROWS)

    def onnx_fails(spec, timeout_s):
        if spec.kind == "onnx":
            raise WorkerError("worker exited with code 1: onnxruntime refused the graph")
        return _fake_result(spec, timeout_s)

    monkeypatch.setattr(run, "run_in_subprocess", onnx_fails)
    with pytest.raises(RowFailed, match="^ONNX Runtime: WorkerError: .*onnxruntime refused the graph"):
        measure_backends(config, artifacts)
    monkeypatch.setattr(run, "run_in_subprocess", _fake_result)
    artifacts.pte_int8, artifacts.pte_int8_reason = None, "export failed: RuntimeError: lowering"
    with pytest.raises(RowFailed, match="^ExecuTorch int8: export failed: RuntimeError: lowering"):
        measure_backends(config, artifacts)


def test_require_measured_lets_only_anchors_be_unavailable():
    anchor = next(iter(anchors.ANCHORS.values())).label
    section = Section("training", "Training side", [Column("a", "A")],
                      rows=[Row.ok("ours", {"a": 1.0}), Row.skipped("ours, --quick", "--quick"),
                            Row.unavailable(anchor, "timm not installed")])
    assert require_measured(section) is section
    section.rows.append(Row.unavailable("SAVVideoDataset items/s", "RuntimeError: no clips"))
    with pytest.raises(RowFailed, match="^SAVVideoDataset items/s: RuntimeError: no clips$"):
        require_measured(section)


def test_parse_students():
    assert parse_students("all") == STUDENTS and len(STUDENTS) == 9 and parse_students("none") == ()
    assert parse_students("es-tv-s, es-rv-m") == ("es-tv-s", "es-rv-m")
    with pytest.raises(ValueError, match="unknown student"):
        parse_students("")


def test_markdown_shows_every_section_and_row(quick_run):
    result, markdown, _ = quick_run
    for section in result["sections"].values():
        assert f"### {section['title']}" in markdown
        for row in section["rows"]:
            assert row["name"].replace("|", "/") in markdown


def test_quick_run_wall_time_is_reported(quick_run):
    result, _, elapsed = quick_run
    assert 0 < result["wall_time_s"] <= elapsed
    assert set(result["config"]["stage_s"]) == {"synthetic data", "geometry token", "students", "export",
                                                "backends and anchors", "memory path and flops", "module int8",
                                                "onnx int8", "device files", "prompt batch", "training side"}


# Unit checks of the parts ---------------------------------------------------------------------------
def test_row_requires_numbers_or_a_reason_and_drops_nan():
    with pytest.raises(ValueError, match="needs metrics"):
        Row.ok("x", {})
    with pytest.raises(ValueError, match="needs a reason"):
        Row("x", "unavailable")
    with pytest.raises(ValueError, match="status"):
        Row("x", "maybe", reason="?")
    row = Row.ok("x", {"a": 1, "b": float("nan"), "c": None})
    assert row.metrics == {"a": 1.0}


def test_render_section_marks_missing_cells_and_reasons():
    section = Section("s", "Title", [Column("a", "A", "{:.1f}")],
                      rows=[Row.ok("measured", {"a": 2.0}), Row.unavailable("missing | pipe", "no package")])
    text = render_section(section)
    assert "| measured | 2.0 |" in text
    assert "| missing / pipe | — | unavailable: no package |" in text


def test_slow_stepper_is_timed_over_slow_frames_only():
    calls = []

    def slow_step(frame_number):
        calls.append(frame_number)
        time.sleep(0.02)

    stats = time_steps(slow_step, TimingPlan(warmup=2, frames=20, slow_frames=3, slow_threshold_s=0.001))
    assert stats.frames == 3 and stats.warmup == 2
    assert calls == [0, 1, 2, 3, 4]
    fast = time_steps(lambda n: None, TimingPlan(warmup=1, frames=5, slow_frames=3))
    assert fast.frames == 5


def test_very_slow_warmup_stops_after_min_warmup():
    calls = []

    def very_slow_step(frame_number):
        calls.append(frame_number)
        time.sleep(0.02)

    plan = TimingPlan(warmup=8, frames=20, slow_frames=3, slow_threshold_s=0.001, min_warmup=2,
                      very_slow_threshold_s=0.001)
    stats = time_steps(very_slow_step, plan)
    assert stats.warmup == 2 and stats.frames == 3
    assert calls == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="min_warmup"):
        TimingPlan(warmup=2, min_warmup=3)


def test_failing_worker_reports_why(tmp_path):
    spec = WorkerSpec(kind="eager", threads=1, plan=TimingPlan(warmup=1, frames=1), path=str(tmp_path / "missing"))
    with pytest.raises(WorkerError, match="missing"):
        run_in_subprocess(spec, timeout_s=300)


def test_anchor_without_timm_is_unavailable(monkeypatch):
    real_find_spec = anchors.importlib.util.find_spec
    monkeypatch.setattr(anchors.importlib.util, "find_spec",
                        lambda name: None if name == "timm" else real_find_spec(name))
    assert "timm" in anchors.unavailable_reason("edgetam_video_repvit")
    assert anchors.unavailable_reason("sam3_vision_504") is None
    with pytest.raises(KeyError):
        anchors.unavailable_reason("no_such_anchor")


def test_prompt_batch_rows_time_one_decode_against_p_decodes(onnx_export, tiny_checkpoint):
    """The prompt_batch section's rows on the shared tiny ONNX export (the quick run skips them): one row per
    P with both timings, the budget from the eager FLOPs, and decode FLOPs growing with P (P = 1, 2, 3 here:
    the full run's 4 and 8 only cost time)."""
    from benchmarks.prompt_batch import decode_gflops, prompt_batch_rows, prompt_batch_section

    rows = prompt_batch_rows("ONNX Runtime fp32", onnx_export.directory, tiny_checkpoint, threads=1, repeats=1,
                             counts=(1, 2, 3))
    assert [row.metrics["prompts"] for row in rows] == [1, 2, 3]
    for row in rows:
        assert row.status == "ok" and row.metrics["frame_ms"] > 0 and row.metrics["separate_frame_ms"] > 0
        assert row.metrics["budget_ms"] > row.metrics["encode_ms"]
    gflops = [row.metrics["decode_gflop"] for row in rows]
    assert gflops == sorted(gflops) and len(set(gflops)) == len(gflops)
    one, two = decode_gflops(tiny_checkpoint, 1), decode_gflops(tiny_checkpoint, 2)
    # The memory and geometry tokens are computed once: two prompts cost less than twice one.
    assert 0 < one["shared"] == pytest.approx(two["shared"]) and two["decode"] == pytest.approx(
        2 * one["decode"] - one["shared"], rel=1e-3)
    assert "P=3" in render_section(prompt_batch_section(rows))
    with pytest.raises(ValueError, match="must include 1"):
        prompt_batch_rows("ONNX Runtime fp32", onnx_export.directory, tiny_checkpoint, threads=1, counts=(2, 4))


def test_a_students_only_report_does_not_replace_the_days_full_report(tmp_path):
    from benchmarks.report import write_results

    full = {"created_utc": "2026-12-01T10:00:00+00:00", "host": "vm", "config": {"students_only": False}}
    students = {**full, "config": {"students_only": True}}
    assert [p.name for p in write_results(full, "# full\n", tmp_path)] == ["2026-12-01-vm.json", "2026-12-01-vm.md"]
    assert [p.name for p in write_results(students, "# students\n", tmp_path)] == [
        "2026-12-01-vm-students.json", "2026-12-01-vm-students.md"]
    assert (tmp_path / "2026-12-01-vm.md").read_text() == "# full\n"
