"""Meta's sam3.pt as the feature teacher and as a conversion source.

One random SAM3 is written twice: as a transformers directory and as a sam3.pt in Meta's layout
(``detector.backbone.vision_backbone.trunk.blocks.N.attn.qkv`` packed, a class-token row in the
position embedding, rotary tables per block, ``convs.N.dconv_2x2_0`` neck names). Both teachers must
give the same FPN level 3.
"""

import pytest
import torch

from model_helpers import tiny_sam3_config
from training.synthetic import generate_dataset
from training.synthetic_scene import SceneConfig
from training.teacher import load_teacher

WINDOW = 6
GRID_1008 = 72  # the rotary length SAM3 stores for a global block is its grid at 1008 px


NECK_NAMES = {(0, "scale_layers.0"): "dconv_2x2_0", (0, "scale_layers.2"): "dconv_2x2_1",
              (1, "scale_layers.0"): "dconv_2x2"}


def meta_vision_layout(model) -> dict[str, torch.Tensor]:
    """The transformers model's ViT and neck as Meta's sam3.pt stores them (``detector.`` keys)."""
    trunk, convs = "detector.backbone.vision_backbone.trunk.", "detector.backbone.vision_backbone.convs."
    config = model.config.vision_config.backbone_config
    state = {k.removeprefix("vision_encoder."): v for k, v in model.state_dict().items() if k.startswith("vision_encoder.")}
    meta = {}
    for key, value in state.items():
        if key == "backbone.embeddings.position_embeddings":  # SAM3 keeps a class-token row first
            meta[trunk + "pos_embed"] = torch.cat([torch.randn(1, 1, value.shape[-1]), value], dim=1)
        elif key.startswith("backbone.embeddings.patch_embeddings.projection."):
            meta[trunk + "patch_embed.proj." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("backbone.layer_norm."):
            meta[trunk + "ln_pre." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("backbone.layers."):
            _, _, index, rest = key.split(".", 3)
            block = f"{trunk}blocks.{index}."
            leaf = rest.rsplit(".", 1)[1]
            if rest.startswith("attention.q_proj."):
                packed = torch.cat([state[f"backbone.layers.{index}.attention.{p}_proj.{leaf}"] for p in "qkv"])
                meta[block + "attn.qkv." + leaf] = packed
            elif rest.startswith(("attention.k_proj.", "attention.v_proj.")):
                continue
            else:
                rest = (rest.replace("attention.o_proj.", "attn.proj.").replace("layer_norm1.", "norm1.")
                        .replace("layer_norm2.", "norm2."))
                meta[block + rest] = value
        elif key.startswith("neck.fpn_layers."):
            _, _, level, rest = key.split(".", 3)
            module, leaf = rest.rsplit(".", 1)
            name = NECK_NAMES.get((int(level), module), {"proj1": "conv_1x1", "proj2": "conv_3x3"}.get(module))
            meta[f"{convs}{level}.{name}.{leaf}"] = value
    for index in range(config.num_hidden_layers):
        length = GRID_1008**2 if index in config.global_attn_indexes else WINDOW**2
        meta[f"{trunk}blocks.{index}.attn.freqs_cis"] = torch.zeros(length, 32, dtype=torch.complex64)
    return meta


@pytest.fixture(scope="module")
def one_sam3_two_layouts(tmp_path_factory):
    from transformers import Sam3Model

    torch.manual_seed(0)
    model = Sam3Model(tiny_sam3_config(hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                                       num_attention_heads=1)).eval()
    root = tmp_path_factory.mktemp("sam3")
    model.save_pretrained(root / "transformers")
    meta = meta_vision_layout(model)
    meta["tracker.maskmem_tpos_enc"] = torch.zeros(3)  # sam3.pt also holds the tracker: not ours
    torch.save({"model": meta}, root / "sam3.pt")
    return root / "transformers", root / "sam3.pt"


def test_sam3_pt_teacher_equals_transformers_teacher(one_sam3_two_layouts):
    directory, checkpoint = one_sam3_two_layouts
    from_directory = load_teacher(directory, image_size=504)
    from_checkpoint = load_teacher(checkpoint, image_size=504)
    config = from_checkpoint.vision_model.config.backbone_config
    assert (config.window_size, list(config.global_attn_indexes), config.num_hidden_layers) == (WINDOW, [1], 3)
    pixels = torch.randn(2, 3, 504, 504, generator=torch.Generator().manual_seed(1))
    expected = from_directory.encode(pixels)
    assert expected.shape == (2, 256, 18, 18)
    assert torch.allclose(from_checkpoint.encode(pixels), expected, atol=1e-5)
    assert from_checkpoint.identity.startswith("sam3.pt:")


def test_sam3_pt_without_vit_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "sam3.pt"
    torch.save({"detector.transformer.decoder.query_embed.weight": torch.zeros(4, 8)}, path)
    with pytest.raises(ValueError, match="sam3.pt"):
        load_teacher(path)


def test_cache_teacher_with_an_unreadable_sam3_pt_is_one_error_line(tmp_path, capsys):
    from training.cache_teacher import main

    bad = tmp_path / "sam3.pt"
    bad.write_bytes(b"not a checkpoint")
    # A valid one-video SA-V root (an empty one is refused first, naming the folder).
    generate_dataset(tmp_path / "sav", 1, seed=4, val_fraction=0.0,
                     scene_config=SceneConfig(frame_sizes=((64, 48),), min_frames=5, max_frames=5))
    assert main(["--sav-root", str(tmp_path / "sav"), "--out", str(tmp_path / "cache"), "--teacher", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "sam3.pt" in err[0]
    assert not (tmp_path / "cache").exists()
