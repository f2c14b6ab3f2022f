"""A small ONNX model pair that honours the export contract (names, shapes, dtypes) without being the
network: built with onnx.helper in a second, so the torch-free runtime path is tested without an export.

encode_frame: every FPN level is the frame resized to the level's size and mixed to 256 channels by a
1x1 conv with positive weights, so bright pixels give high features. decode: query q's mask logits are
a 1x1 conv of fpn0 (all queries see the bright region, with per-query offsets) plus the mean of the
valid memory slots; pred_logits = the max of each mask; presence and IoU logits are constants.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WIDTH, QUERIES, FRAMES, TEXT = 256, 4, 8, 32
FPN_SIZES = (144, 72, 36, 18)


def _value(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def _const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def _encode_frame() -> onnx.ModelProto:
    mix = np.full((WIDTH, 3, 1, 1), 1.0 / 3, np.float32)
    nodes, inits, outputs = [], [_const("mix", mix), _const("roi", np.zeros(0, np.float32)),
                                 _const("scales", np.zeros(0, np.float32))], []
    for level, size in enumerate(FPN_SIZES):
        inits.append(_const(f"size{level}", np.array([1, 3, size, size], np.int64)))
        nodes.append(helper.make_node("Resize", ["pixel_values", "roi", "scales", f"size{level}"], [f"small{level}"],
                                      mode="linear"))
        name = f"fpn{level}" if level < 3 else "memory_feature"
        nodes.append(helper.make_node("Conv", [f"small{level}", "mix"], [name]))
        outputs.append(_value(name, TensorProto.FLOAT, [1, WIDTH, size, size]))
    graph = helper.make_graph(nodes, "encode_frame", [_value("pixel_values", TensorProto.FLOAT, [1, 3, 504, 504])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _decode() -> onnx.ModelProto:
    weight = np.full((QUERIES, WIDTH, 1, 1), 4.0 / WIDTH, np.float32)
    bias = np.array([1.0, 0.5, -6.0, -6.0], np.float32)  # queries 2, 3: masks empty for any frame
    inits = [_const("w", weight), _const("b", bias), _const("axes_hw", np.array([2, 3], np.int64)),
             _const("boxes", np.tile(np.array([0.1, 0.1, 0.5, 0.5], np.float32), (1, QUERIES, 1))),
             _const("presence", np.full((1, 1), 4.0, np.float32)), _const("iou", np.zeros((1, QUERIES), np.float32))]
    nodes = [
        helper.make_node("Conv", ["fpn0", "w", "b"], ["masks_raw"]),
        helper.make_node("Cast", ["memory_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["memory_features"], ["memory_mean"], keepdims=0),
        helper.make_node("ReduceMax", ["mask_f"], ["any_valid"], keepdims=0),
        helper.make_node("Mul", ["memory_mean", "any_valid"], ["memory_term"]),
        helper.make_node("Add", ["masks_raw", "memory_term"], ["pred_masks"]),
        helper.make_node("ReduceMax", ["pred_masks", "axes_hw"], ["pred_logits"], keepdims=0),
        helper.make_node("Identity", ["boxes"], ["pred_boxes"]),
        helper.make_node("Identity", ["presence"], ["presence_logits"]),
        helper.make_node("Identity", ["iou"], ["iou_scores"]),
    ]
    inputs = [_value("fpn0", TensorProto.FLOAT, [1, WIDTH, 144, 144]),
              _value("fpn1", TensorProto.FLOAT, [1, WIDTH, 72, 72]),
              _value("fpn2", TensorProto.FLOAT, [1, WIDTH, 36, 36]),
              _value("memory_features", TensorProto.FLOAT, [1, FRAMES, WIDTH, 18, 18]),
              _value("memory_mask", TensorProto.BOOL, [1, FRAMES]),
              _value("text_features", TensorProto.FLOAT, [1, TEXT, WIDTH]),
              _value("text_mask", TensorProto.INT64, [1, TEXT])]
    outputs = [_value("pred_masks", TensorProto.FLOAT, [1, QUERIES, 144, 144]),
               _value("pred_boxes", TensorProto.FLOAT, [1, QUERIES, 4]),
               _value("pred_logits", TensorProto.FLOAT, [1, QUERIES]),
               _value("presence_logits", TensorProto.FLOAT, [1, 1]),
               _value("iou_scores", TensorProto.FLOAT, [1, QUERIES])]
    graph = helper.make_graph(nodes, "decode", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def write_contract_onnx_dir(directory: Path, prompts=("bright square",)) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(_encode_frame(), str(directory / "encode_frame.onnx"))
    onnx.save(_decode(), str(directory / "decode.onnx"))
    metadata = {"format_version": 1, "backend": "onnx", "preset": "contract-test", "image_size": 504,
                "context_frames": FRAMES, "memory_stride": 4, "num_queries": QUERIES, "max_text_length": TEXT,
                "hidden_size": WIDTH, "quantization": "none",
                "prompts": [{"text": p, "input_ids": [0] * TEXT, "attention_mask": [1] * 3 + [0] * (TEXT - 3),
                             "text_features": np.zeros((TEXT, WIDTH)).tolist()} for p in prompts]}
    (directory / "metadata.json").write_text(json.dumps(metadata))
    return directory
