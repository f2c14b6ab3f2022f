"""A test double for runtime backends whose detections are known: it finds flat-coloured squares.

Frames are drawn (RGB) as squares of the PALETTE colours on a black background. ``decode`` returns one
query per palette colour that is present (mask logits +8 on that colour's pixels, -8 elsewhere, at the
mask resolution), in a shuffled query order, so object ids can only come from the tracker. The prompt
picks colours: "square" finds every colour, a colour name ("red") only that one. ``encode_frame``'s
memory feature is filled with the number of frames encoded before it, so memory slots can be read back
as stream indices.
"""

from __future__ import annotations

import cv2
import numpy as np

from runtime.backends.base import Backend, DecodeOutput, FrameFeatures, ModelInfo, PromptFeatures, normalise_prompt

PALETTE = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}


def draw_squares(frame_size: tuple[int, int], squares: dict[str, tuple[int, int, int]]) -> np.ndarray:
    """RGB uint8 frame with squares {colour: (x, y, side)}."""
    frame = np.zeros((*frame_size, 3), dtype=np.uint8)
    for colour, (x, y, side) in squares.items():
        frame[y:y + side, x:x + side] = PALETTE[colour]
    return frame


def square_mask(frame_size: tuple[int, int], square: tuple[int, int, int]) -> np.ndarray:
    mask = np.zeros(frame_size, dtype=bool)
    x, y, side = square
    mask[y:y + side, x:x + side] = True
    return mask


class ScriptedBackend(Backend):
    name = "scripted"

    def __init__(self, image_size: int = 112, context_frames: int = 8, memory_stride: int = 4,
                 hidden_size: int = 4, num_queries: int = 8, seed: int = 0) -> None:
        self.info = ModelInfo(preset="scripted", image_size=image_size, context_frames=context_frames,
                              memory_stride=memory_stride, num_queries=num_queries, hidden_size=hidden_size,
                              max_text_length=4)
        self._rng = np.random.default_rng(seed)
        self.frames_encoded = 0

    def prompt_features(self, text: str) -> PromptFeatures:
        key = normalise_prompt(text)
        if key != "square" and key not in PALETTE:
            raise ValueError(f"scripted backend knows 'square' and {sorted(PALETTE)}, not {text!r}")
        return PromptFeatures(text=text, features=np.zeros((1, 4, self.info.hidden_size), np.float32),
                              mask=np.ones((1, 4), np.int64))

    def encode_frame(self, pixel_values: np.ndarray) -> FrameFeatures:
        self.check_pixels(pixel_values)
        side = self.info.mask_size
        rgb = cv2.resize(pixel_values[0].transpose(1, 2, 0), (side, side), interpolation=cv2.INTER_AREA)  # [s, s, 3]
        grid = self.info.memory_grid
        memory = np.full((1, self.info.hidden_size, grid, grid), float(self.frames_encoded), np.float32)
        self.frames_encoded += 1
        return FrameFeatures(fpn=(rgb, rgb, rgb), memory_feature=memory)

    def decode_batch(self, frame: FrameFeatures, memory_features: np.ndarray, memory_mask: np.ndarray,
                     prompts) -> list[DecodeOutput]:
        return [self._decode_one(frame, prompt) for prompt in prompts]

    def _decode_one(self, frame: FrameFeatures, prompt: PromptFeatures) -> DecodeOutput:
        key = normalise_prompt(prompt.text)
        colours = list(PALETTE) if key == "square" else [key]
        side, queries = self.info.mask_size, self.info.num_queries
        rgb = frame.fpn[0]  # [s, s, 3] in [-1, 1]
        masks = np.full((queries, side, side), -8.0, np.float32)
        logits = np.full(queries, -8.0, np.float32)
        order = self._rng.permutation(queries)
        for slot, colour in zip(order, colours):
            target = np.array(PALETTE[colour], np.float32) / 127.5 - 1.0
            hit = np.abs(rgb - target).max(axis=2) < 0.5  # [s, s]
            if hit.any():
                masks[slot] = np.where(hit, 8.0, -8.0)
                logits[slot] = 6.0
        return DecodeOutput(pred_masks=masks, pred_boxes=np.zeros((queries, 4), np.float32), pred_logits=logits,
                            presence_logit=6.0, iou_scores=np.zeros(queries, np.float32))
