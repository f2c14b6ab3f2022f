"""The model files a benchmark run measures: a checkpoint and its exports (ONNX, ExecuTorch fp32 / int8).

The checkpoint is the one given, or the preset with random weights (seed 0) saved with
``save_pretrained``. Exports go through export/'s public functions; an export that cannot be made
(export/ missing, a lowering error) leaves its path None and records why. These are our own exports:
a recorded failure fails the run (benchmarks.run reads ``export_failures``, benchmarks.students
raises on it); only an export skipped under ``--quick`` (``SKIPPED_EXPORT``) leaves its rows "skipped".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from efficient_sam3.contract import DEFAULT_MAX_PROMPTS, METADATA_FORMAT_VERSION

RANDOM_SEED = 0
EXPORT_LABELS = ("onnx", "executorch_fp32", "executorch_int8")
SKIPPED_EXPORT = ("--quick: exporting takes minutes (XNNPACK lowering alone ~3 min for tiny on 2 busy cores); "
                  "pass --work-dir of an earlier full run to reuse its exports")


@dataclass
class Artifacts:
    checkpoint: Path
    random_weights: bool
    onnx_dir: Path | None = None
    onnx_reason: str | None = None
    pte_fp32: Path | None = None
    pte_fp32_reason: str | None = None
    pte_int8: Path | None = None
    pte_int8_reason: str | None = None
    export_s: dict[str, float] = field(default_factory=dict)
    export_notes: dict[str, str] = field(default_factory=dict)

    def files(self) -> dict[str, Path]:
        """Label -> path of every artifact that exists (a directory counts as the sum of its files)."""
        candidates = {"checkpoint (model.safetensors)": self.checkpoint / "model.safetensors",
                      "ONNX (encode_frame + decode + encode_text)": self.onnx_dir,
                      "ExecuTorch fp32 .pte": self.pte_fp32, "ExecuTorch int8 .pte": self.pte_int8}
        return {label: path for label, path in candidates.items() if path is not None and path.exists()}

    def describe(self) -> dict:
        return {"checkpoint": str(self.checkpoint), "random_weights": self.random_weights,
                "onnx": str(self.onnx_dir) if self.onnx_dir else f"unavailable: {self.onnx_reason}",
                "executorch_fp32": str(self.pte_fp32) if self.pte_fp32 else f"unavailable: {self.pte_fp32_reason}",
                "executorch_int8": str(self.pte_int8) if self.pte_int8 else f"unavailable: {self.pte_int8_reason}",
                "export_s": self.export_s, "export_notes": self.export_notes}


def export_failures(artifacts: Artifacts) -> dict[str, str]:
    """Export name -> why it failed, for each export that was tried and failed (skipped ones are not failures)."""
    reasons = {"ONNX export": artifacts.onnx_reason, "ExecuTorch fp32 export": artifacts.pte_fp32_reason,
               "ExecuTorch int8 export": artifacts.pte_int8_reason}
    return {name: reason for name, reason in reasons.items() if reason and reason != SKIPPED_EXPORT}


def file_size_mb(path: Path) -> float:
    """Size in MiB of a file, or of every file under a directory."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20
    return path.stat().st_size / 2**20


def save_random_checkpoint(preset: str, directory: Path) -> Path:
    import torch

    from efficient_sam3 import EfficientSam3Config, EfficientSam3Model

    torch.manual_seed(RANDOM_SEED)
    EfficientSam3Model(EfficientSam3Config.from_preset(preset)).eval().save_pretrained(directory)
    return directory


