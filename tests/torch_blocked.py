"""Run Python in a subprocess where importing torch raises ImportError (the torch-free paths' tests)."""

import subprocess
import sys
import textwrap

BLOCK_TORCH = textwrap.dedent("""
    import importlib.abc, sys

    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"torch is blocked in this process ({name})")
            return None

    sys.meta_path.insert(0, BlockTorch())
""")
# Printed last by every script here: the torch modules the process imported (expected: none).
REPORT_TORCH_MODULES = 'print("TORCH_MODULES", sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))\n'
RUNTIME_CLI = BLOCK_TORCH + textwrap.dedent("""
    from runtime.__main__ import main
    code = main(sys.argv[1:])
""") + REPORT_TORCH_MODULES + "sys.exit(code)\n"


def run_without_torch(script: str, args: list[str] = (), timeout: float = 300) -> subprocess.CompletedProcess:
    """``script`` (after BLOCK_TORCH) in a fresh interpreter with ``args`` as sys.argv[1:]."""
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=timeout)


def run_runtime_without_torch(args: list[str]) -> subprocess.CompletedProcess:
    """``python -m runtime`` with torch blocked; its stdout ends with the TORCH_MODULES line."""
    return run_without_torch(RUNTIME_CLI, args)
