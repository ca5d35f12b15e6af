"""Depth images matched to colour frames by stamp, turned into the core's depth input.

Depth frames are kept in a short buffer; a colour frame takes the one nearest in stamp within
`depth_slop` seconds, waiting a little when the depth driver lags. The depth camera's
CameraInfo must describe the depth image itself (same width and height): intrinsics calibrated
for another size would put every 3D point in the wrong place, so such a pair is refused. Until
one arrives, the colour camera's CameraInfo is used (a registered depth image shares its view).
Its K must pass the core's one rule for intrinsics (`objects.geometry.intrinsics_problem`:
finite, plausible focal lengths and principal point for the size it is for), else the frame gets
no 3D and a `[bad_depth]` warning naming the value.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..objects.geometry import intrinsics_problem
from .image_conversion import ImageConversionError, image_to_numpy

__all__ = ["DEPTH_BUFFER", "DEPTH_ENCODINGS", "DepthFrame", "DepthSync", "stamp_ns"]

#: Depth frames kept for matching to colour frames by stamp.
DEPTH_BUFFER = 10
#: Depth encodings read on the `depth` topic (REP 118: 16-bit millimetres or float metres).
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")


def stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


@dataclass
class DepthFrame:
    """The depth image matched to one colour frame, as received: values (h, w) uint16 mm or
    float32 m, K (3, 3) calibrated for an image of `k_shape` (H, W), its header (frame_id = the
    frame of the 3D values). The frame pipeline brings it to the colour image's size."""

    values: np.ndarray
    k: np.ndarray
    k_shape: tuple[int, int]
    header: Any


class DepthSync:
    """Buffer of depth messages and their CameraInfo; thread-safe (callbacks add, the worker reads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frames: deque = deque(maxlen=DEPTH_BUFFER)  # sensor_msgs/Image, arrival order
        self._info: Any = None

    def add(self, msg: Any) -> None:
        with self._lock:
            self._frames.append(msg)

    def set_info(self, msg: Any) -> None:
        with self._lock:
            self._info = msg

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()

    def nearest(self, stamp: int, extra: Any = None) -> tuple[Any, int] | None:
        """(depth message, |stamp difference| ns) nearest to `stamp` ns among the buffer and `extra`."""
        with self._lock:
            candidates = [*self._frames, *([extra] if extra is not None else [])]
        best = None
        for candidate in candidates:
            dt = abs(stamp_ns(candidate.header.stamp) - stamp)
            if best is None or dt < best[1]:
                best = (candidate, dt)
        return best

    def _newest(self) -> int | None:
        with self._lock:
            return max((stamp_ns(d.header.stamp) for d in self._frames), default=None)

    def match(self, header: Any, hint: Any, slop: float, max_pixels: int, fallback_info: Any,
              wait: Callable[[float], None], stopping: Callable[[], bool]) -> tuple[DepthFrame | None, str, str]:
        """(depth frame, "", "") for a colour frame's `header`, or (None, kind, why not): kind
        "no_depth" (nothing usable arrived) or "bad_depth" (what arrived is unusable).

        hint: the nearest depth message when the frame arrived (it may have left the buffer since);
        fallback_info: the colour camera's CameraInfo, used when no depth CameraInfo came;
        wait(seconds): sleeps until woken by a new depth frame or the timeout.
        """
        stamp, slop_ns = stamp_ns(header.stamp), int(slop * 1e9)
        best = self.nearest(stamp, hint)
        deadline = time.monotonic() + min(slop, 0.5)
        while (best is None or best[1] > slop_ns) and not stopping():
            newest = self._newest()
            remaining = deadline - time.monotonic()
            if newest is None or remaining <= 0 or newest > stamp + slop_ns:
                break  # the depth driver may lag the colour one: wait a little for a frame near this stamp
            wait(remaining)
            best = self.nearest(stamp, hint)
        if best is None or best[1] > slop_ns:
            nearest = f"nearest {best[1] / 1e9:.3f} s away" if best is not None else "none received"
            return None, "no_depth", f"no depth image within depth_slop={slop} s ({nearest})"
        with self._lock:
            own_info = self._info
        info = own_info if own_info is not None else fallback_info
        if info is None:
            return None, "no_depth", "no camera info on 'depth/camera_info' or 'camera_info' yet"
        msg = best[0]
        try:
            if msg.encoding not in DEPTH_ENCODINGS:
                raise ImageConversionError(f"depth encoding must be one of {', '.join(DEPTH_ENCODINGS)}, "
                                           f"got {msg.encoding!r}")
            values = image_to_numpy(msg, max_pixels)
        except ImageConversionError as exc:
            return None, "bad_depth", f"depth image ignored: {exc}"
        k_shape = (int(info.height), int(info.width)) if info.height and info.width else values.shape[:2]
        if own_info is not None and k_shape != values.shape[:2]:
            # K of the depth camera for another size would put every 3D point in the wrong place.
            return None, "bad_depth", (f"depth image ignored: the depth camera info is for a {k_shape[1]}x{k_shape[0]} "
                                       f"image but the depth image is {values.shape[1]}x{values.shape[0]}: "
                                       "publish the depth image's own info")
        problem = intrinsics_problem(info.k, k_shape)  # the one rule (objects/geometry.py)
        if problem is not None:  # finite but absurd (fx = 5e-324, cx = 1e308): no 3D rather than inf and NaN
            which = "depth/camera_info" if own_info is not None else "camera_info"
            return None, "bad_depth", f"depth ignored: {which}: {problem}"
        return DepthFrame(values, np.asarray(info.k, np.float64).reshape(3, 3), k_shape, msg.header), "", ""
