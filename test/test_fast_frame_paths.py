"""The per-frame steps made fast for the node (issue 21) give what the plain way gives.

Each fast path is compared with a short reference written the obvious way (numpy indexing,
one connected-components labelling per label with `np.bincount` statistics): regions,
their order, scores, boxes and centroids; colours of the overlay; BGR -> RGB; the lazily built
region map; and the one-thread decision leaves the thread count as it was.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from lang_seg_ros.inference.preprocess import to_rgb
from lang_seg_ros.model.device import single_cpu_thread
from lang_seg_ros.objects import extract_regions, frame_objects
from lang_seg_ros.objects.regions import label_pixel_counts
from lang_seg_ros.visualize import NO_LABEL_COLOR, colorize, label_shares, palette


def reference_regions(label_map, confidence, count, min_area=1, connectivity=8, stuff=()):
    """(label, area, bbox, centroid, score, mask) per region, sorted by label, -area, top, left."""
    out = []
    for label in range(count):
        binary = (label_map == label).astype(np.uint8)
        if not binary.any():
            continue
        if label in stuff:
            pieces, n = binary.astype(np.int32), 2
        else:
            n, pieces = cv2.connectedComponents(binary, connectivity=connectivity, ltype=cv2.CV_32S)
        for c in range(1, n):
            ys, xs = np.nonzero(pieces == c)
            if len(ys) < min_area:
                continue
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            score = 1.0 if confidence is None else float(np.float64(confidence[ys, xs]).mean())
            out.append((label, len(ys), (int(x0), int(y0), int(x1), int(y1)), (xs.mean(), ys.mean()),
                        min(1.0, max(0.0, score)), pieces[y0:y1, x0:x1] == c))
    return sorted(out, key=lambda r: (r[0], -r[1], r[2][1], r[2][0]))


def blobby_map(rng, shape=(90, 120), count=6, cell=6):
    """A label map of blobs (upsampled random cells, then a few scattered pixels), -1 included."""
    small = rng.integers(-1, count, (shape[0] // cell + 1, shape[1] // cell + 1))
    label_map = np.kron(small, np.ones((cell, cell), np.int64))[: shape[0], : shape[1]]
    noise = rng.random(shape) < 0.02
    label_map[noise] = rng.integers(-1, count, int(noise.sum()))
    return label_map.astype(np.int32)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("connectivity", [4, 8])
def test_regions_equal_one_labelling_per_label(seed, connectivity):
    rng = np.random.default_rng(seed)
    label_map = blobby_map(rng)
    confidence = rng.random(label_map.shape).astype(np.float32)
    stuff = {0, 3} if seed % 2 else set()
    min_area = [1, 5, 20][seed % 3]
    got = extract_regions(label_map, confidence, [f"l{i}" for i in range(6)], min_area=min_area,
                          connectivity=connectivity, stuff=stuff)
    want = reference_regions(label_map, confidence, 6, min_area, connectivity, stuff)
    assert [r.id for r in got] == list(range(1, len(want) + 1))
    assert len(got) == len(want) > 5
    for region, (label, area, bbox, centroid, score, mask) in zip(got, want):
        assert (region.label_index, region.area, region.bbox) == (label, area, bbox)
        assert region.centroid == pytest.approx(centroid, abs=1e-9)
        assert region.score == pytest.approx(score, abs=1e-6)
        assert region.mask.dtype == bool and np.array_equal(region.mask, mask)


def test_more_labels_than_a_byte_holds_take_the_general_path():
    rng = np.random.default_rng(1)
    label_map = blobby_map(rng, count=300, cell=4)
    got = extract_regions(label_map, None, [f"l{i}" for i in range(300)], min_area=3)
    want = reference_regions(label_map, None, 300, 3)
    assert [(r.label_index, r.area, r.bbox) for r in got] == [(w[0], w[1], w[2]) for w in want]
    counts = label_pixel_counts(label_map, 300)
    assert np.array_equal(counts, np.bincount(label_map[label_map >= 0], minlength=300))


def test_pixel_counts_ignore_values_outside_the_label_set():
    label_map = np.array([[-1, 0, 1, 2], [2, 2, 7, -5]], np.int32)  # -5: not one byte, the general path
    for counts, want in ((label_pixel_counts(label_map, 3), [1, 1, 3]),
                         (label_pixel_counts(label_map, 5), [1, 1, 3, 0, 0]),  # the absent ones too
                         (label_pixel_counts(label_map[:, :3], 5), [1, 1, 2, 0, 0]),  # the byte path
                         (label_pixel_counts(np.zeros((0, 0), np.int32), 2), [0, 0])):
        assert counts.dtype == np.int64 and counts.tolist() == want
    # -3 as a byte would be 253, a real label of a 254-label set: such a map is not read as bytes
    assert label_pixel_counts(np.array([[-3, 0]], np.int32), 254)[253] == 0


def test_a_label_of_exactly_min_area_pixels_is_a_region_scored_1_without_confidence():
    label_map = np.full((6, 8), -1, np.int32)
    label_map[1:3, 1:4] = 0  # 6 pixels
    label_map[4:6, 5:8] = 1  # 6 pixels
    for stuff in ((), (1,)):
        regions = extract_regions(label_map, None, ["a", "b"], min_area=6, stuff=stuff)
        assert [(r.label_index, r.area, r.score) for r in regions] == [(0, 6, 1.0), (1, 6, 1.0)]
    assert extract_regions(label_map, None, ["a", "b"], min_area=7) == []


def test_frame_objects_region_map_is_built_from_the_regions_on_first_use():
    rng = np.random.default_rng(2)
    label_map = blobby_map(rng)
    objects = frame_objects(label_map, np.ones(label_map.shape, np.float32), [f"l{i}" for i in range(6)],
                            stuff=(1,), min_area=4)
    assert objects._region_map is None
    expected = np.zeros(label_map.shape, np.int32)
    for i, r in enumerate(objects.regions, start=1):
        x0, y0, x1, y1 = r.region.bbox
        expected[y0:y1, x0:x1][r.region.mask] = i
    assert np.array_equal(objects.region_map, expected)


@pytest.mark.parametrize("count", [3, 254, 255, 300])
def test_overlay_colours_equal_palette_indexing(count):
    rng = np.random.default_rng(count)
    label_map = rng.integers(-1, count, (40, 50)).astype(np.int32)
    colors = palette(count)
    want = np.concatenate([colors, np.asarray([NO_LABEL_COLOR], np.uint8)])[label_map]
    assert np.array_equal(colorize(label_map, count, colors), want)
    shares = np.bincount(label_map[label_map >= 0], minlength=count)[:count] / label_map.size
    assert np.allclose(label_shares(label_map, count), shares)


@pytest.mark.parametrize("shape, order", [((5, 7, 3), "bgr"), ((5, 7, 3), "rgb"), ((5, 7, 4), "bgra"),
                                          ((5, 7, 4), "rgba"), ((5, 7), "rgb"), ((5, 7, 1), "bgr")])
def test_to_rgb_equals_channel_slicing(shape, order):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    plane = image if image.ndim == 2 else image[:, :, 0] if image.shape[2] == 1 else None
    if plane is not None:
        want = np.stack([plane] * 3, axis=2)
    else:
        want = image[:, :, 2::-1] if order.startswith("bgr") else image[:, :, :3]
    got = to_rgb(image, order)
    assert got.shape == want.shape and np.array_equal(got, want) and got.flags.c_contiguous
    view = np.ascontiguousarray(np.concatenate([image, image], axis=1))[:, ::2]  # a strided view
    assert np.array_equal(to_rgb(view, order), to_rgb(np.ascontiguousarray(view), order))


def test_the_segmenter_normalises_and_decides_on_one_cpu_thread(tiny_model, monkeypatch):
    """The element-wise work around the forward pass runs on one thread (waking a second one
    costs more than it saves, and in the node it may wait for a core DDS holds); the forward
    pass keeps the caller's count."""
    from lang_seg_ros.inference import Segmenter
    from lang_seg_ros.inference import segmenter as segmenter_module

    seen = {}

    def recording(name, fn):
        def wrapped(*args, **kwargs):
            seen.setdefault(name, []).append(torch.get_num_threads())
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(segmenter_module, "normalize", recording("normalize", segmenter_module.normalize))
    monkeypatch.setattr(segmenter_module, "decide_stride2", recording("decide", segmenter_module.decide_stride2))
    segmenter = Segmenter(tiny_model, device="cpu", working_size=64)
    # the image branch itself, whichever way the backend then computes the logits
    monkeypatch.setattr(segmenter.backend, "decode", recording("forward", segmenter.backend.decode))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        segmenter.segment(np.zeros((48, 64, 3), np.uint8), labels=["floor", "mug"])
        assert seen == {"normalize": [1], "forward": [2], "decide": [1]}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_decision_runs_on_one_cpu_thread_and_restores_the_count():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with single_cpu_thread(torch.device("cpu")):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError):
            with single_cpu_thread(torch.device("cpu")):
                raise RuntimeError("a failing decision")
        assert torch.get_num_threads() == 2
        with single_cpu_thread(torch.device("meta")):  # accelerators: untouched
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