def prepare_artifacts(preset: str, checkpoint: Path | None, directory: Path, prompt: str,
                      calibration_videos: Path | None, calibration_frames: int | None,
                      export_missing: bool = True, exports: tuple[str, ...] = EXPORT_LABELS) -> Artifacts:
    """Checkpoint (given or random) + its three exports under ``directory``.

    An export already in ``directory`` of the current metadata format whose metadata names this checkpoint's
    sha256 is reused (the random checkpoint is deterministic, so a kept ``--work-dir`` skips exporting next
    time). A missing one is
    exported unless ``export_missing`` is False (``--quick``: lowering takes minutes), then its rows are
    skipped. ``exports``: which of EXPORT_LABELS to make (the others stay None, with no reason). The
    int8 export calibrates on ``calibration_videos`` (``calibration_frames`` frames; None: the
    exporter's default).
    """
    directory.mkdir(parents=True, exist_ok=True)
    random_weights = checkpoint is None
    if checkpoint is None:
        checkpoint = save_random_checkpoint(preset, directory / f"{preset}-random")
    checkpoint = Path(checkpoint)
    artifacts = Artifacts(checkpoint=checkpoint, random_weights=random_weights)
    sha = weights_sha256(checkpoint)
    candidates = (("onnx", "onnx_dir", "onnx_reason", directory / "onnx", directory / "onnx" / "metadata.json",
                   lambda: export_onnx(checkpoint, directory / "onnx", prompt)),
                  ("executorch_fp32", "pte_fp32", "pte_fp32_reason", directory / "model_fp32.pte",
                   directory / "model_fp32.pte.json",
                   lambda: export_executorch(checkpoint, directory / "model_fp32.pte", prompt, "none")),
                  ("executorch_int8", "pte_int8", "pte_int8_reason", directory / "model_int8.pte",
                   directory / "model_int8.pte.json",
                   lambda: export_executorch(checkpoint, directory / "model_int8.pte", prompt, "int8",
                                             calibration_videos=calibration_videos,
                                             calibration_frames=calibration_frames)))
    unknown = set(exports) - set(EXPORT_LABELS)
    if unknown:
        raise ValueError(f"unknown exports {sorted(unknown)}; choose from {EXPORT_LABELS}")
    for label, path_attr, reason_attr, target, metadata, make in candidates:
        if label not in exports:
            continue
        if export_matches(metadata, sha):
            setattr(artifacts, path_attr, target)
            artifacts.export_notes[label] = f"reused {target} (same checkpoint sha256)"
            continue
        if not export_missing:
            setattr(artifacts, reason_attr, SKIPPED_EXPORT)
            continue
        started = time.perf_counter()
        try:
            path, note = make()
            setattr(artifacts, path_attr, Path(path))
            artifacts.export_s[label] = time.perf_counter() - started
            artifacts.export_notes[label] = note
        except Exception as err:  # noqa: BLE001 - recorded here; the caller fails the run (export_failures)
            setattr(artifacts, reason_attr, f"export failed: {type(err).__name__}: {err}")
    return artifacts


def weights_sha256(checkpoint: Path) -> str:
    digest = hashlib.sha256()
    with open(checkpoint / "model.safetensors", "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def export_matches(metadata_path: Path, sha: str, expected: dict | None = None) -> bool:
    """True if an export's metadata exists, names a checkpoint with these weights, is of the current
    format (an older export, e.g. a single-prompt decode before version 3, is exported again) and has
    the ``expected`` values (metadata key -> value)."""
    try:
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(metadata, dict) and metadata.get("source_checkpoint_sha256") == sha
            and metadata.get("format_version") == METADATA_FORMAT_VERSION
            and metadata.get("max_prompts") == DEFAULT_MAX_PROMPTS
            and all(metadata.get(key) == value for key, value in (expected or {}).items()))


def export_onnx(checkpoint: Path, out_dir: Path, prompt: str) -> tuple[Path, str]:
    """export.onnx (with its own parity check) -> (directory, a note for the report)."""
    from export.config import OnnxExportConfig
    from export.onnx import export_onnx as run_export

    with contextlib.redirect_stdout(sys.stderr):  # the exporter's progress is not part of the report
        result = run_export(OnnxExportConfig(checkpoint=checkpoint, out=out_dir, prompts=(prompt,)))
    return result.directory, f"opset {result.opset}"


def export_executorch(checkpoint: Path, out_path: Path, prompt: str, quantize: str,
                      calibration_videos: Path | None = None, calibration_frames: int | None = None,
                      program: str = "all") -> tuple[Path, str]:
    """export.executorch (XNNPACK; ``quantize`` one of export.config.QUANTIZATION_MODES, calibrated on
    ``calibration_videos``; ``program`` one of contract.PROGRAM_PARTS) -> (.pte, a note)."""
    from export.config import DEFAULT_CALIBRATION_FRAMES, ExecutorchExportConfig, is_quantized
    from export.executorch import export_executorch as run_export

    quantized = is_quantized(quantize)
    if quantized and calibration_videos is None:
        raise ValueError(f"{quantize} needs calibration videos and the synthetic data could not be written")
    config = ExecutorchExportConfig(
        checkpoint=checkpoint, out=out_path, prompts=(prompt,), quantize=quantize,
        calibration_videos=calibration_videos if quantized else None,
        calibration_frames=calibration_frames or DEFAULT_CALIBRATION_FRAMES, program=program)
    with contextlib.redirect_stdout(sys.stderr):
        result = run_export(config)
    outside = {name: sum(ops.values()) for name, ops in result.ops_outside_delegate.items()}
    note = ", ".join(f"{name}: {result.delegate_calls[name]} XNNPACK calls, {outside[name]} ops outside"
                     for name in result.delegate_calls)
    if quantized:
        note += f"; calibrated on {config.calibration_frames} frames"
    return result.program, note
