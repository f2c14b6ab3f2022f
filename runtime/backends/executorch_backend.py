"""ExecuTorch backend: one ``.pte`` with methods encode_frame, decode and encode_text, and its metadata
at ``<path>.json``. Prompts are the ones whose text features the export stored in the metadata (the
device needs no tokenizer). ExecuTorch's Python runtime exchanges torch tensors, so this backend
imports torch; numpy crosses the backend boundary as everywhere else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from executorch.runtime import Runtime

from runtime.backends.base import (
    Backend,
    BackendError,
    DecodeOutput,
    FrameFeatures,
    PromptFeatures,
    check_outputs,
    decode_output_from_arrays,
)
from runtime.backends.metadata import read_export_metadata

REQUIRED_METHODS = ("encode_frame", "decode")


class ExecutorchBackend(Backend):
    name = "executorch"

    def __init__(self, path: Path, num_threads: int | None = None) -> None:
        self.path = Path(path)
        self.metadata = read_export_metadata(Path(f"{self.path}.json"), "executorch")
        self.info = self.metadata.info
        if num_threads is not None:
            from executorch.extension.pybindings import _C

            _C._unsafe_reset_threadpool(num_threads)
        try:
            program = Runtime.get().load_program(self.path)
        except Exception as err:  # the pybindings raise RuntimeError / ValueError for a bad program
            raise BackendError(f"{self.path}: ExecuTorch cannot load this program ({err})") from err
        missing = [name for name in REQUIRED_METHODS if name not in program.method_names]
        if missing:
            raise BackendError(f"{self.path}: program lacks methods {missing} (has {sorted(program.method_names)})")
        self._program = program
        self._methods = {name: program.load_method(name) for name in REQUIRED_METHODS}

    @classmethod
    def from_path(cls, path: str | Path, num_threads: int | None = None) -> "ExecutorchBackend":
        path = Path(path)
        if not path.is_file() or path.suffix != ".pte":
            raise BackendError(f"{path}: the executorch backend needs a .pte file")
        return cls(path, num_threads=num_threads)

    def prompt_features(self, text: str) -> PromptFeatures:
        return self.metadata.prompt_features(text)

    def _execute(self, name: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        tensors = [torch.from_numpy(np.ascontiguousarray(array)) for array in inputs]
        try:
            outputs = self._methods[name].execute(tensors)
        except Exception as err:  # input mismatch reported by the ExecuTorch runtime
            raise BackendError(f"{self.path}: method {name} failed ({err})") from err
        return [output.numpy() for output in outputs]

    def encode_frame(self, pixel_values: np.ndarray) -> FrameFeatures:
        self.check_pixels(pixel_values)
        outputs = self._execute("encode_frame", [pixel_values])
        fpn0, fpn1, fpn2, memory = check_outputs(outputs, list(self.info.fpn_shapes), f"{self.path}: encode_frame")
        return FrameFeatures(fpn=(fpn0, fpn1, fpn2), memory_feature=memory)

    def decode(self, frame: FrameFeatures, memory_features: np.ndarray, memory_mask: np.ndarray,
               prompt: PromptFeatures) -> DecodeOutput:
        inputs = [*frame.fpn, memory_features.astype(np.float32, copy=False), memory_mask.astype(np.bool_, copy=False),
                  prompt.features.astype(np.float32, copy=False), prompt.mask.astype(np.int64, copy=False)]
        outputs = self._execute("decode", inputs)
        return decode_output_from_arrays(outputs, self.info, f"{self.path}: decode")
