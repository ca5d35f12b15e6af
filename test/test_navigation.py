"""Navigation outputs and region embeddings, from the ROS-free core (lang_seg_ros.objects)."""
from __future__ import annotations

import numpy as np
import pytest

from lang_seg_ros.objects import frame_objects
from lang_seg_ros.objects.navigation import obstacle_points, traversable_indices, traversable_mask

LABELS = ("Road", "car", "sidewalk", "tree")
K = np.array([[100.0, 0, 3.5], [0, 120.0, 2.5], [0, 0, 1]])


@pytest.fixture
def label_map() -> np.ndarray:
    m = np.array([[0, 0, 1, 1, 2, 2, 3, -1],
                  [0, 0, 1, 1, 2, 2, 3, -1],
                  [0, 0, 0, 0, 2, 2, 3, 3],
                  [0, 0, 0, 0, 2, 2, 3, 3],
                  [1, 1, 0, 0, -1, 2, 3, 3],
                  [1, 1, 0, 0, 0, 0, 0, 0]], np.int32)
    return m


def test_traversable_labels_match_without_case_and_mark_exactly_their_pixels(label_map):
    ids = traversable_indices(LABELS, ["road", "SIDEWALK", "lawn"])  # "lawn": not in this set
    assert ids.tolist() == [0, 2]
    mask = traversable_mask(label_map, ids, len(LABELS))
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, np.where(np.isin(label_map, [0, 2]), 255, 0))
    assert mask[4, 4] == 0 and mask[0, 7] == 0  # no label is not traversable


def test_obstacles_are_the_other_labels_with_valid_depth_back_projected(label_map):
    ids = traversable_indices(LABELS, ["road", "sidewalk"])
    depth = np.full(label_map.shape, 2.0, np.float32)
    depth[0, 2] = np.nan  # a car pixel without depth
    depth[1, 6] = 0.0  # a tree pixel without depth
    points = obstacle_points(label_map, ids, len(LABELS), depth, K)
    rows, cols = np.nonzero(np.isin(label_map, [1, 3]) & np.isfinite(depth) & (depth > 0))
    expected = np.stack([(cols - 3.5) * 2.0 / 100.0, (rows - 2.5) * 2.0 / 120.0, np.full(len(rows), 2.0)], axis=1)
    assert points.dtype == np.float32 and points.shape == (len(rows), 3) and len(rows) == 14
    np.testing.assert_allclose(points, expected, rtol=1e-6)


def test_obstacle_stride_and_range_limits(label_map):
    ids = traversable_indices(LABELS, ["road"])
    depth = np.where(np.arange(8)[None, :] < 4, 1.0, 9.0).astype(np.float32) * np.ones((6, 1), np.float32)
    every = obstacle_points(label_map, ids, len(LABELS), depth, K)
    strided = obstacle_points(label_map, ids, len(LABELS), depth, K, stride=2)
    rows, cols = np.nonzero(np.isin(label_map[::2, ::2], [1, 2, 3]))
    assert len(strided) == len(rows) and np.allclose(strided[:, 0], (cols * 2 - 3.5) * depth[0, cols * 2] / 100.0)
    near = obstacle_points(label_map, ids, len(LABELS), depth, K, max_range=5.0)
    far = obstacle_points(label_map, ids, len(LABELS), depth, K, min_range=5.0)
    assert len(near) + len(far) == len(every) and (near[:, 2] == 1.0).all() and (far[:, 2] == 9.0).all()


def test_region_embeddings_are_the_normalised_mean_of_their_pixels(label_map):
    """On a feature grid of the label map's own size, pooling is a plain mean over the pixels."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(16, *label_map.shape)).astype(np.float32)
    features /= np.linalg.norm(features, axis=0, keepdims=True)
    objects = frame_objects(label_map, np.ones(label_map.shape, np.float32), LABELS, min_area=1,
                            pixel_features=features, embeddings=True)
    assert objects.regions and not objects.pooled  # embeddings without relabelling
    for r in objects.regions:
        inside = objects.region_map == r.region.id
        mean = features[:, inside].mean(axis=1)
        np.testing.assert_allclose(r.embedding, mean / np.linalg.norm(mean), atol=1e-5)
        assert np.linalg.norm(r.embedding) == pytest.approx(1.0, abs=1e-5)
    assert frame_objects(label_map, np.ones(label_map.shape), LABELS, pixel_features=features).regions[0].embedding is None
