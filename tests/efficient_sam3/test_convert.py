"""Head parity with transformers' SAM3: the proof that real SAM3 weights load into the student."""

import pytest
import torch
from transformers import Sam3Config, Sam3Model
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

from efficient_sam3 import EfficientSam3Config
from efficient_sam3.convert import convert_from_sam3
from efficient_sam3.outputs import TextFeatures, VisionFeatures

TOL = 1e-4


def tiny_sam3_config() -> Sam3Config:
    return Sam3Config(
        vision_config=dict(
            backbone_config=dict(model_type="sam3_vit_model", hidden_size=64, intermediate_size=128,
                                 num_hidden_layers=1, num_attention_heads=2, image_size=504, patch_size=14,
                                 window_size=6, global_attn_indexes=[0], pretrain_image_size=504),
            fpn_hidden_size=256),
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                         projection_dim=64, max_position_embeddings=32),
        geometry_encoder_config=dict(num_layers=1, intermediate_size=128),
        detr_encoder_config=dict(num_layers=2, intermediate_size=512),
        detr_decoder_config=dict(num_layers=2, intermediate_size=512, num_queries=16),
    )


@pytest.fixture(scope="module")
def teacher() -> Sam3Model:
    torch.manual_seed(0)
    model = Sam3Model(tiny_sam3_config()).eval()
    with torch.no_grad():  # random init leaves many zeros/ones: perturb so parity is not trivial
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return model


def _compare(teacher, student):
    torch.manual_seed(1)
    trunk = torch.randn(2, 64, 36, 36)
    text = torch.randn(2, 32, 256)
    mask = torch.ones(2, 32, dtype=torch.long)
    mask[0, 5:] = 0
    captured = {}
    hook = teacher.detr_encoder.register_forward_hook(
        lambda m, args, out: captured.__setitem__("encoder", out.last_hidden_state))
    with torch.no_grad():
        fpn, pos = teacher.vision_encoder.neck(trunk)
        expected = teacher(vision_embeds=Sam3VisionEncoderOutput(fpn_hidden_states=fpn, fpn_position_encoding=pos),
                           text_embeds=BaseModelOutputWithPooling(pooler_output=text), attention_mask=mask)
        student_fpn = student.neck(trunk)
        vision = VisionFeatures(fpn_hidden_states=student_fpn)
        text_features = TextFeatures(features=text, mask=mask)
        got = student(vision=vision, text=text_features)
        encoder = student._encode_prompted(vision, text_features)
    hook.remove()
    for ours, theirs in zip(student_fpn, fpn):
        assert (ours - theirs).abs().max() <= TOL
    assert (encoder - captured["encoder"]).abs().max() <= TOL
    assert (got.pred_logits - expected.pred_logits).abs().max() <= TOL
    assert (got.pred_boxes - expected.pred_boxes).abs().max() <= TOL
    assert (got.presence_logits - expected.presence_logits).abs().max() <= TOL
    assert (got.pred_masks - expected.pred_masks).abs().max() <= TOL
    assert expected.pred_logits.std() > 1e-3 and expected.pred_masks.std() > 1e-3  # not a degenerate comparison


def test_in_memory_conversion_matches_transformers(teacher):
    report = convert_from_sam3(teacher, EfficientSam3Config.from_preset("tiny"))
    student = report.model.eval()
    assert student.config.detr_encoder.num_layers == 2 and student.config.detr_decoder.num_queries == 16
    assert any(k.startswith("neck.") for k in report.copied)
    assert "text_projection.weight" in report.copied
    assert not any(k.startswith(("detr_", "mask_decoder.", "neck.")) for k in report.kept_at_init)
    _compare(teacher, student)
    # The text projection really is SAM3's.
    assert torch.equal(student.text_projection.weight, teacher.text_projection.weight)


def test_conversion_from_a_checkpoint_directory(teacher, tmp_path):
    teacher.save_pretrained(tmp_path / "sam3")
    report = convert_from_sam3(tmp_path / "sam3", EfficientSam3Config.from_preset("tiny"))
    _compare(teacher, report.model.eval())


