"""export.onnx_int8 on the tiny preset: the shared fp32 ONNX export (tests/conftest.py) quantized to QDQ int8
with calibration frames of the synthetic train video, gated by parity on the held-out val video."""

import json

import onnx
from onnx import numpy_helper
import pytest

from efficient_sam3 import EfficientSam3Model
from efficient_sam3.programs import ONNX_METADATA_FILE
from export.config import INT8_TOLERANCE, ParityTolerance
from export.metadata import build_metadata, checkpoint_sha256, prompt_records, read_metadata
from export.onnx_int8 import OnnxInt8Config, main, quantize_onnx_directory
from export.parity import ParityError
from export.wrappers import METHOD_NAMES
from torch_blocked import run_runtime_without_torch

pytestmark = pytest.mark.usefixtures("one_torch_thread")



@pytest.fixture(scope="module")
def int8_export(onnx_export, sav_videos, tmp_path_factory):
    config = OnnxInt8Config(onnx=onnx_export.directory, out=tmp_path_factory.mktemp("int8") / "tiny_int8",
                            calibration_videos=sav_videos / "train", calibration_frames=4,
                            parity_frames=sav_videos / "val", parity_num_frames=1)
    return quantize_onnx_directory(config)


def _graph(path):
    model = onnx.load(str(path))
    producers = {output: node for node in model.graph.node for output in node.output}
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return model, producers, consumers


def _dequantized(node, producers, index) -> bool:
    producer = producers.get(node.input[index])
    return producer is not None and producer.op_type == "DequantizeLinear"


def test_int8_weights_use_seven_bits_by_default(int8_export):
    """ORT's reduce_range: full 8-bit weights saturate ORT's uint8 x int8 kernel on AVX2-only x86 CPUs."""
    for method in ("encode_frame", "decode"):
        model = onnx.load(str(int8_export.directory / f"{method}.onnx"))
        weights = [numpy_helper.to_array(t) for t in model.graph.initializer
                   if t.data_type == onnx.TensorProto.INT8]
        assert weights, method
        # ORT's reduced symmetric range is [-64, 64]: 2 x 255 x 64 still fits the int16 pair sums
        assert min(int(w.min()) for w in weights) >= -64 and max(int(w.max()) for w in weights) <= 64, method
        assert max(int(abs(w.astype("int16")).max()) for w in weights) == 64, method  # and it is used


def test_int8_graphs_have_qdq_around_conv_and_gemm(int8_export):
    initializers_int8 = 0
    for method in ("encode_frame", "decode"):
        model, producers, consumers = _graph(int8_export.directory / f"{method}.onnx")
        ops = [node.op_type for node in model.graph.node]
        assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0
        initializers_int8 += sum(t.data_type == onnx.TensorProto.INT8 for t in model.graph.initializer)
        excluded = set(int8_export.excluded_nodes[method])
        convs = [n for n in model.graph.node if n.op_type == "Conv" and n.name not in excluded]
        assert convs
        for conv in convs:  # activation and weight dequantized, output re-quantized: ORT fuses a QLinearConv
            assert _dequantized(conv, producers, 0) and _dequantized(conv, producers, 1), conv.name
            assert [c.op_type for c in consumers[conv.output[0]]] == ["QuantizeLinear"], conv.name
    gemms = [n for n in model.graph.node if n.op_type in ("Gemm", "MatMul")]
    quantized = [n for n in gemms if _dequantized(n, producers, 0) and _dequantized(n, producers, 1)]
    assert len(quantized) > 20
    # MatMuls of two activations (attention logits and values, mask embeddings x pixels) stay fp32.
    float_matmuls = [n for n in gemms if n.op_type == "MatMul" and not _dequantized(n, producers, 1)]
    assert float_matmuls and not any(_dequantized(n, producers, 0) for n in float_matmuls)
    assert initializers_int8 > 0


def test_int8_directory_is_smaller_and_keeps_the_metadata(int8_export, onnx_export):
    sizes, fp32 = int8_export.size_bytes, int8_export.fp32_size_bytes
    assert sizes["encode_frame"] < 0.4 * fp32["encode_frame"] and sizes["decode"] < 0.5 * fp32["decode"]
    assert sizes["encode_text"] == fp32["encode_text"]  # copied in fp32
    metadata = read_metadata(int8_export.directory / ONNX_METADATA_FILE)
    source = read_metadata(onnx_export.directory / ONNX_METADATA_FILE)
    assert metadata["quantization"] == "int8"
    assert {k: v for k, v in metadata.items() if k != "quantization"} == \
        {k: v for k, v in source.items() if k != "quantization"}


