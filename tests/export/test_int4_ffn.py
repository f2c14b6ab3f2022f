"""Mode "int8-ffn4": the transformers' feed-forward linears keep 4-bit weights inside the XNNPACK delegate."""
import pytest
import torch
from torch import nn

from efficient_sam3 import EfficientSam3Model
from export.config import QUANTIZATION_MODES, ExecutorchExportConfig, is_quantized, tolerance_for
from export.quantize import INT4_FFN_STACKS, INT4_PROMPT_MLP, int4_weight_modules


class _Mlp(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, width), nn.Linear(width, 64)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class _Model(nn.Module):
    """Stands in for EfficientSam3Model: one feed-forward block under detr_encoder, one projection beside it."""

    def __init__(self):
        super().__init__()
        self.detr_encoder = nn.Module()
        self.detr_encoder.mlp = _Mlp(512)
        self.projection = nn.Linear(64, 64)

    def forward(self, x):
        return self.projection(self.detr_encoder.mlp(x))


class _Wrapper(nn.Module):  # the export wrappers hold the model as `model`
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)


def test_int4_modules_are_the_feed_forward_linears_of_the_transformer_stacks(tiny_config):
    model = EfficientSam3Model(tiny_config)
    names = set(int4_weight_modules(model))
    config = model.config
    expected = {f"{stack}.layers.{layer}.mlp.{fc}" for stack, layers in
                (("detr_encoder", config.detr_encoder.num_layers), ("detr_decoder", config.detr_decoder.num_layers),
                 ("geometry_encoder", len(model.geometry_encoder.layers)))
                for layer in range(layers) for fc in ("fc1", "fc2")}
    expected |= {f"{INT4_PROMPT_MLP}.{name}" for name, module in model.get_submodule(INT4_PROMPT_MLP).named_modules()
                 if isinstance(module, nn.Linear)}
    assert names == expected and {name.split(".")[0] for name in names} == {*INT4_FFN_STACKS, "dot_product_scoring"}
    assert all(isinstance(model.get_submodule(name), nn.Linear) for name in names)


def _lowered_size_and_output(int4_modules, x):
    from executorch.extension.pybindings.portable_lib import _load_for_executorch_from_buffer

    from export.lowering import lower_to_xnnpack, ops_outside_delegate
    from export.quantize import quantize_method

    torch.manual_seed(0)
    wrapper = _Wrapper(_Model().eval())
    calibration = [(torch.randn_like(x),) for _ in range(4)]
    program = quantize_method(wrapper, calibration, int4_modules=int4_modules)
    edge = lower_to_xnnpack({"forward": program})
    assert not ops_outside_delegate(edge, "forward")
    buffer = edge.to_executorch().buffer
    (output,) = _load_for_executorch_from_buffer(buffer).run_method("forward", (x,))
    with torch.no_grad():
        reference = wrapper(x)
    return len(buffer), output, reference


def test_int4_weights_halve_the_feed_forward_bytes_and_stay_close():
    x = torch.randn(1, 32, 64, generator=torch.Generator().manual_seed(1))
    int8_size, int8_output, reference = _lowered_size_and_output((), x)
    int4_size, int4_output, _ = _lowered_size_and_output(("detr_encoder.mlp.fc1", "detr_encoder.mlp.fc2"), x)
    ffn_weights = 2 * 64 * 512
    # Two 4-bit weights per byte: the file loses half a byte per feed-forward weight (scales, biases and
    # the int8 projection unchanged).
    assert int8_size - int4_size == pytest.approx(ffn_weights / 2, rel=0.05)
    # Mean error: the largest one is set by the int8 activations both share; 4-bit weights add to the rest.
    scale = float(reference.abs().mean())
    int8_error = float((int8_output - reference).abs().mean())
    int4_error = float((int4_output - reference).abs().mean())
    assert 0 < int8_error < int4_error < 0.2 * scale  # coarser than int8, still the same function


def test_int8_ffn4_is_a_calibrated_mode(tmp_path):
    assert "int8-ffn4" in QUANTIZATION_MODES and is_quantized("int8-ffn4") and not is_quantized("none")
    # Looser than int8 (4-bit weights agree less with fp32), stricter than nothing.
    int8, ffn4 = tolerance_for("int8"), tolerance_for("int8-ffn4")
    assert 0.5 < ffn4.mean_mask_iou < int8.mean_mask_iou and int8.atol < ffn4.atol < 1.0
    with pytest.raises(ValueError, match="--quantize int8-ffn4 needs --calibration-videos"):
        ExecutorchExportConfig(checkpoint=tmp_path, out=tmp_path / "m.pte", quantize="int8-ffn4")
