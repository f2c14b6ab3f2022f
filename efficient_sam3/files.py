"""Output files that appear whole or not at all: the one atomic writer of the package.

Every command writes its outputs (JSON, videos, checkpoints, caches, exports) through these helpers:
the data goes to a unique temp name beside the target (``.<name>.<pid>-<random>.tmp<suffix>``), is
given the usual file mode (0666 / 0777 minus the umask; ``mkstemp`` alone gives 0600), optionally
verified, and only then renamed over the target. A failure or an exception removes the temp file, so
a target is always either its old content or the complete new one.

A run killed with SIGKILL cannot clean up; its temp names carry its process id, so the next run that
writes into the same directory recognises them (the process is gone) and removes them
(``remove_stale_temps``, called by every helper here).

``OutputLock`` makes runs aimed at the same output refuse at once, naming the process that holds it.

Standard library only: the torch-free runtime uses it too.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Callable, Iterator

TEMP_SUFFIX = ".tmp"
_TEMP_PATTERN = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp")


def usual_file_mode() -> int:
    """0666 minus the process umask (what ``open(path, "w")`` would give)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def temp_name_for(path: Path, suffix: str = "") -> Path:
    """A unique temp path beside ``path``: ``.<name>.<pid>-<random>.tmp<suffix>``.

    ``suffix`` keeps an extension a writer needs (OpenCV picks the container from ``.mp4``).
    """
    return path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}{suffix}"


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(directory: Path) -> list[Path]:
    """Remove temp files and folders in ``directory`` left by runs whose process is gone; returns them."""
    removed = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_PATTERN.match(entry.name)
        if match is None or _process_alive(int(match.group("pid"))):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            continue  # another run removed it first, or it is not ours to remove
    return removed


def check_writable(path: str | Path, what: str = "output") -> Path:
    """Fail before any work if ``path`` cannot be written: its folder must exist and take a new file.

    Raises ``OSError`` whose message starts with the path (the commands print it as one error line).
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"{path}: {what} folder {parent} does not exist")
    if path.is_dir() and what != "folder":
        raise IsADirectoryError(errno.EISDIR, f"{path}: {what} is a folder, expected a file path")
    probe = temp_name_for(path, ".probe")
    try:
        probe.touch()
    except OSError as err:
        raise PermissionError(errno.EACCES, f"{path}: cannot write the {what} ({err.strerror})") from None
    probe.unlink()
    return path


def check_creatable(path: str | Path, what: str = "output", folder: bool = False) -> Path:
    """Fail before any work if ``path`` could not be created: a file, or with ``folder`` a folder that
    files are written into. Missing parent folders are fine (the writer creates them) as long as the
    nearest existing one is a folder that takes new files; an existing ``path`` must be of the right kind.

    Raises ``OSError`` whose message starts with the path (the commands print it as one error line).
    """
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        kind, expected = ("a file", "a folder") if folder else ("a folder", "a file path")
        raise (NotADirectoryError if folder else IsADirectoryError)(
            errno.ENOTDIR if folder else errno.EISDIR, f"{path}: {what} is {kind}, expected {expected}")
    existing = path if folder and path.is_dir() else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{path}: cannot create the {what}: {existing} is a file")
    probe = temp_name_for(existing / (path.name or "output"), ".probe")
    try:
        probe.touch()
    except OSError as err:
        raise PermissionError(errno.EACCES, f"{path}: cannot write the {what} in {existing} ({err.strerror})") from None
    probe.unlink()
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "",
                verify: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temp path to write ``path``'s content to; on success it is renamed over ``path``.

    The caller writes the temp path (any writer, any number of times). When the block ends without an
    exception, ``verify(temp)`` runs (it raises to refuse the file), the file gets the usual mode and is
    renamed into place. On any exception the temp file is removed and the target left as it was.
    """
    path = Path(path)
    remove_stale_temps(path.parent)
    temp = temp_name_for(path, suffix)
    try:
        yield temp
        if not temp.exists():
            raise FileNotFoundError(errno.ENOENT, f"{path}: the writer produced no file")
        if verify is not None:
            verify(temp)
        os.chmod(temp, usual_file_mode())
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``path`` (an old folder is removed after).

    The rename of a folder over an existing one is two steps (old aside, new in); between them the
    target is briefly absent, never mixed.
    """
    path = Path(path)
    remove_stale_temps(path.parent)
    staging = temp_name_for(path)
    staging.mkdir(mode=0o777)
    try:
        yield staging
        old = None
        if path.exists():
            old = temp_name_for(path, ".old")
            os.replace(path, old)
        os.replace(staging, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as temp:
        temp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, value, indent: int | None = None) -> None:
    """``json.dump`` of ``value`` to ``path``, atomically (a value that cannot be serialised writes nothing)."""
    write_text_atomic(path, json.dumps(value, indent=indent) + ("\n" if indent is not None else ""))


class OutputLockedError(RuntimeError):
    """Another live run holds the lock on the same output."""


class OutputLock:
    """An exclusive, non-blocking lock on an output: ``.<name>.lock`` beside it (flock, freed on exit/kill).

    ``with OutputLock(path):`` refuses at once with ``OutputLockedError`` naming the other process's id
    when a run aimed at the same output is alive. The lock file stays (an empty file; flock state dies
    with the process, so a killed run never blocks the next one).
    """

    def __init__(self, path: str | Path, lock_path: str | Path | None = None) -> None:
        """``lock_path``: where the lock file goes when not beside ``path`` (e.g. a folder inside a root
        that must hold only data folders)."""
        self.path = Path(path)
        self.lock_path = Path(lock_path) if lock_path is not None else self.path.parent / f".{self.path.name}.lock"
        self._handle = None

    def __enter__(self) -> "OutputLock":
        handle = open(self.lock_path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise OutputLockedError(f"{self.path}: another run (pid {holder}) is writing this output; "
                                    "wait for it or choose another output") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc_info) -> None:
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate()
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
