"""The backends of exported models: an ExecuTorch ``.pte`` (metadata at ``<path>.json``) or the directory
``export.onnx`` writes (encode_frame.onnx, decode.onnx, encode_text.onnx, metadata.json).

Both are loaded and called by ``efficient_sam3.programs``; this module adds the runtime's contract
checks (input counts, output shapes) and its errors (``BackendError``). numpy crosses the backend
boundary; the ONNX path never imports torch, so it runs on a device without PyTorch (ExecuTorch's
Python runtime exchanges torch tensors, so the .pte path imports it). There is no tokenizer here:
prompts are the ones whose text features the export stored in its metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    decode_outputs_from_arrays,
    stack_prompts,
)
from runtime.backends.metadata import export_metadata_from

REQUIRED_METHODS = ("encode_frame", "decode")
NUM_INPUTS = {"encode_frame": 1, "decode": 7}


class ExportedBackend(Backend):
    """A program written by export/ (``name``: "executorch" or "onnx", which ``from_path`` checks)."""

    def __init__(self, path: Path, name: str, num_threads: int | None = None) -> None:
        self.path = Path(path)
        self.name = name
        try:
            self._program = load_program(self.path, num_threads=num_threads, methods=REQUIRED_METHODS)
        except ProgramError as err:
            raise BackendError(str(err)) from None
        self.metadata = export_metadata_from(self._program.metadata, metadata_path(self.path), name)
        self.info = self.metadata.info
        if name == "onnx":  # an ONNX graph lists its inputs; a .pte is checked when it runs
            for method, expected in NUM_INPUTS.items():
                if self._program.num_inputs(method) != expected:
                    raise BackendError(f"{self.path}: {method} expects {expected} inputs, the graph has "
                                       f"{self._program.num_inputs(method)}")

    @classmethod
    def from_path(cls, path: str | Path, name: str, num_threads: int | None = None) -> "ExportedBackend":
        path = Path(path)
        if name == "onnx" and not path.is_dir():
            raise BackendError(f"{path}: the onnx backend needs the directory export.onnx wrote, not a file")
        if name == "executorch" and (not path.is_file() or path.suffix != ".pte"):
            raise BackendError(f"{path}: the executorch backend needs a .pte file")
        return cls(path, name, num_threads=num_threads)

    def prompt_features(self, text: str) -> PromptFeatures:
        return self.metadata.prompt_features(text)

    def _run(self, method: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        try:
            return self._program.run(method, inputs)
        except ProgramError as err:
            raise BackendError(str(err)) from None

    def encode_frame(self, pixel_values: np.ndarray) -> FrameFeatures:
        self.check_pixels(pixel_values)
        outputs = self._run("encode_frame", [pixel_values])
        fpn0, fpn1, fpn2, memory = check_outputs(outputs, list(self.info.fpn_shapes), f"{self.path}: encode_frame")
        return FrameFeatures(fpn=(fpn0, fpn1, fpn2), memory_feature=memory)

    def decode_batch(self, frame: FrameFeatures, memory_features: np.ndarray, memory_mask: np.ndarray,
                     prompts: Sequence[PromptFeatures]) -> list[DecodeOutput]:
        text_features, text_mask = stack_prompts(prompts)
        inputs = [*frame.fpn, memory_features.astype(np.float32, copy=False), memory_mask.astype(np.bool_, copy=False),
                  text_features, text_mask]
        outputs = self._run("decode", inputs)
        return decode_outputs_from_arrays(outputs, self.info, len(prompts), f"{self.path}: decode")
