"""Checkpoint directories: ``config.json`` (the full model config) + ``model.safetensors``.

A checkpoint alone rebuilds its model. Loading is strict except for the temporal-memory modules: an
image-stage checkpoint lacks them, so they keep their initialisation (an exact identity, see
MemoryCrossAttention) and are reported by name. Unexpected keys are always an error.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from efficient_sam3.config import EfficientSam3Config
from efficient_sam3.files import atomic_path, write_json_atomic

logger = logging.getLogger(__name__)

MODEL_TYPE = "efficient_sam3"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# Modules an image-stage checkpoint may lack.
OPTIONAL_PREFIXES = ("perceiver_resampler.", "memory_cross_attn.")
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json")


@dataclass
class LoadResult:
    model: "torch.nn.Module"
    missing_keys: list[str]


def save_pretrained(model, directory: str | Path) -> None:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    config = {"model_type": MODEL_TYPE, **model.config.to_dict()}
    with atomic_path(directory / WEIGHTS_FILE) as temp:
        save_file(state, str(temp), metadata={"format": "pt"})
    write_json_atomic(directory / CONFIG_FILE, config, indent=2)


def read_config(directory: str | Path) -> EfficientSam3Config:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no EfficientSAM3 config (expected a directory written by save_pretrained)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: malformed JSON ({err})") from err
    if not isinstance(data, dict) or data.pop("model_type", None) != MODEL_TYPE:
        raise ValueError(f"{path}: not an EfficientSAM3 config (model_type must be {MODEL_TYPE!r})")
    try:
        return EfficientSam3Config.from_dict(data)
    except (TypeError, ValueError, KeyError, AttributeError) as err:  # unknown fields, wrong types or values
        raise ValueError(f"{path}: invalid EfficientSAM3 config ({err})") from None


def load_pretrained(directory: str | Path, map_location: str = "cpu") -> LoadResult:
    from safetensors.torch import load_file

    from efficient_sam3.model import EfficientSam3Model

    directory = Path(directory)
    model = EfficientSam3Model(read_config(directory))
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: missing weights file")
    try:
        state = load_file(str(weights), device=map_location)
    except Exception as err:  # safetensors raises its own error types for truncated/corrupt files
        raise ValueError(f"{weights}: unreadable safetensors file ({err})") from err
    missing = load_state_dict_allowing_memory(model, state, source=str(weights))
    if any((directory / name).is_file() for name in TOKENIZER_FILES):
        from efficient_sam3.tokenizer import ClipTokenizer

        model.tokenizer = ClipTokenizer.from_pretrained(directory)
    return LoadResult(model=model, missing_keys=missing)


def load_state_dict_allowing_memory(model, state: dict[str, torch.Tensor], source: str) -> list[str]:
    """Strict load, except that keys of the memory modules may be missing. Returns the missing keys."""
    expected = model.state_dict()
    unexpected = sorted(set(state) - set(expected))
    missing = sorted(set(expected) - set(state))
    not_optional = [k for k in missing if not k.startswith(OPTIONAL_PREFIXES)]
    if unexpected or not_optional:
        raise ValueError(f"{source}: checkpoint does not match the model; unexpected keys: {unexpected[:20]}"
                         f"{' ...' if len(unexpected) > 20 else ''}; missing keys: {not_optional[:20]}"
                         f"{' ...' if len(not_optional) > 20 else ''}")
    mismatched = [f"{k}: {list(v.shape)} vs model {list(expected[k].shape)}"
                  for k, v in state.items() if v.shape != expected[k].shape]
    if mismatched:
        raise ValueError(f"{source}: shape mismatch: {mismatched[:10]}")
    model.load_state_dict(state, strict=False)
    if missing:
        logger.warning("%s: %d keys missing, kept at initialisation: %s", source, len(missing), ", ".join(missing))
    return missing
