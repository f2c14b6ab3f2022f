"""efficient_sam3.files: outputs appear whole or not at all, with the usual mode; stale temps and locks."""

import json
import os
import stat
import subprocess
import sys

import pytest

from efficient_sam3.files import (
    OutputLock,
    OutputLockedError,
    atomic_directory,
    atomic_path,
    check_writable,
    remove_stale_temps,
    temp_name_for,
    write_json_atomic,
)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_file_gets_the_usual_mode_under_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_json_atomic(tmp_path / "out.json", {"a": 1})
    finally:
        os.umask(old)
    assert json.loads((tmp_path / "out.json").read_text()) == {"a": 1}
    assert _mode(tmp_path / "out.json") == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_failing_writer_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temp:
            temp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_verify_refuses_a_bad_file(tmp_path):
    def verify(path):
        if path.stat().st_size < 10:
            raise ValueError(f"{path}: too short")

    with pytest.raises(ValueError, match="too short"):
        with atomic_path(tmp_path / "video.mp4", suffix=".mp4", verify=verify) as temp:
            assert temp.name.endswith(".mp4") and temp.name.startswith(".video.mp4.")
            temp.write_bytes(b"x")
    assert list(tmp_path.iterdir()) == []


def test_a_value_json_cannot_hold_writes_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "out.json", {"a": object()})
    assert list(tmp_path.iterdir()) == []


def test_temps_of_a_dead_process_are_removed_and_live_ones_kept(tmp_path):
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(child.stdout)
    dead = tmp_path / f".out.json.{dead_pid}-0123abcd.tmp"
    dead.write_text("torn")
    dead_dir = tmp_path / f".onnx.{dead_pid}-0123abcd.tmp"
    dead_dir.mkdir()
    live = temp_name_for(tmp_path / "other.json")
    live.write_text("being written")
    unrelated = tmp_path / ".hidden"
    unrelated.write_text("not ours")
    assert sorted(p.name for p in remove_stale_temps(tmp_path)) == sorted([dead.name, dead_dir.name])
    assert live.exists() and unrelated.exists()
    write_json_atomic(tmp_path / "out.json", {})  # every writer cleans its folder first
    assert not dead.exists()


def test_atomic_directory_replaces_the_whole_folder(tmp_path):
    target = tmp_path / "onnx"
    target.mkdir()
    (target / "stale.onnx").write_text("old")
    with atomic_directory(target) as staging:
        (staging / "model.onnx").write_text("new")
    assert [p.name for p in target.iterdir()] == ["model.onnx"]
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as staging:
            (staging / "half.onnx").write_text("x")
            raise RuntimeError("export failed")
    assert [p.name for p in target.iterdir()] == ["model.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]


def test_check_writable_names_the_path(tmp_path):
    assert check_writable(tmp_path / "a.json") == tmp_path / "a.json"
    with pytest.raises(FileNotFoundError, match="missing"):
        check_writable(tmp_path / "missing" / "a.json")
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        check_writable(tmp_path)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        with pytest.raises(PermissionError, match="cannot write"):
            check_writable(locked / "a.json")
    assert list(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_second_run_on_the_same_output_is_refused_naming_the_first(tmp_path):
    target = tmp_path / "out.json"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from efficient_sam3.files import OutputLock\n"
         f"with OutputLock({str(target)!r}):\n    print('held', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputLockedError, match=f"pid {holder.pid}"):
            with OutputLock(target):
                pass
    finally:
        holder.kill()
        holder.wait()
    with OutputLock(target):  # a killed holder never blocks the next run
        pass
