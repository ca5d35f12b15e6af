"""LSeg treats labels as a set: order and extra labels never change a label's own logits."""
from __future__ import annotations

import pytest
import torch

from lang_seg_ros.model import build_model

LABELS = ["floor", "wall", "person", "chair", "other"]


def assert_same_up_to_rounding(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal up to float rounding: BLAS kernels may sum a row in a different order depending on
    where it sits in a matrix (seen on AMX CPUs), so exact bit equality is not a property of the
    model but of the kernel; a label's logits must not change beyond rounding."""
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def logits(model, images, labels):
    with torch.no_grad():
        return model(images, model.encode_text(labels))


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_permuting_labels_permutes_logit_channels_exactly(tiny_model, images):
    order = [3, 0, 4, 1, 2]
    base = logits(tiny_model, images, LABELS)
    permuted = logits(tiny_model, images, [LABELS[i] for i in order])
    assert_same_up_to_rounding(permuted, base[:, order])


def test_adding_a_label_leaves_the_other_labels_logits_unchanged(tiny_model, images):
    base = logits(tiny_model, images, LABELS[:3])
    more = logits(tiny_model, images, LABELS)
    assert_same_up_to_rounding(more[:, :3], base)


@pytest.mark.parametrize("block_type", ["depthwise", "bottleneck"])
@pytest.mark.parametrize("activation", ["relu", "lrelu", "tanh"])
@pytest.mark.parametrize("depth", [1, 3])
def test_spatial_regularisation_keeps_permutation_equivariance(images, block_type, activation, depth):
    torch.manual_seed(0)
    model = build_model("lseg_tiny", block_type=block_type, block_depth=depth, block_activation=activation).eval()
    order = [4, 2, 0, 3, 1]
    base = logits(model, images, LABELS)
    assert_same_up_to_rounding(logits(model, images, [LABELS[i] for i in order]), base[:, order])


def test_spatial_regularisation_follows_the_published_blocks(tiny_model):
    """Depth-1 bottleneck = conv(x) + max over labels, no activation; depthwise = conv(x)."""
    from lang_seg_ros.model.spatial_regularization import SpatialRegularization

    x = torch.randn(2, 4, 8, 8)
    for block_type in ("bottleneck", "depthwise"):
        block = SpatialRegularization(block_type, depth=2, activation="tanh")
        conv = block.depthwise.depthwise
        per_label = torch.cat([conv(x[:, i : i + 1]) for i in range(4)], dim=1)
        extra = x.amax(dim=1, keepdim=True) if block_type == "bottleneck" else 0
        first = torch.tanh(per_label + extra)
        second = torch.cat([conv(first[:, i : i + 1]) for i in range(4)], dim=1)
        second = second + (first.amax(dim=1, keepdim=True) if block_type == "bottleneck" else 0)
        torch.testing.assert_close(block(x), second)


@pytest.mark.parametrize("block", [{}, {"block_type": "bottleneck", "block_depth": 2, "block_activation": "lrelu"}])
def test_folded_head_equals_normalised_embeddings_times_labels(images, block):
    """forward() folds the 1x1 head into the labels; it must equal the paper's computation."""
    torch.manual_seed(0)
    model = build_model("lseg_tiny", **block).eval()
    text = model.encode_text(LABELS)
    with torch.no_grad():
        reference = model.label_logits(model.encode_image(images), text)
        folded = model.decoded_logits(model.decode(images), text)
    torch.testing.assert_close(folded, reference, atol=1e-4, rtol=1e-5)
