"""Call an exported model's methods from Python: one small interface over an ExecuTorch ``.pte`` and an
ONNX directory, used by the parity check and the latency measurement.

    program = load_program("model.pte")        # or an ONNX export directory
    fpn0, fpn1, fpn2, level3 = program.run("encode_frame", (pixel_values,))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from export.metadata import metadata_path, read_metadata
from export.wrappers import INPUT_NAMES, METHOD_NAMES


class ExecutorchProgram:
    """A .pte loaded with the ExecuTorch Python runtime (portable kernels + XNNPACK)."""

    backend = "executorch"

    def __init__(self, path: str | Path, metadata: dict, num_threads: int | None = None,
                 enable_etdump: bool = False) -> None:
        from executorch.extension.pybindings import portable_lib

        if num_threads is not None:
            portable_lib._unsafe_reset_threadpool(num_threads)
        self.path = Path(path)
        self.metadata = metadata
        try:
            self.module = portable_lib._load_for_executorch(str(path), enable_etdump=enable_etdump)
            method_names = self.module.method_names()
        except RuntimeError as err:
            raise ValueError(f"{path}: not a loadable ExecuTorch program ({err})") from err
        missing = set(METHOD_NAMES) - set(method_names)
        if missing:
            raise ValueError(f"{path}: program lacks methods {sorted(missing)}")

    def run(self, method: str, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return tuple(self.module.run_method(method, tuple(t.contiguous() for t in inputs)))

    def write_etdump(self, path: str | Path) -> None:
        self.module.write_etdump_result_to_file(str(path))


class OnnxProgram:
    """An ONNX export directory run with onnxruntime on CPU."""

    backend = "onnx"

    def __init__(self, directory: str | Path, metadata: dict, num_threads: int | None = None) -> None:
        import onnxruntime

        self.path = Path(directory)
        self.metadata = metadata
        options = onnxruntime.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        self.sessions = {}
        for method, file_name in metadata["files"].items():
            model_path = self.path / file_name
            if not model_path.is_file():
                raise FileNotFoundError(f"{model_path}: ONNX file named in the metadata is missing")
            self.sessions[method] = onnxruntime.InferenceSession(
                str(model_path), options, providers=["CPUExecutionProvider"])

    def run(self, method: str, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        feeds = {name: np.ascontiguousarray(t.numpy()) for name, t in zip(INPUT_NAMES[method], inputs)}
        return tuple(torch.from_numpy(out) for out in self.sessions[method].run(None, feeds))


def load_program(path: str | Path, num_threads: int | None = None):
    """An ExecutorchProgram (``*.pte``) or an OnnxProgram (a directory), with its metadata checked."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such program")
    metadata = read_metadata(metadata_path(path))
    if path.suffix == ".pte":
        if metadata["backend"] != "executorch":
            raise ValueError(f"{metadata_path(path)}: backend is {metadata['backend']!r}, but {path} is a .pte")
        return ExecutorchProgram(path, metadata, num_threads)
    if path.is_dir():
        if metadata["backend"] != "onnx":
            raise ValueError(f"{metadata_path(path)}: backend is {metadata['backend']!r}, expected 'onnx'")
        return OnnxProgram(path, metadata, num_threads)
    raise ValueError(f"{path}: expected a .pte file or an ONNX export directory")
