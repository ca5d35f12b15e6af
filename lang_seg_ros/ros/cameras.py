"""One camera's state in the node: its topics, slot, counters, depth, camera info and tracks.

A node without the `cameras` parameter has one `Camera` named "" whose topics are today's
(`image`, `segmentation`, ...). With `cameras: [front, rear]` each camera reads and publishes under
its name (`front/image` -> `front/segmentation`, ...), while the model, the label set and the
referring expression are the node's, shared by all of them. Counters are written under the
node's lock; the rest is set by the executor thread (camera info, depth) or used by the frame
threads only (sequence, tracks).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sensor_msgs.msg import CameraInfo

from .depth import DepthSync
from .diagnostics import Stats

__all__ = ["Camera"]


@dataclass(eq=False)
class Camera:
    """name: "" for a node's single camera (no `cameras` parameter), else its name; stats: its
    frame counters (the node's own for the single camera); outputs: its `FrameOutputs` while the
    interfaces exist; tracks: its `pipeline.Tracks` (made on its first frame, kept across model
    reloads so track ids are never reused); regions: whether its last frame had regions (read by
    someone: `FrameOutputs.wants_regions`)."""

    name: str = ""
    stats: Stats = field(default_factory=Stats)
    outputs: Any = None
    camera_info: CameraInfo | None = None
    depth: DepthSync = field(default_factory=DepthSync)
    sequence: int = 0
    tracks: Any = None
    regions: bool | None = None  # whether its last frame was finished with regions (None: no frame yet)

    def topic(self, name: str) -> str:
        """A topic of this camera: `name` itself for the single camera, `<camera>/name` otherwise."""
        return f"{self.name}/{name}" if self.name else name

    def describe(self, frame: str) -> str:
        """How log lines name a frame of this camera."""
        return f"camera {self.name}: {frame}" if self.name else frame
