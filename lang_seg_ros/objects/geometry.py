"""Regions in 3D from a depth image and pinhole intrinsics (camera optical frame).

Frame and units: the optical frame of the camera that took the depth image, in metres:
x right, y down, z forward along the optical axis (REP 103 `_optical` frames). Pixel (u, v) is
column u, row v, with the pinhole model u = fx * x / z + cx, v = fy * y / z + cy (integer u, v
at pixel centres, as in sensor_msgs/CameraInfo).

What geometry is usable is one rule, here, applied where depth and intrinsics enter (the node's
depth matching, `frame.aligned_depth`): `intrinsics_problem` (focal lengths and principal point
physically plausible for the image they are used with) and `depth_to_metres` (depth in
(0, `MAX_DEPTH_M`], else NaN = invalid). Within it every 3D value is finite: |x|, |y| <=
(1 + `PRINCIPAL_POINT_MARGIN`) / `FOCAL_RANGE[0]` * `MAX_DEPTH_M` = 2e5 m, far inside float32.
Finite but absurd values (fx = 5e-324, cx = 1e308, a 3e38 m depth) once gave inf and NaN points.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Depth encodings and their scale to metres.
DEPTH_SCALES = {"16UC1": 0.001, "mono16": 0.001, "32FC1": 1.0}
#: Depth beyond this (metres) is no measurement: invalid (NaN), as 0, negative, NaN and inf are.
#: Depth cameras reach tens of metres, lidar-filled depth a few hundred.
MAX_DEPTH_M = 1000.0
#: Usable focal lengths fx, fy in pixels, as multiples of the image's larger side: 0.01 is a
#: 178-degree field of view across it, 1e4 a 0.006-degree one (beyond a telescope's).
FOCAL_RANGE = (0.01, 1e4)
#: The principal point may lie this many image widths (heights) outside the image: a crop or an
#: off-centre sensor moves it out, never farther.
PRINCIPAL_POINT_MARGIN = 1.0


@dataclass(frozen=True)
class Region3D:
    """A region's 3D summary from its valid depth pixels.

    centroid: mean 3D point (x, y, z) in metres; extent_min / extent_max: axis-aligned box of
    the points in the optical frame; median_depth: median z in metres; valid_fraction: share of
    the region's pixels with valid depth, in [0, 1]; points: (M, 3) the points when asked for.
    """

    centroid: tuple[float, float, float]
    extent_min: tuple[float, float, float]
    extent_max: tuple[float, float, float]
    median_depth: float
    valid_fraction: float
    points: np.ndarray | None = None

    @property
    def size(self) -> tuple[float, float, float]:
        return tuple(float(b - a) for a, b in zip(self.extent_min, self.extent_max))


def intrinsics_problem(k, shape: tuple[int, int]) -> str | None:
    """None when K (3x3, or its 9 values row-major) is usable for an image of `shape` (H, W)
    pixels, else why not, naming the value: every entry finite, the form of a camera matrix
    [fx s cx; 0 fy cy; 0 0 1], fx and fy within `FOCAL_RANGE` times the image's larger side (and
    |s| below its upper end), cx within [-m W, (1 + m) W] and cy within [-m H, (1 + m) H]
    (m = `PRINCIPAL_POINT_MARGIN`). The one rule for intrinsics (see the module doc)."""
    k = np.asarray(k, np.float64).ravel()
    h, w = (int(v) for v in shape)
    if k.size != 9:
        return f"camera info K has {k.size} values, not 9"
    if h <= 0 or w <= 0:
        return f"camera info is for a {w}x{h} image"
    if not np.isfinite(k).all():
        return f"camera info K is not finite ({', '.join(f'{v:g}' for v in k)})"
    side = max(h, w)
    lo, hi = FOCAL_RANGE[0] * side, FOCAL_RANGE[1] * side
    for name, value in (("fx", k[0]), ("fy", k[4])):
        if not lo <= value <= hi:
            return (f"camera info K has no usable focal lengths ({name}={value:g} px for a {w}x{h} image; "
                    f"usable: {lo:g} to {hi:g} px)")
    if abs(k[1]) > hi:
        return f"camera info K has an unusable skew (s={k[1]:g} for a {w}x{h} image; usable: |s| <= {hi:g})"
    m = PRINCIPAL_POINT_MARGIN
    for name, value, size in (("cx", k[2], w), ("cy", k[5], h)):
        if not -m * size <= value <= (1 + m) * size:
            return (f"camera info K has an unusable principal point ({name}={value:g} px for a {w}x{h} image; "
                    f"usable: {-m * size:g} to {(1 + m) * size:g} px)")
    if k[3] != 0 or k[6] != 0 or k[7] != 0 or k[8] != 1:
        return ("camera info K is not a camera matrix [fx s cx; 0 fy cy; 0 0 1] "
                f"(k[3]={k[3]:g}, k[6:9]={k[6]:g} {k[7]:g} {k[8]:g})")
    return None


def depth_to_metres(depth: np.ndarray, encoding: str) -> np.ndarray:
    """16UC1 millimetres or 32FC1 metres -> float32 metres, NaN where invalid (0, negative, NaN,
    inf, beyond `MAX_DEPTH_M`)."""
    if encoding not in DEPTH_SCALES:
        raise ValueError(f"depth encoding must be one of {sorted(DEPTH_SCALES)}, got {encoding!r}")
    with np.errstate(over="ignore", invalid="ignore"):  # 1e38 m or NaN from a driver: invalid, not a warning per frame
        metres = depth.astype(np.float32) * DEPTH_SCALES[encoding]
        metres[~((metres > 0) & (metres <= MAX_DEPTH_M))] = np.nan  # NaN compares False: invalid too
    return metres


def scale_intrinsics(k: np.ndarray, from_shape: tuple[int, int], to_shape: tuple[int, int]) -> np.ndarray:
    """K (3, 3) of an image of `from_shape` (H, W) -> K of the same view resized to `to_shape`.

    Pixel centres map to pixel centres: u' + 0.5 = (u + 0.5) * s.
    """
    sy, sx = to_shape[0] / from_shape[0], to_shape[1] / from_shape[1]
    out = np.array(k, dtype=np.float64).reshape(3, 3).copy()
    out[0, 0] *= sx
    out[0, 1] *= sx
    out[0, 2] = (out[0, 2] + 0.5) * sx - 0.5
    out[1, 1] *= sy
    out[1, 2] = (out[1, 2] + 0.5) * sy - 0.5
    return out


def back_project(u: np.ndarray, v: np.ndarray, z: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Pixels (u, v) at depths z (metres) -> (N, 3) points in the optical frame."""
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    x = (u - cx) * z / fx
    y = (v - cy) * z / fy
    return np.stack([x, y, z], axis=1).astype(np.float64)


