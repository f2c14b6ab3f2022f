"""VideoSession with a scripted backend whose detections are known (tracker truth, memory policy,
constant memory, bad input). The real model is exercised in test_torch_streaming.py."""

import tracemalloc

import numpy as np
import pytest
from scripted_backend import ScriptedBackend, draw_squares, square_mask

from runtime.postprocess import PostprocessConfig
from runtime.session import SessionConfig, VideoSession
from efficient_sam3.tracker import TrackerConfig

SIZE = (48, 80)


def _session(prompts=("square",), **config) -> VideoSession:
    config.setdefault("rgb", True)
    return VideoSession.from_backend(ScriptedBackend(), list(prompts), SessionConfig(**config))


def _script(num_frames: int) -> list[dict]:
    """Per frame {colour: (x, y, side)}: red moves right; blue pauses (absent) for 3 frames and comes back
    in place; green leaves for 12 frames (> max_missed_frames) and comes back elsewhere; yellow appears at 5."""
    frames = []
    for t in range(num_frames):
        squares = {"red": (2 + t, 4, 14)}
        if not 6 <= t < 9:
            squares["blue"] = (40, 28, 14)
        if t < 4 or t >= 16:
            squares["green"] = (60, 2, 12) if t < 4 else (20, 30, 12)
        if t >= 5:
            squares["yellow"] = (60, 30, 12)
        frames.append(squares)
    return frames


def test_ids_are_stable_on_a_video_with_known_truth():
    script = _script(20)
    session = _session(tracker=TrackerConfig(min_iou=0.3, max_missed_frames=8))
    ids_by_colour: dict[str, list[int]] = {}
    for t, squares in enumerate(script):
        result = session.step(draw_squares(SIZE, squares))
        assert len(result.objects) == len(squares)
        for colour, square in squares.items():
            truth = square_mask(SIZE, square)
            (match,) = [o for o in result.objects if (o.mask & truth).sum() / (o.mask | truth).sum() > 0.7]
            x, y, side = square
            np.testing.assert_allclose(match.box_xyxy, [x, y, x + side, y + side], atol=2)
            ids_by_colour.setdefault(colour, []).append(match.obj_id)
    assert set(ids_by_colour["red"]) == {ids_by_colour["red"][0]}
    assert set(ids_by_colour["blue"]) == {ids_by_colour["blue"][0]}  # gap of 3 <= max_missed_frames
    assert set(ids_by_colour["yellow"]) == {ids_by_colour["yellow"][0]}
    green = ids_by_colour["green"]
    assert len(set(green[:4])) == 1 and len(set(green[4:])) == 1 and green[0] != green[4]  # retired, new id
    assert len({ids[0] for ids in ids_by_colour.values()} | {green[4]}) == 5
    assert all(o.prompt == "square" for o in result.objects)


def test_prompts_decode_separately_with_unique_ids():
    session = _session(prompts=("red",))
    session.add_prompt("Blue ")
    assert session.prompts == ["red", "Blue "]
    result = session.step(draw_squares(SIZE, {"red": (0, 0, 10), "blue": (30, 20, 10)}))
    assert [(o.prompt, o.obj_id) for o in result.objects] == [("red", 1), ("Blue ", 2)]
    with pytest.raises(ValueError, match="already added"):
        session.add_prompt("blue")
    with pytest.raises(ValueError, match="empty prompt"):
        session.add_prompt("   ")


def test_memory_holds_the_sav_training_context():
    """memory_stride 4, T = 8: frame 4q is decoded with frames 4(q-8) .. 4(q-1) (the training clip)."""
    session = _session()
    frame = draw_squares(SIZE, {"red": (0, 0, 10)})
    for t in range(41):
        result = session.step(frame)
        if t % 4 == 0:
            q = t // 4
            assert list(result.memory_frames) == [4 * k for k in range(max(0, q - 8), q)]
    memory = session.state.memory
    assert memory.frame_indices.tolist() == [12, 16, 20, 24, 28, 32, 36, 40]
    # each slot holds the feature encode_frame produced for that very frame
    assert [float(memory.features[s, 0, 0, 0]) for s in range(8)] == [12, 16, 20, 24, 28, 32, 36, 40]
    assert session.state.frame_index == 41


