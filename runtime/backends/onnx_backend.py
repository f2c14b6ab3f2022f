"""ONNX Runtime backend: the directory ``export.onnx`` writes (encode_frame.onnx, decode.onnx,
encode_text.onnx, metadata.json), loaded by ``efficient_sam3.programs``. numpy + onnxruntime only: this
path never imports torch, so it runs on a device without PyTorch. There is no tokenizer here: prompts are
the ones whose text features the export stored in metadata.json.
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
NUM_INPUTS = {"encode_frame": 1, "decode": 7}


class OnnxBackend(Backend):
    name = "onnx"

    def __init__(self, directory: Path, num_threads: int | None = None) -> None:
        self.directory = Path(directory)
        try:
            self._program = load_program(self.directory, num_threads=num_threads, methods=REQUIRED_METHODS)
        except ProgramError as err:
            raise BackendError(str(err)) from None
        self.metadata = export_metadata_from(self._program.metadata, metadata_path(self.directory), "onnx")
        self.info = self.metadata.info
        for method, expected in NUM_INPUTS.items():
            if self._program.num_inputs(method) != expected:
                raise BackendError(f"{self.directory}: {method} expects {expected} inputs, the graph has "
                                   f"{self._program.num_inputs(method)}")

    @classmethod
    def from_path(cls, path: str | Path, num_threads: int | None = None) -> "OnnxBackend":
        path = Path(path)
        if not path.is_dir():
            raise BackendError(f"{path}: the onnx backend needs the directory export.onnx wrote, not a file")
        return cls(path, num_threads=num_threads)

    def prompt_features(self, text: str) -> PromptFeatures:
        return self.metadata.prompt_features(text)

    def _run(self, method: str, arrays: list[np.ndarray]) -> list[np.ndarray]:
        try:
            return self._program.run(method, arrays)
        except ProgramError as err:
            raise BackendError(str(err)) from None

    def encode_frame(self, pixel_values: np.ndarray) -> FrameFeatures:
        self.check_pixels(pixel_values)
        outputs = self._run("encode_frame", [pixel_values])
        fpn0, fpn1, fpn2, memory = check_outputs(outputs, list(self.info.fpn_shapes), f"{self.directory}: encode_frame")
        return FrameFeatures(fpn=(fpn0, fpn1, fpn2), memory_feature=memory)

    def decode(self, frame: FrameFeatures, memory_features: np.ndarray, memory_mask: np.ndarray,
               prompt: PromptFeatures) -> DecodeOutput:
        inputs = [*frame.fpn, memory_features, memory_mask, prompt.features, prompt.mask]
        outputs = self._run("decode", inputs)
        return decode_output_from_arrays(outputs, self.info, f"{self.directory}: decode")
