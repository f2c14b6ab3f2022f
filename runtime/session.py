"""VideoSession: streaming concept segmentation, one frame at a time, with constant memory.

Lifecycle: ``VideoSession(model_path, backend, prompts)`` (or ``add_prompt``), then ``step(frame)``
per frame (or the ``track(frames)`` generator), ``reset()`` to start a new video with the same prompts.

Per frame: preprocess -> encode_frame once -> decode every prompt at once (``max_prompts`` per call of the
model) with the memory of the frames written before this one -> detections at the frame's size -> object ids (tracker) -> on a memory
frame (``frame_index % memory_stride == 0``) write this frame's level-3 feature into the ring.
The session owns one ``StreamState`` (read-only through ``state``) and replaces it every step.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from efficient_sam3.contract import preprocess_frame
from efficient_sam3.memory_ring import empty_memory, is_memory_frame, memory_window, push_memory
from efficient_sam3.tracker import TrackerConfig, update_tracks
from runtime.backends.base import Backend, DecodeOutput, normalise_prompt
from runtime.postprocess import PostprocessConfig, detections_from_output
from runtime.state import StreamState


@dataclass(frozen=True)
class SessionConfig:
    """memory_stride: write every n-th frame into memory (None: the model's, 4 = 24 -> 6 fps);
    rgb: frames are RGB (False: BGR as OpenCV decodes them); keep_raw_outputs: attach each prompt's
    raw DecodeOutput to the FrameResult (for parity checks; costs Q x 144 x 144 floats per prompt)."""

    memory_stride: int | None = None
    rgb: bool = False
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    keep_raw_outputs: bool = False

    def __post_init__(self) -> None:
        if self.memory_stride is not None and self.memory_stride <= 0:
            raise ValueError(f"memory_stride must be positive, got {self.memory_stride}")


@dataclass(frozen=True)
class ObjectResult:
    """One object in one frame: mask [H, W] bool at the frame's size, box_xyxy [4] float pixels
    (x2, y2 exclusive), score = score probability in (0, 1), obj_id stable across frames."""

    obj_id: int
    prompt: str
    mask: np.ndarray
    box_xyxy: np.ndarray
    score: float


@dataclass(frozen=True)
class FrameResult:
    """frame_index: stream index of the frame (0-based since the last reset); objects in prompt order,
    best score first; memory_frames: stream indices the frame was decoded with (oldest first);
    raw_outputs: prompt -> DecodeOutput when SessionConfig.keep_raw_outputs."""

    frame_index: int
    frame_size: tuple[int, int]
    objects: list[ObjectResult]
    latency_ms: float
    memory_frames: tuple[int, ...]
    raw_outputs: dict[str, DecodeOutput] | None = None


def check_frame(frame: object, expected_size: tuple[int, int] | None, frame_index: int) -> tuple[int, int]:
    """Validate one input frame -> its (height, width). Errors say what is wrong and how to fix it."""
    where = f"frame {frame_index}"
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"{where}: expected a numpy array [H, W, 3] uint8, got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"{where}: expected [H, W, 3] (3 colour channels), got shape {list(frame.shape)}; "
                         "convert grey or BGRA frames with cv2.cvtColor first")
    if frame.dtype != np.uint8:
        raise ValueError(f"{where}: expected dtype uint8, got {frame.dtype}")
    height, width = frame.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"{where}: empty frame of shape {list(frame.shape)}")
    if expected_size is not None and (height, width) != expected_size:
        raise ValueError(f"{where}: size {height}x{width} differs from the stream's {expected_size[0]}x"
                         f"{expected_size[1]}; a stream keeps one frame size, call reset() to start a new one")
    return height, width


class VideoSession:
    def __init__(self, model_path: str | Path, backend: str | None = None, prompts: Iterable[str] = (),
                 config: SessionConfig = SessionConfig(), num_threads: int | None = None) -> None:
        """model_path: checkpoint dir (torch), export.onnx dir (onnx) or .pte file (executorch);
        backend: one of those names (None: inferred from the path)."""
        from runtime.backends.registry import open_backend

        self._init(open_backend(model_path, backend, num_threads=num_threads), prompts, config)

    @classmethod
    def from_backend(cls, backend: Backend, prompts: Iterable[str] = (),
                     config: SessionConfig = SessionConfig()) -> "VideoSession":
        """A session over an already opened backend (an in-memory model, a test double)."""
        session = cls.__new__(cls)
        session._init(backend, prompts, config)
        return session

    def _init(self, backend: Backend, prompts: Iterable[str], config: SessionConfig) -> None:
        self.backend = backend
        self.config = config
        self.memory_stride = config.memory_stride or backend.info.memory_stride
        info = backend.info
        self._state = StreamState(memory=empty_memory(info.context_frames, info.hidden_size, info.memory_grid))
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of strings, not one string")
        for text in prompts:
            self.add_prompt(text)

    # Public API ---------------------------------------------------------------------------------
    @property
    def state(self) -> StreamState:
        return self._state

    @property
    def prompts(self) -> list[str]:
        return self._state.prompt_texts

    def add_prompt(self, text: str) -> None:
        """Segment ``text`` from the next frame on (ValueError: empty, duplicate or not encodable)."""
        key = normalise_prompt(text)
        if key in (normalise_prompt(p) for p in self.prompts):
            raise ValueError(f"prompt {text!r} was already added")
        features = self.backend.prompt_features(text)
        self._state = dataclasses.replace(self._state, prompts=self._state.prompts + (features,))

    def reset(self) -> None:
        """Forget the video (memory, objects, frame count, frame size); keep the prompts."""
        info = self.backend.info
        self._state = StreamState(memory=empty_memory(info.context_frames, info.hidden_size, info.memory_grid),
                                  prompts=self._state.prompts)

    def step(self, frame: np.ndarray) -> FrameResult:
        """Segment every prompt in ``frame`` (HxWx3 uint8; BGR unless SessionConfig.rgb)."""
        start = time.perf_counter()
        state = self._state
        if not state.prompts:
            raise RuntimeError("no prompt to segment: pass prompts=[...] or call add_prompt(text) before step()")
        frame_size = check_frame(frame, state.frame_size, state.frame_index)
        info = self.backend.info
        pixel_values = preprocess_frame(frame, info.image_size, rgb=self.config.rgb, mean=info.pixel_mean,
                                        std=info.pixel_std)[None]
        features = self.backend.encode_frame(pixel_values)
        memory_features, memory_mask = memory_window(state.memory)

        raw: dict[str, DecodeOutput] = {}
        detections = []
        outputs = self.backend.decode(features, memory_features, memory_mask, state.prompts)
        for prompt, output in zip(state.prompts, outputs, strict=True):
            raw[prompt.text] = output
            detections += detections_from_output(output, prompt.text, frame_size, self.config.postprocess)
        tracks, obj_ids = update_tracks(state.tracks, [d.prompt for d in detections],
                                        [d.coarse_mask for d in detections], self.config.tracker)

        memory = state.memory
        if is_memory_frame(state.frame_index, self.memory_stride):
            memory = push_memory(memory, features.memory_feature, state.frame_index)
        self._state = dataclasses.replace(state, frame_index=state.frame_index + 1, frame_size=frame_size,
                                          memory=memory, tracks=tracks)
        objects = [ObjectResult(obj_id=obj_id, prompt=d.prompt, mask=d.mask, box_xyxy=d.box_xyxy, score=d.score_prob)
                   for d, obj_id in zip(detections, obj_ids)]
        return FrameResult(
            frame_index=state.frame_index,
            frame_size=frame_size,
            objects=objects,
            latency_ms=1000.0 * (time.perf_counter() - start),
            memory_frames=tuple(int(i) for i in state.memory.frame_indices[state.memory.mask]),
            raw_outputs=raw if self.config.keep_raw_outputs else None,
        )

    def track(self, frames: Iterable[np.ndarray]) -> Iterator[FrameResult]:
        """``step`` over ``frames``, yielding each frame's result as it is ready."""
        for frame in frames:
            yield self.step(frame)
