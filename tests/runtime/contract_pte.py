"""A small ExecuTorch program that honours the export contract (method names, shapes, dtypes) without being
the network: the C++ runner's output-safety tests run it in milliseconds per frame, with no model export.

56 px input (FPN sides 16, 8, 4, 2), width 8, 2 memory slots, 2 queries, 4 text tokens. encode_frame: every
level is the frame resized to the level's side and mixed to 8 channels by a 1x1 conv with positive weights.
decode: query q's mask logits are a 1x1 conv of fpn0 (bright pixels give positive logits for query 0) plus the
mean of the memory when a slot is valid; pred_logits = the max of each mask; boxes, presence and IoU are
constants. Portable kernels only (no delegate), so building it takes a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

IMAGE_SIZE, WIDTH, FRAMES, QUERIES, TEXT = 56, 8, 2, 2, 4
SIDES = (16, 8, 4, 2)  # image_size / 3.5, / 7, / 14, / 28
PROMPT = "bright square"


class _EncodeFrame(torch.nn.Module):
    def forward(self, pixel_values: torch.Tensor):  # [1, 3, S, S]
        grey = pixel_values.mean(dim=1, keepdim=True)  # [1, 1, S, S]
        levels = []
        for side in SIDES:
            small = F.interpolate(grey, size=(side, side), mode="bilinear", align_corners=False)  # [1, 1, s, s]
            levels.append(small.repeat(1, WIDTH, 1, 1))  # [1, C, s, s]
        return tuple(levels)


class _Decode(torch.nn.Module):
    def forward(self, fpn0, fpn1, fpn2, memory_features, memory_mask, text_features, text_mask):
        bright = fpn0.mean(dim=1, keepdim=True)  # [1, 1, m, m], in [-1, 1]
        offsets = torch.tensor([0.0, -8.0]).view(1, QUERIES, 1, 1)  # query 1 never fires
        valid = memory_mask.to(torch.float32).amax(dim=1).view(1, 1, 1, 1)  # [1, 1, 1, 1]
        memory_term = memory_features.mean() * valid * 0.01
        masks = 8.0 * bright + offsets + memory_term + 0.0 * text_features.mean()  # [1, Q, m, m]
        logits = masks.amax(dim=(2, 3))  # [1, Q]
        boxes = torch.zeros(1, QUERIES, 4) + 0.25 + 0.0 * text_mask.sum()  # [1, Q, 4]
        presence = torch.full((1, 1), 4.0)  # [1, 1]
        iou = torch.zeros(1, QUERIES)  # [1, Q]
        return masks, boxes, logits, presence, iou


def _example_inputs() -> dict[str, tuple[torch.Tensor, ...]]:
    levels = tuple(torch.zeros(1, WIDTH, side, side) for side in SIDES)
    return {
        "encode_frame": (torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE),),
        "decode": (*levels[:3], torch.zeros(1, FRAMES, WIDTH, SIDES[3], SIDES[3]), torch.zeros(1, FRAMES, dtype=torch.bool),
                   torch.zeros(1, TEXT, WIDTH), torch.ones(1, TEXT, dtype=torch.long)),
    }


def write_contract_pte(path: Path) -> Path:
    """Write ``path`` (.pte) and its metadata ``<path>.json`` with one stored prompt, PROMPT."""
    from executorch.exir import to_edge

    inputs = _example_inputs()
    programs = {"encode_frame": torch.export.export(_EncodeFrame(), inputs["encode_frame"]),
                "decode": torch.export.export(_Decode(), inputs["decode"])}
    path.write_bytes(to_edge(programs).to_executorch().buffer)
    metadata = {"format_version": 1, "backend": "executorch", "preset": "contract-test", "image_size": IMAGE_SIZE,
                "context_frames": FRAMES, "memory_stride": 2, "num_queries": QUERIES, "max_text_length": TEXT,
                "hidden_size": WIDTH, "quantization": "none",
                "prompts": [{"text": PROMPT, "input_ids": [0] * TEXT, "attention_mask": [1, 1, 1, 0],
                             "text_features": [[0.0] * WIDTH for _ in range(TEXT)]}]}
    Path(f"{path}.json").write_text(json.dumps(metadata))
    return path
