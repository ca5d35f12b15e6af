"""Regions in 3D from a depth image and pinhole intrinsics (camera optical frame).

Frame and units: the optical frame of the camera that took the depth image, in metres:
x right, y down, z forward along the optical axis (REP 103 `_optical` frames). Pixel (u, v) is
column u, row v, with the pinhole model u = fx * x / z + cx, v = fy * y / z + cy (integer u, v
at pixel centres, as in sensor_msgs/CameraInfo).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Depth encodings and their scale to metres.
DEPTH_SCALES = {"16UC1": 0.001, "mono16": 0.001, "32FC1": 1.0}


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


def depth_to_metres(depth: np.ndarray, encoding: str) -> np.ndarray:
    """16UC1 millimetres or 32FC1 metres -> float32 metres, NaN where invalid (0, negative, inf)."""
    if encoding not in DEPTH_SCALES:
        raise ValueError(f"depth encoding must be one of {sorted(DEPTH_SCALES)}, got {encoding!r}")
    with np.errstate(over="ignore", invalid="ignore"):  # 1e38 m or NaN from a driver: invalid, not a warning per frame
        metres = depth.astype(np.float32) * DEPTH_SCALES[encoding]
        metres[~np.isfinite(metres) | (metres <= 0)] = np.nan
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
