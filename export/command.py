"""How every export command ends (export.executorch, export.onnx, export.onnx_int8).

SIGTERM is handled like Ctrl-C; then the export runs. Its exit status: 0 when it wrote its outputs; 1
when the work ran but its result was refused (parity with the eager model, or work ops left outside the
XNNPACK delegate), with the report; 2 for bad input, one ``error:`` line (``efficient_sam3.cli``); 130
when interrupted. In every case but 0 nothing is written (the exporters write through temp names).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from efficient_sam3.cli import INTERRUPTED_EXIT, fail, sigterm_as_interrupt
from export.lowering import DelegationError
from export.parity import ParityError


def run_export(export: Callable[[], object], out: Path, mismatch: str) -> int:
    """Run ``export()`` (config checks included) as a command; ``mismatch`` heads a parity failure, e.g.
    "exported program does not match the model"."""
    sigterm_as_interrupt()
    try:
        export()
    except ParityError as err:
        print(f"error: {mismatch}; nothing written\n{err}", file=sys.stderr)
        return 1
    except DelegationError as err:
        print(f"error: {err}; nothing written", file=sys.stderr)
        return 1
    except (OSError, ValueError) as err:
        return fail(err)
    except KeyboardInterrupt:
        print(f"interrupted: nothing written to {out}", file=sys.stderr)
        return INTERRUPTED_EXIT
    return 0