def test_conversion_reports_groups_it_cannot_copy(teacher):
    report = convert_from_sam3(teacher, EfficientSam3Config.from_preset("edge"))
    assert any(reason.startswith("neck:") for reason in report.skipped_groups)
    assert any(reason.startswith("text_projection:") for reason in report.skipped_groups)
    assert any(k.startswith("detr_decoder.") for k in report.copied)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        convert_from_sam3(tmp_path, EfficientSam3Config.from_preset("tiny"))


def test_text_encoder_matches_transformers_sam3_lite_text():
    from transformers.models.sam3_lite_text.configuration_sam3_lite_text import Sam3LiteTextTextConfig
    from transformers.models.sam3_lite_text.modeling_sam3_lite_text import Sam3LiteTextTextModel

    from efficient_sam3.text_encoder import TextEncoder

    config = EfficientSam3Config.from_preset("tiny").text
    reference = Sam3LiteTextTextModel(Sam3LiteTextTextConfig(
        hidden_size=config.width, intermediate_size=config.intermediate_size, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, max_position_embeddings=config.max_length, projection_dim=config.width,
    )).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for param in reference.parameters():
            param.add_(torch.randn_like(param) * 0.05)
        for buffer_name, buffer in reference.named_buffers():
            if "running_var" in buffer_name:
                buffer.uniform_(0.5, 1.5)
    ours = TextEncoder(config).eval()
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("projection.")}
    ours.load_state_dict(state, strict=True)
    ids = torch.randint(0, 49406, (2, 32))
    mask = torch.ones(2, 32, dtype=torch.long)
    mask[1, 7:] = 0
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask).last_hidden_state
        got = ours(ids, mask)
    assert (got - expected).abs().max() <= TOL


def test_geometry_token_matches_transformers_geometry_encoder(teacher, monkeypatch):
    """Our text-prompt geometry path loads transformers' ``geometry_encoder.*`` and equals its CLS token
    (transformers' encoder called with no boxes, as SAM3's original code runs every text prompt)."""
    from types import SimpleNamespace

    from transformers.models.sam3 import modeling_sam3

    # transformers pools box features with torchvision's roi_align even for zero boxes; torchvision does
    # not install beside this torch, and zero boxes pool to an empty tensor whatever the op.
    def roi_align_of_no_boxes(features, boxes, size):
        assert all(b.shape[0] == 0 for b in boxes)
        return features.new_zeros(0, features.shape[1], size, size)

    monkeypatch.setattr(modeling_sam3, "torchvision", SimpleNamespace(ops=SimpleNamespace(roi_align=roi_align_of_no_boxes)),
                        raising=False)

    student = convert_from_sam3(teacher, EfficientSam3Config.from_preset("tiny"), prompt_path="original").model.eval()
    assert student.config.geometry_encoder.num_layers == 1
    trunk = torch.randn(2, 64, 36, 36, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        fpn, pos = teacher.vision_encoder.neck(trunk)
        expected = teacher.geometry_encoder(
            box_embeddings=torch.zeros(2, 0, 4), box_mask=torch.zeros(2, 0, dtype=torch.bool),
            box_labels=torch.zeros(2, 0, dtype=torch.long), img_feats=fpn[:-1], img_pos_embeds=pos[:-1],
        ).last_hidden_state
        level = student.neck(trunk)[2]
        ours = student.geometry_encoder(level.flatten(2).transpose(1, 2), student.encoder_pos)
    assert expected.shape == ours.shape == (2, 1, 256)
    assert (ours - expected).abs().max() <= TOL
    assert expected.std() > 1e-3


def test_converted_checkpoint_folder_gets_the_usual_mode_and_replaces_an_empty_one(tmp_path):
    import os
    import stat

    from efficient_sam3 import EfficientSam3Model
    from efficient_sam3.convert import _save_atomically

    out = tmp_path / "ckpt"
    out.mkdir()  # an empty folder may be given as --out
    old = os.umask(0o022)
    try:
        _save_atomically(EfficientSam3Model(EfficientSam3Config.from_preset("tiny")), out)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755  # mkdtemp's 0700 before
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no staging folder left


def test_cli_names_the_flag_of_an_image_size_the_model_cannot_take(tmp_path, capsys):
    from efficient_sam3.convert import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--from", "sam3", str(tmp_path / "sam3.pt"), "--out", str(tmp_path / "out"), "--image-size", "100"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert err.startswith("error: --image-size: 100 is not a multiple of 28") and "504" in err
