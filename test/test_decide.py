"""The label decision on the device (lang_seg_ros/inference/decide.py) against the published rule:
upsample the stride-2 logits x2 (align_corners), crop, resize to the image, then argmax / softmax."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lang_seg_ros.inference.decide import decide_full, decide_stride2
from lang_seg_ros.model.lseg import upsample_logits

CAMVID_VAL = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "camvid" / "val"


def published(logits: torch.Tensor, work: tuple[int, int], out: tuple[int, int]):
    """The published rule in float64: (label map, confidence, margin between the two best labels)."""
    def expand(chunk):
        full = upsample_logits(chunk.double())[:, :, : work[0], : work[1]]
        return full if tuple(full.shape[-2:]) == out else F.interpolate(full, out, mode="bilinear", align_corners=True)

    full = expand(logits[None])[0]
    top = full.topk(min(2, full.shape[0]), dim=0).values
    margin = top[0] - top[1] if top.shape[0] > 1 else torch.full_like(top[0], float("inf"))
    label, confidence = decide_full([logits[None]], lambda chunk: expand(chunk))
    return label, confidence.float(), margin


def assert_same_labels(label, exact_label, margin) -> None:
    """Equal wherever the two best labels are not tied to float32 rounding (margin 1e-4)."""
    clear = margin > 1e-4
    assert bool(clear.float().mean() > 0.99)
    assert torch.equal(label[clear], exact_label.to(torch.int32)[clear])


def smooth_logits(n: int, h2: int, w2: int, seed: int) -> torch.Tensor:
    """Random logits with spatial structure (label regions with borders), temperature-like scale."""
    noise = torch.randn(1, n, h2, w2, generator=torch.Generator().manual_seed(seed)) * 3
    return F.avg_pool2d(F.pad(noise, (3, 3, 3, 3), mode="replicate"), 7, 1)[0] * 4


@pytest.mark.parametrize("n, grid, work, out", [
    (20, (96, 120), (180, 240), (180, 240)),   # working size = image size: one resampling
    (7, (48, 64), (90, 120), (300, 400)),      # the image larger than the working size
    (150, (40, 50), (80, 100), (33, 45)),      # smaller, many labels
    (2, (16, 16), (30, 32), (30, 32)),
])
def test_labels_equal_the_published_argmax_and_confidence_is_a_close_lower_bound(n, grid, work, out):
    logits = smooth_logits(n, *grid, seed=n)
    label, confidence = decide_stride2(logits, work, out)
    exact_label, exact_confidence, margin = published(logits, work, out)
    assert label.shape == out and label.dtype == torch.int32
    assert_same_labels(label, exact_label, margin)
    assert bool((confidence <= exact_confidence + 1e-4).all())
    assert float((confidence - exact_confidence).abs().mean()) < 0.02


def test_below_the_threshold_confidence_is_exact_so_no_pixel_is_dropped_by_the_approximation():
    logits = smooth_logits(9, 40, 50, seed=5)
    _, exact_confidence, _ = published(logits, (80, 100), (80, 100))
    _, approximate = decide_stride2(logits, (80, 100), (80, 100))
    _, confidence = decide_stride2(logits, (80, 100), (80, 100), exact_below=0.5)
    assert bool(((approximate < 0.5) != (exact_confidence < 0.5)).any()), "the test should exercise the fix"
    low = confidence < 0.5
    torch.testing.assert_close(confidence[low], exact_confidence[low], atol=1e-4, rtol=0)
    assert torch.equal(low, exact_confidence < 0.5) or int((low != (exact_confidence < 0.5)).sum()) <= 2


@pytest.mark.parametrize("exact_below", [0.0, 1.1])  # 1.1: every pixel takes the exact (border) path
def test_every_logits_layout_gives_the_same_answer_and_planes_are_never_transposed_whole(monkeypatch, exact_below):
    from lang_seg_ros.inference import decide

    logits = smooth_logits(12, 30, 40, seed=3)  # an exported graph's (N, h, w): read as planes
    labels_last = logits.permute(1, 2, 0).contiguous().permute(2, 0, 1)  # as LSeg.decoded_logits returns them
    rows_first = logits.permute(1, 0, 2).contiguous().permute(1, 0, 2)  # neither layout: torch's strided copy
    transposed = []
    real_transpose = decide.cv2.transpose
    monkeypatch.setattr(decide.cv2, "transpose", lambda a, **kw: transposed.append(a.shape) or real_transpose(a, **kw))
    monkeypatch.setattr(decide, "_BLOCK_ELEMENTS", 12 * 100)  # 12 blocks of 100 cells
    decided = []  # the plane-wise per-cell pass: the shapes of the planes it read
    real_decide_planes = decide._decide_planes
    monkeypatch.setattr(decide, "_decide_planes", lambda planes, *a: decided.append(planes.shape)
                        or real_decide_planes(planes, *a))
    a = decide_stride2(logits, (60, 80), (60, 80), exact_below=exact_below)
    assert decided[:12] == [(12, 100)] * 12  # the per-cell pass: the caller's planes, block by block ...
    assert (12, 100) not in transposed  # ... read where they are (border pixels come after)
    if exact_below == 0:  # border pixels read their taps' cells only (at 1.1 every cell is one)
        assert (12, 30 * 40) not in transposed
    for other in (labels_last, rows_first):
        b = decide_stride2(other, (60, 80), (60, 80), exact_below=exact_below)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_many_labels_are_decided_row_by_row_and_agree_with_the_planes(monkeypatch):
    """Past `_PLANE_LABELS` the per-cell pass reads label rows (numpy's argmax is vectorised
    there); both passes give one answer."""
    from lang_seg_ros.inference import decide

    logits = smooth_logits(60, 30, 40, seed=4)
    decided = []
    real_decide_planes = decide._decide_planes
    monkeypatch.setattr(decide, "_decide_planes", lambda planes, *a: decided.append(planes.shape)
                        or real_decide_planes(planes, *a))
    rows = decide_stride2(logits, (60, 80), (60, 80))
    assert decided == []
    monkeypatch.setattr(decide, "_PLANE_LABELS", 60)
    planes = decide_stride2(logits, (60, 80), (60, 80))
    assert decided
    assert torch.equal(rows[0], planes[0])
    torch.testing.assert_close(rows[1], planes[1], rtol=0, atol=1e-6)


@pytest.mark.skipif(not CAMVID_VAL.is_dir(), reason="CamVid val is not in ../shared/datasets")
def test_on_a_real_street_frame_with_the_default_model():
    """Real logits: identical label maps, confidence within a few hundredths (p99)."""
    import cv2

    from lang_seg_ros.inference import Segmenter
    from lang_seg_ros.inference.preprocess import normalize, pad_bottom_right

    segmenter = Segmenter(device="cpu")
    labels = segmenter.prepare("sky, building, pole, road, pavement, tree, sign symbol, fence, car, pedestrian, "
                               "bicyclist")
    image = cv2.imread(str(sorted(CAMVID_VAL.glob("*.png"))[7]))
    with torch.inference_mode():
        x = normalize(image, segmenter.model.config.mean, segmenter.model.config.std, segmenter.device, "bgr")
        decoded = segmenter.model.decode(pad_bottom_right(x, 384, 480, segmenter._fill))
        logits = segmenter.model.decoded_logits(decoded, folded=labels.folded)[0]
        label, confidence = decide_stride2(logits, (360, 480), (360, 480))
        exact_label, exact_confidence, margin = published(logits, (360, 480), (360, 480))
    assert_same_labels(label, exact_label, margin)
    error = (confidence - exact_confidence).abs().numpy()
    assert np.quantile(error, 0.99) < 0.05 and error.mean() < 0.01


@pytest.mark.parametrize("device", ["cpu", "meta"])  # meta stands for an accelerator: the answer stays there
def test_a_single_label_wins_everywhere_with_full_confidence(device):
    logits = torch.randn(1, 6, 8, device=device)
    label, confidence = decide_stride2(logits, (11, 15), (20, 30))
    assert label.shape == (20, 30) and label.dtype == torch.int32 and label.device.type == device
    assert confidence.shape == (20, 30) and confidence.dtype == torch.float32 and confidence.device.type == device
    if device == "cpu":
        assert bool((label == 0).all()) and bool((confidence == 1).all())


def reference_best_and_log_probability(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's own max (first of equal maxima) and log-softmax of it, in one piece."""
    value, index = logits.max(dim=1)
    return index, -(logits - value[:, None]).exp().sum(dim=1).log()


