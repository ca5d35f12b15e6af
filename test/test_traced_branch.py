"""The torch backend's image branch as traced graphs (`backends.graphs`): eager's features, one
graph per input shape, never stale weights, eager again whenever tracing cannot be trusted."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from lang_seg_ros.inference import Segmenter
from lang_seg_ros.inference.backends.graphs import TracedImageBranch
from lang_seg_ros.model import build_model


def bn_model() -> torch.nn.Module:
    """The tiny LSeg with batch norms in its decoder, their statistics far from the identity, so
    folding them into the convolutions changes the weights."""
    torch.manual_seed(0)
    model = build_model("lseg_tiny", use_bn=True).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model


def features(branch, images: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return branch(images)


def test_one_frozen_graph_per_shape_gives_eager_features():
    model = bn_model()
    branch = TracedImageBranch(model)
    for shape in [(1, 3, 64, 96), (2, 3, 64, 64), (1, 3, 64, 96)]:
        images = torch.randn(shape)
        torch.testing.assert_close(features(branch, images), features(model.decode, images), atol=1e-4, rtol=1e-4)
    assert len(branch._graphs) == 2 and branch.failed is None
    # frozen at fp32: the batch norms are folded into the convolutions
    graph = next(iter(branch._graphs.values()))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.scratch.modules())
    assert "batch_norm" not in str(graph.inlined_graph)


def test_bf16_graphs_are_traced_not_frozen_and_equal_eager_exactly():
    model = bn_model().to(torch.bfloat16)
    branch = TracedImageBranch(model, max_bytes=1)  # no weight copy: no budget needed
    images = torch.randn(1, 3, 64, 96, dtype=torch.bfloat16)
    assert torch.equal(features(branch, images), features(model.decode, images))
    assert "batch_norm" in str(next(iter(branch._graphs.values())).inlined_graph)


@pytest.mark.parametrize("change", ["optimizer step", "load_state_dict"])
def test_weights_changed_after_tracing_are_used_never_the_frozen_copy(change):
    model = bn_model()
    branch = TracedImageBranch(model)
    images = torch.randn(1, 3, 64, 96)
    before = features(branch, images)
    with torch.no_grad():
        if change == "optimizer step":
            model.scratch.layer1_rn.weight.mul_(-2.0)  # what a trainer between two validations does
        else:
            state = {k: v * 1.5 if k.startswith("scratch.") and v.is_floating_point() else v
                     for k, v in model.state_dict().items()}
            model.load_state_dict(state)
    after = features(branch, images)
    torch.testing.assert_close(after, features(model.decode, images), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(after, before, atol=1e-3)


def test_graphs_kept_while_their_weight_copies_fit_the_budget():
    model = bn_model()
    weight_bytes = sum(t.numel() * t.element_size()
                       for t in [*model.pretrained.parameters(), *model.pretrained.buffers(),
                                 *model.scratch.parameters(), *model.scratch.buffers()])
    one = TracedImageBranch(model, max_bytes=weight_bytes)
    for width in (64, 96, 128):
        features(one, torch.randn(1, 3, 64, width))
    assert [key[0] for key in one._graphs] == [(1, 3, 64, 128)]  # the most recent shape only
    none = TracedImageBranch(model, max_bytes=weight_bytes - 1)
    images = torch.randn(1, 3, 64, 96)
    assert torch.equal(features(none, images), features(model.decode, images))  # eager itself, no graph
    assert not none._graphs


def test_training_or_gradients_run_eager():
    model = bn_model()
    branch = TracedImageBranch(model)
    images = torch.randn(1, 3, 64, 96)
    with torch.enable_grad():
        out = branch(images)
    assert out.requires_grad and not branch._graphs
    model.train()
    features(branch, images)
    assert not branch._graphs


def test_a_model_tracing_cannot_handle_runs_eager_and_says_why_once(monkeypatch, caplog):
    model = bn_model()
    branch = TracedImageBranch(model)

    def untraceable(images):
        raise RuntimeError("data-dependent control flow")

    monkeypatch.setattr(branch, "_build", untraceable)
    images = torch.randn(1, 3, 64, 96)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            torch.testing.assert_close(features(branch, images), features(model.decode, images))
    assert branch.failed == "tracing failed: RuntimeError: data-dependent control flow"
    assert [r.getMessage() for r in caplog.records if "runs eager" in r.getMessage()] == [
        "the image branch runs eager from now on (tracing failed: RuntimeError: data-dependent control flow)"]


def branch_with_a_broken_graph() -> tuple[torch.nn.Module, TracedImageBranch, torch.Tensor]:
    """(model, branch, images): the branch's graph for `images` raises "kernel not supported"."""
    model = bn_model()
    branch = TracedImageBranch(model)
    images = torch.randn(1, 3, 64, 96)
    features(branch, images)

    def broken(images):
        raise RuntimeError("kernel not supported")

    branch._graphs[next(iter(branch._graphs))] = broken
    return model, branch, images


def test_a_graph_failing_at_run_time_falls_back_to_eager_for_good(caplog):
    model, branch, images = branch_with_a_broken_graph()
    with caplog.at_level(logging.WARNING):
        torch.testing.assert_close(features(branch, images), features(model.decode, images))
    assert branch.failed == "the traced graph failed: RuntimeError: kernel not supported" and not branch._graphs
    features(branch, images)
    assert not branch._graphs


def test_an_input_eager_rejects_too_raises_its_error_and_leaves_tracing_on(caplog):
    """A size that is not a multiple of 32 fails tracing and eager alike: the caller's error, not
    a reason to run eager for good."""
    model = bn_model()
    branch = TracedImageBranch(model)
    with caplog.at_level(logging.WARNING), pytest.raises(ValueError, match="multiples of 32"):
        features(branch, torch.randn(1, 3, 50, 96))
    assert branch.failed is None and not [r for r in caplog.records if "runs eager" in r.getMessage()]
    features(branch, torch.randn(1, 3, 64, 96))
    assert len(branch._graphs) == 1


def test_a_graph_and_eager_failing_alike_raise_and_keep_the_graphs(monkeypatch):
    """A run-time failure eager shares (the input's fault) is raised, not blamed on the graph."""
    model, branch, images = branch_with_a_broken_graph()
    graphs = dict(branch._graphs)

    def out_of_range(images):
        raise RuntimeError("out of range")

    monkeypatch.setattr(model, "decode", out_of_range)
    with pytest.raises(RuntimeError, match="out of range"):
        features(branch, images)
    assert branch.failed is None and branch._graphs == graphs


def test_segmenter_traces_by_default_and_gives_eager_label_maps(tiny_checkpoint):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (60, 90, 3), dtype=np.uint8) for _ in range(3)]
    labels = ["road", "car", "sky", "person"]
    traced = Segmenter(tiny_checkpoint, device="cpu", working_size=96)
    eager = Segmenter(tiny_checkpoint, device="cpu", working_size=96, trace=False)
    assert isinstance(traced.backend._decode, TracedImageBranch)
    assert not isinstance(eager.backend._decode, TracedImageBranch)
    for frame in frames:
        a, b = traced.segment(frame, labels=labels), eager.segment(frame, labels=labels)
        assert (a.label_map == b.label_map).mean() > 0.999
        np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-4)
    assert len(traced.backend._decode._graphs) == 1
