"""Navigation outputs (lang_seg_ros/objects/navigation.py) at their edges: defaults, range limits that
are inclusive, strided points equal to the full-resolution ones, and no traversable label at all."""
from __future__ import annotations

import numpy as np

from lang_seg_ros.objects.navigation import obstacle_points, traversable_indices, traversable_mask

LABELS = ("road", "car", "tree")
K = np.array([[100.0, 0, 2.0], [0, 120.0, 1.0], [0, 0, 1]])  # the principal point on pixel (2, 1)


def test_no_traversable_label_is_an_empty_int_index_set():
    ids = traversable_indices(LABELS, ["lawn"])
    assert ids.dtype == np.int64 and ids.shape == (0,)
    label_map = np.array([[0, 1, -1]], np.int32)
    np.testing.assert_array_equal(traversable_mask(label_map, ids, 3), [[0, 0, 0]])
    np.testing.assert_array_equal(traversable_mask(label_map, [], 3), [[0, 0, 0]])  # a plain empty list too
    depth = np.ones((1, 3), np.float32)
    assert len(obstacle_points(label_map, [], 3, depth, K)) == 2  # every labelled pixel is an obstacle


def test_by_default_every_distance_counts():
    label_map = np.full((3, 5), 1, np.int32)
    depth = np.full((3, 5), 0.25, np.float32)
    assert len(obstacle_points(label_map, traversable_indices(LABELS, ["road"]), 3, depth, K)) == 15


def test_range_limits_are_inclusive_and_apply_alone():
    label_map = np.full((3, 5), 1, np.int32)
    depth = np.full((3, 5), 9.0, np.float32)
    depth[1, 2] = 2.0  # on the optical axis: exactly 2 m away
    depth[0, 0] = 0.5
    ids = traversable_indices(LABELS, ["road"])
    exact = obstacle_points(label_map, ids, 3, depth, K, min_range=2.0, max_range=2.0)
    np.testing.assert_array_equal(exact, [[0.0, 0.0, 2.0]])
    assert len(obstacle_points(label_map, ids, 3, depth, K, min_range=0.6)) == 14  # without a max_range
    assert len(obstacle_points(label_map, ids, 3, depth, K, min_range=0.5)) == 15
    assert len(obstacle_points(label_map, ids, 3, depth, K, max_range=2.0)) == 2


def test_strided_points_are_the_full_resolution_points_of_every_other_pixel():
    rng = np.random.default_rng(0)
    label_map = rng.integers(-1, 3, (7, 9)).astype(np.int32)
    depth = rng.uniform(0.5, 4.0, (7, 9)).astype(np.float32)
    ids = traversable_indices(LABELS, ["road"])
    every = obstacle_points(label_map, ids, 3, depth, K)
    sub = np.zeros_like(label_map, bool)
    sub[::2, ::2] = True
    keep = np.isin(label_map, [1, 2])  # row-major order, as obstacle_points returns them
    strided = obstacle_points(label_map, ids, 3, depth, K, stride=2)
    np.testing.assert_array_equal(strided, every[sub[keep]])


def test_nan_depth_raises_no_warning():
    import warnings

    label_map = np.ones((2, 2), np.int32)
    depth = np.array([[np.nan, 1.0], [-np.inf, np.inf]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        points = obstacle_points(label_map, np.zeros(1, np.int64), 3, depth, K)
    np.testing.assert_allclose(points, [[(1 - 2.0) / 100.0, (0 - 1.0) / 120.0, 1.0]], rtol=1e-6)
