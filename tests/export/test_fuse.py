import pytest
import torch
from torch import nn

from efficient_sam3 import EfficientSam3Model
from export.frames import read_frames, to_pixel_values
from export.fuse import count_batchnorms, deployment_model, reparameterize_repmixer
from export.wrappers import build_entry_points
from model_helpers import randomise_batchnorms


@pytest.fixture(scope="module")
def trained_form_model(tiny_checkpoint):
    model = EfficientSam3Model.from_pretrained(tiny_checkpoint).eval()
    randomise_batchnorms(model, seed=1)
    return model


def test_deployment_model_has_no_batchnorm_and_leaves_original(trained_form_model):
    before = count_batchnorms(trained_form_model)
    fused = deployment_model(trained_form_model)
    assert before > 0
    assert count_batchnorms(fused) == 0
    assert count_batchnorms(trained_form_model) == before


def test_fused_model_equals_training_form_on_real_frames(trained_form_model, sav_videos):
    fused = deployment_model(trained_form_model)
    reference, deployed = build_entry_points(trained_form_model), build_entry_points(fused)
    pixels = to_pixel_values(read_frames(sav_videos / "val", 2, stride=4), 504)
    with torch.no_grad():
        text = deployed["encode_text"](*trained_form_model.tokenize(["red circle"]))
        assert (reference["encode_text"](*trained_form_model.tokenize(["red circle"])) - text).abs().max() <= 1e-5
        memory = torch.randn(1, 8, 256, 18, 18, generator=torch.Generator().manual_seed(0))
        memory_mask = torch.tensor([[False] * 5 + [True] * 3])
        text_mask = trained_form_model.tokenize(["red circle"])[1]
        for pixel_values in pixels:
            levels_ref = reference["encode_frame"](pixel_values)
            levels = deployed["encode_frame"](pixel_values)
            for a, b in zip(levels_ref, levels):
                assert (a - b).abs().max() <= 1e-5
            out_ref = reference["decode"](*levels_ref[:3], memory, memory_mask, text, text_mask)
            out = deployed["decode"](*levels[:3], memory, memory_mask, text, text_mask)
            for a, b in zip(out_ref, out):
                assert (a - b).abs().max() <= 1e-5


def test_repmixer_reparameterisation_is_exact(trained_form_model):
    block = trained_form_model.text_encoder.layers[0].token_mixer
    x = torch.randn(2, block.layer_scale.shape[0], 1, 32)
    with torch.no_grad():
        assert (block(x) - reparameterize_repmixer(block)(x)).abs().max() <= 1e-5


def test_kernel_stride_deconv_equals_conv_transpose():
    from export.fuse import KernelStrideDeconv

    for kernel in (2, 4):
        deconv = nn.ConvTranspose2d(16, 8, kernel, kernel).eval()
        x = torch.randn(1, 16, 9, 7)
        with torch.no_grad():
            assert (deconv(x) - KernelStrideDeconv(deconv)(x)).abs().max() <= 1e-5


def test_deployment_model_has_no_transposed_convs(trained_form_model):
    fused = deployment_model(trained_form_model)
    assert any(isinstance(m, nn.ConvTranspose2d) for m in trained_form_model.modules())
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in fused.modules())
