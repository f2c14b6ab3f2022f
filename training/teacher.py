"""Load the feature teacher whose FPN level 3 ([B, 256, 18, 18] at 504 px) gets cached.

Two checkpoint kinds, told apart by `model_type` in `<dir>/config.json`:

* a transformers SAM3 checkpoint (`sam3`, or `sam3_video` whose detector holds SAM3):
  only the vision tower and neck are built (`Sam3VisionModel`, image size set before
  construction so the RoPE position ids cover the 36x36 grid), and their weights are read
  from the safetensors file(s) under the `vision_encoder.` prefix. Every parameter must
  come from the file: a prefix mismatch raises instead of leaving random weights.
* an EfficientSAM3 student checkpoint (`efficient_sam3`): the student's own
  `encode_image(...).memory_features`, i.e. what the runtime has on device.

Checkpoints are read offline from the directory; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from efficient_sam3 import contract
from training.data.feature_cache import FEATURE_CHANNELS
SAM3_VISION_PREFIXES = {"sam3": "vision_encoder.", "sam3_video": "detector_model.vision_encoder."}
STUDENT_MODEL_TYPE = "efficient_sam3"
FPN_LEVEL = 3
FPN_LEVEL_SCALE = 0.5  # level 3 halves the ViT grid: 36x36 -> 18x18 at 504 px


@dataclass
class Sam3VisionTeacher:
    """SAM3 vision tower + neck. `encode` runs only the FPN level that is cached."""

    identity: str
    image_size: int
    vision_model: torch.nn.Module  # transformers Sam3VisionModel
    device: torch.device
    dtype: torch.dtype

    @torch.inference_mode()
    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [B, 3, S, S] -> FPN level 3 [B, 256, S/28, S/28] (== fpn_hidden_states[3])."""
        pixel_values = pixel_values.to(self.device, self.dtype)
        backbone_output = self.vision_model.backbone(pixel_values)
        tokens = backbone_output.last_hidden_state  # [B, H*W, C]
        patch_size = self.vision_model.config.backbone_config.patch_size
        grid_h, grid_w = pixel_values.shape[-2] // patch_size, pixel_values.shape[-1] // patch_size
        spatial = tokens.view(tokens.shape[0], grid_h, grid_w, -1).permute(0, 3, 1, 2)  # [B, C, H, W]
        return self.vision_model.neck.fpn_layers[FPN_LEVEL](spatial)  # [B, 256, H/2, W/2]