def test_memory_stays_constant_over_a_long_stream():
    backend = ScriptedBackend(image_size=504, hidden_size=256, num_queries=4)  # the real [8, 256, 18, 18] ring
    session = VideoSession.from_backend(backend, ["square"], SessionConfig(rgb=True))
    rng = np.random.default_rng(0)

    def run(frames: int) -> None:
        for _ in range(frames):
            x, y = rng.integers(0, 60), rng.integers(0, 30)
            session.step(draw_squares(SIZE, {"red": (int(x), int(y), 12), "green": (int(y), int(x) % 30, 10)}))

    run(30)
    ring_bytes = session.state.memory.nbytes
    tracemalloc.start()
    run(10)
    after_warmup, _ = tracemalloc.get_traced_memory()
    run(150)
    after_long, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert session.state.memory.nbytes == ring_bytes == 8 * 256 * 18 * 18 * 4 + 8 + 8 * 8
    assert len(session.state.tracks.tracks) <= 2 * (TrackerConfig().max_missed_frames + 1)
    # keeping even one 48x80 mask per frame would add ~600 kB over 150 frames
    assert after_long - after_warmup < 250_000, f"memory grew by {after_long - after_warmup} bytes"


def test_reset_starts_a_new_stream_and_keeps_prompts():
    session = _session()
    for _ in range(5):
        session.step(draw_squares(SIZE, {"red": (0, 0, 10)}))
    assert session.state.num_memory_frames == 2 and session.state.tracks.next_id == 2
    session.reset()
    state = session.state
    assert state.frame_index == 0 and state.num_memory_frames == 0 and state.tracks.tracks == ()
    assert state.frame_size is None and session.prompts == ["square"]
    result = session.step(draw_squares((20, 20), {"red": (0, 0, 10)}))  # a new size is fine after reset
    assert result.frame_index == 0 and result.memory_frames == () and result.objects[0].obj_id == 1


def test_score_threshold_and_bgr_frames():
    frame_rgb = draw_squares(SIZE, {"red": (0, 0, 10)})
    bgr = _session(rgb=False).step(frame_rgb[..., ::-1].copy())
    assert len(bgr.objects) == 1 and abs(int(bgr.objects[0].mask.sum()) - 100) <= 20
    as_rgb_but_blue = _session(prompts=("blue",), rgb=False).step(frame_rgb)  # red read as BGR is blue
    assert len(as_rgb_but_blue.objects) == 1
    strict = _session(postprocess=PostprocessConfig(score_threshold=0.999)).step(frame_rgb)
    assert strict.objects == []


@pytest.mark.parametrize("frame, error, match", [
    (np.zeros((48, 80, 3), np.float32), ValueError, "uint8"),
    (np.zeros((48, 80), np.uint8), ValueError, "3 colour channels"),
    (np.zeros((48, 80, 4), np.uint8), ValueError, "3 colour channels"),
    (np.zeros((0, 80, 3), np.uint8), ValueError, "empty frame"),
    ([[0, 0, 0]], TypeError, "numpy array"),
])
def test_bad_frames_raise_clear_errors(frame, error, match):
    session = _session()
    with pytest.raises(error, match=match):
        session.step(frame)
    assert session.state.frame_index == 0  # nothing was consumed


def test_changing_frame_size_and_missing_prompts():
    session = _session()
    session.step(np.zeros((*SIZE, 3), np.uint8))
    with pytest.raises(ValueError, match="differs from the stream's 48x80.*reset"):
        session.step(np.zeros((40, 80, 3), np.uint8))
    assert session.state.frame_index == 1
    empty = VideoSession.from_backend(ScriptedBackend(), [])
    with pytest.raises(RuntimeError, match="add_prompt"):
        empty.step(np.zeros((*SIZE, 3), np.uint8))
    with pytest.raises(TypeError, match="list of strings"):
        VideoSession.from_backend(ScriptedBackend(), "square")
    with pytest.raises(ValueError, match="scripted backend knows"):
        empty.add_prompt("purple")


def test_track_yields_one_result_per_frame():
    frames = [draw_squares(SIZE, {"red": (t, 0, 10)}) for t in range(5)]
    results = list(_session().track(frames))
    assert [r.frame_index for r in results] == [0, 1, 2, 3, 4]
    assert {r.objects[0].obj_id for r in results} == {1}
    assert all(r.latency_ms > 0 and r.raw_outputs is None for r in results)
