"""The node's output topics: their publishers and QoS, which outputs a frame builds, and one
frame's messages published on them.

Nothing is built for a topic nobody reads: the dear outputs (overlay, obstacle points, aligned
points) are computed by the pipeline only while subscribed (`lazy`), the cheaper ones here only
while subscribed (`frame_messages`'s `wanted`). Message building itself lives in `messages.py`
(our messages, sensor_msgs, RViz) and `vision_messages.py` (vision_msgs, geometry_msgs).
Every frame output carries the input image's header; 3D outputs its stamp with the depth
camera's optical frame.
Refusals of topic inputs go out on the latched `status` topic (`publish_refusal`, `feedback.py`).
"""
from __future__ import annotations

import math
import time
from typing import Any, Collection, Mapping

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseStamped
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo
from visualization_msgs.msg import MarkerArray

from lang_seg_ros.msg import LabelSet, ReferringRegion, Segmentation

from ..inference.labels import LabelSpec
from . import feedback, messages, vision_messages
from .image_conversion import numpy_to_image

__all__ = ["FRAME_TOPICS", "REGION_TOPICS", "FrameOutputs", "Outputs", "frame_messages"]

#: Topic -> type of everything published per frame (reliable, depth 2).
FRAME_TOPICS: dict[str, type] = {
    "segmentation": Segmentation, "label_mask": Image, "confidence": Image, "overlay": Image,
    "segmentation/camera_info": CameraInfo, "referring/region": ReferringRegion, "referring/mask": Image,
    "referring/points": PointCloud2, "referring/pose": PoseStamped, "panoptic": Image, "cloud": PointCloud2,
    "aligned_points": PointCloud2, "traversable_mask": Image, "obstacles": PointCloud2,
    "regions/markers": MarkerArray, "detections": Detection2DArray, "detections_3d": Detection3DArray,
}
#: Built only while someone subscribes (and, where a parameter switches them, it is on).
ON_DEMAND = {"confidence": "publish_confidence", "detections": "publish_detections",
             "detections_3d": "publish_detections", "regions/markers": None, "referring/points": None,
             "referring/pose": None}

#: The outputs that carry a frame's regions (or what is made from them): while none of these has
#: a subscriber, frames are finished without regions (`FramePipeline.finish(regions=False)`).
REGION_TOPICS = ("segmentation", "detections", "detections_3d", "regions/markers", "panoptic", "cloud",
                 "referring/region", "referring/mask", "referring/points", "referring/pose")

_OUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
# Like CameraInfo: a late subscriber gets the last one at once.
_LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
# Refusals of topic inputs: a sender that subscribes late still sees the last few.
_STATUS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=feedback.STATUS_DEPTH,
                         reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def frame_messages(header: Header, result: Any, timings_ms: Mapping[str, float], latency_ms: float, sequence: int,
                   dropped_frames: int, region_masks: bool = True, depth_header: Header | None = None,
                   camera_info: CameraInfo | None = None, marker_lifetime: float = 1.0,
                   wanted: Collection[str] = ()) -> dict[str, Any]:
    """Every message one frame (`pipeline.FrameResult`) gives, by output topic: segmentation,
    label_mask and what the frame has (segmentation/camera_info from `camera_info` scaled to the
    mask, unless scaling made it infinite; panoptic, cloud, aligned_points, traversable_mask, obstacles, referring/region +
    referring/mask, overlay); the `ON_DEMAND` topics only when in `wanted` (3D ones with depth).
    A frame finished without regions (`result.regions_skipped`) gives none of `REGION_TOPICS`: no
    segmentation message that would list no regions."""
    labels, objects = result.labels, result.objects
    if result.regions_skipped:
        wanted = set(wanted) - set(REGION_TOPICS)
    mask, no_label = messages.class_id_image(objects.label_map, len(labels.labels), header)
    out: dict[str, Any] = {}
    panoptic = messages.panoptic_image(result.panoptic, header) if result.panoptic is not None else None
    if not result.regions_skipped:
        out["segmentation"] = messages.segmentation_msg(
            header, labels.labels, labels.id, mask, no_label, objects.regions, timings_ms, latency_ms, sequence,
            dropped_frames, region_masks=region_masks, label_is_stuff=labels.spec.is_stuff, panoptic=panoptic,
            depth_header=depth_header)
        if result.label_embeddings is not None:
            out["segmentation"].embedding_dim = int(result.label_embeddings.shape[1])
            out["segmentation"].label_embeddings = messages.float_array(result.label_embeddings)
    out["label_mask"] = mask
    if "confidence" in wanted:
        out["confidence"] = vision_messages.confidence_image(result.confidence, objects.label_map, header)
    if "detections" in wanted:
        out["detections"] = vision_messages.detections_2d_msg(objects.regions, header)
    if camera_info is not None:
        scaled = messages.scale_camera_info(camera_info, mask.width, mask.height, header)
        if all(math.isfinite(v) for v in (*scaled.k, *scaled.p)):  # cx = 1e308 scaled by 2 is inf: not sent
            out["segmentation/camera_info"] = scaled
    if panoptic is not None:
        out["panoptic"] = panoptic
    if result.traversable is not None:
        out["traversable_mask"] = numpy_to_image(result.traversable, "mono8", header)
    if depth_header is not None:
        out.update(_depth_messages(header, result, depth_header.frame_id, marker_lifetime, wanted))
    if result.referring is not None:
        answer = result.referring
        out["referring/region"] = messages.referring_msg(header, answer.expression, answer.query, answer.result,
                                                         answer.region,
                                                         depth_header.frame_id if depth_header is not None else "")
        out["referring/mask"] = messages.region_mask_image(answer.result.mask, header)
    if result.overlay is not None:
        out["overlay"] = numpy_to_image(result.overlay, "rgb8", header)
    return out


def _depth_messages(header: Header, result: Any, frame_id: str, marker_lifetime: float,
                    wanted: Collection[str]) -> dict[str, Any]:
    """The 3D outputs of a frame with depth: the image's stamp in the depth camera's frame."""
    header_3d = Header(stamp=header.stamp, frame_id=frame_id)
    regions = result.objects.regions
    out: dict[str, Any] = {}
    if result.cloud is not None:
        out["cloud"] = messages.labelled_cloud_msg(*result.cloud, header_3d)
    if result.aligned_points is not None:
        out["aligned_points"] = vision_messages.aligned_points_msg(result.aligned_points, header_3d)
    if result.obstacles is not None:
        out["obstacles"] = messages.points_msg(result.obstacles, header_3d)
    if "detections_3d" in wanted:
        out["detections_3d"] = vision_messages.detections_3d_msg(regions, header_3d)
    if "regions/markers" in wanted:
        out["regions/markers"] = messages.region_markers(regions, header, frame_id, result.labels.palette,
                                                         marker_lifetime)
    referred = result.referring.region if result.referring is not None else None
    geometry = referred.geometry if referred is not None else None
    if geometry is not None:  # the grasping pair: the referred object's points and a target pose
        if "referring/points" in wanted and geometry.points is not None:
            out["referring/points"] = messages.points_msg(geometry.points, header_3d)
        if "referring/pose" in wanted:
            out["referring/pose"] = vision_messages.referring_pose_msg(geometry.centroid, header_3d)
    return out