@dataclass
class StudentTeacher:
    """An EfficientSAM3 checkpoint used as its own teacher (caches its memory features)."""

    identity: str
    image_size: int
    model: torch.nn.Module  # efficient_sam3.EfficientSam3Model
    device: torch.device
    dtype: torch.dtype

    @torch.inference_mode()
    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [B, 3, S, S] -> memory features [B, 256, 18, 18]."""
        return self.model.encode_image(pixel_values.to(self.device, self.dtype)).memory_features


Teacher = Sam3VisionTeacher | StudentTeacher


def load_teacher(
    path: Path | str, image_size: int = 504, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> Teacher:
    """Load a SAM3 (transformers) or EfficientSAM3 checkpoint directory as a feature teacher.

    `dtype` None runs in float16 on CUDA and float32 elsewhere.
    """
    checkpoint_dir = Path(path)
    device = torch.device(device)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    if checkpoint_dir.is_file():
        vision_model = _load_sam3_checkpoint_vision(checkpoint_dir, image_size)
        identity = f"{checkpoint_dir.name}:{file_sha256(checkpoint_dir)[:16]}"
        teacher = Sam3VisionTeacher(identity, image_size, vision_model.to(device, dtype).eval(), device, dtype)
        _check_output_shape(teacher, checkpoint_dir)
        return teacher
    config_path = checkpoint_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: teacher checkpoint has no config.json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{config_path}: malformed JSON ({error})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_path}: top level must be a JSON object")
    model_type = config.get("model_type")
    identity = f"{checkpoint_dir.name}:{weights_sha256(checkpoint_dir)[:16]}"
    if model_type in SAM3_VISION_PREFIXES:
        vision_model = _load_sam3_vision(checkpoint_dir, model_type, image_size)
        teacher = Sam3VisionTeacher(identity, image_size, vision_model.to(device, dtype).eval(), device, dtype)
    elif model_type == STUDENT_MODEL_TYPE:
        from efficient_sam3 import EfficientSam3Model

        model = EfficientSam3Model.from_pretrained(checkpoint_dir)
        teacher = StudentTeacher(identity, image_size, model.to(device, dtype).eval(), device, dtype)
    else:
        raise ValueError(
            f"{config_path}: unsupported model_type {model_type!r}; expected one of "
            f"{sorted(SAM3_VISION_PREFIXES)} or {STUDENT_MODEL_TYPE!r}"
        )
    _check_output_shape(teacher, config_path)
    return teacher


def _check_output_shape(teacher: Teacher, config_path: Path) -> None:
    probe = torch.zeros(1, 3, teacher.image_size, teacher.image_size)
    features = teacher.encode(probe)
    grid = contract.memory_grid(teacher.image_size)  # FPN level 3, what the cache stores
    if tuple(features.shape) != (1, FEATURE_CHANNELS, grid, grid):
        raise ValueError(
            f"{config_path}: teacher gives features {tuple(features.shape)} at {teacher.image_size} px, "
            f"the cache needs (1, {FEATURE_CHANNELS}, {grid}, {grid})"
        )


def weight_files(checkpoint_dir: Path) -> list[Path]:
    """The safetensors file(s) of a checkpoint: model.safetensors or the shards of its index."""
    single = checkpoint_dir / "model.safetensors"
    index = checkpoint_dir / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        with open(index, encoding="utf-8") as handle:
            weight_map = json.load(handle).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{index}: no 'weight_map' in the shard index")
        shards = [checkpoint_dir / name for name in sorted(set(weight_map.values()))]
        for shard in shards:
            if not shard.is_file():
                raise FileNotFoundError(f"{shard}: shard listed in {index.name} is missing")
        return shards
    raise FileNotFoundError(f"{checkpoint_dir}: no model.safetensors or model.safetensors.index.json")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(checkpoint_dir: Path) -> str:
    """sha256 over the checkpoint's weight file(s), in sorted order."""
    digest = hashlib.sha256()
    for weights_path in weight_files(checkpoint_dir):
        with open(weights_path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 24), b""):
                digest.update(block)
    return digest.hexdigest()


