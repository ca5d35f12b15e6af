"""The networks have the official lang-seg state-dict layout, key for key and shape for shape."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lang_seg_ros.model import build_model, list_models, model_config
from lang_seg_ros.model.checkpoint import infer_official_config

DESIGN = Path(__file__).resolve().parents[2] / "shared" / "design"


def official_layout(name: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """key (without `net.`) -> (shape, dtype) from the official key lists in shared/design."""
    layout = {}
    for line in (DESIGN / name).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, dtype = line.split("\t")
        layout[key.removeprefix("net.")] = (tuple(int(v) for v in shape.strip("()").split(",") if v.strip()), dtype)
    return layout


def meta_model(name: str, **overrides):
    with torch.device("meta"):  # no memory, no init time: only names and shapes matter here
        return build_model(name, **overrides)


@pytest.mark.parametrize(
    "name, layout, overrides",
    [
        ("lseg_vitl16_384", "lseg-keys-vitl16_384.tsv", {}),
        ("lseg_vitb32_384", "lseg-keys-vitb32_384-headblock.tsv",
         {"block_type": "bottleneck", "block_depth": 2, "block_activation": "lrelu"}),
    ],
)
def test_state_dict_matches_official_layout(name, layout, overrides):
    official = official_layout(layout)
    state = meta_model(name, **overrides).state_dict()
    assert sorted(state) == sorted(official)
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: shape for k, (shape, _) in official.items()}


@pytest.mark.parametrize("name, layout", [("lseg_vitl16_384", "lseg-keys-vitl16_384.tsv"),
                                          ("lseg_vitb32_384", "lseg-keys-vitb32_384-headblock.tsv")])
def test_architecture_is_inferred_from_official_tensors(name, layout):
    tensors = {k: torch.empty(shape, device="meta") for k, (shape, _) in official_layout(layout).items()}
    overrides = {"block_type": "bottleneck", "block_depth": 3, "block_activation": "relu"} if "headblock" in layout else {}
    expected = model_config(name).replace(**overrides)
    assert infer_official_config(tensors, **overrides) == expected


def test_resnet101_variant_uses_torchvision_naming_and_imagenet_normalisation():
    model = meta_model("lseg_rn101")
    state = model.state_dict()
    assert tuple(state["scratch.layer4_rn.weight"].shape) == (256, 2048, 3, 3)
    assert "pretrained.layer1.0.weight" in state  # resnet.conv1 inside the stem group
    assert "pretrained.layer1.4.0.conv1.weight" in state  # resnet.layer1
    assert "pretrained.layer3.22.conv3.weight" in state  # 23 blocks: ResNet-101
    assert model.config.mean == pytest.approx((0.485, 0.456, 0.406))
    tensors = {k: torch.empty(v.shape, device="meta") for k, v in state.items()}
    assert infer_official_config(tensors) == model.config


def test_registry_lists_the_published_and_tiny_models():
    assert {"lseg_vitl16_384", "lseg_vitb32_384", "lseg_rn101", "lseg_tiny"} <= set(list_models())


def test_bad_config_fields_are_named():
    with pytest.raises(ValueError, match="no_such_field"):
        build_model("lseg_tiny", no_such_field=1)
    with pytest.raises(ValueError, match="block_type"):
        build_model("lseg_tiny", block_type="conv", block_depth=1)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("lseg_huge")


def test_forward_shapes_and_normalised_embeddings(tiny_model):
    images = torch.randn(2, 3, 64, 96)
    text = tiny_model.encode_text(["floor", "wall", "person"])
    assert text.shape == (3, 32)
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(3))
    with torch.no_grad():
        pixels = tiny_model.encode_image(images)
        logits = tiny_model(images, text)
    assert pixels.shape == (2, 32, 32, 48)
    torch.testing.assert_close(pixels.norm(dim=1), torch.ones(2, 32, 48))
    assert logits.shape == (2, 3, 64, 96)
    # Logits are cosine similarities times the fixed temperature 1/0.07.
    assert logits.abs().max() <= 1 / 0.07 + 1e-4


def test_input_size_must_be_a_multiple_of_32(tiny_model):
    with pytest.raises(ValueError, match="multiples of 32"):
        tiny_model(torch.randn(1, 3, 48, 64), tiny_model.encode_text(["a"]))


def test_position_embedding_resize_is_bilinear_without_antialias(tiny_model):
    backbone = tiny_model.pretrained
    grid = backbone.model.pos_embed[0, 1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, size=(2, 6), mode="bilinear", align_corners=False)
    resized = backbone.position_embedding(2, 6)
    torch.testing.assert_close(resized[0, 1:], expected.permute(0, 2, 3, 1).reshape(12, -1), rtol=0, atol=0)
    assert backbone.position_embedding(4, 4) is backbone.model.pos_embed  # identity at the trained size
