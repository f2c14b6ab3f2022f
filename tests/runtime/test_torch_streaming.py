"""Streaming equivalence of the torch backend: ``VideoSession.step`` == offline ``forward_video`` with the
same context windows (memory built from ``encode_image(...).memory_features`` of the context frames)."""

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from efficient_sam3 import EfficientSam3Config, EfficientSam3Model
from efficient_sam3.config import MemoryConfig
from efficient_sam3.contract import preprocess_frame
from efficient_sam3.memory_ring import context_frame_indices
from efficient_sam3.outputs import TextFeatures
from runtime.backends.torch_backend import TorchBackend
from runtime.postprocess import PostprocessConfig, detections_from_output
from runtime.session import SessionConfig, VideoSession
from model_helpers import open_memory_path

PROMPT = "red circle"
MEMORY_STRIDE = 2
CONTEXT_FRAMES = 2  # tiny with a 2-slot ring: frame 5 already sees an evicted ring ([2, 4], 0 evicted)
CHECKED_FRAMES = (0, 3, 5)  # no memory, a full ring, a ring after eviction
SCORE_THRESHOLD = 0.2  # random weights score ~0.2-0.3


def _frames(count: int, size=(40, 56)) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, size=(count, 5, 7, 3), dtype=np.uint8)
    return [cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_CUBIC) for f in small]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> EfficientSam3Model:
    torch.manual_seed(0)
    config = dataclasses.replace(EfficientSam3Config.from_preset("tiny"), memory=MemoryConfig(context_frames=CONTEXT_FRAMES))
    model = EfficientSam3Model(config).eval()
    with torch.no_grad():
        open_memory_path(model, 0.5)  # open the memory path so memory changes the output
    return model


@pytest.fixture(scope="module")
def streamed(model):
    frames = _frames(6)
    config = SessionConfig(memory_stride=MEMORY_STRIDE, keep_raw_outputs=True,
                           postprocess=PostprocessConfig(score_threshold=SCORE_THRESHOLD))
    session = VideoSession.from_backend(TorchBackend(model), [PROMPT], config)
    return frames, [session.step(frame) for frame in frames], session


@pytest.fixture(scope="module")
def reference(model, streamed):
    """Offline: encode the needed frames in one batch, then forward_video per checked frame."""
    frames = streamed[0]
    needed = sorted(set(CHECKED_FRAMES) | {c for i in CHECKED_FRAMES
                                          for c in context_frame_indices(i, MEMORY_STRIDE, CONTEXT_FRAMES)})
    pixels = torch.stack([torch.from_numpy(preprocess_frame(frames[i], rgb=False)) for i in needed])
    input_ids, attention_mask = model.tokenize([PROMPT] * len(CHECKED_FRAMES))
    memory = torch.zeros(len(CHECKED_FRAMES), CONTEXT_FRAMES, 256, 18, 18)
    memory_mask = torch.zeros(len(CHECKED_FRAMES), CONTEXT_FRAMES, dtype=torch.bool)
    with torch.inference_mode():
        level3 = model.encode_image(pixels).memory_features  # [N, 256, 18, 18]
        for row, i in enumerate(CHECKED_FRAMES):
            context = [needed.index(c) for c in context_frame_indices(i, MEMORY_STRIDE, CONTEXT_FRAMES)]
            if context:
                memory[row, CONTEXT_FRAMES - len(context):] = level3[context]
                memory_mask[row, CONTEXT_FRAMES - len(context):] = True
        query = pixels[[needed.index(i) for i in CHECKED_FRAMES]]
        out = model.forward_video(query, input_ids, memory, memory_mask, attention_mask)
        text = model.encode_text(input_ids[-1:], attention_mask[-1:])
        no_memory = model.forward_video(query[-1:], None, memory[-1:], torch.zeros_like(memory_mask[-1:]),
                                        text=TextFeatures(text.features, text.mask))
    return out, memory_mask, no_memory


def test_memory_windows_match_the_offline_context(streamed):
    _, results, session = streamed
    for result in results:
        assert list(result.memory_frames) == context_frame_indices(result.frame_index, MEMORY_STRIDE, CONTEXT_FRAMES)
    assert session.state.memory.frame_indices.tolist() == [2, 4]


def test_step_equals_forward_video(streamed, reference):
    _, results, _ = streamed
    out, memory_mask, no_memory = reference
    for row, i in enumerate(CHECKED_FRAMES):
        raw = results[i].raw_outputs[PROMPT]
        np.testing.assert_allclose(raw.pred_logits, out.pred_logits[row].numpy(), atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(raw.presence_logit, out.presence_logits[row, 0].item(), atol=1e-4)
        np.testing.assert_allclose(raw.pred_boxes, out.pred_boxes[row].numpy(), atol=1e-5)
        np.testing.assert_allclose(raw.iou_scores, out.iou_scores[row].numpy(), atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(raw.pred_masks, out.pred_masks[row].numpy(), atol=2e-4, rtol=1e-4)
    # The check can fail: without its memory, frame 5's outputs are clearly different.
    assert memory_mask[-1].all()
    assert np.abs(no_memory.pred_masks[0].numpy() - results[5].raw_outputs[PROMPT].pred_masks).max() > 1e-2


def test_objects_equal_post_processed_forward_video(streamed, reference):
    frames, results, _ = streamed
    out = reference[0]
    config = PostprocessConfig(score_threshold=SCORE_THRESHOLD)
    for row, i in enumerate(CHECKED_FRAMES):
        output = dataclasses.replace(
            results[i].raw_outputs[PROMPT], pred_masks=out.pred_masks[row].numpy(),
            pred_logits=out.pred_logits[row].numpy(), presence_logit=float(out.presence_logits[row, 0]))
        expected = detections_from_output(output, PROMPT, frames[i].shape[:2], config)
        objects = results[i].objects
        assert objects and len(objects) == len(expected)
        for obj, det in zip(objects, expected):
            assert obj.mask.shape == frames[i].shape[:2]
            iou = (obj.mask & det.mask).sum() / max((obj.mask | det.mask).sum(), 1)
            assert iou > 0.98 and obj.score == pytest.approx(det.score_prob, abs=1e-4)
