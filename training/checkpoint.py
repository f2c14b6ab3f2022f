"""Training checkpoints: the trainable modules only, plus everything an exact resume needs.

A checkpoint file (``torch.save``, written to a temp name in the same folder and renamed into place by
``efficient_sam3.files.atomic_path``, so an interrupted save leaves the previous checkpoint) holds:

    format_version   int
    modules          {module name: state_dict} of the trained modules only (e.g. perceiver_resampler,
                     memory_cross_attn); frozen weights come from the student checkpoint it names
    optimizer        optimizer.state_dict()
    scheduler        scheduler.state_dict()
    step             optimizer steps taken
    rng              torch, numpy and python RNG states
    config           the run's config as a JSON-ready dict
    student          {"path", "sha256"} of the student checkpoint the frozen weights come from

Saving refuses a trainable parameter outside the saved modules (it would be lost) and a saved
module with frozen parameters (it would be restored over the student's). Loading is strict per module.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from efficient_sam3.files import atomic_path

FORMAT_VERSION = 1
LAST_CHECKPOINT = "last.pt"


@dataclass(frozen=True)
class TrainingCheckpoint:
    """What ``load_training_checkpoint`` returns besides the restored model/optimizer/scheduler."""

    path: Path
    step: int
    config: dict
    student: dict


def capture_rng_state() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_trainable_modules(model: nn.Module, module_names: tuple[str, ...]) -> None:
    """Raise unless the trainable parameters are exactly those of ``module_names``."""
    outside = [name for name, p in model.named_parameters()
               if p.requires_grad and not name.startswith(tuple(f"{m}." for m in module_names))]
    if outside:
        raise ValueError(f"trainable parameters outside the checkpointed modules {module_names} would not be "
                         f"saved: {outside[:10]}")
    frozen = [f"{m}.{name}" for m in module_names for name, p in getattr(model, m).named_parameters()
              if not p.requires_grad]
    if frozen:
        raise ValueError(f"checkpointed modules hold frozen parameters: {frozen[:10]}")


def save_training_checkpoint(
    path: Path,
    model: nn.Module,
    module_names: tuple[str, ...],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    config: dict,
    student: dict,
) -> None:
    """Atomically write a checkpoint of the trainable ``module_names`` of ``model``."""
    check_trainable_modules(model, module_names)
    payload = {
        "format_version": FORMAT_VERSION,
        "modules": {name: {k: v.detach().cpu() for k, v in getattr(model, name).state_dict().items()}
                    for name in module_names},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "rng": capture_rng_state(),
        "config": config,
        "student": student,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temp:
        torch.save(payload, temp)


def load_training_checkpoint(
    path: Path,
    model: nn.Module,
    module_names: tuple[str, ...],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    restore_rng: bool = True,
) -> TrainingCheckpoint:
    """Restore the modules, optimizer, scheduler (and RNG states) saved by ``save_training_checkpoint``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: training checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # truncated or foreign files raise assorted pickle/zip errors
        raise ValueError(f"{path}: unreadable training checkpoint ({error})") from error
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a training checkpoint of format version {FORMAT_VERSION}")
    saved = payload["modules"]
    if set(saved) != set(module_names):
        raise ValueError(f"{path}: holds modules {sorted(saved)}, this run trains {sorted(module_names)}")
    for name in module_names:
        try:
            getattr(model, name).load_state_dict(saved[name], strict=True)
        except RuntimeError as error:
            raise ValueError(f"{path}: module {name} does not match the model: {error}") from error
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    if restore_rng:
        restore_rng_state(payload["rng"])
    return TrainingCheckpoint(path=path, step=int(payload["step"]), config=payload["config"],
                              student=payload["student"])
