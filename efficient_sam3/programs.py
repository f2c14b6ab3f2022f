"""Load an exported model and call its entry points with numpy arrays: the one loader of the project.

    program = load_program("model.pte")          # or the directory export.onnx wrote
    fpn0, fpn1, fpn2, level3 = program.run("encode_frame", [pixel_values])

An ExecuTorch ``.pte`` (its metadata at ``model.pte.json``) runs in ExecuTorch's Python runtime
(portable kernels + XNNPACK); an ONNX export directory (``metadata.json`` and one ``.onnx`` per entry
point, named by the metadata) runs in onnxruntime on CPU. The metadata is read and validated with
``efficient_sam3.contract.check_metadata`` before anything is loaded. The runtime backends, the export
parity check and the benchmarks all load programs here.

Importing this module needs numpy only: the ONNX path never imports torch (a device without PyTorch
runs it), the ExecuTorch path imports torch because ExecuTorch's Python runtime exchanges torch tensors.
Every error is a ``ProgramError`` (a ValueError) whose message names the file and the problem.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from efficient_sam3 import contract

ONNX_METADATA_FILE = "metadata.json"
_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(bool)": np.bool_, "tensor(int64)": np.int64,
                "tensor(int32)": np.int32}


class ProgramError(ValueError):
    """An exported program (or its metadata) is missing, malformed or cannot run its inputs."""


def metadata_path(program: str | Path) -> Path:
    """model.pte -> model.pte.json; an ONNX directory -> <dir>/metadata.json."""
    program = Path(program)
    if program.suffix == ".pte":
        return program.with_name(program.name + ".json")
    return program / ONNX_METADATA_FILE


def read_program_metadata(path: str | Path, complete: bool = False) -> dict:
    """The metadata JSON at ``path``, validated (``complete``: also the fields only export writes)."""
    path = Path(path)
    if not path.is_file():
        raise ProgramError(f"{path}: export metadata not found (export/ writes it beside the model)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ProgramError(f"{path}: malformed JSON (unreadable metadata JSON: {err})") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ProgramError(f"{path}: unreadable metadata JSON ({err})") from err
    try:
        return contract.check_metadata(data, str(path), complete=complete)
    except ValueError as err:
        raise ProgramError(str(err)) from None


def check_prompt_batch(path: Path, metadata: dict, method: str, inputs: Sequence) -> None:
    """decode's text inputs hold 1 to the metadata's ``max_prompts`` prompts (ONNX Runtime would run more;
    ExecuTorch would fail with a bare error code)."""
    if method != "decode" or len(inputs) != len(contract.DECODE_INPUTS):
        return
    prompts, limit = np.shape(inputs[contract.DECODE_INPUTS.index("text_features")])[0], metadata["max_prompts"]
    if not 1 <= prompts <= limit:
        raise ProgramError(f"{path}: decode takes 1 to {limit} prompts per call (metadata max_prompts), got {prompts}")


class ExecutorchProgram:
    """A .pte loaded with ExecuTorch's Python runtime. ``enable_etdump``: record a profile
    (``write_etdump``)."""

    backend = "executorch"

    def __init__(self, path: str | Path, metadata: dict, num_threads: int | None = None,
                 enable_etdump: bool = False) -> None:
        from executorch.extension.pybindings import portable_lib

        if num_threads is not None:
            portable_lib._unsafe_reset_threadpool(num_threads)
        self.path = Path(path)
        self.metadata = metadata
        try:
            self._module = portable_lib._load_for_executorch(str(self.path), enable_etdump=enable_etdump)
            self.method_names = tuple(self._module.method_names())
        except Exception as err:  # the pybindings raise RuntimeError / ValueError for a bad file
            raise ProgramError(f"{self.path}: ExecuTorch cannot load this program ({err})") from err

    def run(self, method: str, inputs: Sequence) -> list[np.ndarray]:
        import torch

        check_prompt_batch(self.path, self.metadata, method, inputs)
        tensors = tuple(torch.from_numpy(np.ascontiguousarray(np.asarray(array))) for array in inputs)
        try:
            outputs = self._module.run_method(method, tensors)
        except Exception as err:  # input mismatch reported by the ExecuTorch runtime
            raise ProgramError(f"{self.path}: method {method} failed ({err})") from err
        return [output.numpy() for output in outputs]

    def write_etdump(self, path: str | Path) -> None:
        self._module.write_etdump_result_to_file(str(path))


class OnnxProgram:
    """An ONNX export directory: one onnxruntime CPU session per entry point the metadata names."""

    backend = "onnx"

    def __init__(self, directory: str | Path, metadata: dict, num_threads: int | None = None,
                 methods: Sequence[str] | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(directory)
        self.metadata = metadata
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        files = metadata.get(contract.names_key("onnx")) or {name: f"{name}.onnx" for name in contract.ENTRY_POINTS}
        self._sessions = {}
        for method in methods or tuple(files):
            model_path = self.path / files.get(method, f"{method}.onnx")
            if not model_path.is_file():
                raise ProgramError(f"{model_path}: missing (the export directory's {ONNX_METADATA_FILE} names it)")
            try:
                self._sessions[method] = ort.InferenceSession(str(model_path), options,
                                                              providers=["CPUExecutionProvider"])
            except Exception as err:  # onnxruntime raises its own exception types for invalid graphs
                raise ProgramError(f"{model_path}: onnxruntime cannot load it ({err})") from err
        self.method_names = tuple(self._sessions)

    def num_inputs(self, method: str) -> int:
        return len(self._sessions[method].get_inputs())

    def run(self, method: str, inputs: Sequence) -> list[np.ndarray]:
        session = self._sessions[method]
        specs = session.get_inputs()
        if len(inputs) != len(specs):
            raise ProgramError(f"{self.path}: {method} takes {len(specs)} inputs, got {len(inputs)}")
        check_prompt_batch(self.path, self.metadata, method, inputs)
        feeds = {}
        for spec, array in zip(specs, inputs):
            dtype = _ONNX_DTYPES.get(spec.type)
            if dtype is None:
                raise ProgramError(f"{self.path}: {method} input {spec.name!r} has unsupported type {spec.type}")
            feeds[spec.name] = np.ascontiguousarray(np.asarray(array), dtype=dtype)
        try:
            return session.run(None, feeds)
        except Exception as err:  # shape/type mismatch between this model and the contract
            raise ProgramError(f"{self.path}: {method} failed in onnxruntime ({err})") from err


def load_program(path: str | Path, num_threads: int | None = None, methods: Sequence[str] | None = None,
                 complete_metadata: bool = False, enable_etdump: bool = False):
    """An ExecutorchProgram (``*.pte``) or an OnnxProgram (a directory), its metadata checked first.

    ``methods``: entry points the caller needs (a missing one is an error); for ONNX only these are
    loaded (None: every entry point the metadata names; a version-1 file names none: all three). ``complete_metadata``: require the provenance fields
    only export writes (the parity check does; a runtime does not).
    """
    path = Path(path)
    if not path.exists():
        raise ProgramError(f"{path}: no such program")
    if path.suffix == ".pte" and path.is_file():
        backend = "executorch"
    elif path.is_dir():
        backend = "onnx"
    else:
        raise ProgramError(f"{path}: expected a .pte file or an ONNX export directory")
    meta_file = metadata_path(path)
    metadata = read_program_metadata(meta_file, complete=complete_metadata)
    if metadata["backend"] != backend:
        raise ProgramError(f"{meta_file}: metadata is for backend {metadata['backend']!r}, not {backend!r}")
    if backend == "executorch":
        program = ExecutorchProgram(path, metadata, num_threads, enable_etdump=enable_etdump)
    else:
        program = OnnxProgram(path, metadata, num_threads, methods=methods)
    named = metadata.get(contract.names_key(backend)) or dict.fromkeys(contract.ENTRY_POINTS)
    missing = [name for name in methods or tuple(named) if name not in program.method_names]
    if missing:
        raise ProgramError(f"{path}: program lacks methods {missing} (has {sorted(program.method_names)})")
    return program
