"""Fixtures of the runtime's output-safety tests (Python and C++ runners): small or read-only file systems
and the id of a process that is gone."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def mount_tmpfs(tmp_path):
    """``mount_tmpfs(name, options)`` mounts a tmpfs at ``tmp_path / name`` (e.g. options "size=48k" for a disk
    that fills up, "ro" for one nothing can be written to, not even by root) and unmounts it after the test.
    Skips when this machine does not let the test mount (not root, or no mount permission in a container)."""
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        if shutil.which("mount") is None:
            pytest.skip("no mount command here to make a small or read-only file system")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True,
                                text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'mount failed'})")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=True)


@pytest.fixture
def read_only_dir(tmp_path, mount_tmpfs):
    """A folder no output can be written to: mode 0555 for a normal user, a read-only tmpfs for root (whom
    file modes do not stop)."""
    if os.geteuid() != 0:
        directory = tmp_path / "read_only"
        directory.mkdir()
        directory.chmod(0o555)
        yield directory
        directory.chmod(0o755)
        return
    yield mount_tmpfs("read_only", "ro,size=16k")


@pytest.fixture
def dead_pid() -> int:
    """The id of a process that has exited (what a run killed with SIGKILL leaves in its temp names)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid
