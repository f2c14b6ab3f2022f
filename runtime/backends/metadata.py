"""Export metadata JSON (written by ``export/``, read here without torch): model facts and prompts.

Beside a ``.pte`` as ``<path>.json`` or as ``metadata.json`` in an ONNX directory. Its schema and the one
validator are in ``efficient_sam3.contract`` (format_version 1 files load with the contract's defaults).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from efficient_sam3 import contract
from efficient_sam3.programs import ProgramError, read_program_metadata
from runtime.backends.base import BackendError, ModelInfo, PromptFeatures, normalise_prompt


@dataclass(frozen=True)
class ExportMetadata:
    path: Path
    backend: str
    info: ModelInfo
    quantization: str
    prompts: tuple[PromptFeatures, ...]

    @property
    def prompt_texts(self) -> list[str]:
        return [p.text for p in self.prompts]

    def prompt_features(self, text: str) -> PromptFeatures:
        """The stored features of ``text`` (matched case- and whitespace-insensitively)."""
        wanted = normalise_prompt(text)
        for prompt in self.prompts:
            if normalise_prompt(prompt.text) == wanted:
                return PromptFeatures(text=text, features=prompt.features, mask=prompt.mask)
        raise ValueError(f"prompt {text!r} is not stored in {self.path}; this export has text features for "
                         f"{self.prompt_texts} (re-export with --prompt {text!r}, or use the torch backend)")


def _prompt(entry: object, index: int, info: ModelInfo, path: Path) -> PromptFeatures:
    where = f"{path}: prompts[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
        raise BackendError(f"{where}: expected an object with a 'text' string")
    try:
        features = np.asarray(entry["text_features"], dtype=np.float32)
        mask = np.asarray(entry["attention_mask"], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as err:
        raise BackendError(f"{where}: missing or malformed text_features / attention_mask ({err})") from err
    length, width = info.max_text_length, info.hidden_size
    if features.shape != (length, width) or mask.shape != (length,):
        raise BackendError(f"{where}: text_features must be [{length}, {width}] and attention_mask [{length}], "
                           f"got {list(features.shape)} and {list(mask.shape)}")
    return PromptFeatures(text=entry["text"], features=features[None], mask=mask[None])


def export_metadata_from(data: dict, path: str | Path, expected_backend: str) -> ExportMetadata:
    """The runtime's view of metadata already validated by ``efficient_sam3.contract.check_metadata``."""
    path = Path(path)
    if data["backend"] != expected_backend:
        raise BackendError(f"{path}: metadata is for backend {data['backend']!r}, not {expected_backend!r}")
    info = ModelInfo(preset=str(data.get("preset", "unknown")),
                     **{key: data[key] for key in contract.MODEL_INT_FIELDS},
                     pixel_mean=tuple(data["image_mean"]), pixel_std=tuple(data["image_std"]),
                     max_prompts=data["max_prompts"])
    prompts = data.get("prompts", [])
    if not isinstance(prompts, list):
        raise BackendError(f"{path}: 'prompts' must be a list")
    return ExportMetadata(
        path=path,
        backend=expected_backend,
        info=info,
        quantization=str(data.get("quantization", "none")),
        prompts=tuple(_prompt(entry, i, info, path) for i, entry in enumerate(prompts)),
    )


def read_export_metadata(path: str | Path, expected_backend: str) -> ExportMetadata:
    """Read and validate a metadata JSON; the error names the file and what is wrong."""
    try:
        data = read_program_metadata(path)
    except ProgramError as err:
        raise BackendError(str(err)) from None
    return export_metadata_from(data, path, expected_backend)
