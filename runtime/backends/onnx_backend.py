"""ONNX Runtime backend: the directory ``export.onnx`` writes (encode_frame.onnx, decode.onnx,
encode_text.onnx, metadata.json). numpy + onnxruntime only: this module never imports torch, so it runs
on a device without PyTorch. There is no tokenizer here: prompts are the ones whose text features the
export stored in metadata.json.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

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

METADATA_FILE = "metadata.json"
ENCODE_FRAME_FILE = "encode_frame.onnx"
DECODE_FILE = "decode.onnx"
_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(bool)": np.bool_, "tensor(int64)": np.int64,
                "tensor(int32)": np.int32}


def _open(path: Path, options: ort.SessionOptions, num_inputs: int) -> ort.InferenceSession:
    if not path.is_file():
        raise BackendError(f"{path}: missing (an export.onnx directory holds {ENCODE_FRAME_FILE} and {DECODE_FILE})")
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for invalid or corrupt graphs
        raise BackendError(f"{path}: onnxruntime cannot load it ({err})") from err
    if len(session.get_inputs()) != num_inputs:
        raise BackendError(f"{path}: expected {num_inputs} inputs, the graph has {len(session.get_inputs())}")
    return session


class OnnxBackend(Backend):
    name = "onnx"

    def __init__(self, directory: Path, num_threads: int | None = None) -> None:
        self.directory = Path(directory)
        self.metadata = read_export_metadata(self.directory / METADATA_FILE, "onnx")
        self.info = self.metadata.info
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
        self._encode = _open(self.directory / ENCODE_FRAME_FILE, options, 1)
        self._decode = _open(self.directory / DECODE_FILE, options, 7)

    @classmethod
    def from_path(cls, path: str | Path, num_threads: int | None = None) -> "OnnxBackend":
        path = Path(path)
        if not path.is_dir():
            raise BackendError(f"{path}: the onnx backend needs the directory export.onnx wrote, not a file")
        return cls(path, num_threads=num_threads)

    def prompt_features(self, text: str) -> PromptFeatures:
        return self.metadata.prompt_features(text)

    def _run(self, session: ort.InferenceSession, arrays: list[np.ndarray], what: str) -> list[np.ndarray]:
        feeds = {}
        for spec, array in zip(session.get_inputs(), arrays):
            dtype = _ONNX_DTYPES.get(spec.type)
            if dtype is None:
                raise BackendError(f"{self.directory}: {what} input {spec.name!r} has unsupported type {spec.type}")
            feeds[spec.name] = np.ascontiguousarray(array, dtype=dtype)
        try:
            return session.run(None, feeds)
        except Exception as err:  # shape/type mismatch between this model and the contract
            raise BackendError(f"{self.directory}: {what} failed in onnxruntime ({err})") from err

    def encode_frame(self, pixel_values: np.ndarray) -> FrameFeatures:
        self.check_pixels(pixel_values)
        outputs = self._run(self._encode, [pixel_values], "encode_frame")
        fpn0, fpn1, fpn2, memory = check_outputs(outputs, list(self.info.fpn_shapes), f"{self.directory}: encode_frame")
        return FrameFeatures(fpn=(fpn0, fpn1, fpn2), memory_feature=memory)

    def decode(self, frame: FrameFeatures, memory_features: np.ndarray, memory_mask: np.ndarray,
               prompt: PromptFeatures) -> DecodeOutput:
        inputs = [*frame.fpn, memory_features, memory_mask, prompt.features, prompt.mask]
        outputs = self._run(self._decode, inputs, "decode")
        return decode_output_from_arrays(outputs, self.info, f"{self.directory}: decode")