PASSES = pytest.mark.parametrize("labels", [9, 70])  # the plane-wise pass, the row-wise one (_PLANE_LABELS)


@PASSES
@pytest.mark.parametrize("block_elements", [1 << 16, 64, 3])  # one block; many; fewer than a row (one row each)
def test_the_per_cell_decision_in_blocks_equals_torch_max_and_log_softmax_with_ties(monkeypatch, block_elements,
                                                                                      labels):
    from lang_seg_ros.inference import decide

    monkeypatch.setattr(decide, "_BLOCK_ELEMENTS", block_elements)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randint(0, 4, (257, labels), generator=generator).float()  # many rows with tied maxima
    logits[5] = 2.0  # a row of one value: label 0
    index, log_probability = decide._best_and_log_probability(logits)
    expected_index, expected_log = reference_best_and_log_probability(logits)
    assert index.dtype == torch.int64 and int(index[5]) == 0
    assert torch.equal(index, expected_index)
    torch.testing.assert_close(log_probability, expected_log, rtol=0, atol=1e-6)


@PASSES
@pytest.mark.parametrize("block_elements", [1 << 16, 60])
def test_logits_past_float32_exponentials_are_decided_exactly(monkeypatch, block_elements, labels):
    """The row-wise pass takes the exponentials of the logits themselves (LSeg's are within
    +-14.3): rows whose best logit would overflow (> 88), underflow or lose precision (< -70) or
    is NaN are decided again with the best subtracted, in whichever block they fall, and the rows
    around them stay as they were. The plane-wise pass always subtracts the best."""
    from lang_seg_ros.inference import decide

    monkeypatch.setattr(decide, "_BLOCK_ELEMENTS", block_elements)
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(300, labels, generator=generator) * 5
    logits[7] += 1000.0  # exp overflows
    logits[150] -= 1000.0  # exp underflows to zero
    logits[151] *= 40  # best ~ +-100: out of the safe range too
    logits[299] -= 110.0  # exp(best) a subnormal float: a few bits of precision left
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an expected overflow is not a warning in the node's log
        index, log_probability = decide._best_and_log_probability(logits)
    expected_index, expected_log = reference_best_and_log_probability(logits)
    assert torch.equal(index, expected_index)
    assert bool(torch.isfinite(log_probability).all())
    torch.testing.assert_close(log_probability, expected_log, rtol=0, atol=1e-6)
    logits[42, 3] = float("nan")
    logits[43, 1] = float("inf")  # inf - inf: no warning either, an answer that says so
    logits[44, 2] = torch.finfo(torch.float32).max
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        index, log_probability = decide._best_and_log_probability(logits)
    assert bool(torch.isnan(log_probability[42]))  # not silently a probability ...
    assert 0 <= int(index[42]) < labels  # ... and still a label of the set
    assert int(index[43]) == 1 and int(index[44]) == 2
    assert not bool(log_probability[44] > 0)


