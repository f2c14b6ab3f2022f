"""Parity with the ORIGINAL EfficientSAM3 / SAM3 code (not transformers' port).

Each fixture was made by ``tests/fixtures/original/make_efficientsam3.py`` with the original builder
(``build_efficientsam3_image_model``, random seeded weights, a text prompt through SAM3's own prompt path,
geometry token included, at 1008 px). Here the same weights are rebuilt from the fixture's manifest,
written as a published EfficientSAM3 checkpoint, converted with ``convert_from_efficientsam3`` and run
through our model: every stored output must match within 1e-4.
"""

from pathlib import Path

import pytest
import torch

from efficient_sam3.backbone import fuse_for_deployment
from efficient_sam3.boxes import box_xyxy_to_cxcywh
from efficient_sam3.convert import convert_from_efficientsam3, read_sam3_layout
from original_parity import FIXTURE_DIR, assert_close_to, seeded_image, seeded_weights

STUDENT_FIXTURES = sorted(FIXTURE_DIR.glob("efficientsam3_*.pt"))
TOL = 1e-4


def load_fixture(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def write_published(fixture: dict, path: Path) -> Path:
    """The student as EfficientSAM3 publishes it: ``{"model": state_dict}`` with ``detector.`` keys."""
    torch.save({"model": seeded_weights(fixture["manifest"], fixture["weight_seed"], fixture["var_range"])}, path)
    return path


def convert_published(fixture: dict, directory: Path):
    """The fixture's student written as EfficientSAM3 publishes it, then converted at the fixture's image size."""
    return convert_from_efficientsam3(write_published(fixture, directory / "student.pt"),
                                      image_size=fixture["image_size"])


@torch.no_grad()
def run_ours(model, fixture: dict) -> dict[str, torch.Tensor]:
    image = seeded_image(fixture["image_size"], fixture["image_seed"])
    input_ids, attention_mask = model.tokenize([fixture["prompt"]])
    assert torch.equal(input_ids, fixture["input_ids"]), "tokenisation differs from the original tokenizer"
    captured = {}  # the trunk and the DETR encoder's output, taken on the way (the backbone runs once)
    hooks = [model.trunk_projection.register_forward_hook(lambda module, args, output: captured.update(trunk=output)),
             model.detr_encoder.register_forward_hook(lambda module, args, output: captured.update(encoder=output))]
    try:
        vision = model.encode_image(image)
        text = model.encode_text(input_ids, attention_mask)
        out = model(vision=vision, text=text)
    finally:
        for hook in hooks:
            hook.remove()
    return {
        "trunk": captured["trunk"],
        **{f"fpn_{level}": fpn for level, fpn in enumerate(vision.fpn_hidden_states)},
        "text_features": text.features,
        "encoder_hidden_states": captured["encoder"],
        "pred_logits": out.pred_logits,
        "pred_boxes_cxcywh": box_xyxy_to_cxcywh(out.pred_boxes),
        "presence_logits": out.presence_logits,
        "pred_masks": out.pred_masks,
    }


@pytest.fixture(scope="module", params=STUDENT_FIXTURES, ids=lambda p: p.stem.removeprefix("efficientsam3_"))
def converted(request, tmp_path_factory):
    fixture = load_fixture(request.param)
    return fixture, convert_published(fixture, tmp_path_factory.mktemp("published"))


def test_fixtures_exist():
    assert STUDENT_FIXTURES, f"no original-code fixtures under {FIXTURE_DIR}"


def test_conversion_detects_the_student(converted):
    fixture, report = converted
    backbone, name, text = fixture["builder"]
    assert report.model.config.prompt_path == "original"
    from efficient_sam3.presets import PRESETS

    expected_name = fixture["student"] if fixture["student"] in PRESETS else "custom"
    assert report.found.startswith(expected_name + ":"), report.found
    assert text in report.found
    # Everything of the student loads; only our own additions start from initialisation.
    assert {key.split(".")[0] for key in report.kept_at_init} == {"perceiver_resampler", "memory_cross_attn", "iou_head"}


def test_outputs_match_original_code(converted):
    fixture, report = converted
    differences = assert_close_to(run_ours(report.model.eval(), fixture), fixture["outputs"], TOL)
    assert set(differences) >= {"fpn_3", "pred_masks", "pred_logits", "presence_logits", "encoder_hidden_states"}


# The deployment form of the whole model against the original code: TinyViT in CI; RepViT and EfficientViT are
# slow (their fused backbones are checked in CI against the training form, tests/export/test_fuse.py, and the
# original code, tests/efficient_sam3/test_efficient_vit.py, and their unfused models above).
FUSED_IN_CI = "efficientsam3_es-tv-m-s1"


@pytest.mark.parametrize("fixture_path", [
    pytest.param(path, id=path.stem.removeprefix("efficientsam3_"),
                 marks=() if path.stem == FUSED_IN_CI else pytest.mark.slow) for path in STUDENT_FIXTURES])
def test_fused_for_deployment_matches_original_code(fixture_path, tmp_path):
    fixture = load_fixture(fixture_path)
    model = fuse_for_deployment(convert_published(fixture, tmp_path).model.eval())
    outputs = run_ours(model, fixture)
    assert_close_to({k: v for k, v in outputs.items() if k != "trunk"},
                    {k: v for k, v in fixture["outputs"].items() if k != "trunk"}, TOL)


@pytest.mark.slow  # a negative control (a minute at 1008 px on one core); the parity tests above run in CI
def test_without_geometry_token_outputs_differ(tmp_path):
    """The geometry token matters: the transformers prompt path on the same weights does not match (one
    student: the prompt path is the same code for every backbone, and each 1008 px run takes seconds)."""
    import dataclasses

    fixture = load_fixture(next(p for p in STUDENT_FIXTURES if "rv" in p.stem))
    report = convert_published(fixture, tmp_path)
    config = dataclasses.replace(report.model.config, prompt_path="transformers")
    from efficient_sam3 import EfficientSam3Model

    model = EfficientSam3Model(config).eval()
    model.load_state_dict({k: v for k, v in report.model.state_dict().items()
                           if not k.startswith("geometry_encoder.")})
    outputs = run_ours(model, fixture)
    with pytest.raises(AssertionError, match="pred_logits|pred_masks"):
        assert_close_to({name: outputs[name] for name in ("pred_logits", "pred_masks")},
                        {name: fixture["outputs"][name] for name in ("pred_logits", "pred_masks")}, TOL)


def test_unknown_layout_is_an_error_naming_keys(tmp_path):
    fixture = load_fixture(STUDENT_FIXTURES[0])
    weights = seeded_weights(fixture["manifest"], fixture["weight_seed"], fixture["var_range"])
    weights["detector.transformer.encoder.layers.0.mystery.weight"] = torch.zeros(3)
    path = tmp_path / "odd.pt"
    torch.save({"model": weights}, path)
    with pytest.raises(ValueError, match="mystery"):
        convert_from_efficientsam3(path)


def test_not_a_checkpoint_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="broken.pt"):
        read_sam3_layout(path)


