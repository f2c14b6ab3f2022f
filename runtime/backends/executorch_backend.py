"""ExecuTorch backend: one ``.pte`` with methods encode_frame, decode and encode_text, and its metadata
at ``<path>.json``. Prompts are the ones whose text features the export stored in the metadata (the
device needs no tokenizer). The program is loaded by ``efficient_sam3.programs`` (ExecuTorch's Python
runtime exchanges torch tensors, so it imports torch); numpy crosses the backend boundary as everywhere else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from efficient_sam3.programs import ProgramError, load_program, metadata_path
from runtime.backends.base import (
    Backend,
    BackendError,
    DecodeOutput,
    FrameFeatures,
    PromptFeatures,
    check_outputs,
    decode_output_from_arrays,
)
from runtime.backends.metadata import export_metadata_from

REQUIRED_METHODS = ("encode_frame", "decode")


class ExecutorchBackend(Backend):
    name = "executorch"

    def __init__(self, path: Path, num_threads: int | None = None) -> None:
        self.path = Path(path)
        try:
            self._program = load_program(self.path, num_threads=num_threads, methods=REQUIRED_METHODS)
        except ProgramError as err:
            raise BackendError(str(err)) from None
        self.metadata = export_metadata_from(self._program.metadata, metadata_path(self.path), "executorch")
        self.info = self.metadata.info

    @classmethod
    def from_path(cls, path: str | Path, num_threads: int | None = None) -> "ExecutorchBackend":
        path = Path(path)
        if not path.is_file() or path.suffix != ".pte":
            raise BackendError(f"{path}: the executorch backend needs a .pte file")
        return cls(path, num_threads=num_threads)

    def prompt_features(self, text: str) -> PromptFeatures:
        return self.metadata.prompt_features(text)

    def _execute(self, name: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        try:
            return self._program.run(name, inputs)
        except ProgramError as err:
            raise BackendError(str(err)) from None

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
