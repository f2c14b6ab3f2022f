"""The contract every package shares, stated once: grid sizes, pixel preprocessing, memory, export metadata.

The model (``efficient_sam3/``), training, export, the Python runtime and, through the metadata JSON, the
C++ runner all read these facts from here. Standard library at import; ``preprocess_frame`` imports numpy
and cv2 when called, so the torch-free runtime (and a device without torch) can use every name.

Grids at image size S (a multiple of 28): trunk S/14; FPN levels (4, 2, 1, 0.5) x trunk
= (144, 72, 36, 18) at 504 px; masks at level 0; the memory stores level 3.

Memory: ``context_frames`` (T) slots, slot T-1 the newest written frame and slot 0 the oldest (empty
slots first, marked invalid); one stream frame in every ``memory_stride`` is written.
"""

from __future__ import annotations

# Geometry ----------------------------------------------------------------------------------------
# SAM3's ViT uses 14 px patches: a 504 px image gives the 36x36 trunk grid the FPN neck expects.
PATCH_SIZE = 14
# SAM3's FPN: four levels at these scales of the trunk grid (144, 72, 36, 18 at 504 px).
FPN_SCALE_FACTORS = (4.0, 2.0, 1.0, 0.5)
# Level 0 (the finest) is where masks are predicted; level 3 (0.5 scale) is what the memory stores.
MASK_FPN_LEVEL = 0
MEMORY_FPN_LEVEL = 3
# The 0.5 level needs an even trunk grid: image sizes are multiples of 2 x 14 = 28.
IMAGE_SIZE_MULTIPLE = 2 * PATCH_SIZE
DEFAULT_IMAGE_SIZE = 504

# Memory ------------------------------------------------------------------------------------------
# Write one stream frame in every DEFAULT_MEMORY_STRIDE into memory: 24 fps video -> 6 fps memory, the
# spacing of SA-V's annotated frames the memory was trained on. Checkpoints record their own
# (``MemoryConfig.memory_stride``); this is the default of configs written before they did.
DEFAULT_MEMORY_STRIDE = 4
# Slot order of the T-slot memory ring: oldest first, slot T-1 the newest written frame.
SLOT_ORDER = "oldest_first"

# Pixels ------------------------------------------------------------------------------------------
# SAM3 normalisation: RGB uint8 -> bilinear resize to a square S x S (aspect ratio not kept) ->
# float32 / 255 -> (x - mean) / std per channel -> CHW.
PIXEL_MEAN = (0.5, 0.5, 0.5)
PIXEL_STD = (0.5, 0.5, 0.5)
COLOR_ORDER = "RGB"
RESIZE = "bilinear_square"


