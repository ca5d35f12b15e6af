"""The shared fixtures cannot leak from one test into another (test/conftest.py).

The leak this guards against: `Segmenter(model)` converts the model's image branch to channels_last
in place (and casts it for half precisions), which changes float rounding. With one session-wide
tiny model, a test that wrapped it in a Segmenter (test_referring.py) made a later bit-exact
comparison (test_checkpoint.py) fail, depending on the order the tests ran in.
"""
from __future__ import annotations

import torch

from lang_seg_ros.inference import Segmenter


def _channels_last(model) -> bool:
    """Whether the decoder's 3x3 convolutions are laid out channels_last (as a Segmenter leaves them)."""
    weights = [p for p in model.scratch.parameters() if p.ndim == 4 and p.shape[-1] > 1]
    assert weights
    return all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in weights)


def test_each_test_gets_its_own_tiny_model(tiny_model, _pristine_tiny_model):
    assert tiny_model is not _pristine_tiny_model
    own = {id(p) for p in tiny_model.parameters()}
    assert own.isdisjoint(id(p) for p in _pristine_tiny_model.parameters())
    assert not tiny_model.training


def test_a_segmenter_changes_its_model_in_place_but_never_the_shared_one(tiny_model, _pristine_tiny_model,
                                                                         model_snapshots):
    model_snapshot, same_snapshot = model_snapshots
    before = model_snapshot(_pristine_tiny_model)
    assert not _channels_last(tiny_model)
    Segmenter(tiny_model, device="cpu", precision="bf16")
    assert _channels_last(tiny_model)  # the cause of the old leak: the caller's model is changed
    assert next(tiny_model.pretrained.parameters()).dtype == torch.bfloat16
    assert not _channels_last(_pristine_tiny_model)
    assert same_snapshot(model_snapshot(_pristine_tiny_model), before)


def test_the_copies_compute_exactly_what_the_shared_model_does(tiny_model, _pristine_tiny_model):
    images = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = tiny_model(images, tiny_model.encode_text(["road", "car"]))
        shared = _pristine_tiny_model(images, _pristine_tiny_model.encode_text(["road", "car"]))
    assert torch.equal(ours, shared)


def test_the_snapshot_sees_values_layout_dtype_and_mode(tiny_model, model_snapshots):
    model_snapshot, same_snapshot = model_snapshots
    before = model_snapshot(tiny_model)
    assert same_snapshot(model_snapshot(tiny_model), before)
    import copy

    for change in (lambda m: m.train(),
                   lambda m: m.scratch.to(memory_format=torch.channels_last),
                   lambda m: m.scratch.half(),
                   lambda m: next(m.parameters()).data.add_(1e-3),
                   lambda m: next(m.parameters()).requires_grad_(not next(m.parameters()).requires_grad)):
        changed = copy.deepcopy(tiny_model)
        change(changed)
        assert not same_snapshot(model_snapshot(changed), before)
