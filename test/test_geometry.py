"""Pinhole geometry (lang_seg_ros/objects/geometry.py) against hand computations: intrinsics with
distinct fx, fy, cx, cy, s (so no value can stand in for another), every refusal of the one rule with
its exact reason, depth validity, resizing, organised points and region summaries."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from lang_seg_ros.objects.geometry import (MAX_DEPTH_M, back_project, depth_to_metres, intrinsics_problem,
                                           organised_points, region_3d, scale_intrinsics)

FX, FY, CX, CY, S = 100.0, 120.0, 3.5, 2.5, 0.7


def k_of(fx=FX, fy=FY, cx=CX, cy=CY, s=0.0) -> np.ndarray:
    return np.array([[fx, s, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def exactly(message: str) -> str:
    return "^" + re.escape(message) + "$"


# ---- the intrinsics rule -------------------------------------------------------------------------
def test_usable_intrinsics_as_a_matrix_a_list_or_integers():
    assert intrinsics_problem(k_of(), (6, 8)) is None
    assert intrinsics_problem(k_of().ravel().tolist(), (6, 8)) is None
    assert intrinsics_problem([100, 0, 4, 0, 120, 3, 0, 0, 1], (6, 8)) is None


@pytest.mark.parametrize("shape, reason", [((0, 8), "camera info is for a 8x0 image"),
                                           ((6, 0), "camera info is for a 0x6 image"),
                                           ((-1, -1), "camera info is for a -1x-1 image")])
def test_an_empty_image_has_no_usable_intrinsics(shape, reason):
    assert intrinsics_problem(k_of(), shape) == reason


def test_k_must_have_nine_finite_values():
    assert intrinsics_problem([1.0] * 8, (6, 8)) == "camera info K has 8 values, not 9"
    k = k_of().ravel()
    k[2] = np.nan
    assert intrinsics_problem(k, (6, 8)) == "camera info K is not finite (100, 0, nan, 0, 120, 2.5, 0, 0, 1)"


@pytest.mark.parametrize("k, reason", [
    (k_of(fx=0.07), "camera info K has no usable focal lengths (fx=0.07 px for a 8x6 image; usable: 0.08 to 80000 px)"),
    (k_of(fy=8e4 + 1), "camera info K has no usable focal lengths (fy=80001 px for a 8x6 image; usable: 0.08 to "
                       "80000 px)"),
    (k_of(s=-8e4 - 1), "camera info K has an unusable skew (s=-80001 for a 8x6 image; usable: |s| <= 80000)"),
    (k_of(cx=-8.5), "camera info K has an unusable principal point (cx=-8.5 px for a 8x6 image; usable: -8 to 16 px)"),
    (k_of(cx=16.5), "camera info K has an unusable principal point (cx=16.5 px for a 8x6 image; usable: -8 to 16 px)"),
    (k_of(cy=-6.5), "camera info K has an unusable principal point (cy=-6.5 px for a 8x6 image; usable: -6 to 12 px)"),
    (k_of(cy=12.5), "camera info K has an unusable principal point (cy=12.5 px for a 8x6 image; usable: -6 to 12 px)"),
])
def test_each_unusable_value_is_named_with_the_usable_range(k, reason):
    assert intrinsics_problem(k, (6, 8)) == reason


def test_the_usable_ranges_are_inclusive():
    for k in (k_of(fx=0.08), k_of(fy=8e4), k_of(s=8e4), k_of(s=-8e4), k_of(cx=-8.0), k_of(cx=16.0), k_of(cy=-6.0),
              k_of(cy=12.0)):
        assert intrinsics_problem(k, (6, 8)) is None, k


@pytest.mark.parametrize("index, value", [(3, 0.5), (6, 0.25), (7, -0.5), (8, 2.0)])
def test_each_entry_of_the_form_is_checked(index, value):
    k = k_of().ravel()
    k[index] = value
    shown = {3: 0.0, 6: 0.0, 7: 0.0, 8: 1.0, index: value}
    assert intrinsics_problem(k, (6, 8)) == (
        "camera info K is not a camera matrix [fx s cx; 0 fy cy; 0 0 1] "
        f"(k[3]={shown[3]:g}, k[6:9]={shown[6]:g} {shown[7]:g} {shown[8]:g})")


def test_the_form_message_shows_each_entry_in_its_place():
    k = k_of().ravel()
    k[3], k[6], k[7], k[8] = 0.5, 0.25, -0.75, 3.0
    assert intrinsics_problem(k, (6, 8)) == ("camera info K is not a camera matrix [fx s cx; 0 fy cy; 0 0 1] "
                                             "(k[3]=0.5, k[6:9]=0.25 -0.75 3)")


# ---- depth ---------------------------------------------------------------------------------------
def test_depth_in_millimetres_and_metres_becomes_float32_metres_nan_where_invalid():
    mm = np.array([[0, 1, 1500, 65535]], np.uint16)
    metres = depth_to_metres(mm, "16UC1")
    assert metres.dtype == np.float32
    np.testing.assert_allclose(metres, np.array([[np.nan, 0.001, 1.5, 65.535]], np.float32), rtol=1e-6)
    np.testing.assert_array_equal(depth_to_metres(mm, "mono16"), metres)
    m = np.array([[-1.0, 0.0, 2.5, MAX_DEPTH_M, MAX_DEPTH_M * 1.001, np.inf, np.nan, 3e38]], np.float32)
    np.testing.assert_array_equal(depth_to_metres(m, "32FC1"),
                                  np.array([[np.nan, np.nan, 2.5, MAX_DEPTH_M, np.nan, np.nan, np.nan, np.nan]],
                                           np.float32))
    with pytest.raises(ValueError, match=exactly("depth encoding must be one of ['16UC1', '32FC1', 'mono16'], got "
                                                 "'rgb8'")):
        depth_to_metres(mm, "rgb8")


def test_depth_from_float64_beyond_float32_is_invalid_without_a_warning():
    depth = np.array([[1e300, -1e300, np.nan, 2.0]], np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metres = depth_to_metres(depth, "32FC1")
    assert metres.dtype == np.float32
    np.testing.assert_array_equal(metres, np.array([[np.nan, np.nan, np.nan, 2.0]], np.float32))


# ---- resizing ------------------------------------------------------------------------------------
def test_intrinsics_follow_a_resize_pixel_centre_to_pixel_centre():
    k = k_of(s=S)
    scaled = scale_intrinsics(k, (6, 8), (12, 4))  # rows x2, columns x0.5
    np.testing.assert_allclose(scaled, [[FX * 0.5, S * 0.5, (CX + 0.5) * 0.5 - 0.5],
                                        [0.0, FY * 2, (CY + 0.5) * 2 - 0.5],
                                        [0.0, 0.0, 1.0]], rtol=1e-12)
    assert scaled.dtype == np.float64 and np.array_equal(k, k_of(s=S))  # the input is not changed
    integers = scale_intrinsics([[100, 0, 4], [0, 120, 3], [0, 0, 1]], (6, 8), (3, 4))
    np.testing.assert_allclose(integers, [[50, 0, 1.75], [0, 60, 1.25], [0, 0, 1]])


# ---- points --------------------------------------------------------------------------------------
def test_back_projection_inverts_the_pinhole_model():
    k = k_of()
    u, v, z = np.array([0, 7, 3]), np.array([5, 0, 2]), np.array([2.0, 0.5, 10.0])
    points = back_project(u, v, z, k)
    assert points.dtype == np.float64 and points.shape == (3, 3)
    np.testing.assert_allclose(FX * points[:, 0] / points[:, 2] + CX, u, atol=1e-12)
    np.testing.assert_allclose(FY * points[:, 1] / points[:, 2] + CY, v)


def test_organised_points_are_every_pixel_back_projected_in_point_cloud_layout():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 9.0, (5, 7))  # float64 in, float32 out
    depth[1, 2] = np.nan
    points = organised_points(depth, k_of())
    assert points.dtype == np.float32 and points.shape == (5, 7, 3) and points.flags.c_contiguous
    assert points.strides == (7 * 12, 12, 4)  # an organised PointCloud2's data, x y z float32
    rows, cols = np.mgrid[0:5, 0:7]
    np.testing.assert_allclose(points[..., 0], (cols - CX) / FX * depth, rtol=1e-6)
    np.testing.assert_allclose(points[..., 1], (rows - CY) / FY * depth, rtol=1e-6)
    z = depth.astype(np.float32)
    np.testing.assert_array_equal(points[..., 2], z)
    # bit for bit: float32 (u - cx) / fx times float32 z, as a PointCloud2 consumer recomputing them would
    np.testing.assert_array_equal(points[..., 0], ((np.arange(7) - CX) / FX).astype(np.float32)[None, :] * z)
    np.testing.assert_array_equal(points[..., 1], ((np.arange(5) - CY) / FY).astype(np.float32)[:, None] * z)
    assert np.isnan(points[1, 2]).all() and np.isfinite(np.delete(points.reshape(-1, 3), 9, axis=0)).all()
    np.testing.assert_array_equal(organised_points(depth, k_of().ravel().tolist()), points)


# ---- region summaries ----------------------------------------------------------------------------
def test_a_region_summary_from_its_valid_pixels():
    depth = np.full((6, 8), np.nan)
    depth[2, 3], depth[2, 4], depth[3, 3] = 2.0, 4.0, 3.0
    mask = np.array([[True, True], [True, True]])  # bbox x 3..5, y 2..4: one pixel has no depth
    summary = region_3d((3, 2, 5, 4), mask, depth, k_of())
    expected = back_project(np.array([3, 4, 3]), np.array([2, 2, 3]), np.array([2.0, 4.0, 3.0]), k_of())
    np.testing.assert_allclose(summary.centroid, expected.mean(axis=0))
    np.testing.assert_allclose(summary.extent_min, expected.min(axis=0))
    np.testing.assert_allclose(summary.extent_max, expected.max(axis=0))
    np.testing.assert_allclose(summary.size, expected.max(axis=0) - expected.min(axis=0))
    assert summary.median_depth == 3.0 and summary.valid_fraction == 0.75
    assert summary.points is None  # only when asked for
    kept = region_3d((3, 2, 5, 4), mask, depth, k_of(), keep_points=True)
    np.testing.assert_allclose(kept.points, expected)


def test_a_one_pixel_region_has_a_summary_and_a_region_without_depth_has_none():
    depth = np.full((6, 8), np.nan)
    depth[1, 1] = 5.0
    one = region_3d((1, 1, 2, 2), np.ones((1, 1), bool), depth, k_of())
    assert one.median_depth == 5.0 and one.valid_fraction == 1.0 and one.size == (0.0, 0.0, 0.0)
    assert region_3d((4, 4, 6, 6), np.ones((2, 2), bool), depth, k_of()) is None
    assert region_3d((1, 1, 2, 2), np.zeros((1, 1), bool), depth, k_of()) is None
