"""Parity with the ORIGINAL implementations, checked offline.

At development time a fixture script (``tests/fixtures/original/make_*.py``, run with the original
repository importable) builds the original model with its own builder, fills it with
``seeded_weights`` and stores what it computes with ``sample_outputs``, beside the manifest of its
state dict (key -> shape, dtype). No weights are committed: the tests rebuild exactly the same
weights from the manifest and the seed (numpy's PCG64 generator, stable across versions), write
them in the published layout, convert them with our tools and compare with ``assert_close_to``.

This file must import with torch and numpy alone: the fixture scripts run it beside the original
code, in another environment.
"""

from __future__ import annotations

import importlib.util
import zlib
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures" / "original"

# Tensors with at most this many elements are stored whole; larger ones as a fixed sample.
FULL_STORE_LIMIT = 20_000
SAMPLE_SIZE = 4096


def manifest_of(state_dict: dict[str, torch.Tensor]) -> dict:
    """key -> {"shape", "dtype"}; integer tensors (index buffers) are stored whole under "value"."""
    manifest = {}
    for key, value in state_dict.items():
        entry = {"shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch.")}
        if not value.is_floating_point():
            entry["value"] = value.clone()
        manifest[key] = entry
    return manifest


# BatchNorm running_var range. Whole models use a wider range: with [0.5, 1.5] a deep residual
# backbone (RepViT: BN over conv + 1x1 conv + identity in every block) grows its activations to 1e5
# and an absolute tolerance means nothing; [2, 4] keeps every stage near unit scale.
DEFAULT_VAR_RANGE = (0.5, 1.5)
MODEL_VAR_RANGE = (2.0, 4.0)


def seeded_tensor(key: str, shape: list[int], seed: int,
                  var_range: tuple[float, float] = DEFAULT_VAR_RANGE) -> torch.Tensor:
    """A deterministic float32 tensor for one state-dict entry, scaled like a trained weight.

    BatchNorm statistics are randomised too (running_var in ``var_range``), so folding them is tested.
    """
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    numel = int(np.prod(shape)) if shape else 1
    normal = rng.standard_normal(numel)
    if key.endswith("running_var"):
        values = rng.uniform(var_range[0], var_range[1], numel)
    elif key.endswith("running_mean"):
        values = 0.1 * normal
    elif len(shape) <= 1 and key.endswith("weight"):
        values = 1.0 + 0.1 * normal  # norm scales
    elif len(shape) <= 1:
        values = 0.05 * normal  # biases, layer scales, tokens
    else:
        fan_in = int(np.prod(shape[1:]))
        values = normal / np.sqrt(fan_in)
    return torch.from_numpy(values.astype(np.float32)).reshape(shape)


def seeded_weights(manifest: dict, seed: int,
                   var_range: tuple[float, float] = DEFAULT_VAR_RANGE) -> dict[str, torch.Tensor]:
    """The state dict described by ``manifest`` with deterministic values (see ``seeded_tensor``)."""
    state = {}
    for key, entry in manifest.items():
        if "value" in entry:
            state[key] = entry["value"].clone()
        else:
            dtype = getattr(torch, entry["dtype"])
            state[key] = seeded_tensor(key, entry["shape"], seed, tuple(var_range)).to(dtype)
    return state


def seeded_image(image_size: int, seed: int) -> torch.Tensor:
    """A normalised input image [1, 3, S, S] with values in [-1, 1] (SAM3's normalisation range)."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.uniform(-1.0, 1.0, (1, 3, image_size, image_size)).astype(np.float32))


def sample_outputs(outputs: dict[str, torch.Tensor], seed: int = 0) -> dict:
    """Reference outputs to commit: small tensors whole, large ones at SAMPLE_SIZE fixed positions."""
    stored = {}
    for name, tensor in outputs.items():
        tensor = tensor.detach().float().contiguous()
        if tensor.numel() <= FULL_STORE_LIMIT:
            stored[name] = {"shape": list(tensor.shape), "values": tensor.clone()}
            continue
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        index = np.sort(rng.choice(tensor.numel(), SAMPLE_SIZE, replace=False))
        flat_index = torch.from_numpy(index)
        stored[name] = {
            "shape": list(tensor.shape),
            "index": flat_index,
            "values": tensor.flatten()[flat_index].clone(),
            "mean_abs": float(tensor.abs().mean()),
        }
    return stored


def max_difference(ours: torch.Tensor, reference: dict) -> float:
    """Largest |ours - reference| over the stored positions; shapes must agree."""
    ours = ours.detach().float()
    if list(ours.shape) != reference["shape"]:
        raise AssertionError(f"shape {list(ours.shape)} != reference {reference['shape']}")
    flat = ours.flatten()
    values = flat[reference["index"]] if "index" in reference else flat
    return float((values - reference["values"].flatten()).abs().max())


def assert_close_to(ours: dict[str, torch.Tensor], reference: dict, atol: float) -> dict[str, float]:
    """Every stored output matches within ``atol``; returns the differences for the report."""
    differences = {name: max_difference(ours[name], reference[name]) for name in reference}
    failing = {name: diff for name, diff in differences.items() if not diff <= atol}
    assert not failing, f"outputs differ from the original code beyond {atol}: {failing}"
    return differences


def fixture_script(name: str, folder: Path = FIXTURE_DIR) -> ModuleType:
    """``<folder>/<name>.py`` (default tests/fixtures/original), loaded by path: the tests share the
    fixture script's input recipe and names."""
    spec = importlib.util.spec_from_file_location(f"{folder.name}_{name}", folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
