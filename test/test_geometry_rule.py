"""The one rule for usable geometry (issue 22): intrinsics that are finite and even positive can
still be unusable (fx = 5e-324, cx = 1e308), a finite depth can be no depth (3e38 m); within the
rule, every 3D value computed from them is finite."""
import numpy as np
import pytest

from lang_seg_ros.objects.frame import add_geometry, aligned_depth, frame_objects, labelled_points
from lang_seg_ros.objects.geometry import (FOCAL_RANGE, MAX_DEPTH_M, PRINCIPAL_POINT_MARGIN, depth_to_metres,
                                           intrinsics_problem, organised_points)
from lang_seg_ros.objects.navigation import obstacle_points


def k_of(fx=100.0, fy=100.0, cx=79.5, cy=59.5, skew=0.0):
    return [fx, skew, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]


@pytest.mark.parametrize("k, shape", [(k_of(), (120, 160)), (k_of(1.6, 1.6), (120, 160)),
                                      (k_of(1.6e6, 1.6e6, -160.0, 240.0), (120, 160)),
                                      (k_of(615.0, 615.0, 320.0, 240.0), (480, 640))])
def test_ordinary_and_boundary_intrinsics_are_usable(k, shape):
    assert intrinsics_problem(k, shape) is None
    assert intrinsics_problem(np.reshape(k, (3, 3)), shape) is None


@pytest.mark.parametrize("k, shape, named", [
    (k_of(5e-324, 5e-324), (120, 160), "fx=4.94066e-324"),
    (k_of(1e-40, 1e-40), (120, 160), "fx=1e-40"),
    (k_of(100.0, 1e-40), (120, 160), "fy=1e-40"),
    (k_of(1.5, 1.5), (120, 160), "fx=1.5"),
    (k_of(1e308, 1e308), (120, 160), "fx=1e+308"),
    (k_of(-100.0, -100.0), (120, 160), "fx=-100"),
    (k_of(cx=1e308), (120, 160), "cx=1e+308"),
    (k_of(cy=-1e308), (120, 160), "cy=-1e+308"),
    (k_of(cx=321.0), (120, 160), "cx=321"),
    (k_of(skew=1e308), (120, 160), "s=1e+308"),
    ([0.0] * 9, (120, 160), "fx=0"),
    ([float("nan")] * 9, (120, 160), "not finite"),
    (k_of(fx=float("inf")), (120, 160), "not finite"),
    (k_of()[:8], (120, 160), "8 values"),
    (k_of(), (0, 160), "160x0"),
    ([100.0, 0.0, 79.5, 0.0, 100.0, 59.5, 0.0, 0.0, 0.0], (120, 160), "camera matrix"),
])
def test_unusable_intrinsics_are_named(k, shape, named):
    problem = intrinsics_problem(k, shape)
    assert problem is not None and named in problem, problem


def test_depth_is_valid_in_0_to_1000_m_only():
    depth = np.array([[3e38, 1e30, 1000.5, 1000.0], [1e-45, 0.0, -1.0, np.nan]], np.float32)
    metres = depth_to_metres(depth, "32FC1")
    assert np.isnan(metres[0, :3]).all() and metres[0, 3] == MAX_DEPTH_M
    assert metres[1, 0] > 0 and np.isnan(metres[1, 1:]).all()
    assert np.isfinite(depth_to_metres(np.full((2, 2), 65535, np.uint16), "16UC1")).all()  # 65.5 m


@pytest.mark.parametrize("k, k_shape, named", [
    (k_of(5e-324, 5e-324), (120, 160), "fx="),
    (k_of(cx=1e308), (120, 160), "cx=1e+308"),
    # usable for a 1x1 image, not once scaled to the 160x120 label map (cx = 2 -> 399.5, beyond 2 W = 320)
    ([1.0, 0.0, 2.0, 0.0, 1.0, 2.0, 0.0, 0.0, 1.0], (1, 1), "scaled from the 1x1 image"),
])
def test_aligned_depth_refuses_unusable_intrinsics_naming_the_value(k, k_shape, named):
    with pytest.raises(ValueError, match="camera info K") as info:
        aligned_depth(np.full((120, 160), 2000, np.uint16), "16UC1", k, k_shape, (120, 160))
    assert named in str(info.value)


def test_everything_derived_within_the_rule_is_finite_at_its_extremes():
    """The worst the rule allows: the smallest focal length, the principal point farthest out, the
    farthest depth: points stay far inside float32 (|x|, |y| <= 2e5 m)."""
    h, w = 120, 160
    fx = FOCAL_RANGE[0] * w
    for cx, cy in ((-PRINCIPAL_POINT_MARGIN * w, -PRINCIPAL_POINT_MARGIN * h),
                   ((1 + PRINCIPAL_POINT_MARGIN) * w, (1 + PRINCIPAL_POINT_MARGIN) * h)):
        k = k_of(fx, fx, cx, cy)
        assert intrinsics_problem(k, (h, w)) is None
        depth = np.full((h, w), 3e38, np.float32)
        depth[:, : w // 2] = MAX_DEPTH_M
        metres, k_full = aligned_depth(depth, "32FC1", k, (h, w), (h, w))
        label_map = np.zeros((h, w), np.int32)
        label_map[:, w // 4:] = 1
        objects = frame_objects(label_map, np.ones((h, w)), ["floor", "wall"])
        add_geometry(objects, metres, k_full)
        assert all(r.geometry is not None for r in objects.regions)
        for r in objects.regions:
            g = r.geometry
            values = np.array([*g.centroid, *g.extent_min, *g.extent_max, g.median_depth])
            assert np.isfinite(values).all() and np.abs(values).max() <= 2e5 + 1
        points, _, _ = labelled_points(objects, metres, k_full)
        assert len(points) and np.isfinite(points).all()
        assert np.isfinite(obstacle_points(label_map, np.array([0]), 2, metres, k_full)).all()
        aligned = organised_points(metres, k_full)
        invalid = np.isnan(metres)
        assert invalid[:, w // 2:].all() and np.isnan(aligned[invalid]).all() and np.isfinite(aligned[~invalid]).all()