def test_sam3_checkpoint_conversion_takes_heads_neck_and_geometry(converted, tmp_path):
    """sam3.pt shares the detector layout: its heads, neck and geometry encoder convert into a preset."""
    from efficient_sam3.convert import convert_from_sam3_checkpoint
    from efficient_sam3.presets import PRESETS

    fixture, report = converted
    path = write_published(fixture, tmp_path / "sam3.pt")
    from_sam3 = convert_from_sam3_checkpoint(path, PRESETS["edge"]).model.state_dict()
    student = report.model.state_dict()
    shared = [k for k in student if k.startswith(("neck.", "detr_encoder.", "detr_decoder.", "dot_product_scoring.",
                                                  "mask_decoder.", "geometry_encoder."))]
    assert len(shared) > 300
    for key in shared:
        assert torch.equal(from_sam3[key], student[key]), key


def test_convert_cli_writes_a_checkpoint_and_reports_the_student(tmp_path, capsys):
    """The CLI on one student (the function behind it runs on every fixture above)."""
    from efficient_sam3 import EfficientSam3Model
    from efficient_sam3.convert import main

    fixture = load_fixture(next(p for p in STUDENT_FIXTURES if "rv" in p.stem))
    path = write_published(fixture, tmp_path / "student.pt")
    assert main(["--from", "efficientsam3", str(path), "--out", str(tmp_path / "ckpt"),
                 "--image-size", str(fixture["image_size"])]) == 0
    printed = capsys.readouterr().out
    report = convert_from_efficientsam3(path, image_size=fixture["image_size"])
    assert "found: " in printed and "at initialisation: iou_head, memory_cross_attn, perceiver_resampler" in printed
    loaded = EfficientSam3Model.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == report.model.config
    loaded_state = loaded.state_dict()
    for key in report.copied:
        assert torch.equal(loaded_state[key], report.model.state_dict()[key]), key


def test_convert_cli_bad_input_is_one_error_line_and_no_output(tmp_path, capsys):
    from efficient_sam3.convert import main

    bad = tmp_path / "student.pt"
    bad.write_bytes(b"\x00garbage")
    assert main(["--from", "efficientsam3", str(bad), "--out", str(tmp_path / "ckpt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "student.pt" in err[0]
    assert not (tmp_path / "ckpt").exists()
    assert not any(p.name.startswith(".ckpt") for p in tmp_path.iterdir())


MANIFESTS = FIXTURE_DIR / "manifests.pt"


@pytest.mark.parametrize("student", ["es-rv-s", "es-rv-m", "es-rv-l", "es-tv-s", "es-tv-m", "es-tv-l",
                                     "es-ev-s", "es-ev-m", "es-ev-l"])
def test_every_published_student_converts_to_its_preset(student):
    """The published layout of each student (as the original builder lays it out) converts, is detected as
    its preset, and every tensor lands: only the memory path and the IoU head start from initialisation."""
    from efficient_sam3.convert import convert_efficientsam3_state, detector_state
    from efficient_sam3.presets import PRESETS

    manifest = torch.load(MANIFESTS, map_location="cpu", weights_only=False)[student]
    # Values do not matter for detection: zeros (allocated lazily) keep this fast at full size.
    published = {key: entry["value"] if "value" in entry else torch.zeros(entry["shape"])
                 for key, entry in manifest.items()}
    report = convert_efficientsam3_state(detector_state(published, student), Path(f"{student}.pt"))
    assert report.model.config == PRESETS[student]
    assert report.found.startswith(f"{student}:")
    assert {key.split(".")[0] for key in report.kept_at_init} == {"perceiver_resampler", "memory_cross_attn", "iou_head"}
