"""Streaming state of one video stream.

The exported programs are stateless; everything a stream remembers lives here, on the host, as
numpy arrays of fixed size (so memory use does not grow with the video): the memory ring
(``efficient_sam3.memory_ring``, with the policy of which frames are written), the tracker's live
objects (``efficient_sam3.tracker.TrackerState``), the prompts with their text features, the index of
the next frame and the frame size the stream was started with. No torch here; the torch backend
converts at its edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from efficient_sam3.memory_ring import MemoryRing
from efficient_sam3.tracker import TrackerState
from runtime.backends.base import PromptFeatures


@dataclass(frozen=True)
class StreamState:
    """Everything one video stream remembers. ``VideoSession`` owns one and replaces it every step.

    frame_index: stream index of the next frame (= frames processed so far).
    frame_size: (height, width) of the stream's frames, None before the first frame.
    memory: the ring of level-3 features (see ``MemoryRing``).
    tracks: live objects and the next free object id.
    prompts: the session's prompts in order, each with its cached text features.
    """

    memory: MemoryRing
    prompts: tuple[PromptFeatures, ...] = ()
    frame_index: int = 0
    frame_size: tuple[int, int] | None = None
    tracks: TrackerState = field(default_factory=TrackerState)

    @property
    def num_memory_frames(self) -> int:
        return int(self.memory.mask.sum())

    @property
    def prompt_texts(self) -> list[str]:
        return [p.text for p in self.prompts]
