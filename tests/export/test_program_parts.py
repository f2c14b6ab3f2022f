"""``export.executorch --program frame|text``: the frame programs a device runs, without the text encoder,
and the text encoder alone (issue #19: the on-device file holds what the device runs)."""

import numpy as np
import pytest

from efficient_sam3.contract import PROGRAM_PARTS
from efficient_sam3.programs import load_program
from export.config import ExecutorchExportConfig
from export.metadata import read_metadata

PROMPTS = ("red circle", "blue square")


@pytest.fixture(scope="module")
def part_exports(tiny_checkpoint, sav_videos, tmp_path_factory):
    from export.executorch import export_executorch

    folder = tmp_path_factory.mktemp("parts")
    return {part: export_executorch(ExecutorchExportConfig(
        checkpoint=tiny_checkpoint, out=folder / f"tiny_{part}.pte", prompts=PROMPTS, program=part,
        parity_frames=sav_videos / "val", parity_num_frames=1)) for part in ("frame", "text")}


def test_each_part_holds_only_its_entry_points_and_passes_parity(part_exports):
    for part, result in part_exports.items():
        metadata = read_metadata(result.metadata)
        assert set(metadata["methods"]) == set(PROGRAM_PARTS[part])
        assert set(metadata["input_names"]) == set(PROGRAM_PARTS[part])
        assert [p["text"] for p in metadata["prompts"]] == list(PROMPTS)  # features stored with either part
        program = load_program(result.program)
        assert set(program.method_names) == set(PROGRAM_PARTS[part])
        assert result.parity.passed, result.parity.format()
    frame_cases = {c.case for c in part_exports["frame"].parity.checks}
    text_cases = {c.case for c in part_exports["text"].parity.checks}
    assert any(case.startswith("frame 0 decode") for case in frame_cases)
    assert not any(case.startswith("encode_text") for case in frame_cases)
    assert any(case.startswith("encode_text") for case in text_cases)
    assert not any(case.startswith("frame ") for case in text_cases)


def test_the_parts_split_the_full_program(part_exports, executorch_export):
    frame, text, whole = part_exports["frame"].size_bytes, part_exports["text"].size_bytes, executorch_export.size_bytes
    assert frame < whole and text < whole
    assert abs(frame + text - whole) <= 0.05 * whole


def test_a_session_on_the_frame_program_equals_the_full_program(part_exports, executorch_export):
    from runtime.session import SessionConfig, VideoSession

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(3)]
    config = SessionConfig(memory_stride=1, keep_raw_outputs=True)
    sessions = [VideoSession(path, "executorch", list(PROMPTS), config)
                for path in (part_exports["frame"].program, executorch_export.program)]
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
