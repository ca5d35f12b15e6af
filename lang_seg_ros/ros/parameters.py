"""The node's parameters: declared in one table, validated in one place, mapped onto the core.

config/segment.yaml mirrors `PARAMETERS` (a test checks it). Limits on labels and expressions
come from the core's one policy (`lang_seg_ros.inference.labels`): the node may only tighten them.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from ..inference.labels import MAX_EXPRESSION_CHARS, MAX_LABEL_CHARS, MAX_LABELS, parse_label_spec

__all__ = ["PARAMETERS", "PARAMS_BY_NAME", "Param", "build_pipeline", "descriptor", "pipeline_settings", "scales_of",
           "validate"]


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    read_only: bool = False
    reload: bool = False  # changing it rebuilds the Segmenter (in the worker, between frames)
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None


PARAMETERS: tuple[Param, ...] = (
    Param("checkpoint", "", "Model checkpoint: a .ckpt (official LSeg) or .safetensors path; empty = the "
           "embedded default model.", reload=True),
    Param("device", "auto", "'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'.", reload=True),
    Param("cpu_threads", 0, "Threads torch may use on the CPU; 0 = torch's default (one per core).",
           reload=True, int_range=(0, 1024)),
    Param("precision", "fp32", "Image-branch precision: fp32, fp16 (GPU) or bf16.", reload=True,
           choices=("fp32", "fp16", "bf16")),
    Param("labels", "floor, wall, ceiling, person, chair, table, other",
           "Initial label set, comma-separated. Changeable at run time (also via the 'labels' topic and "
           "the 'set_labels' service)."),
    Param("working_size", 480, "Long side in pixels the image is resized to for the model (single scale).",
           int_range=(32, 4096)),
    Param("scales", [1.0], "[1.0] = single scale at working_size; several values (e.g. [0.75, 1.0, 1.25]) "
           "= multi-scale inference at those scales (slow)."),
    Param("flip", False, "Add horizontally flipped passes (multi-scale only)."),
    Param("threshold", 0.0, "Pixels whose best label has a lower probability get no label (mask value "
           "255 / 65535).", float_range=(0.0, 1.0)),
    Param("min_region_area", 50, "Connected components smaller than this (pixels) are not reported as "
           "regions.", int_range=(1, 1 << 30)),
    Param("max_regions", 256, "At most this many regions per frame (largest first).", int_range=(0, 65535)),
    Param("region_masks", True, "Include each region's cropped mask in 'segmentation'."),
    Param("publish_label_mask", True, "Publish the class-id image on 'label_mask'."),
    Param("publish_overlay", True, "Publish an rgb8 colour overlay with a legend on 'overlay' (rendered only "
          "while 'overlay' has a subscriber)."),
    Param("overlay_alpha", 0.5, "Opacity of the label colours in the overlay.", float_range=(0.0, 1.0)),
    Param("overlap_postprocessing", "auto", "Finish and publish each frame (regions, overlay, messages) on a "
          "second thread while the model runs on the next one: 'on', 'off', or 'auto' = on when the model runs on "
          "a GPU (on a CPU the two threads compete for the cores the model uses; docs/ros.md).", read_only=True,
          choices=("auto", "on", "off")),
    Param("use_compressed", False, "Subscribe sensor_msgs/CompressedImage on 'image/compressed' instead of "
           "'image'.", read_only=True),
    Param("reliability", "best_effort", "QoS reliability of the image subscription: best_effort (like "
           "camera drivers) or reliable.", read_only=True, choices=("best_effort", "reliable")),
    Param("max_image_pixels", 1 << 24, "Larger input images are refused (pixels).", int_range=(1, 1 << 30)),
    Param("max_labels", 512, "Larger label sets are refused.", int_range=(1, MAX_LABELS)),
    Param("max_label_chars", 100, "Longer labels are refused (characters).", int_range=(1, MAX_LABEL_CHARS)),
    Param("max_expression_chars", 256, "Longer referring expressions are refused (characters).",
           int_range=(1, MAX_EXPRESSION_CHARS)),
    Param("referring_min_score", 0.5, "A referred object's mean probability of the category must reach this, "
           "else the answer is 'not found'.", float_range=(0.0, 1.0)),
    Param("stuff_labels", "", "Comma-separated labels that are 'stuff' (one region per label, e.g. 'floor, "
           "wall, sky'), besides those marked 'label:stuff' in the label set."),
    Param("instances", False, "Split touching objects of one thing label into instances (distance-transform "
           "watershed) instead of connected components."),
    Param("split_depth", 0.3, "Watershed seed depth as a fraction of the object's largest inner distance; "
           "lower splits more eagerly.", float_range=(0.01, 1.0)),
    Param("mask_pooling", False, "Classify each region by pooling its pixel embeddings (single scale only); "
           "its label and score then come from the whole object."),
    Param("publish_panoptic", False, "Publish the panoptic id image (32SC1) on 'panoptic' and in "
           "Segmentation.panoptic."),
    Param("tracking", False, "Give regions track ids that stay the same across frames (mask IoU matching)."),
    Param("tracking_iou", 0.3, "Minimum mask IoU between a region and a track of the same label to continue it.",
           float_range=(0.01, 1.0)),
    Param("tracking_max_missed", 5, "A track unseen for more frames than this ends.", int_range=(0, 100000)),
    Param("use_depth", False, "Subscribe 'depth' (16UC1 mm or 32FC1 m, registered to the colour image) and "
           "'depth/camera_info' and give regions 3D values.", read_only=True),
    Param("depth_slop", 0.05, "Largest stamp difference (s) between a colour frame and the depth frame "
           "matched to it.", float_range=(0.0, 10.0)),
    Param("publish_cloud", False, "Publish the labelled point cloud (x, y, z, label, instance) on 'cloud' "
           "(needs depth)."),
    Param("cloud_stride", 1, "Cloud: every n-th pixel in x and y.", int_range=(1, 64)),
    Param("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", read_only=True,
           float_range=(0.05, 60.0)),
    Param("log_throttle_period", 5.0, "Seconds between repeated warnings of one kind.",
           float_range=(0.0, 3600.0)),
)
PARAMS_BY_NAME = {p.name: p for p in PARAMETERS}


def descriptor(p: Param) -> ParameterDescriptor:
    """The ROS descriptor of a parameter: description, read-only flag, ranges, choices."""
    d = ParameterDescriptor(description=p.description, read_only=p.read_only)
    if p.choices:
        d.additional_constraints = "one of: " + ", ".join(p.choices)
    if p.int_range:
        d.integer_range = [IntegerRange(from_value=p.int_range[0], to_value=p.int_range[1], step=0)]
    if p.float_range:
        d.floating_point_range = [FloatingPointRange(from_value=p.float_range[0], to_value=p.float_range[1], step=0.0)]
    return d


def validate(values: dict[str, Any], current: dict[str, Any]) -> str | None:
    """Why `values` (a change on top of `current`) is refused, or None when it is fine."""
    merged = {**current, **values}
    for name, value in values.items():
        p = PARAMS_BY_NAME.get(name)
        if p is None:
            continue
        if p.choices and value not in p.choices:
            return f"{name} must be one of {', '.join(p.choices)}, got {value!r}"
        if p.int_range and not p.int_range[0] <= value <= p.int_range[1]:
            return f"{name} must be in [{p.int_range[0]}, {p.int_range[1]}], got {value}"
        if p.float_range and not p.float_range[0] <= value <= p.float_range[1]:
            return f"{name} must be in [{p.float_range[0]}, {p.float_range[1]}], got {value}"
    device = merged.get("device", "auto")
    if not (device in ("auto", "cpu", "cuda", "mps") or (device.startswith("cuda:") and device[5:].isdigit())):
        return f"device must be auto, cpu, cuda or cuda:N, got {device!r}"
    scales = list(merged.get("scales", [1.0]))
    if not scales or any(math.isnan(float(v)) or not 0.1 <= float(v) <= 4.0 for v in scales):
        return f"scales must be a non-empty list of values in [0.1, 4], got {scales}"
    if {"labels", "stuff_labels"} & set(values):
        try:
            parse_label_spec(str(merged["labels"]), str(merged["stuff_labels"]), merged["max_labels"],
                             merged["max_label_chars"])
        except ValueError as exc:
            return f"{'labels' if 'labels' in values else 'stuff_labels'}: {exc}"
    if merged.get("publish_cloud") and not merged.get("use_depth"):
        return "publish_cloud needs depth: set use_depth (a start-up parameter) to true"
    checkpoint = merged.get("checkpoint", "")
    if "checkpoint" in values and checkpoint and not os.path.isfile(os.path.expanduser(checkpoint)):
        return f"checkpoint {checkpoint!r} is not a file"
    return None


def scales_of(values: Sequence[float]) -> tuple[float, ...] | None:
    """The `scales` parameter as the core takes it: None for single scale ([1.0])."""
    values = tuple(float(v) for v in values)
    return None if values == (1.0,) else values


def pipeline_settings(s: dict[str, Any]):
    """The run-time parameters as the frame pipeline's settings."""
    from ..pipeline import PipelineSettings  # torch loads here, not at node import

    return PipelineSettings(
        working_size=int(s["working_size"]), scales=scales_of(s["scales"]), flip=bool(s["flip"]),
        threshold=float(s["threshold"]), min_region_area=int(s["min_region_area"]),
        max_regions=int(s["max_regions"]), instances=bool(s["instances"]), split_depth=float(s["split_depth"]),
        mask_pooling=bool(s["mask_pooling"]), panoptic=bool(s["publish_panoptic"]), tracking=bool(s["tracking"]),
        tracking_iou=float(s["tracking_iou"]), tracking_max_missed=int(s["tracking_max_missed"]),
        referring_min_score=float(s["referring_min_score"]), overlay=bool(s["publish_overlay"]),
        overlay_alpha=float(s["overlay_alpha"]), cloud=bool(s["publish_cloud"]), cloud_stride=int(s["cloud_stride"]))


def build_pipeline(s: dict[str, Any]):
    """The model (`Segmenter`) and the frame pipeline the parameters describe.

    Raises RuntimeError with a message for the log (what could not be loaded, and what to do)."""
    checkpoint = s["checkpoint"] or None
    try:
        from ..inference import Segmenter  # torch is imported here, not at node import
        from ..pipeline import FramePipeline

        if s["cpu_threads"] > 0:
            import torch
            torch.set_num_threads(int(s["cpu_threads"]))
        return FramePipeline(Segmenter(checkpoint, device=s["device"], precision=s["precision"]),
                             pipeline_settings(s))
    except Exception as exc:  # noqa: BLE001 - any failure is reported the same way
        what = f"checkpoint {checkpoint!r}" if checkpoint else "the embedded default model (checkpoint '')"
        hint = "" if checkpoint else " -- set the 'checkpoint' parameter to a .ckpt or .safetensors file"
        raise RuntimeError(f"could not load {what}: {type(exc).__name__}: {exc}{hint}") from exc
