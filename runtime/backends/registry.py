"""Pick and open a backend for a model path. Backends are imported lazily: choosing onnx never
imports torch.

Which backend a path means:
- a directory with ``config.json`` (save_pretrained)            -> torch
- a directory with ``metadata.json`` + ``*.onnx`` (export.onnx) -> onnx
- a file ending in ``.pte`` (export.executorch)                 -> executorch
"""

from __future__ import annotations

from pathlib import Path

from runtime.backends.base import Backend, BackendError

BACKENDS = ("torch", "onnx", "executorch")


def infer_backend(model_path: str | Path) -> str:
    """The backend a model path is written for (BackendError when it is none of them)."""
    path = Path(model_path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: model not found")
    if path.is_file() and path.suffix == ".pte":
        return "executorch"
    if path.is_dir() and (path / "config.json").is_file():
        return "torch"
    if path.is_dir() and (path / "metadata.json").is_file():
        return "onnx"
    raise BackendError(f"{path}: not a model this runtime knows: expected a checkpoint directory with config.json "
                       "(torch), an export.onnx directory with metadata.json (onnx) or a .pte file (executorch)")


def open_backend(model_path: str | Path, backend: str | None = None, num_threads: int | None = None) -> Backend:
    """Load ``model_path`` with ``backend`` (None: inferred from the path). A path written for another
    backend is a BackendError; num_threads caps the backend's CPU threads (None: its default)."""
    inferred = infer_backend(model_path)
    if backend is None:
        backend = inferred
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
    if backend != inferred:
        raise BackendError(f"{model_path}: this is a {inferred} model, it does not match backend {backend!r}")
    if backend == "torch":
        from runtime.backends.torch_backend import TorchBackend

        return TorchBackend.from_path(model_path, num_threads=num_threads)
    from runtime.backends.exported_backend import ExportedBackend

    return ExportedBackend.from_path(model_path, backend, num_threads=num_threads)
