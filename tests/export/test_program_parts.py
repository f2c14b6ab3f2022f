"""``export.executorch --program frame|text``: the frame programs a device runs, without the text encoder,
and the text encoder alone (issue #19: the on-device file holds what the device runs)."""

import numpy as np
import pytest

from efficient_sam3.contract import PROGRAM_PARTS
from efficient_sam3.programs import load_program
from export.config import ExecutorchExportConfig
from export.metadata import read_metadata

PROMPTS = ("red circle", "blue square")


def _export_part(part, checkpoint, sav_videos, folder):
    from export.executorch import export_executorch

    return export_executorch(ExecutorchExportConfig(
        checkpoint=checkpoint, out=folder / f"tiny_{part}.pte", prompts=PROMPTS, program=part,
        parity_frames=sav_videos / "val", parity_num_frames=1))


@pytest.fixture(scope="module")
def text_part(tiny_checkpoint, sav_videos, tmp_path_factory):
    return _export_part("text", tiny_checkpoint, sav_videos, tmp_path_factory.mktemp("text_part"))


@pytest.fixture(scope="module")
def frame_part(tiny_checkpoint, sav_videos, tmp_path_factory):
    """Lowering decode takes minutes on 2 cores, as the full export does; CI has the frame program through the
    native runner's tests (tests/runtime/test_native_runner.py), the comparisons with the full program are slow."""
    return _export_part("frame", tiny_checkpoint, sav_videos, tmp_path_factory.mktemp("frame_part"))


def _check_part(part, result, checked: str, not_checked: str):
    """The part's metadata and program hold exactly its methods, it passed parity, and its parity cases cover
    ``checked`` and none of ``not_checked`` (case-name prefixes)."""
    metadata = read_metadata(result.metadata)
    assert set(metadata["methods"]) == set(PROGRAM_PARTS[part])
    assert set(metadata["input_names"]) == set(PROGRAM_PARTS[part])
    assert [p["text"] for p in metadata["prompts"]] == list(PROMPTS)  # features stored with either part
    program = load_program(result.program)
    assert set(program.method_names) == set(PROGRAM_PARTS[part])
    assert result.parity.passed, result.parity.format()
    cases = {c.case for c in result.parity.checks}
    assert any(case.startswith(checked) for case in cases)
    assert not any(case.startswith(not_checked) for case in cases)


def test_text_part_holds_only_the_text_encoder_and_passes_parity(text_part):
    _check_part("text", text_part, checked="encode_text", not_checked="frame ")


@pytest.mark.slow
def test_frame_part_holds_only_the_frame_methods_and_passes_parity(frame_part):
    _check_part("frame", frame_part, checked="frame 0 decode", not_checked="encode_text")


@pytest.mark.slow
def test_the_parts_split_the_full_program(frame_part, text_part, executorch_export):
    frame, text, whole = frame_part.size_bytes, text_part.size_bytes, executorch_export.size_bytes
    assert frame < whole and text < whole
    assert abs(frame + text - whole) <= 0.05 * whole


@pytest.mark.slow
def test_a_session_on_the_frame_program_equals_the_full_program(frame_part, executorch_export):
    from runtime.session import SessionConfig, VideoSession

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(3)]
    config = SessionConfig(memory_stride=1, keep_raw_outputs=True)
    sessions = [VideoSession(path, "executorch", list(PROMPTS), config)
                for path in (frame_part.program, executorch_export.program)]
    for frame in frames:
        lean, full = (session.step(frame) for session in sessions)
        for prompt in PROMPTS:
            np.testing.assert_array_equal(lean.raw_outputs[prompt].pred_masks, full.raw_outputs[prompt].pred_masks)
            np.testing.assert_array_equal(lean.raw_outputs[prompt].pred_logits, full.raw_outputs[prompt].pred_logits)


def test_program_part_is_checked(tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="--program must be one of"):
        ExecutorchExportConfig(checkpoint=tiny_checkpoint, out=tmp_path / "m.pte", program="decoder")
    with pytest.raises(ValueError, match="text encoder stays fp32"):
        ExecutorchExportConfig(checkpoint=tiny_checkpoint, out=tmp_path / "m.pte", program="text", quantize="int8",
                               calibration_videos=tmp_path)