def test_the_plane_wise_pass_ends_at_its_label_count(monkeypatch):
    """`_PLANE_LABELS` labels are decided plane by plane, one more row by row."""
    from lang_seg_ros.inference import decide

    decided = []
    real_decide_planes = decide._decide_planes
    monkeypatch.setattr(decide, "_decide_planes", lambda planes, *a: decided.append(planes.shape[0])
                        or real_decide_planes(planes, *a))
    for labels in (decide._PLANE_LABELS, decide._PLANE_LABELS + 1):
        logits = torch.randn(500, labels, generator=torch.Generator().manual_seed(labels))
        index, log_probability = decide._best_and_log_probability(logits)
        expected_index, expected_log = reference_best_and_log_probability(logits)
        assert torch.equal(index, expected_index)
        torch.testing.assert_close(log_probability, expected_log, rtol=0, atol=1e-6)
    assert set(decided) == {decide._PLANE_LABELS}


def test_opencv_transposes_like_torch_for_both_planes_the_decision_returns():
    from lang_seg_ros.inference import decide

    for plane in (torch.arange(35, dtype=torch.int32).view(5, 7), torch.randn(6, 4)):
        assert torch.equal(decide._transposed(plane), plane.t())
    strided = torch.randn(6, 8)[:, ::2]  # not contiguous: torch's own copy
    assert torch.equal(decide._transposed(strided), strided.t())


def test_the_per_cell_decision_on_an_accelerator_stays_there():
    """The meta device stands in for a GPU: torch's argmax instead of numpy's, answers on the device."""
    import warnings

    from lang_seg_ros.inference import decide

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every block's answer fits its slice: none is resized
        index, log_probability = decide._best_and_log_probability(torch.randn(700, 150, device="meta"))
    assert index.device.type == "meta" and index.dtype == torch.int64 and index.shape == (700,)
    assert log_probability.device.type == "meta" and log_probability.shape == (700,)