def check_image_size(image_size: object) -> int:
    """``image_size`` if the model accepts it, else ValueError naming the rule and nearby valid sizes."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    if image_size % IMAGE_SIZE_MULTIPLE:
        below = image_size // IMAGE_SIZE_MULTIPLE * IMAGE_SIZE_MULTIPLE
        nearby = [s for s in (below, below + IMAGE_SIZE_MULTIPLE) if s > 0]
        raise ValueError(f"image_size must be a multiple of {IMAGE_SIZE_MULTIPLE} so every FPN level has an integer "
                         f"size, got {image_size} (nearest valid: {', '.join(map(str, nearby))}; default "
                         f"{DEFAULT_IMAGE_SIZE})")
    return image_size


def trunk_grid(image_size: int) -> int:
    """Side of the trunk map entering the neck (36 at 504 px)."""
    return check_image_size(image_size) // PATCH_SIZE


def fpn_sizes(image_size: int) -> tuple[int, ...]:
    """Side of each FPN level: (144, 72, 36, 18) at 504 px."""
    trunk = trunk_grid(image_size)
    return tuple(int(trunk * scale) for scale in FPN_SCALE_FACTORS)


def mask_size(image_size: int) -> int:
    """Side of the predicted mask logits (FPN level 0, 144 at 504 px)."""
    return fpn_sizes(image_size)[MASK_FPN_LEVEL]


def memory_grid(image_size: int) -> int:
    """Side of the FPN level the memory stores (level 3, 18 at 504 px)."""
    return fpn_sizes(image_size)[MEMORY_FPN_LEVEL]


def check_memory_stride(memory_stride: object) -> int:
    if isinstance(memory_stride, bool) or not isinstance(memory_stride, int) or memory_stride <= 0:
        raise ValueError(f"memory_stride must be a positive integer, got {memory_stride!r}")
    return memory_stride


def preprocess_frame(frame, image_size: int = DEFAULT_IMAGE_SIZE, rgb: bool = True,
                     mean: tuple[float, ...] = PIXEL_MEAN, std: tuple[float, ...] = PIXEL_STD):
    """Turn one uint8 video frame into SAM3 pixel values (numpy + cv2).

    Args:
        frame: uint8 [H, W, 3]. RGB when `rgb` is True; BGR (as cv2 decodes it) when False.
        image_size: output side S; the frame is resized to a square, aspect ratio is not kept.
        rgb: whether `frame` is already RGB.
        mean, std: per-channel (RGB) normalisation, after scaling to [0, 1].

    Returns:
        float32 [3, S, S] (values in [-1, 1] with the SAM3 mean and std).
    """
    import cv2
    import numpy as np

    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"preprocess_frame expects a [H, W, 3] frame, got shape {tuple(frame.shape)}")
    if frame.dtype != np.uint8:
        raise ValueError(f"preprocess_frame expects a uint8 frame, got {frame.dtype}")
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if not rgb:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    resized = cv2.resize(frame, (image_size, image_size), interpolation=cv2.INTER_LINEAR)  # [S, S, 3]
    pixels = resized.astype(np.float32) / 255.0
    pixels = (pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)  # per channel, float32
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))  # [S, S, 3] -> [3, S, S]


# Export metadata ---------------------------------------------------------------------------------
# The JSON beside every exported model (``model.pte.json``; ``<onnx dir>/metadata.json``). Version 2
# adds the pixel spec, the grids and the slot order; version 1 files load with this module's defaults
# for them (a v1 export always used them). Version 3 adds ``max_prompts``: decode takes the text of 1 to
# ``max_prompts`` prompts at once (a leading prompt dimension on its text inputs and on every output);
# a version 1 or 2 export takes exactly one.
METADATA_FORMAT_VERSION = 3
READABLE_FORMAT_VERSIONS = (1, 2, 3)
# The prompt batch an export allows unless told otherwise (``--max-prompts``).
DEFAULT_MAX_PROMPTS = 8
BACKENDS = ("executorch", "onnx")
ENTRY_POINTS = ("encode_frame", "decode", "encode_text")
# decode's inputs, in order (text_features / text_mask carry the prompt dimension).
DECODE_INPUTS = ("fpn0", "fpn1", "fpn2", "memory_features", "memory_mask", "text_features", "text_mask")
# What one exported program may hold: every entry point; the frame programs a device runs on every frame
# (prompts come from the metadata); or the text encoder alone (to add prompts on a device).
PROGRAM_PARTS = {"all": ENTRY_POINTS, "frame": ("encode_frame", "decode"), "text": ("encode_text",)}
# What a runtime needs (every version): positive integers, plus the backend.
MODEL_INT_FIELDS = ("image_size", "context_frames", "memory_stride", "num_queries", "max_text_length", "hidden_size")
# Added in version 2: the contract a runtime reads instead of constants.
CONTRACT_FIELDS = {"image_mean": list, "image_std": list, "color_order": str, "resize": str, "fpn_sizes": list,
                   "mask_size": int, "memory_grid": int, "slot_order": str}
# What export also writes (provenance, names); a complete file has them all.
EXPORT_FIELDS = {"preset": str, "source_checkpoint": str, "source_checkpoint_sha256": str, "quantization": str,
                 "prompts": list, "output_names": dict, "input_names": dict}
PROMPT_FIELDS = ("text", "input_ids", "attention_mask", "text_features")


def contract_fields(image_size: int, mean: tuple[float, ...] = PIXEL_MEAN,
                    std: tuple[float, ...] = PIXEL_STD) -> dict:
    """The version-2 contract fields of a model at ``image_size`` (what export writes, what v1 implies)."""
    return {"image_mean": [float(v) for v in mean], "image_std": [float(v) for v in std],
            "color_order": COLOR_ORDER, "resize": RESIZE, "fpn_sizes": list(fpn_sizes(image_size)),
            "mask_size": mask_size(image_size), "memory_grid": memory_grid(image_size), "slot_order": SLOT_ORDER}


def names_key(backend: str) -> str:
    """The field mapping each entry point to its file / method name."""
    return "methods" if backend == "executorch" else "files"


def check_metadata(data: object, where: str, complete: bool = False) -> dict:
    """Validate a metadata object; a copy back, version 1 filled up to the current version.

    ``complete``: also require every field export writes (provenance, names, the entry-point map);
    a runtime needs only the model fields. ValueError names ``where`` and the problem.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{where}: metadata must be a JSON object")
    version = data.get("format_version")
    if version not in READABLE_FORMAT_VERSIONS or isinstance(version, bool):
        raise ValueError(f"{where}: format_version {version!r} is not supported (this code reads "
                         f"{list(READABLE_FORMAT_VERSIONS)}); re-export the model")
    expected = {"backend": str, **{key: int for key in MODEL_INT_FIELDS}}
    if complete:
        expected.update(EXPORT_FIELDS)
    if version >= 2:
        missing = [key for key in CONTRACT_FIELDS if key not in data]
        if missing:
            raise ValueError(f"{where}: format_version {version} metadata lacks {missing}; re-export the model")
        expected.update(CONTRACT_FIELDS)
    if version >= 3:
        expected["max_prompts"] = int
    for key, kind in expected.items():
        if key not in data:
            raise ValueError(f"{where}: missing field {key!r}")
        value = data[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"{where}: field {key!r} must be {kind.__name__}, got {type(value).__name__}")
        if kind is int and value <= 0:
            raise ValueError(f"{where}: field {key!r} must be a positive integer, got {value}")
    if data["backend"] not in BACKENDS:
        raise ValueError(f"{where}: unknown backend {data['backend']!r}; expected one of {list(BACKENDS)}")
    try:
        check_image_size(data["image_size"])
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    filled = {**contract_fields(data["image_size"]), "max_prompts": 1, **data}
    _check_contract(filled, where)
    if complete:
        key = names_key(data["backend"])
        if not isinstance(data.get(key), dict) or set(data[key]) not in [set(p) for p in PROGRAM_PARTS.values()]:
            raise ValueError(f"{where}: field {key!r} must map each entry point of one of "
                             f"{[list(p) for p in PROGRAM_PARTS.values()]} to a name")
        for index, prompt in enumerate(data["prompts"]):
            if not isinstance(prompt, dict) or set(PROMPT_FIELDS) - set(prompt):
                raise ValueError(f"{where}: prompts[{index}] needs {', '.join(PROMPT_FIELDS)}")
    filled["format_version"] = METADATA_FORMAT_VERSION
    return filled


def _check_contract(data: dict, where: str) -> None:
    for key in ("image_mean", "image_std"):
        values = data[key]
        if len(values) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ValueError(f"{where}: field {key!r} must hold 3 numbers (R, G, B), got {values!r}")
    if not all(v > 0 for v in data["image_std"]):
        raise ValueError(f"{where}: field 'image_std' must be positive, got {data['image_std']!r}")
    fixed = {"color_order": COLOR_ORDER, "resize": RESIZE, "slot_order": SLOT_ORDER}
    derived = {"fpn_sizes": list(fpn_sizes(data["image_size"])), "mask_size": mask_size(data["image_size"]),
               "memory_grid": memory_grid(data["image_size"])}
    for key, value in {**fixed, **derived}.items():
        if data[key] != value:
            raise ValueError(f"{where}: field {key!r} is {data[key]!r}, this code supports {value!r} "
                             f"(image_size {data['image_size']})")
