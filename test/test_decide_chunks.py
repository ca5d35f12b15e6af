"""Label decisions made in chunks (lang_seg_ros/inference/decide.py) equal the decision made at once.

Both paths bound memory by splitting work: `decide_full` (multi-scale evaluation) takes the labels a
chunk at a time, `decide_stride2` (single scale) interpolates the border pixels a chunk at a time.
At test sizes neither splits unless told to, so each test here makes the chunks small and checks
that the winner of a later chunk keeps its own label id (the chunk's offset added).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lang_seg_ros.inference import Segmenter
from lang_seg_ros.inference import decide as decide_module
from lang_seg_ros.inference import segmenter as segmenter_module
from lang_seg_ros.inference.decide import decide_full, decide_stride2


def full_logits(n: int, height: int, width: int, seed: int) -> torch.Tensor:
    """(1, n, H, W) logits whose winners are spread over all labels (every chunk wins somewhere)."""
    return torch.randn(1, n, height, width, generator=torch.Generator().manual_seed(seed)) * 3


@pytest.mark.parametrize("sizes", [[1] * 7, [3, 4], [2, 2, 3], [6, 1], [1, 6]])
def test_full_resolution_decision_in_label_chunks_equals_the_decision_over_all_labels(sizes):
    logits = full_logits(sum(sizes), 20, 30, seed=len(sizes))
    label, confidence = decide_full(logits.split(sizes, dim=1), lambda chunk: chunk)
    probabilities = logits[0].softmax(0)
    expected = probabilities.argmax(0)
    # the test must exercise every chunk, the later ones above all (their ids need the offset)
    assert set(expected.unique().tolist()) == set(range(sum(sizes)))
    assert torch.equal(label, expected)
    torch.testing.assert_close(confidence, probabilities.amax(0), atol=1e-6, rtol=1e-5)


def test_a_chunk_that_wins_nowhere_changes_nothing_and_ties_keep_the_first_label():
    logits = full_logits(5, 8, 9, seed=1)
    weak = torch.full((1, 3, 8, 9), -1e4)
    label, confidence = decide_full([logits[:, :2], weak, logits[:, 2:]], lambda chunk: chunk)
    expected = logits[0].argmax(0)
    assert torch.equal(label, torch.where(expected >= 2, expected + 3, expected))
    torch.testing.assert_close(confidence, logits[0].softmax(0).amax(0), atol=1e-6, rtol=1e-5)
    # exact ties between chunks: the earlier label wins, as argmax over all labels does
    tied = torch.zeros(1, 1, 4, 4)
    label, confidence = decide_full([tied, tied, tied], lambda chunk: chunk)
    assert torch.equal(label, torch.zeros(4, 4, dtype=label.dtype))
    torch.testing.assert_close(confidence, torch.full((4, 4), 1 / 3))


def test_expand_is_applied_to_each_chunk_before_the_decision():
    """`expand` (the multi-scale path's upsampling) runs per chunk; its output size is the answer's."""
    logits = full_logits(6, 5, 7, seed=2)
    seen = []

    def expand(chunk):
        seen.append(chunk.shape[1])
        return chunk.repeat_interleave(2, dim=2).repeat_interleave(3, dim=3)

    label, confidence = decide_full(logits.split([2, 4], dim=1), expand)
    assert seen == [2, 4]
    expected = expand(logits)[0]
    assert label.shape == (10, 21)
    assert torch.equal(label, expected.argmax(0))
    torch.testing.assert_close(confidence, expected.softmax(0).amax(0), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("chunk_elements", [1, 40, 333])
def test_border_pixels_interpolated_in_chunks_equal_one_pass(monkeypatch, chunk_elements):
    """Single scale: the exact pass over border pixels, split into many chunks, changes nothing."""
    grid = torch.nn.functional.avg_pool2d(full_logits(9, 24, 30, seed=4), 3, 1, 1)[0] * 4
    whole = decide_stride2(grid, (45, 60), (70, 90), exact_below=0.6)
    monkeypatch.setattr(decide_module, "_CHUNK_ELEMENTS", chunk_elements)
    chunked = decide_stride2(grid, (45, 60), (70, 90), exact_below=0.6)
    assert torch.equal(chunked[0], whole[0])
    torch.testing.assert_close(chunked[1], whole[1], atol=1e-6, rtol=0)
    # and it really is the label set's argmax where the two best labels are apart
    assert int((whole[0] >= 5).sum()) > 0


@pytest.fixture
def rgb():
    return (np.random.default_rng(5).random((40, 56, 3)) * 255).astype(np.uint8)


def test_the_multiscale_segmenter_decides_many_labels_in_chunks_with_the_same_result(tiny_model, rgb, monkeypatch):
    """The multi-scale path's label chunks (segmenter._CHUNK_ELEMENTS): a few labels per chunk give
    the label map and confidence of one chunk, and the later chunks' labels keep their ids."""
    labels = [f"thing {i}" for i in range(24)]
    segmenter = Segmenter(tiny_model, device="cpu", scales=(0.5,), flip=False)
    whole = segmenter.segment(rgb, labels=labels)
    chunk_counts = []
    real_decide_full = segmenter_module.decide_full

    def counting(chunks, expand):
        chunks = list(chunks)
        chunk_counts.append(len(chunks))
        return real_decide_full(chunks, expand)

    monkeypatch.setattr(segmenter_module, "decide_full", counting)
    monkeypatch.setattr(segmenter_module, "_CHUNK_ELEMENTS", 40 * 56 * 2)  # 2 labels per chunk
    chunked = segmenter.segment(rgb, labels=labels)
    assert chunk_counts == [12]
    assert (whole.label_map >= 2).any(), "the test needs a winner outside the first chunk"
    np.testing.assert_array_equal(chunked.label_map, whole.label_map)
    np.testing.assert_allclose(chunked.confidence, whole.confidence, rtol=1e-5)


def test_the_softmax_normaliser_in_many_blocks_equals_one_block(monkeypatch):
    """`_best_and_log_probability` runs in row blocks through cached buffers: blocks of 3 rows (the
    last one short) give what one block gives, and both are the argmax and
    -log(sum(exp(logits - max)))."""
    import lang_seg_ros.inference.decide as decide

    logits = torch.randn(7, 9, 11, generator=torch.Generator().manual_seed(4)) * 4
    one_label, one_conf = decide.decide_stride2(logits, (17, 21), (30, 40))
    table = logits.permute(1, 2, 0).reshape(-1, 7)
    best, best_index = table.max(1)
    whole_index, whole = decide._best_and_log_probability(table)
    torch.testing.assert_close(whole, best - torch.logsumexp(table, 1))
    assert torch.equal(whole_index, best_index)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every block writes where it should: no output is resized
        monkeypatch.setattr(decide, "_BLOCK_ELEMENTS", 3 * 7)  # 99 rows: 33 blocks of 3
        index, log_probability = decide._best_and_log_probability(table * 2)
        torch.testing.assert_close(log_probability, best * 2 - torch.logsumexp(table * 2, 1))
        assert torch.equal(index, best_index)
        monkeypatch.setattr(decide, "_BLOCK_ELEMENTS", 4 * 7)  # 24 blocks of 4 and a last one of 3
        torch.testing.assert_close(decide._best_and_log_probability(table)[1], whole)
        blocks_label, blocks_conf = decide.decide_stride2(logits, (17, 21), (30, 40))
    assert torch.equal(blocks_label, one_label)
    torch.testing.assert_close(blocks_conf, one_conf)
