"""The command-line convention every command of the package follows (standard library only).

Bad input ends in ONE line on stderr, ``error: <file or flag>: <problem>``, and exit status 2 (what
argparse itself does for a malformed flag); nothing partial is left behind (outputs go through
``efficient_sam3.files``). Numeric flags are checked when parsed, with the types below, so a
``--batch-size 0`` is refused before any work starts. SIGTERM stops a command the way Ctrl-C does
(``KeyboardInterrupt``), so its cleanup runs.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
from typing import NoReturn

ERROR_EXIT = 2
INTERRUPTED_EXIT = 130


def error_line(problem: object) -> str:
    """The one line a command prints for bad input (newlines folded so it stays one line).

    An ``OSError`` is shown as ``<file>: <reason>`` rather than Python's ``[Errno N] ...`` form.
    """
    if isinstance(problem, OSError) and problem.strerror:
        problem = f"{problem.filename}: {problem.strerror}" if problem.filename else problem.strerror
    text = " ".join(str(problem).split("\n")).strip()
    return text if text.startswith("error: ") else f"error: {text}"


def fail(problem: object) -> int:
    """Print the error line to stderr; return the exit status (``return fail(...)`` in ``main``)."""
    print(error_line(problem), file=sys.stderr, flush=True)
    return ERROR_EXIT


def _number(kind, text: str, check, requirement: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
    if kind is float and value != value:  # NaN passes every comparison below
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    if not check(value):
        raise argparse.ArgumentTypeError(f"{text} must be {requirement}")
    return value


def positive_int(text: str) -> int:
    return _number(int, text, lambda v: v > 0, "a positive integer")


def non_negative_int(text: str) -> int:
    return _number(int, text, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    return _number(float, text, lambda v: 0 < v < float("inf"), "a positive number")


def non_negative_float(text: str) -> float:
    return _number(float, text, lambda v: 0 <= v < float("inf"), "a number >= 0")


def probability(text: str) -> float:
    return _number(float, text, lambda v: 0.0 <= v <= 1.0, "between 0 and 1")


def non_empty_text(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def sigterm_as_interrupt() -> None:
    """Make SIGTERM raise KeyboardInterrupt in the main thread (the Ctrl-C path: outputs closed or removed)."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def flag_problem(message: str) -> str:
    """argparse's wording of a malformed command line -> ``<flag>: <problem>``."""
    if message.startswith("argument "):
        flags, _, problem = message[len("argument "):].partition(": ")
        return f"{flags.split('/')[-1]}: {problem}"  # "-o/--out" -> "--out"
    required = re.match(r"the following arguments are required: (.+)", message)
    if required:
        return f"{required.group(1)}: required, not given"
    unknown = re.match(r"unrecognized arguments: (.+)", message)
    if unknown:
        return f"{unknown.group(1)}: unrecognized argument"
    return message


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors follow the convention: one line
    ``error: <flag>: <problem>`` on stderr, exit 2, no usage block (``--help`` still shows it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(ERROR_EXIT, error_line(flag_problem(message)) + "\n")
