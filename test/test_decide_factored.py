"""The label decision computing LSeg's folded head itself (`FactoredLogits`): a frame's logits are
never written whole, and the answers are those of the written logits."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lang_seg_ros.inference import Segmenter
from lang_seg_ros.inference import decide
from lang_seg_ros.inference.decide import FactoredLogits, decide_stride2
from lang_seg_ros.model import build_model

CAMVID_VAL = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "camvid" / "val"


def factored_and_written(n: int, grid: tuple[int, int], seed: int = 0, round_to=None):
    """Random smooth fused features (cells, 8) and a label set's folded weights, as `FactoredLogits`
    and as the (N, h2, w2) labels-last logits the torch backend writes (`LSeg.decoded_logits`)."""
    g = torch.Generator().manual_seed(seed)
    h2, w2 = grid
    noise = torch.randn(1, 8, h2, w2, generator=g)
    features = F.avg_pool2d(F.pad(noise, (2, 2, 2, 2), mode="replicate"), 5, 1)[0].permute(1, 2, 0).reshape(-1, 8)
    weight, bias = torch.randn(n, 8, generator=g) * 4, torch.randn(n, generator=g)
    scale = torch.rand(h2 * w2, generator=g) + 0.5
    factored = FactoredLogits(features.contiguous(), weight, bias, scale, grid, round_to)
    written = torch.addmm(bias, features, weight.t()) * scale[:, None]
    if round_to is not None:
        written = written.to(round_to).float()
    return factored, written.view(h2, w2, n).permute(2, 0, 1)


@pytest.mark.parametrize("n", [2, 20, 150])
@pytest.mark.parametrize("exact_below", [0.0, 0.6])  # 0.6: many pixels take the exact (border) path
def test_factored_logits_decide_like_the_written_ones(n, exact_below, monkeypatch):
    monkeypatch.setattr(decide, "_BLOCK_ELEMENTS", 512)  # many blocks, one a partial one
    factored, written = factored_and_written(n, (37, 45))
    label, confidence = decide_stride2(factored, (70, 90), (100, 130), exact_below=exact_below)
    want_label, want_confidence = decide_stride2(written, (70, 90), (100, 130), exact_below=exact_below)
    assert (label == want_label).float().mean() > 0.9999
    torch.testing.assert_close(confidence, want_confidence, atol=1e-5, rtol=1e-5)


def test_border_pixels_of_factored_logits_are_decided_from_interpolated_features(monkeypatch):
    """At fp32 a border pixel's logits come from its taps' features mixed (one F-wide row), never
    from its cells' N logits gathered; in chunks of a few pixels as in one pass; also with a scale
    of 1 everywhere (the mixing weights are then the bilinear ones alone)."""
    factored, written = factored_and_written(150, (20, 24), seed=3)
    unscaled = FactoredLogits(factored.features * factored.scale[:, None], factored.weight, factored.bias,
                              torch.ones_like(factored.scale), factored.grid)
    unscaled_written = torch.addmm(unscaled.bias, unscaled.features, unscaled.weight.t()).view(20, 24, 150)
    cases = [(logits, decide_stride2(reference, (38, 46), (50, 61), exact_below=0.6))
             for logits, reference in [(factored, written), (unscaled, unscaled_written.permute(2, 0, 1))]]
    monkeypatch.setattr(decide, "_cell_vectors", lambda *a: pytest.fail("cells' logits gathered"))
    for chunk_elements in (1 << 22, 8 * 5):  # 5 pixels of 8 features per chunk
        monkeypatch.setattr(decide, "_CHUNK_ELEMENTS", chunk_elements)
        for logits, (want_label, want_confidence) in cases:
            label, confidence = decide_stride2(logits, (38, 46), (50, 61), exact_below=0.6)
            assert (label == want_label).float().mean() > 0.9999
            torch.testing.assert_close(confidence, want_confidence, atol=1e-5, rtol=1e-5)


def test_cell_rows_by_slice_and_by_index_are_the_written_rows():
    factored, written = factored_and_written(9, (6, 7))
    table = written.permute(1, 2, 0).reshape(-1, 9)
    torch.testing.assert_close(factored.rows(slice(5, 17)), table[5:17])
    cells = torch.tensor([41, 0, 3, 3])
    torch.testing.assert_close(factored.rows(cells), table[cells])
    out = torch.empty(12, 9)
    assert factored.rows(slice(5, 17), out=out).data_ptr() == out.data_ptr()


def test_a_low_precision_branch_decides_on_logits_rounded_as_the_written_path_returns_them():
    factored, written = factored_and_written(20, (30, 40), round_to=torch.bfloat16)
    label, _ = decide_stride2(factored, (60, 80), (60, 80))
    want, _ = decide_stride2(written, (60, 80), (60, 80))
    assert torch.equal(label, want)
    assert all(torch.equal(row, row.to(torch.bfloat16).float()) for row in factored.rows(slice(0, 50)))


def test_small_label_sets_write_their_logits_large_ones_never(tiny_model, monkeypatch):
    """Logits that fit the caches are written (cheaper there); past `factor_above_bytes` never."""
    segmenter = Segmenter(tiny_model, device="cpu", working_size=64)  # 64x64 padded: 4 KiB a label
    written = []
    original = segmenter.backend.logits
    monkeypatch.setattr(segmenter.backend, "logits", lambda *a: written.append(1) or original(*a))
    segmenter.backend.factor_above_bytes = 64 * 64 * 3  # three labels' worth
    segmenter.segment(np.zeros((48, 64, 3), np.uint8), labels=["floor", "mug"])
    assert written == [1]
    segmenter.segment(np.zeros((48, 64, 3), np.uint8), labels=["floor", "mug", "table"])
    assert written == [1]


def test_the_segmenter_decides_from_the_features_only_where_the_head_is_linear(tiny_model, monkeypatch):
    segmenter = Segmenter(tiny_model, device="cpu", working_size=64)
    segmenter.backend.factor_above_bytes = 0
    called = []
    original = segmenter.backend.factored_logits
    monkeypatch.setattr(segmenter.backend, "factored_logits", lambda *a: called.append(1) or original(*a))
    monkeypatch.setattr(segmenter.backend, "logits", lambda *a: pytest.fail("the logits were written whole"))
    segmenter.segment(np.zeros((48, 64, 3), np.uint8), labels=["floor", "mug"])
    assert called == [1]
    # a spatial-regularisation block acts on whole logit maps: those are written
    blocked = Segmenter(build_model("lseg_tiny", block_type="bottleneck", block_depth=1), device="cpu",
                        working_size=64)
    blocked.backend.factor_above_bytes = 0
    assert not blocked.model.head_is_linear and blocked.backend.factored_logits(torch.zeros(1, 3, 64, 64), []) is None
    assert blocked.segment(np.zeros((48, 64, 3), np.uint8), labels=["floor", "mug"]).label_map.shape == (48, 64)


@pytest.mark.skipif(not CAMVID_VAL.is_dir(), reason="needs ../shared/datasets/camvid")
@pytest.mark.parametrize("count", [11, 150])
def test_the_default_model_on_a_camvid_frame_decides_as_from_written_logits(count):
    segmenter = Segmenter(device="cpu")
    segmenter.backend.factor_above_bytes = 0  # whatever the label count
    written = Segmenter(device="cpu")
    written.backend.factor_above_bytes = 1 << 62  # the path before: logits written whole
    words = ["sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car", "pedestrian",
             "bicyclist"]
    labels = (words + [f"object {i}" for i in range(count)])[:count]
    image = cv2.imread(str(sorted(CAMVID_VAL.glob("*.png"))[7]))
    a, b = segmenter.segment(image, "bgr", labels=labels), written.segment(image, "bgr", labels=labels)
    assert (a.label_map == b.label_map).mean() > 0.9999
    np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-5)


def test_a_bf16_segmenter_decides_on_the_logits_its_written_path_would_round(tiny_model):
    """The image branch at bf16 returns its logits in bf16: the decision from the features rounds
    each block the same way, so both paths give the same label map."""
    frames = [np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8) for seed in range(3)]
    labels = ["floor", "mug", "table", "wall", "person"]
    segmenter = Segmenter(tiny_model, device="cpu", working_size=64, precision="bf16")
    segmenter.backend.factor_above_bytes = 0
    for frame in frames:
        factored = segmenter.segment(frame, labels=labels)
        segmenter.backend.factor_above_bytes = 1 << 62  # written whole
        written = segmenter.segment(frame, labels=labels)
        segmenter.backend.factor_above_bytes = 0
        assert np.array_equal(factored.label_map, written.label_map)
        np.testing.assert_allclose(factored.confidence, written.confidence, atol=1e-6)
