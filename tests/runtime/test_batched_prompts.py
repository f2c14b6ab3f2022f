"""Several prompts in one decode (issue #19): the model, the exported programs (ExecuTorch and ONNX) and the
runtime backends segment P prompts of a frame in one call, each row equal to that prompt alone, with what
does not depend on the prompt (memory tokens, geometry token) computed once. The C++ runner's side is in
test_native_runner.py (test_native_batched_prompts_match_python)."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from efficient_sam3 import contract
from efficient_sam3.outputs import TextFeatures
from efficient_sam3.programs import ProgramError, load_program
from export.wrappers import OUTPUT_NAMES
from runtime.backends.base import BackendError, PromptFeatures
from runtime.backends.registry import open_backend

PROMPTS = ("red circle", "a blue square on the left", "person")
OUTPUTS = ("pred_masks", "pred_boxes", "pred_logits", "presence_logits", "iou_scores")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _memory(config, valid_slots: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    frames, grid = config.memory.context_frames, config.memory_grid
    memory = torch.randn(1, frames, config.hidden_size, grid, grid, generator=generator)
    mask = torch.zeros(1, frames, dtype=torch.bool)
    mask[0, frames - valid_slots:] = True
    return memory, mask


@torch.no_grad()
def test_one_frame_many_prompts_equals_each_prompt_alone(tiny_model):
    from model_helpers import open_memory_path

    open_memory_path(tiny_model, 0.5)  # else memory is an identity and the memory path goes untested
    calls = {"perceiver_resampler": [], "geometry_encoder": []}
    for name, batches in calls.items():
        getattr(tiny_model, name).register_forward_hook(lambda module, args, out, b=batches: b.append(out.shape[0]))
    size = tiny_model.config.image_size
    vision = tiny_model.encode_image(torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1)))
    text = tiny_model.encode_text(*tiny_model.tokenize(list(PROMPTS)))
    memory, memory_mask = _memory(tiny_model.config, 3)

    together = tiny_model.forward_video(None, None, memory, memory_mask, vision=vision, text=text)
    assert calls == {"perceiver_resampler": [1], "geometry_encoder": [1]}  # once per frame, batch 1
    assert together.pred_masks.shape[0] == len(PROMPTS)
    for p in range(len(PROMPTS)):
        alone = tiny_model.forward_video(None, None, memory, memory_mask, vision=vision,
                                         text=TextFeatures(text.features[p:p + 1], text.mask[p:p + 1]))
        for name in OUTPUTS:
            torch.testing.assert_close(getattr(together, name)[p:p + 1], getattr(alone, name), atol=1e-5, rtol=0)
    # The rows differ: each prompt's own result, not the first prompt's broadcast.
    assert (together.pred_logits[0] - together.pred_logits[1]).abs().max() > 1e-3


def test_vision_batch_must_be_one_or_the_prompt_batch(tiny_model):
    size = tiny_model.config.image_size
    with torch.no_grad():
        vision = tiny_model.encode_image(torch.randn(2, 3, size, size))
        text = tiny_model.encode_text(*tiny_model.tokenize(list(PROMPTS)))
        with pytest.raises(ValueError, match="vision batch 2 and prompt batch 3 differ"):
            tiny_model(vision=vision, text=text)


@pytest.fixture(scope="module", params=["executorch", "onnx"])
def exported(request):
    """(backend name, program path, export result) of the session's shared tiny exports."""
    result = request.getfixturevalue(f"{request.param}_export")
    path = result.program if request.param == "executorch" else result.directory
    return request.param, path, result


def test_exported_decode_takes_several_prompts(exported, tiny_checkpoint):
    name, path, result = exported
    program = load_program(path, complete_metadata=True)
    assert program.metadata["max_prompts"] == contract.DEFAULT_MAX_PROMPTS == 8
    batched = [c for c in result.parity.checks if "8 prompts at once" in c.case]
    assert {c.output for c in batched} == set(OUTPUT_NAMES["decode"]) and all(c.passed for c in batched)

    from efficient_sam3 import EfficientSam3Model

    model = EfficientSam3Model.from_pretrained(tiny_checkpoint).eval()
    with torch.no_grad():
        ids, mask = model.tokenize(list(PROMPTS))
        text = model.encode_text(ids, mask)
    size = model.config.image_size
    pixels = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(2)).numpy()
    levels = program.run("encode_frame", [pixels])[:3]
    memory, memory_mask = (t.numpy() for t in _memory(model.config, 2))
    together = program.run("decode", [*levels, memory, memory_mask, text.features.numpy(), mask.numpy()])
    assert [o.shape[0] for o in together] == [len(PROMPTS)] * 5
    for p in range(len(PROMPTS)):
        alone = program.run("decode", [*levels, memory, memory_mask, text.features[p:p + 1].numpy(),
                                       mask[p:p + 1].numpy()])
        for row, single in zip(together, alone):
            np.testing.assert_allclose(row[p:p + 1], single, atol=1e-5, rtol=0)
    too_many = np.repeat(text.features.numpy()[:1], 9, axis=0), np.repeat(mask.numpy()[:1], 9, axis=0)
    with pytest.raises(ProgramError):
        program.run("decode", [*levels, memory, memory_mask, *too_many])


