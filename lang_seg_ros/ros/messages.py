"""Plain results (label maps, `Region`s) -> lang_seg_ros / sensor_msgs messages.

All pixel quantities refer to the class-id mask, which has the input image's size.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, RegionOfInterest
from std_msgs.msg import Header

from lang_seg_ros.msg import LabelSet, ObjectRegion, ReferringRegion, Segmentation, StageTiming

from ..regions import Region
from .image_conversion import numpy_to_image

__all__ = [
    "NO_LABEL_MONO8", "NO_LABEL_MONO16", "class_id_image", "empty_region_msg", "label_set_msg",
    "referring_msg", "region_mask_image", "region_to_msg", "scale_camera_info", "segmentation_msg",
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
    valid = (label_map >= 0) & (label_map < num_labels)
    ids = np.where(valid, label_map, no_label).astype(dtype)
    return numpy_to_image(ids, encoding, header), no_label


def region_mask_image(mask: np.ndarray, header: Header | None = None) -> Image:
    """A bool mask as mono8, 255 on the mask, 0 elsewhere."""
    return numpy_to_image(np.where(mask, np.uint8(255), np.uint8(0)).astype(np.uint8), "mono8", header)


def region_to_msg(region: Region, header: Header | None = None, with_mask: bool = True) -> ObjectRegion:
    x0, y0, x1, y1 = region.bbox
    msg = ObjectRegion()
    msg.id = int(region.id)
    msg.label = region.label
    msg.label_index = int(region.label_index)
    msg.score = float(region.score)
    msg.bbox = RegionOfInterest(x_offset=int(x0), y_offset=int(y0), width=int(x1 - x0), height=int(y1 - y0),
                                do_rectify=False)
    msg.centroid_x, msg.centroid_y = float(region.centroid[0]), float(region.centroid[1])
    msg.area = int(region.area)
    if with_mask:
        msg.mask = region_mask_image(region.mask, header)
    elif header is not None:
        msg.mask.header = header
    return msg


def empty_region_msg(header: Header | None = None) -> ObjectRegion:
    msg = ObjectRegion()
    msg.label_index = -1
    if header is not None:
        msg.mask.header = header
    return msg


def segmentation_msg(header: Header, labels: Sequence[str], label_set_id: int, mask: Image, no_label: int,
                     regions: Sequence[Region], timings_ms: Mapping[str, float], latency_ms: float,
                     sequence: int, dropped_frames: int, region_masks: bool = True) -> Segmentation:
    msg = Segmentation()
    msg.header = header
    msg.labels = list(labels)
    msg.label_set_id = int(label_set_id)
    msg.mask = mask
    msg.no_label = int(no_label)
    msg.regions = [region_to_msg(r, header, region_masks) for r in regions]
    msg.timings = [StageTiming(stage=str(k), duration_ms=float(v)) for k, v in timings_ms.items()]
    msg.latency_ms = float(latency_ms)
    msg.sequence = int(sequence)
    msg.dropped_frames = int(dropped_frames)
    return msg


def label_set_msg(labels: Sequence[str], label_set_id: int, stamp=None) -> LabelSet:
    msg = LabelSet()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.labels = list(labels)
    msg.label_set_id = int(label_set_id)
    return msg


def referring_msg(header: Header, expression: str, region: Region | None) -> ReferringRegion:
    msg = ReferringRegion()
    msg.header = header
    msg.expression = expression
    msg.found = region is not None
    msg.matched_label = region.label if region is not None else ""
    msg.region = region_to_msg(region, header) if region is not None else empty_region_msg(header)
    return msg


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
    k = list(info.k)
    k[0], k[2], k[4], k[5] = k[0] * sx, k[2] * sx, k[4] * sy, k[5] * sy
    out.k = k
    p = list(info.p)
    p[0], p[2], p[3], p[5], p[6], p[7] = p[0] * sx, p[2] * sx, p[3] * sx, p[5] * sy, p[6] * sy, p[7] * sy
    out.p = p
    out.binning_x, out.binning_y = 0, 0
    return out