def _load_sam3_vision(checkpoint_dir: Path, model_type: str, image_size: int) -> torch.nn.Module:
    from transformers import Sam3Config, Sam3VideoConfig, Sam3VisionModel

    if model_type == "sam3_video":
        vision_config = Sam3VideoConfig.from_pretrained(checkpoint_dir).detector_config.vision_config
    else:
        vision_config = Sam3Config.from_pretrained(checkpoint_dir).vision_config
    if vision_config.fpn_hidden_size != FEATURE_CHANNELS:
        raise ValueError(
            f"{checkpoint_dir / 'config.json'}: fpn_hidden_size is {vision_config.fpn_hidden_size}, "
            f"the feature cache stores {FEATURE_CHANNELS} channels"
        )
    if vision_config.scale_factors[FPN_LEVEL] != FPN_LEVEL_SCALE:
        raise ValueError(
            f"{checkpoint_dir / 'config.json'}: FPN level {FPN_LEVEL} has scale "
            f"{vision_config.scale_factors[FPN_LEVEL]}, expected {FPN_LEVEL_SCALE}"
        )
    vision_config.image_size = image_size  # before construction: global-attention RoPE ids use the new grid
    vision_model = Sam3VisionModel(vision_config)
    state_dict, source = _read_prefixed_state_dict(checkpoint_dir, SAM3_VISION_PREFIXES[model_type])
    expected_keys = set(vision_model.state_dict())
    missing, unexpected = sorted(expected_keys - set(state_dict)), sorted(set(state_dict) - expected_keys)
    if missing or unexpected:
        raise ValueError(
            f"{source}: vision weights under prefix {SAM3_VISION_PREFIXES[model_type]!r} do not match "
            f"Sam3VisionModel: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    vision_model.load_state_dict(state_dict, strict=True)
    for name, tensor in vision_model.state_dict().items():
        if not torch.equal(tensor, state_dict[name].to(tensor.dtype)):
            raise ValueError(f"{source}: parameter {name} differs from the checkpoint after loading")
    return vision_model


def _read_prefixed_state_dict(checkpoint_dir: Path, prefix: str) -> tuple[dict[str, torch.Tensor], str]:
    """Tensors whose key starts with `prefix` (prefix stripped), and a name for error messages."""
    files = weight_files(checkpoint_dir)
    state_dict: dict[str, torch.Tensor] = {}
    top_level: set[str] = set()
    for weights_path in files:
        with safe_open(str(weights_path), framework="pt") as handle:
            for key in handle.keys():
                top_level.add(key.split(".", 1)[0])
                if key.startswith(prefix):
                    state_dict[key[len(prefix) :]] = handle.get_tensor(key)
    source = ", ".join(str(weights_path) for weights_path in files)
    if not state_dict:
        raise ValueError(f"{source}: no weights under prefix {prefix!r}; top-level prefixes are {sorted(top_level)}")
    return state_dict, source


# SAM3's ViT: 64-wide heads; without stored rotary tables, SAM3's window size and global blocks.
SAM3_HEAD_DIM = 64
SAM3_WINDOW_SIZE = 24
SAM3_GLOBAL_EVERY = 8


def sam3_vision_config(vision_state: dict[str, torch.Tensor], rope_lengths: dict[int, int], image_size: int):
    """transformers ``Sam3VisionConfig`` of the ViT + neck in ``vision_state`` (renamed sam3.pt weights)."""
    from transformers import Sam3VisionConfig

    patch = vision_state["backbone.embeddings.patch_embeddings.projection.weight"]
    hidden, patch_size = patch.shape[0], patch.shape[-1]
    layers = len({key.split(".")[2] for key in vision_state if key.startswith("backbone.layers.")})
    positions = vision_state["backbone.embeddings.position_embeddings"].shape[1]
    if rope_lengths:
        window = math.isqrt(min(rope_lengths.values()))
        global_blocks = sorted(i for i, length in rope_lengths.items() if length > window * window)
    else:
        window = SAM3_WINDOW_SIZE
        global_blocks = [i for i in range(layers) if (i + 1) % SAM3_GLOBAL_EVERY == 0]
    backbone = dict(model_type="sam3_vit_model", hidden_size=hidden, num_hidden_layers=layers,
                    num_attention_heads=hidden // SAM3_HEAD_DIM,
                    intermediate_size=vision_state["backbone.layers.0.mlp.fc1.weight"].shape[0],
                    patch_size=patch_size, window_size=window, global_attn_indexes=global_blocks,
                    pretrain_image_size=math.isqrt(positions) * patch_size, image_size=image_size)
    fpn = vision_state["neck.fpn_layers.0.proj1.weight"].shape[0]
    return Sam3VisionConfig(backbone_config=backbone, fpn_hidden_size=fpn)


def _load_sam3_checkpoint_vision(path: Path, image_size: int) -> torch.nn.Module:
    """Meta's sam3.pt -> transformers ``Sam3VisionModel`` holding its ViT and neck (every weight from the file)."""
    from transformers import Sam3VisionModel

    from efficient_sam3.convert import read_sam3_layout
    from efficient_sam3.sam3_layout import rename_sam3_vision

    vision_state, rope_lengths = rename_sam3_vision(read_sam3_layout(path))
    if "backbone.embeddings.patch_embeddings.projection.weight" not in vision_state:
        raise ValueError(f"{path}: no SAM3 ViT weights (detector.backbone.vision_backbone.trunk.*)")
    config = sam3_vision_config(vision_state, rope_lengths, image_size)
    if config.fpn_hidden_size != FEATURE_CHANNELS:
        raise ValueError(f"{path}: the FPN is {config.fpn_hidden_size} wide, the feature cache stores {FEATURE_CHANNELS}")
    vision_model = Sam3VisionModel(config)
    expected = set(vision_model.state_dict())
    missing, unexpected = sorted(expected - set(vision_state)), sorted(set(vision_state) - expected)
    if missing or unexpected:
        raise ValueError(f"{path}: SAM3 vision weights do not match Sam3VisionModel: {len(missing)} missing "
                         f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    vision_model.load_state_dict(vision_state, strict=True)
    return vision_model
