"""The metadata JSON stored beside every exported model (``model.pte.json``; ``<onnx dir>/metadata.json``).

It names what the program expects and where it came from, so a runtime needs nothing else:

    {"format_version": 3, "backend": "executorch" | "onnx", "preset", "image_size",
     "context_frames" (T), "memory_stride", "num_queries", "max_text_length", "hidden_size",
     the pixel spec ("image_mean", "image_std", "color_order", "resize"), the grids ("fpn_sizes",
     "mask_size", "memory_grid"), "slot_order", "source_checkpoint", "source_checkpoint_sha256",
     "quantization": "none" | "int8" | "int8-ffn4", "max_prompts" (prompts one decode call takes),
     "coarse_masks" (the opt-in fast mask path; provenance, the runtime needs nothing from it),
     "prompts": [{"text", "input_ids", "attention_mask", "text_features" [L x 256]}],
     "methods" (executorch) | "files" (onnx): {method: file name}, "output_names": {method: [...]},
     "input_names": {method: [...]}}

The schema, its version and its one validator live in ``efficient_sam3.contract``.

Prompt features are computed at export time, so a device without a tokenizer (or without torch) can
run the exported prompts.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch

from efficient_sam3 import contract, files
from efficient_sam3.checkpoint import WEIGHTS_FILE
from efficient_sam3.programs import read_program_metadata
from export.config import QUANTIZATION_MODES
from export.wrappers import INPUT_NAMES, OUTPUT_NAMES

logger = logging.getLogger(__name__)

def checkpoint_sha256(checkpoint: str | Path) -> str:
    """sha256 (hex) of the checkpoint's weights file."""
    weights = Path(checkpoint) / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: missing weights file (expected a save_pretrained directory)")
    digest = hashlib.sha256()
    with open(weights, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@torch.no_grad()
def prompt_records(model, prompts: tuple[str, ...] | list[str]) -> list[dict]:
    """Tokenise and encode each prompt with the eager model (the features the program would compute)."""
    records = []
    for text in prompts:
        warning = model.tokenizer.truncation_warning(text, model.config.text.max_length)
        if warning:
            logger.warning(warning)
        input_ids, attention_mask = model.tokenize([text])
        features = model.encode_text(input_ids, attention_mask).features[0]  # [L, 256]
        records.append({"text": text, "input_ids": input_ids[0].tolist(),
                        "attention_mask": attention_mask[0].tolist(), "text_features": features.tolist()})
    return records


def build_metadata(model, backend: str, checkpoint: str | Path, checkpoint_sha: str, quantization: str,
                   prompts: list[dict], file_names: dict[str, str], max_prompts: int) -> dict:
    if backend not in contract.BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {contract.BACKENDS}")
    if quantization not in QUANTIZATION_MODES:
        raise ValueError(f"unknown quantization {quantization!r}; choose from {QUANTIZATION_MODES}")
    config = model.config
    return {
        "format_version": contract.METADATA_FORMAT_VERSION,
        "backend": backend,
        "preset": config.preset,
        "image_size": config.image_size,
        "context_frames": config.memory.context_frames,
        "memory_stride": config.memory.memory_stride,
        **contract.contract_fields(config.image_size, config.image_mean, config.image_std),
        "num_queries": config.detr_decoder.num_queries,
        "max_text_length": config.text.max_length,
        "hidden_size": config.hidden_size,
        "source_checkpoint": str(Path(checkpoint).resolve()),
        "source_checkpoint_sha256": checkpoint_sha,
        "quantization": quantization,
        "max_prompts": max_prompts,
        "coarse_masks": config.mask_decoder.coarse_masks,
        "prompts": prompts,
        contract.names_key(backend): file_names,
        "input_names": {name: list(INPUT_NAMES[name]) for name in file_names},
        "output_names": {name: list(OUTPUT_NAMES[name]) for name in file_names},
    }


def write_json_atomic(path: str | Path, data: dict) -> None:
    """The metadata JSON, written by ``efficient_sam3.files`` (its folder created if missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_json_atomic(path, data)


def read_metadata(path: str | Path) -> dict:
    """Read and validate a metadata JSON with every field export writes; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing export metadata")
    return read_program_metadata(path, complete=True)