class _CountingBackend:
    """Wraps an opened backend's program runner and counts decode calls and their prompt counts."""

    def __init__(self, backend) -> None:
        self.prompt_counts: list[int] = []
        run = backend._run

        def counted(method, inputs):
            if method == "decode":
                self.prompt_counts.append(inputs[5].shape[0])
            return run(method, inputs)

        backend._run = counted


def test_backend_decodes_max_prompts_per_call_in_prompt_order(onnx_export, tiny_checkpoint):
    backend = open_backend(onnx_export.directory, "onnx")
    torch_backend = open_backend(tiny_checkpoint, "torch")
    prompts = [torch_backend.prompt_features(text) for text in (*PROMPTS, "yellow star", "dog")]
    counter = _CountingBackend(backend)
    size = backend.info.image_size
    pixels = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    frame = backend.encode_frame(pixels)
    memory, memory_mask = (t.numpy() for t in _memory(torch_backend.model.config, 1))

    all_at_once = backend.decode(frame, memory, memory_mask, prompts)
    backend.info = dataclasses.replace(backend.info, max_prompts=2)
    in_pairs = backend.decode(frame, memory, memory_mask, prompts)
    assert counter.prompt_counts == [5, 2, 2, 1]
    reference = torch_backend.decode(frame, memory, memory_mask, prompts)
    assert len(all_at_once) == len(in_pairs) == len(reference) == 5
    for a, b, ref in zip(all_at_once, in_pairs, reference):
        np.testing.assert_allclose(a.pred_masks, b.pred_masks, atol=1e-5, rtol=0)
        np.testing.assert_allclose(a.pred_logits, ref.pred_logits, atol=1e-4, rtol=0)
        assert abs(a.presence_logit - ref.presence_logit) < 1e-4
    assert not np.allclose(all_at_once[0].pred_logits, all_at_once[1].pred_logits)


def test_static_export_takes_one_prompt_per_call(tiny_checkpoint, sav_videos, tmp_path):
    """``--max-prompts 1``: a static decode (as before metadata version 3); the runtime calls it per prompt."""
    import onnx

    from export.config import OnnxExportConfig
    from export.onnx import export_onnx

    result = export_onnx(OnnxExportConfig(checkpoint=tiny_checkpoint, out=tmp_path / "static", prompts=PROMPTS[:2],
                                          parity_frames=sav_videos / "val", parity_num_frames=1, max_prompts=1))
    assert not any("prompts at once" in c.case for c in result.parity.checks)
    metadata = json.loads((result.directory / "metadata.json").read_text())
    assert metadata["max_prompts"] == 1
    graph = onnx.load(str(result.directory / "decode.onnx"), load_external_data=False).graph
    assert graph.input[5].type.tensor_type.shape.dim[0].dim_value == 1  # a fixed prompt dimension

    backend = open_backend(result.directory, "onnx")
    counter = _CountingBackend(backend)
    prompts = [backend.prompt_features(text) for text in PROMPTS[:2]]
    size = backend.info.image_size
    frame = backend.encode_frame(np.zeros((1, 3, size, size), np.float32))
    frames, grid = backend.info.context_frames, backend.info.memory_grid
    outputs = backend.decode(frame, np.zeros((1, frames, backend.info.hidden_size, grid, grid), np.float32),
                             np.zeros((1, frames), bool), prompts)
    assert len(outputs) == 2 and counter.prompt_counts == [1, 1]
    with pytest.raises(BackendError):  # two prompts at once do not fit a static decode
        backend.decode_batch(frame, np.zeros((1, frames, backend.info.hidden_size, grid, grid), np.float32),
                             np.zeros((1, frames), bool), prompts)


def test_prompt_features_are_one_row_each():
    prompt = PromptFeatures(text="x", features=np.zeros((1, 4, 8), np.float32), mask=np.ones((1, 4), np.int64))
    from runtime.backends.base import stack_prompts

    features, mask = stack_prompts([prompt, prompt, prompt])
    assert features.shape == (3, 4, 8) and mask.shape == (3, 4) and mask.dtype == np.int64
