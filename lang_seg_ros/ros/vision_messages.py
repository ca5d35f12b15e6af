"""Plain results -> the standard messages other stacks read without glue: vision_msgs
(`LabelInfo`, `Detection2DArray`, `Detection3DArray`), an organised `PointCloud2` aligned with
the mask, the confidence image, and the referred object's pose for grasping.

Conventions (vision_msgs 4.1, REP 103): a class id is the label's index in the active set; a
2D box is in pixels of the mask with pixel edges as coordinates (the box of pixels x0..x1-1 has
centre (x0 + x1) / 2 and size x1 - x0, as a `RegionOfInterest`); 3D values are metres in the
depth camera's optical frame (x right, y down, z forward), boxes axis-aligned in that frame.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion, Vector3
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Header
from vision_msgs.msg import (BoundingBox2D, BoundingBox3D, Detection2D, Detection2DArray, Detection3D,
                             Detection3DArray, LabelInfo, ObjectHypothesisWithPose, VisionClass)

from ..objects import FrameRegion
from .image_conversion import numpy_to_image
from .messages import points_msg

__all__ = ["aligned_points_msg", "confidence_image", "detections_2d_msg", "detections_3d_msg", "label_info_msg",
           "referring_pose_msg"]

def label_info_msg(labels: Sequence[str], threshold: float, header: Header) -> LabelInfo:
    """class_map (i, label i) for the active set: what mask value i means; `threshold` as the node
    applies it (pixels below it carry the mask's UNLABELED value, 255 / 65535)."""
    msg = LabelInfo(header=header, threshold=float(threshold))
    msg.class_map = [VisionClass(class_id=i, class_name=label) for i, label in enumerate(labels)]
    return msg


def confidence_image(confidence: np.ndarray, label_map: np.ndarray, header: Header) -> Image:
    """mono8 round(255 * probability of the pixel's label); 0 where it has no label (below the
    threshold). confidence: (H, W) float32 in [0, 1]; label_map: (H, W) int, -1 = no label."""
    scaled = np.rint(np.clip(confidence, 0.0, 1.0) * 255.0).astype(np.uint8)
    scaled[label_map < 0] = 0
    return numpy_to_image(scaled, "mono8", header)


def aligned_points_msg(points: np.ndarray, header: Header) -> PointCloud2:
    """One point per mask pixel (H x W, NaN where depth is missing): Nav2's semantic
    segmentation layer pairs point i with mask pixel i and refuses any other size."""
    if points.ndim != 3:
        raise ValueError(f"aligned points must be (H, W, 3), got {points.shape}")
    return points_msg(points, header)


def _hypothesis(region: FrameRegion) -> ObjectHypothesisWithPose:
    hypothesis = ObjectHypothesisWithPose()
    hypothesis.hypothesis.class_id = region.region.label
    hypothesis.hypothesis.score = float(region.region.score)
    return hypothesis


def _detection_id(region: FrameRegion) -> str:
    """The track id when tracking gives one (stable across frames), else the region's id."""
    return str(region.track_id if region.track_id else region.region.id)


def detections_2d_msg(regions: Sequence[FrameRegion], header: Header) -> Detection2DArray:
    """One detection per region: label and mean probability as the hypothesis, the pixel box."""
    out = Detection2DArray(header=header)
    for obj in regions:
        x0, y0, x1, y1 = obj.region.bbox
        bbox = BoundingBox2D(size_x=float(x1 - x0), size_y=float(y1 - y0))
        bbox.center.position.x, bbox.center.position.y = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        out.detections.append(Detection2D(header=header, results=[_hypothesis(obj)], bbox=bbox, id=_detection_id(obj)))
    return out


def detections_3d_msg(regions: Sequence[FrameRegion], header: Header) -> Detection3DArray:
    """One detection per region with 3D values: the axis-aligned box of its points (metres,
    `header.frame_id` = the depth camera's optical frame), the hypothesis' pose at the centroid.
    Ids as in the 2D detections, so the two arrays pair up by id."""
    out = Detection3DArray(header=header)
    for obj in regions:
        g = obj.geometry
        if g is None:
            continue
        lo, hi = np.asarray(g.extent_min, np.float64), np.asarray(g.extent_max, np.float64)
        centre = (lo + hi) / 2.0
        bbox = BoundingBox3D(center=Pose(position=Point(x=float(centre[0]), y=float(centre[1]), z=float(centre[2])),
                                         orientation=Quaternion(w=1.0)),
                             size=Vector3(x=float(hi[0] - lo[0]), y=float(hi[1] - lo[1]), z=float(hi[2] - lo[2])))
        hypothesis = _hypothesis(obj)
        hypothesis.pose.pose.position = Point(x=g.centroid[0], y=g.centroid[1], z=g.centroid[2])
        hypothesis.pose.pose.orientation.w = 1.0
        out.detections.append(Detection3D(header=header, results=[hypothesis], bbox=bbox, id=_detection_id(obj)))
    return out


def referring_pose_msg(centroid: Sequence[float], header: Header) -> PoseStamped:
    """The referred object's 3D centroid with identity orientation (the optical frame's axes):
    a target a grasp planner refines, not a grasp."""
    pose = PoseStamped(header=header)
    pose.pose.position = Point(x=float(centroid[0]), y=float(centroid[1]), z=float(centroid[2]))
    pose.pose.orientation.w = 1.0
    return pose
