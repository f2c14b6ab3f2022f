"""The opt-in fast mask path (issue #19, ``MaskDecoderConfig.coarse_masks`` / ``--coarse-masks``): the pixel
decoder's last stage runs at FPN level 1's size and the mask logits are upsampled to the usual size. Same weights, same output
shapes, fewer FLOPs per prompt; an export with it records it and passes parity, also when
``python -m export.parity`` later compares it with the (full-path) checkpoint."""

import json

import pytest
import torch

from benchmarks.flops import module_gflops
from export.wrappers import Decode


def test_coarse_path_skips_the_finest_stage_and_upsamples(tiny_model):
    decode = Decode(tiny_model.requires_grad_(False))  # FlopCounterMode wants no autograd graph
    inputs = decode.example_inputs(num_prompts=2)
    full_gflop = module_gflops(decode, *inputs)
    with torch.no_grad():
        full = decode(*inputs)

    last_stage_inputs = []
    tiny_model.mask_decoder.pixel_decoder.conv_layers[1].register_forward_hook(
        lambda module, args, out: last_stage_inputs.append(tuple(args[0].shape[-2:])))
    assert tiny_model.set_coarse_masks(True).config.mask_decoder.coarse_masks
    coarse_gflop = module_gflops(decode, *inputs)
    with torch.no_grad():
        coarse = decode(*inputs)
    fpn1_side = tiny_model.config.fpn_sizes[1]
    assert set(last_stage_inputs) == {(fpn1_side, fpn1_side)}  # the last stage runs at 72x72, not 144x144
    assert coarse[0].shape == full[0].shape  # masks at the contract's size
    for a, b in zip(coarse[1:], full[1:]):  # boxes, scores, presence, IoU do not depend on the mask path
        torch.testing.assert_close(a, b)
    assert coarse_gflop < 0.8 * full_gflop


@pytest.mark.slow  # a full ONNX export and two parity runs; the coarse path itself is the test above
def test_coarse_export_records_the_path_and_passes_parity(tiny_checkpoint, sav_videos, tmp_path):
    from export.config import OnnxExportConfig
    from export.onnx import export_onnx
    from export.parity import main as parity_main

    result = export_onnx(OnnxExportConfig(checkpoint=tiny_checkpoint, out=tmp_path / "coarse", prompts=("red circle",),
                                          parity_frames=sav_videos / "val", parity_num_frames=1, max_prompts=2,
                                          coarse_masks=True))
    assert result.parity.passed
    assert json.loads((result.directory / "metadata.json").read_text())["coarse_masks"] is True
    assert json.loads((tiny_checkpoint / "config.json").read_text())["mask_decoder"].get("coarse_masks") in (None, False)
    # Standalone parity loads the checkpoint (full path) and takes the path from the metadata.
    assert parity_main(["--checkpoint", str(tiny_checkpoint), "--program", str(result.directory),
                        "--frames", str(sav_videos / "val"), "--num-frames", "1"]) == 0