class FrameOutputs:
    """One camera's per-frame publishers (`FRAME_TOPICS`, under `prefix`/ when the node serves
    several cameras), created with the node's interfaces."""

    def __init__(self, node: Any, prefix: str = "") -> None:
        self._pubs = {name: node.create_publisher(kind, f"{prefix}/{name}" if prefix else name, _OUT_QOS)
                      for name, kind in FRAME_TOPICS.items()}

    @property
    def publishers(self) -> list[Any]:
        return list(self._pubs.values())

    def subscribed(self, topic: str) -> bool:
        return self._pubs[topic].get_subscription_count() > 0

    def lazy(self, s: Mapping[str, Any]) -> tuple[bool, bool, bool]:
        """(overlay, obstacles, aligned_points): what the pipeline computes for the next frame."""
        return (s["publish_overlay"] and self.subscribed("overlay"),
                s["use_depth"] and self.subscribed("obstacles"),
                s["use_depth"] and s["publish_aligned_points"] and self.subscribed("aligned_points"))

    def wants_regions(self, s: Mapping[str, Any]) -> bool:
        """Whether this camera's next frame needs its regions: one of `REGION_TOPICS` has a
        subscriber, or tracking (ids continue from frame to frame) or mask pooling (it repaints the
        label map) is on."""
        return bool(s["tracking"] or s["mask_pooling"] or any(self.subscribed(topic) for topic in REGION_TOPICS))

    def publish_frame(self, header: Header, result: Any, timings_ms: Mapping[str, float], latency_ms: float,
                      sequence: int, dropped: int, depth_header: Header | None, camera_info: CameraInfo | None,
                      s: Mapping[str, Any]) -> float:
        """Build and publish one frame's messages; returns the ms that took (the `segmentation`
        message's "publish" stage)."""
        t0 = time.perf_counter()
        wanted = {topic for topic, switch in ON_DEMAND.items() if (switch is None or s[switch]) and self.subscribed(topic)}
        out = frame_messages(header, result, timings_ms, latency_ms, sequence, dropped, s["region_masks"],
                             depth_header, camera_info, s["marker_lifetime"], wanted)
        publish_ms = (time.perf_counter() - t0) * 1e3
        if "segmentation" in out:
            out["segmentation"].timings.append(messages.stage_timing("publish", publish_ms))
        if not s["publish_label_mask"]:
            del out["label_mask"]
        for topic, msg in out.items():
            self._pubs[topic].publish(msg)
        return publish_ms

    def publish_overlay(self, header: Header, overlay: Any) -> None:
        """A frame's overlay ((H, W', 3) uint8 RGB), sent after its other messages (`publish_frame`)."""
        self._pubs["overlay"].publish(numpy_to_image(overlay, "rgb8", header))


class Outputs:
    """The node's own publishers (label set, diagnostics, status), created with its interfaces;
    each camera's frame outputs are a `FrameOutputs`."""

    def __init__(self, node: Any) -> None:
        self._labels = node.create_publisher(LabelSet, "current_labels", _LATCHED_QOS)
        self._label_info = node.create_publisher(LabelInfo, "label_info", _LATCHED_QOS)
        self._diagnostics = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._status = node.create_publisher(DiagnosticStatus, feedback.STATUS_TOPIC, _STATUS_QOS)

    @property
    def publishers(self) -> list[Any]:
        return [self._labels, self._label_info, self._diagnostics, self._status]

    def publish_labels(self, spec: LabelSpec, label_set_id: int, stamp: Any, threshold: float) -> None:
        """The active label set on `current_labels` and `label_info` (both latched): sent when a set is
        accepted, so before any mask computed with it."""
        self._labels.publish(messages.label_set_msg(spec.labels, label_set_id, stamp, spec.is_stuff))
        self._label_info.publish(vision_messages.label_info_msg(spec.labels, threshold, Header(stamp=stamp)))

    def publish_diagnostics(self, msg: DiagnosticArray) -> None:
        self._diagnostics.publish(msg)

    def publish_refusal(self, node_name: str, topic: str, kind: str, message: str, sent: str | list[str] | None,
                        stamp_ns: int, repeats: int = 0) -> None:
        """A refused topic input on the latched `status` topic (`feedback.refusal_status`)."""
        self._status.publish(feedback.refusal_status(node_name, topic, kind, message, sent, stamp_ns, repeats))