def test_int8_passes_the_executorch_int8_parity_gate(int8_export):
    report = int8_export.parity
    assert report.passed, report.format()
    assert report.quantization == "int8" and report.tolerance == INT8_TOLERANCE
    masks = [c for c in report.checks if c.output == "pred_masks"]
    # three memory cases and one call with max_prompts prompts (the int8 graph keeps the prompt dimension)
    assert [c.case for c in masks][-1] == "frame 0 decode 8 prompts at once"
    assert len(masks) == 4 and all(c.mean_mask_iou >= INT8_TOLERANCE.mean_mask_iou for c in masks)
    assert any(c.max_abs_diff > 0 for c in report.checks if c.output == "pred_logits")  # quantized, not a copy


def test_runtime_runs_the_int8_directory_without_torch(int8_export, sav_videos, tmp_path):
    video = sorted((sav_videos / "val").glob("*.mp4"))[0]
    out_json = tmp_path / "pred.json"
    result = run_runtime_without_torch(["--model", str(int8_export.directory), "--video", str(video),
                                        "--prompt", "red circle", "--out-json", str(out_json), "--max-frames", "6",
                                        "--quiet"])
    assert result.returncode == 0, result.stderr
    assert "TORCH_MODULES []" in result.stdout and "backend onnx" in result.stdout
    assert json.loads(out_json.read_text())["video_id"] == video.stem


def test_failing_parity_writes_nothing(onnx_export, sav_videos, tmp_path):
    out = tmp_path / "int8"
    exact = ParityTolerance(atol=0.0, min_mask_iou=1.0, mean_mask_iou=1.0)
    config = OnnxInt8Config(onnx=onnx_export.directory, out=out, calibration_videos=sav_videos / "train",
                            calibration_frames=1, parity_frames=sav_videos / "val", parity_num_frames=1,
                            parity_tolerance=exact)
    with pytest.raises(ParityError):
        quantize_onnx_directory(config)
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a staging folder


@pytest.fixture(scope="module")
def fake_fp32_dir(tiny_checkpoint, tmp_path_factory):
    """metadata.json of the tiny checkpoint (``prompts`` given per test) and empty model files: enough for
    every check that runs before a model is opened."""
    model = EfficientSam3Model.from_pretrained(tiny_checkpoint)
    files = {name: f"{name}.onnx" for name in METHOD_NAMES}
    metadata = build_metadata(model, "onnx", tiny_checkpoint, checkpoint_sha256(tiny_checkpoint), "none",
                              prompt_records(model, ("red circle",)), files, 1)

    def make(name: str, **changes) -> str:
        directory = tmp_path_factory.mktemp(name)
        for file_name in files.values():
            (directory / file_name).touch()
        (directory / ONNX_METADATA_FILE).write_text(json.dumps({**metadata, **changes}))
        return str(directory)

    return make


def run_cli(argv: list[str]) -> int:
    """``main``'s exit status, whether it returns it or argparse exits."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


@pytest.mark.parametrize("case, expected", [
    ("no_videos_flag", "error: --calibration-videos: required, not given"),
    ("zero_frames", "error: --calibration-frames: 0 must be a positive integer"),
    ("missing_onnx", "absent/metadata.json: missing export metadata"),
    ("int8_input", "already quantized (int8); give the fp32 export"),
    ("no_prompt", "metadata.json: stores no prompt"),
    ("missing_checkpoint", "gone: checkpoint not found"),
    ("missing_videos", "no_such_videos: no such video, image or directory"),
    ("out_is_input", "error: --out: "),
])
def test_cli_bad_input_is_one_error_line(case, expected, fake_fp32_dir, sav_videos, tmp_path, capsys):
    special = {"missing_onnx": lambda: str(tmp_path / "absent"),
               "int8_input": lambda: fake_fp32_dir("int8", quantization="int8"),
               "no_prompt": lambda: fake_fp32_dir("no_prompt", prompts=[]),
               "missing_checkpoint": lambda: fake_fp32_dir("gone", source_checkpoint=str(tmp_path / "gone"))}
    onnx_dir = special.get(case, lambda: fake_fp32_dir("fp32"))()
    out = onnx_dir if case == "out_is_input" else str(tmp_path / "out")
    videos = str(tmp_path / "no_such_videos") if case == "missing_videos" else str(sav_videos / "train")
    argv = ["--onnx", onnx_dir, "--out", out]
    if case != "no_videos_flag":
        argv += ["--calibration-videos", videos]
    if case == "zero_frames":
        argv += ["--calibration-frames", "0"]
    assert run_cli(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert not (tmp_path / "out").exists()
