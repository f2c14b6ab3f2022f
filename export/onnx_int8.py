"""Static int8 of an ONNX export directory for ONNX Runtime: QDQ, calibrated on real frames, parity-gated.

    python -m export.onnx_int8 --onnx DIR --out DIR_INT8 --calibration-videos SAV_ROOT [--calibration-frames N]
                               [--checkpoint DIR] [--parity-frames VIDEO_OR_DIR] [--parity-num-frames N]
                               [--full-range]

Input: the directory ``export.onnx`` writes (encode_frame.onnx, decode.onnx, encode_text.onnx,
metadata.json). Output: a directory of the same layout that the runtime's onnx backend runs
unchanged; its metadata is the input's with ``"quantization": "int8"``.

Recipe (``onnxruntime.quantization``), the ONNX counterpart of export/quantize.py:

- ``quant_pre_process`` (ONNX shape inference + ORT's basic graph optimisations: constant folding,
  MatMul + Add -> Gemm), without symbolic shape inference, which fails on the dynamo decode graph
  (an Unsqueeze of a value it cannot type) and is not needed: every shape is static.
- ``quantize_static``, ``QuantFormat.QDQ``: Conv, ConvTranspose, Gemm and MatMul with a weight get
  per-channel symmetric int8 weights and per-tensor uint8 activations (MinMax calibration).
  Softmax, LayerNorm, InstanceNorm and the element-wise ops are not quantized
  (``op_types_to_quantize``). As in the ExecuTorch recipe, MatMuls of two activations (attention
  logits and values, mask embeddings x pixel embeddings, text scoring) and parameter-only math
  stay fp32 (``nodes_kept_in_fp32``): quantizing the attention MatMuls too lowers the tiny
  preset's parity mean mask IoU by about 0.01 and gains no speed. Gemm and MatMul outputs are not
  re-quantized (``OpTypesToExcludeOutputQuantization``): ORT runs them as integer GEMMs with a
  float output, as fast and more accurate (tiny decode: mean mask IoU 0.936 vs 0.930); a Conv keeps
  its output QDQ pair, without which ORT has no fused integer Conv (tiny decode 1.8x slower).
- Activations are uint8 (``QuantType.QUInt8``, weights int8: ORT's U8S8). Measured on an AVX512-VNNI
  x86 CPU against int8 activations (S8S8): the same accuracy (edge mean mask IoU 0.953-0.965 vs
  0.958-0.963), the same decode latency, and encode_frame faster: 1.75x on edge (439 vs 772 ms,
  onnxruntime 1.32, 2 threads), 1.15x on tiny; both backbones are mostly depthwise convolutions, where
  the gap presumably lies (not profiled).
- Weights use 7 of their 8 bits (ORT's ``reduce_range``) unless ``--full-range``. On x86 CPUs without
  VNNI (AVX2 only, e.g. the CI machine's AMD EPYC) ORT's U8S8 kernel sums pairs of uint8 x int8 products
  in int16 (``vpmaddubsw``), which saturates with full-range weights: the tiny preset's full-range int8
  failed the parity gate there (decode mean mask IoU 0.65-0.86, pred_logits 0.07 off) and S8S8 did too
  (0.67-0.84); with 7-bit weights the sums fit, the integer results are exact on every CPU, and the same
  export passes (0.85-0.92, logits 0.017). The int8 directory is meant to be copied to other machines,
  so the default is the one that is right on all of them. U8U8 is exact too and a little more accurate
  (0.90-0.95) but 1.8x slower on AVX2 (tiny encode_frame 406 vs 221 ms, 1 thread; reduced range 221,
  fp32 514). ``--full-range`` (8-bit weights) is for targets whose integer kernels do not saturate
  (AVX512-VNNI / AVX-VNNI x86, ARM); its parity gate is only as good as the CPU it runs on.
- ``encode_text`` is copied in fp32. The runtime never runs it (it reads the prompt features stored in
  the metadata, computed in fp32), and dynamic int8 buys little for its error: with MatMul weights
  only, the file shrinks 2% (tiny) / 23% (edge) while text_features move by 0.020 / 0.024; with the
  token-embedding table too (Gather), 74% / 67% smaller but 0.047 / 0.034 off, most of the int8
  tolerance (0.05). A copy also keeps encode_text.onnx identical to the stored features.

Calibration (the runtime's view of a stream): every ``memory_stride``-th frame (from the metadata; 4:
SA-V's annotated frames) of ``--calibration-videos``, read and preprocessed by export.frames, feeds
encode_frame; decode is fed the FPN levels those frames give through the fp32 encode_frame, the
memory of the frames before (efficient_sam3.memory_ring: slot T-1 = most recent, empty slots masked) and the
stored prompts' text features in turn (ExecuTorch's ``export.quantize.build_calibration_set`` rotates the same
way, then adds generic prompts; here only the stored features exist, so a one-prompt export calibrates on
one prompt).

Parity gate: before the directory is moved into place, the int8 programs are compared with the eager
model of the checkpoint the fp32 export came from (``--checkpoint``, default: the one its metadata
names; the weights' sha256 must match), with export/parity.py's cases and ``INT8_TOLERANCE`` (the
ExecuTorch int8 gate), on held-out frames: ``--parity-frames`` or else the frames of the calibration
videos that follow the calibration frames. On a mismatch nothing is written, exit 1. Bad input is
one ``error:`` line, exit 2; Ctrl-C / SIGTERM write nothing, exit 130.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from efficient_sam3 import EfficientSam3Model
from efficient_sam3.cli import ArgumentParser, positive_int
from efficient_sam3.files import atomic_directory, check_creatable
from efficient_sam3.memory_ring import empty_memory, memory_window, push_memory
from efficient_sam3.programs import ONNX_METADATA_FILE, load_program
from export.command import run_export
from export.config import (
    DEFAULT_CALIBRATION_FRAMES,
    DEFAULT_PARITY_FRAMES,
    OnnxInt8Config,
    tolerance_for,
)
from export.frames import read_frames, to_pixel_values
from export.metadata import read_metadata, write_json_atomic
from export.parity import ParityError, ParityReport, compare_program, load_frames, verify_provenance
from export.progress import StageTimer
from export.wrappers import INPUT_NAMES, METHOD_NAMES

QUANTIZED_METHODS = ("encode_frame", "decode")  # static int8; encode_text is copied in fp32
QUANTIZED_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")
ACTIVATION_TYPE = QuantType.QUInt8
STATIC_OPTIONS = {"OpTypesToExcludeOutputQuantization": ["Gemm", "MatMul"],
                  # Merge the MinMax ranges after each calibration input (FeedReader.set_range) instead of
                  # holding every intermediate tensor of all inputs: the same ranges, GBs less for the edge
                  # decode. (CalibMaxIntermediateOutputs would do it too, but onnxruntime 1.32 drops the
                  # collected outputs at that count without computing their ranges.)
                  "CalibStridedMinMax": 1}


@dataclass
class OnnxInt8Result:
    directory: Path
    size_bytes: dict[str, int]  # int8 file sizes, by method
    fp32_size_bytes: dict[str, int]
    excluded_nodes: dict[str, list[str]]  # by method: Conv/Gemm/MatMul nodes kept in fp32 (nodes_kept_in_fp32)
    parity: ParityReport
    stage_seconds: dict[str, float]


class FeedReader(CalibrationDataReader):
    """The calibration inputs of one method, one feed dict per call of ``get_next``; ``set_range`` restricts
    it to a slice (how onnxruntime calibrates in strides)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._all = feeds
        self._feeds = iter(feeds)

    def __len__(self) -> int:
        return len(self._all)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._feeds = iter(self._all[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def open_session(path: Path) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's own exception types for an invalid or corrupt graph
        raise ValueError(f"{path}: onnxruntime cannot load it ({err})") from err


def calibration_feeds(directory: Path, metadata: dict, pixel_values: list[np.ndarray]) -> dict[str, list[dict]]:
    """Feed dicts of encode_frame and decode for ``pixel_values`` ([1, 3, S, S] each, stream order).

    decode sees each frame's FPN levels from the fp32 encode_frame, the memory ring of the frames before
    it (every frame is a memory frame: they were read ``memory_stride`` apart) and stored prompts in turn.
    """
    text = [(np.asarray(p["text_features"], np.float32)[None], np.asarray(p["attention_mask"], np.int64)[None])
            for p in metadata["prompts"]]
    encode = open_session(directory / metadata["files"]["encode_frame"])
    ring = None
    feeds: dict[str, list[dict]] = {"encode_frame": [], "decode": []}
    for index, pixels in enumerate(pixel_values):
        encode_inputs = {INPUT_NAMES["encode_frame"][0]: pixels}
        fpn0, fpn1, fpn2, level3 = encode.run(None, encode_inputs)  # level3 [1, C, G, G]: what memory stores
        if ring is None:
            ring = empty_memory(metadata["context_frames"], level3.shape[1], level3.shape[2])
        memory_features, memory_mask = memory_window(ring)
        text_features, text_mask = text[index % len(text)]
        decode_inputs = (fpn0, fpn1, fpn2, memory_features, memory_mask, text_features, text_mask)
        feeds["encode_frame"].append(encode_inputs)
        feeds["decode"].append(dict(zip(INPUT_NAMES["decode"], decode_inputs)))
        ring = push_memory(ring, level3, index * metadata["memory_stride"])
    return feeds


def nodes_kept_in_fp32(model: onnx.ModelProto) -> list[str]:
    """Names of the quantizable nodes that stay fp32 (``nodes_to_exclude``):

    - a MatMul whose B is not a weight (an initializer): attention logits (q @ k^T, also with the
      perceiver's constant latents as q), attention x values, mask embeddings x pixel embeddings and the
      text-scoring dot product. ``MatMulConstBOnly`` would say this, but onnxruntime (1.32) honours it only
      in the QOperator format; QDQ would quantize both activations of every MatMul;
    - a node none of whose inputs depends on a graph input (math on parameters alone).
    """
    initializers = {tensor.name for tensor in model.graph.initializer}
    dependent = {value.name for value in model.graph.input}
    kept = []
    for node in model.graph.node:  # ONNX graphs are topologically sorted
        depends = any(name in dependent for name in node.input)
        if depends:
            dependent.update(node.output)
        if node.op_type not in QUANTIZED_OP_TYPES:
            continue
        if not depends or (node.op_type == "MatMul" and node.input[1] not in initializers):
            kept.append(node.name)
    return kept


def quantize_method(source: Path, target: Path, feeds: list[dict], work: Path, full_range: bool = False) -> list[str]:
    """Pre-process ``source`` and statically quantize it to ``target`` (weights in 7 bits unless ``full_range``);
    returns the excluded nodes."""
    prepared = work / f"{source.stem}.prepared.onnx"
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    excluded = nodes_kept_in_fp32(onnx.load(str(prepared), load_external_data=False))
    quantize_static(str(prepared), str(target), FeedReader(feeds), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(QUANTIZED_OP_TYPES), per_channel=True,
                    activation_type=ACTIVATION_TYPE, weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                    calibrate_method=CalibrationMethod.MinMax, reduce_range=not full_range,
                    extra_options=dict(STATIC_OPTIONS))
    return excluded


def parity_pixels(config: OnnxInt8Config, image_size: int, stride: int) -> tuple[list[np.ndarray], list]:
    """(calibration pixel values, held-out parity pixel values as torch tensors); frames ``stride`` apart."""
    if config.parity_frames is not None:
        frames = read_frames(config.calibration_videos, config.calibration_frames, stride=stride)
        held_out = load_frames(config.parity_frames, config.parity_num_frames, image_size)
    else:
        wanted = config.calibration_frames + config.parity_num_frames
        frames = read_frames(config.calibration_videos, wanted, stride=stride)
        if len(frames) < wanted:
            raise ValueError(f"{config.calibration_videos}: holds {len(frames)} frames at stride {stride}, "
                             f"{config.calibration_frames} for calibration + {config.parity_num_frames} held out "
                             "for parity wanted; give --parity-frames or fewer --calibration-frames")
        held_out = to_pixel_values(frames[config.calibration_frames:], image_size)
        frames = frames[:config.calibration_frames]
    return [p.numpy() for p in to_pixel_values(frames, image_size)], held_out


def read_fp32_directory(directory: Path) -> dict:
    """The fp32 export's metadata, checked: an onnx export, not quantized, with stored prompts and its files."""
    directory = Path(directory)
    metadata = read_metadata(directory / ONNX_METADATA_FILE)
    if metadata["backend"] != "onnx":
        raise ValueError(f"{directory / ONNX_METADATA_FILE}: backend is {metadata['backend']!r}, expected 'onnx'")
    if metadata["quantization"] != "none":
        raise ValueError(f"{directory}: already quantized ({metadata['quantization']}); give the fp32 export")
    if not metadata["prompts"]:
        raise ValueError(f"{directory / ONNX_METADATA_FILE}: stores no prompt; decode is calibrated with the "
                         "stored prompts' text features (re-export with --prompt)")
    for name in METHOD_NAMES:
        if not (directory / metadata["files"][name]).is_file():
            raise FileNotFoundError(f"{directory / metadata['files'][name]}: missing ({name} of the fp32 export)")
    return metadata


def quantize_onnx_directory(config: OnnxInt8Config) -> OnnxInt8Result:
    timer = StageTimer("export.onnx_int8")
    source, out = Path(config.onnx), Path(config.out)
    metadata = read_fp32_directory(source)
    files = metadata["files"]
    checkpoint = Path(config.checkpoint or metadata["source_checkpoint"])
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"{checkpoint}: checkpoint not found; the parity gate compares with the checkpoint "
                                f"the fp32 export came from (give --checkpoint)")
    check_creatable(out, "--out folder", folder=True)
    with timer.stage(f"read frames ({config.calibration_frames} calibration + held-out parity)"):
        calibration, held_out = parity_pixels(config, metadata["image_size"], metadata["memory_stride"])
    with timer.stage(f"load {checkpoint}"):
        model = EfficientSam3Model.from_pretrained(checkpoint).eval()
        verify_provenance(metadata, checkpoint, model)
    with timer.stage("calibration inputs (fp32 encode_frame)"):
        feeds = calibration_feeds(source, metadata, calibration)
    out.parent.mkdir(parents=True, exist_ok=True)
    excluded = {}
    with atomic_directory(out) as staging, tempfile.TemporaryDirectory(prefix="onnx_int8.") as work:
        for name in QUANTIZED_METHODS:
            with timer.stage(f"quantize {name} (static int8, QDQ, {len(feeds[name])} calibration inputs)"):
                excluded[name] = quantize_method(source / files[name], staging / files[name], feeds[name], Path(work),
                                                 config.full_range)
        shutil.copyfile(source / files["encode_text"], staging / files["encode_text"])
        raw = json.loads((source / ONNX_METADATA_FILE).read_text(encoding="utf-8"))  # as written, any version
        write_json_atomic(staging / ONNX_METADATA_FILE, {**raw, "quantization": "int8"})
        with timer.stage("parity check (onnxruntime CPU vs eager)"), torch.no_grad():
            report = compare_program(model, load_program(staging, complete_metadata=True), held_out,
                                     config.parity_tolerance or tolerance_for("int8"))
        print(report.format())
        if not report.passed:
            raise ParityError(report)
        sizes = {name: (staging / files[name]).stat().st_size for name in METHOD_NAMES}
    fp32_sizes = {name: (source / files[name]).stat().st_size for name in METHOD_NAMES}
    print(f"[export.onnx_int8] wrote {out}: " + ", ".join(
        f"{files[n]} {sizes[n] / 1e6:.1f} MB (fp32 {fp32_sizes[n] / 1e6:.1f})" for n in METHOD_NAMES))
    return OnnxInt8Result(out, sizes, fp32_sizes, excluded, report, timer.seconds)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description="Static int8 (QDQ) of an ONNX export directory, parity-gated.")
    parser.add_argument("--onnx", required=True, type=Path, help="fp32 export.onnx directory")
    parser.add_argument("--out", required=True, type=Path, help="int8 output directory (same layout)")
    parser.add_argument("--calibration-videos", required=True, type=Path,
                        help="video file, directory of videos (e.g. an SA-V root) or of frames")
    parser.add_argument("--calibration-frames", type=positive_int, default=DEFAULT_CALIBRATION_FRAMES)
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="checkpoint of the fp32 export (default: the one its metadata names)")
    parser.add_argument("--parity-frames", type=Path, default=None,
                        help="held-out frames for the parity check (default: calibration-video frames after "
                             "the calibration frames)")
    parser.add_argument("--parity-num-frames", type=positive_int, default=DEFAULT_PARITY_FRAMES)
    parser.add_argument("--full-range", action="store_true",
                        help="8-bit weights instead of 7: only for CPUs with VNNI (or ARM); on AVX2-only x86 "
                             "ONNX Runtime's uint8 x int8 kernel saturates with them")
    args = parser.parse_args(argv)
    return run_export(lambda: quantize_onnx_directory(OnnxInt8Config(
        onnx=args.onnx, out=args.out, calibration_videos=args.calibration_videos,
        calibration_frames=args.calibration_frames, checkpoint=args.checkpoint, parity_frames=args.parity_frames,
        parity_num_frames=args.parity_num_frames, full_range=args.full_range)),
        args.out, "int8 ONNX models do not match the model")


if __name__ == "__main__":
    sys.exit(main())
