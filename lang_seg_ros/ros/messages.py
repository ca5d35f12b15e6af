"""Plain results (label maps, `Region`s) -> lang_seg_ros / sensor_msgs messages.

All pixel quantities refer to the class-id mask, which has the input image's size.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
from geometry_msgs.msg import Point
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from builtin_interfaces.msg import Duration
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from lang_seg_ros.msg import LabelSet, ObjectRegion, ReferringRegion, Segmentation, StageTiming

from ..objects.regions import Region
from .image_conversion import _as_byte_array, numpy_to_image
from ..objects import FrameRegion

if TYPE_CHECKING:
    from ..referring import ReferringQuery, ReferringResult

__all__ = [
    "NO_LABEL_MONO8", "NO_LABEL_MONO16", "class_id_image", "empty_region_msg", "label_set_msg",
    "float_array", "labelled_cloud_msg", "object_region_msg", "panoptic_image", "points_msg", "referring_msg", "region_markers",
    "region_mask_image", "region_to_msg", "scale_camera_info", "segmentation_msg", "stage_timing",
]

NO_LABEL_MONO8 = int(Segmentation.NO_LABEL_MONO8)  # 255
NO_LABEL_MONO16 = int(Segmentation.NO_LABEL_MONO16)  # 65535


def class_id_image(label_map: np.ndarray, num_labels: int, header: Header | None = None) -> tuple[Image, int]:
    """The class-id image of a label map: mono8 for up to 255 labels, else mono16.

    Pixels outside [0, num_labels) (NO_LABEL = -1) get the "no label" value, which is returned
    with the image (255 for mono8, 65535 for mono16).
    """
    if num_labels <= NO_LABEL_MONO8:
        dtype, encoding, no_label = np.uint8, "mono8", NO_LABEL_MONO8
    elif num_labels <= NO_LABEL_MONO16:
        dtype, encoding, no_label = np.uint16, "mono16", NO_LABEL_MONO16
    else:
        raise ValueError(f"{num_labels} labels do not fit a 16-bit class-id image")
    label_map = np.asarray(label_map)
    if dtype == np.uint8 and label_map.size and int(label_map.min()) >= -1 and int(label_map.max()) < num_labels:
        ids = label_map.astype(np.uint8)  # one pass: -1 (no label) wraps to 255, the no-label value
    else:
        valid = (label_map >= 0) & (label_map < num_labels)
        ids = np.where(valid, label_map, no_label).astype(dtype)
    return numpy_to_image(ids, encoding, header), no_label


def region_mask_image(mask: np.ndarray, header: Header | None = None, into: Image | None = None) -> Image:
    """A bool mask as mono8, 255 on the mask, 0 elsewhere (written into `into` when given)."""
    return numpy_to_image(np.asarray(mask, bool).view(np.uint8) * np.uint8(255), "mono8", header, into)


def region_to_msg(region: Region, header: Header | None = None, with_mask: bool = True) -> ObjectRegion:
    """One region as an ObjectRegion. Its box and mask are written into the message's own default
    fields: a frame has dozens of regions, and each nested message built and replaced costs
    microseconds of Python."""
    x0, y0, x1, y1 = region.bbox
    msg = ObjectRegion()
    msg.id = int(region.id)
    msg.label = region.label
    msg.label_index = int(region.label_index)
    msg.score = float(region.score)
    bbox = msg.bbox
    bbox.x_offset, bbox.y_offset, bbox.width, bbox.height = int(x0), int(y0), int(x1 - x0), int(y1 - y0)
    bbox.do_rectify = False
    msg.centroid_x, msg.centroid_y = float(region.centroid[0]), float(region.centroid[1])
    msg.area = int(region.area)
    if with_mask:
        region_mask_image(region.mask, header, into=msg.mask)
    elif header is not None:
        msg.mask.header = header
    return msg


def object_region_msg(obj: FrameRegion, header: Header | None = None, with_mask: bool = True,
                      frame_id_3d: str = "") -> ObjectRegion:
    """A frame region with its instance, panoptic id, track id and (when known) 3D values."""
    msg = region_to_msg(obj.region, header, with_mask)
    msg.track_id = int(obj.track_id)
    msg.is_stuff = bool(obj.is_stuff)
    msg.instance = int(obj.instance)
    msg.panoptic_id = int(obj.panoptic_id)
    if obj.embedding is not None:
        msg.embedding = float_array(obj.embedding)
    geometry = obj.geometry
    if geometry is not None:
        msg.has_3d = True
        msg.frame_id_3d = frame_id_3d
        msg.centroid_3d = Point(x=geometry.centroid[0], y=geometry.centroid[1], z=geometry.centroid[2])
        msg.extent_min = Point(x=geometry.extent_min[0], y=geometry.extent_min[1], z=geometry.extent_min[2])
        msg.extent_max = Point(x=geometry.extent_max[0], y=geometry.extent_max[1], z=geometry.extent_max[2])
        msg.median_depth = float(geometry.median_depth)
        msg.valid_fraction = float(geometry.valid_fraction)
    return msg


def empty_region_msg(header: Header | None = None) -> ObjectRegion:
    msg = ObjectRegion()
    msg.label_index = -1
    if header is not None:
        msg.mask.header = header
    return msg


def segmentation_msg(header: Header, labels: Sequence[str], label_set_id: int, mask: Image, no_label: int,
                     regions: Sequence[Region | FrameRegion], timings_ms: Mapping[str, float], latency_ms: float,
                     sequence: int, dropped_frames: int, region_masks: bool = True,
                     label_is_stuff: Sequence[bool] = (), panoptic: Image | None = None,
                     depth_header: Header | None = None) -> Segmentation:
    """`regions` as plain `Region`s or `FrameRegion`s (then with instance, panoptic, track and 3D
    fields; the 3D frame is `depth_header.frame_id`)."""
    msg = Segmentation()
    msg.header = header
    msg.labels = list(labels)
    msg.label_is_stuff = [bool(s) for s in label_is_stuff] or [False] * len(labels)
    msg.label_set_id = int(label_set_id)
    msg.mask = mask
    msg.no_label = int(no_label)
    frame_id_3d = depth_header.frame_id if depth_header is not None else ""
    msg.regions = [object_region_msg(r, header, region_masks, frame_id_3d) if isinstance(r, FrameRegion)
                   else region_to_msg(r, header, region_masks) for r in regions]
    if panoptic is not None:
        msg.panoptic = panoptic
    else:
        msg.panoptic.header = header
    if depth_header is not None:
        msg.depth_header = depth_header
    msg.timings = [stage_timing(k, v) for k, v in timings_ms.items()]
    msg.latency_ms = float(latency_ms)
    msg.sequence = int(sequence)
    msg.dropped_frames = int(dropped_frames)
    return msg


def stage_timing(stage: str, duration_ms: float) -> StageTiming:
    return StageTiming(stage=str(stage), duration_ms=float(duration_ms))


def label_set_msg(labels: Sequence[str], label_set_id: int, stamp=None,
                  label_is_stuff: Sequence[bool] = ()) -> LabelSet:
    msg = LabelSet()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.labels = list(labels)
    msg.label_is_stuff = [bool(s) for s in label_is_stuff] or [False] * len(labels)
    msg.label_set_id = int(label_set_id)
    return msg


def referring_msg(header: Header, expression: str, query: "ReferringQuery | None",
                  answer: "ReferringResult | None", region: FrameRegion | None = None,
                  frame_id_3d: str = "") -> ReferringRegion:
    """The answer to `expression` on the frame of `header`.

    answer: the referrer's result (None: not found, e.g. no answer could be computed); region:
    the chosen object as a `FrameRegion` (its id / track id / panoptic fields linked to the
    frame's regions, its 3D values) when found.
    """
    msg = ReferringRegion()
    msg.header = header
    msg.expression = expression
    msg.category = query.category if query is not None else ""
    found = answer is not None and answer.found and region is not None
    msg.found = found
    msg.reason = answer.reason if answer is not None else ""
    if found:
        msg.matched_label = region.region.label
        msg.score = float(answer.score)
        msg.region = object_region_msg(region, header, True, frame_id_3d)
    else:
        msg.region = empty_region_msg(header)
    return msg


def panoptic_image(panoptic: np.ndarray, header: Header | None = None) -> Image:
    """(H, W) int32 panoptic ids as a "32SC1" image (see Segmentation.msg for the encoding)."""
    return numpy_to_image(np.ascontiguousarray(panoptic, dtype=np.int32), "32SC1", header)


def float_array(values: np.ndarray):
    """float32 values for a float32[] message field without a Python float per element."""
    from array import array

    return array("f", np.ascontiguousarray(values, np.float32).ravel().tobytes())


_POINT_FIELD_TYPES = {"<f4": PointField.FLOAT32, "<u4": PointField.UINT32}
_XYZ_FIELDS = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, name in enumerate("xyz")]
_CLOUD_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("label", "<u4"), ("instance", "<u4")])


def _cloud_msg(cloud: np.ndarray, header: Header, is_dense: bool) -> PointCloud2:
    """A structured array (one record per point, little-endian float32 / uint32 fields) as an
    unorganised PointCloud2 (height 1), built with numpy (sensor_msgs_py has no Jazzy wheel)."""
    dtype = cloud.dtype
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = 1, int(len(cloud))
    msg.fields = [PointField(name=name, offset=dtype.fields[name][1], count=1,
                             datatype=_POINT_FIELD_TYPES[dtype.fields[name][0].str]) for name in dtype.names]
    msg.is_bigendian = False
    msg.point_step = dtype.itemsize
    msg.row_step = msg.point_step * msg.width
    msg.data = _as_byte_array(np.ascontiguousarray(cloud).view(np.uint8))
    msg.is_dense = is_dense  # true only when no point has a NaN / inf coordinate
    return msg


def labelled_cloud_msg(points: np.ndarray, labels: np.ndarray, instances: np.ndarray, header: Header) -> PointCloud2:
    """Fields x, y, z (float32, metres), label and instance (uint32)."""
    cloud = np.empty(len(points), _CLOUD_DTYPE)
    if len(points):
        cloud["x"], cloud["y"], cloud["z"] = points[:, 0], points[:, 1], points[:, 2]
        cloud["label"], cloud["instance"] = labels, instances
    return _cloud_msg(cloud, header, bool(np.isfinite(points).all()))


def points_msg(points: np.ndarray, header: Header) -> PointCloud2:
    """Points with fields x, y, z (float32, metres): (N, 3) as an unorganised cloud (height 1),
    what Nav2's obstacle and voxel layers read, or (H, W, 3) as an organised one (height H,
    width W). The array's bytes are the message's data as they are."""
    points = np.ascontiguousarray(points, np.float32)
    height, width = points.shape[:2] if points.ndim == 3 else (1, len(points))
    msg = PointCloud2(header=header, height=int(height), width=int(width), fields=list(_XYZ_FIELDS),
                      is_bigendian=False, point_step=12, row_step=12 * int(width))
    msg.data = _as_byte_array(points.view(np.uint8).ravel())
    msg.is_dense = bool(np.isfinite(points).all())
    return msg


def region_markers(regions: Sequence[FrameRegion], header: Header, frame_id: str, colors: np.ndarray,
                   lifetime_s: float) -> MarkerArray:
    """RViz markers of the regions with 3D values, in `frame_id` (the depth camera's optical frame).

    First a DELETEALL (markers of regions gone since the last frame disappear), then per region a
    translucent box over its 3D extent (namespace "regions") and a text above it (namespace
    "labels": label, score, track id), both with the region's id and `lifetime_s` (0 = forever),
    so markers also clear when the node stops publishing. colors: (N, 3) uint8 RGB per label.
    """
    out = MarkerArray()
    out.markers.append(Marker(header=Header(stamp=header.stamp, frame_id=frame_id), action=Marker.DELETEALL))
    sec = int(lifetime_s)
    lifetime = Duration(sec=sec, nanosec=int(round((lifetime_s - sec) * 1e9)) % 1_000_000_000)
    for obj in regions:
        g = obj.geometry
        if g is None:
            continue
        r = obj.region
        lo, hi = np.asarray(g.extent_min, np.float64), np.asarray(g.extent_max, np.float64)
        rgb = colors[r.label_index % len(colors)] / 255.0 if len(colors) else np.ones(3)
        common = dict(header=Header(stamp=header.stamp, frame_id=frame_id), id=int(r.id), action=Marker.ADD,
                      lifetime=lifetime, frame_locked=False)
        box = Marker(ns="regions", type=Marker.CUBE, **common)
        box.pose.position = Point(x=float((lo[0] + hi[0]) / 2), y=float((lo[1] + hi[1]) / 2), z=float((lo[2] + hi[2]) / 2))
        box.pose.orientation.w = 1.0
        box.scale.x, box.scale.y, box.scale.z = (float(max(v, 0.01)) for v in hi - lo)  # RViz hides a 0 scale
        box.color = ColorRGBA(r=float(rgb[0]), g=float(rgb[1]), b=float(rgb[2]), a=0.4)
        text = Marker(ns="labels", type=Marker.TEXT_VIEW_FACING, **common)
        # y points down in the optical frame: the text sits just above the box's top face
        text.pose.position = Point(x=box.pose.position.x, y=float(lo[1] - 0.05), z=box.pose.position.z)
        text.pose.orientation.w = 1.0
        text.scale.z = 0.12  # text height (m)
        text.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
        text.text = f"{r.label} {r.score:.2f}" + (f" #{obj.track_id}" if obj.track_id else "")
        out.markers += [box, text]
    return out


def scale_camera_info(info: CameraInfo, width: int, height: int, header: Header) -> CameraInfo:
    """`info` for an image resized to width x height (K and P scaled, as image_proc's resize)."""
    sx = width / info.width if info.width else 1.0
    sy = height / info.height if info.height else 1.0
    out = CameraInfo()
    out.header = header
    out.width, out.height = int(width), int(height)
    out.distortion_model = info.distortion_model
    out.d = list(info.d)
    out.r = list(info.r)
    k = [float(v) for v in info.k]  # Python floats: 1e308 * 2 is inf without a numpy warning (the caller drops it)
    k[0], k[2], k[4], k[5] = k[0] * sx, k[2] * sx, k[4] * sy, k[5] * sy
    out.k = k
    p = [float(v) for v in info.p]
    p[0], p[2], p[3], p[5], p[6], p[7] = p[0] * sx, p[2] * sx, p[3] * sx, p[5] * sy, p[6] * sy, p[7] * sy
    out.p = p
    out.binning_x, out.binning_y = 0, 0
    return out