def organised_points(depth_m: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Every pixel back-projected, in image layout: (H, W) metres (NaN = invalid) and its K ->
    (H, W, 3) float32 x, y, z in the optical frame, all three NaN where the depth is invalid.

    The memory layout is that of an organised PointCloud2 with float32 fields x, y, z (12 bytes
    a point, row-major), so the array is the message's data as it is."""
    k = np.asarray(k, np.float64).reshape(3, 3)
    h, w = depth_m.shape
    z = np.asarray(depth_m, np.float32)
    out = np.empty((h, w, 3), np.float32)
    out[:, :, 2] = z
    # (u - cx) / fx per column and (v - cy) / fy per row: one multiply per pixel and axis.
    np.multiply(((np.arange(w) - k[0, 2]) / k[0, 0]).astype(np.float32)[None, :], z, out=out[:, :, 0])
    np.multiply(((np.arange(h) - k[1, 2]) / k[1, 1]).astype(np.float32)[:, None], z, out=out[:, :, 1])
    return out


def region_3d(
    bbox: tuple[int, int, int, int],
    mask: np.ndarray,
    depth_m: np.ndarray,
    k: np.ndarray,
    keep_points: bool = False,
) -> Region3D | None:
    """3D summary of the region given by `bbox` (x0, y0, x1, y1, half-open) and its cropped mask.

    depth_m: (H, W) metres aligned with the mask's image, NaN = invalid; k: its intrinsics.
    Returns None when no pixel of the region has a valid depth.
    """
    x0, y0, x1, y1 = bbox
    depth = depth_m[y0:y1, x0:x1]
    valid = mask & np.isfinite(depth)
    total = int(mask.sum())
    if total == 0 or not valid.any():
        return None
    rows, cols = np.nonzero(valid)
    z = depth[rows, cols].astype(np.float64)
    points = back_project(cols + x0, rows + y0, z, np.asarray(k, dtype=np.float64).reshape(3, 3))
    lo, hi = points.min(axis=0), points.max(axis=0)
    return Region3D(
        centroid=tuple(float(v) for v in points.mean(axis=0)),
        extent_min=tuple(float(v) for v in lo),
        extent_max=tuple(float(v) for v in hi),
        median_depth=float(np.median(z)),
        valid_fraction=float(valid.sum()) / total,
        points=points if keep_points else None,
    )
