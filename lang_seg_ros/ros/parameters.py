"""The node's parameters: declared in one table, validated in one place, mapped onto the core.

config/segment.yaml mirrors `PARAMETERS` (a test checks it). Limits on labels and expressions
come from the core's one policy (`lang_seg_ros.inference.labels`): the node may only tighten them.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any, Collection, Sequence

import yaml
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from ..device_spec import DEVICE_CHOICES, check_device
from ..inference.labels import (MAX_EXPRESSION_CHARS, MAX_LABEL_CHARS, MAX_LABELS, clean_labels, parse_label_spec,
                                parse_labels)
from ..weights import EMBEDDED_MODELS

__all__ = ["MAX_CAMERAS", "MAX_SCALES", "PARAMETERS", "cameras_of", "PARAMS_BY_NAME", "Param", "build_pipeline", "descriptor", "list_overrides",
           "normalise",
           "pipeline_settings", "scales_of", "traversable_of", "validate", "warmup_sizes_of"]

#: Multi-scale inference runs one forward pass per scale (two with flip): more is a denial of service.
MAX_SCALES = 8
SCALE_RANGE = (0.1, 4.0)


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
    # "labels": a comma-separated string or a string array (YAML list, -p name:="[a, b]");
    # "numbers": a number or a number array; "switch": one of `choices`, where YAML's booleans
    # (-p name:=on reaches the node as true) read as "on" / "off". All declared with dynamic typing.
    kind: str = ""


PARAMETERS: tuple[Param, ...] = (
    Param("checkpoint", "", "Model checkpoint: a .ckpt (official LSeg) or .safetensors path, or an embedded "
           "model: empty or 'default' = the embedded default model, 'default-large' = the larger one (slower, "
           "more accurate).", reload=True),
    Param("device", "auto", "'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:N' or 'mps' (Apple).", reload=True),
    Param("backend", "torch", "Image-branch backend: torch (PyTorch; the image branch as traced graphs), onnxruntime, "
          "openvino or tensorrt. The others run an ONNX file (checkpoint: a .onnx from `lang-seg export`, or a "
          "checkpoint exported once on the fly and cached); labels stay changeable at run time.", reload=True,
          choices=("torch", "onnxruntime", "openvino", "tensorrt")),
    Param("warmup_sizes", "", "Input sizes to run once when a model loads, 'WxH, WxH' (e.g. '640x480'): the "
          "first camera frame then does not stall on allocations, kernel choice or engine builds.", reload=True),
    Param("cpu_threads", 0, "Threads the model may use on the CPU (torch, ONNX Runtime, OpenVINO); 0 = torch's "
          "default (one per core).",
           reload=True, int_range=(0, 1024)),
    Param("precision", "auto", "Image-branch precision: auto (what the device runs natively: fp16 on a GPU, bf16 "
          "on a CPU with AVX-512 BF16 / AMX, else fp32), fp32, fp16 or bf16 (a precision the device only emulates "
          "is logged with its cost).", reload=True, choices=("auto", "fp32", "fp16", "bf16")),
    # The embedded default model's street classes: a first run on a street frame shows sense.
    Param("labels", "sky, building, pole, road, pavement, tree, sign symbol, fence, car, pedestrian, bicyclist",
           "Initial label set: comma-separated, or a string array. Changeable at run time (also via the "
           "'labels' topic and the 'set_labels' service).", kind="labels"),
    Param("working_size", 480, "Long side in pixels the image is resized to for the model (single scale).",
           int_range=(32, 4096)),
    Param("scales", [1.0], f"[1.0] = single scale at working_size; several values (e.g. [0.75, 1.0, 1.25]) "
           f"= multi-scale inference at those scales (slow): at most {MAX_SCALES} values in "
           f"[{SCALE_RANGE[0]}, {SCALE_RANGE[1]}].", kind="numbers"),
    Param("flip", False, "Add horizontally flipped passes (multi-scale only)."),
    Param("threshold", 0.0, "Pixels whose best label has a lower probability get no label (mask value "
           "255 / 65535).", float_range=(0.0, 1.0)),
    Param("min_region_area", 50, "Connected components smaller than this (pixels) are not reported as "
           "regions.", int_range=(1, 1 << 30)),
    Param("max_regions", 256, "At most this many regions per frame (largest first).", int_range=(0, 65535)),
    Param("region_masks", True, "Include each region's cropped mask in 'segmentation'."),
    Param("publish_label_mask", True, "Publish the class-id image on 'label_mask'."),
    Param("publish_confidence", False, "Publish mono8 round(255 * probability of the pixel's label) on "
          "'confidence' (0 = no label), built only while subscribed: Nav2's semantic segmentation layer reads it."),
    Param("publish_aligned_points", False, "Publish an organised PointCloud2 on 'aligned_points': one x, y, z point "
          "(m, depth optical frame, NaN without depth) per mask pixel, built only while subscribed. Needs use_depth."),
    Param("publish_detections", True, "Publish vision_msgs/Detection2DArray on 'detections' (one per region) and, "
          "with depth, Detection3DArray on 'detections_3d', built only while subscribed."),
    Param("publish_overlay", True, "Publish an rgb8 colour overlay with a legend on 'overlay' (rendered only "
          "while 'overlay' has a subscriber)."),
    Param("overlay_alpha", 0.5, "Opacity of the label colours in the overlay.", float_range=(0.0, 1.0)),
    Param("overlap_postprocessing", "auto", "Finish and publish each frame (regions, overlay, messages) on a "
          "second thread while the model runs on the next one: 'on', 'off', or 'auto' = on when the model runs on "
          "a GPU, or on a CPU when cpu_threads is set below the core count (else the two threads compete for the "
          "cores the model uses; docs/ros.md).", read_only=True,
          choices=("auto", "on", "off"), kind="switch"),
    Param("cameras", "", "Several cameras served by one model: names, e.g. '[front, rear]' (each a ROS name "
          "token). Camera NAME reads NAME/image (or NAME/image/compressed), NAME/camera_info, NAME/depth and "
          "NAME/depth/camera_info and publishes every output under NAME/ (NAME/segmentation, ...); one label set and "
          "expression for all. Empty = one camera on today's topic names.", read_only=True, kind="labels"),
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
    Param("referring_vocabulary", False, "The referring phrase also competes with the model's vocabulary (its "
          "training names, else ADE20K's 150 classes), not only the active labels, and near-synonyms read as "
          "labels ('person' -> 'pedestrian') for closed-set models: 'not found' holds with small label sets."),
    Param("referring_pixel_threshold", 0.0, "A referred candidate's pixels: the phrase's probability at least this "
          "(`lang-seg refer` uses the model's: 0.4 for both embedded models, chosen on CamVid train).",
          float_range=(0.0, 1.0)),
    Param("referring_relative_area", 0.0, "Referring candidates smaller than this fraction of the largest candidate "
          "are ignored (`lang-seg refer` uses 0.05, chosen on CamVid train).", float_range=(0.0, 1.0)),
    Param("referring_min_area_fraction", 0.0005, "Referring candidates smaller than this fraction of the image are "
          "ignored.", float_range=(0.0, 1.0)),
    Param("stuff_labels", "", "Labels that are 'stuff' (one region per label, e.g. 'floor, wall, sky'), "
           "comma-separated or a string array, besides those marked 'label:stuff' in the label set.", kind="labels"),
    Param("traversable_labels", "", "Labels the robot may drive on ('floor, road, sidewalk'), comma-separated or "
          "a string array, matched case-insensitively: 'traversable_mask' marks their pixels and 'obstacles' "
          "holds the 3D points of every other label.", kind="labels"),
    Param("obstacle_stride", 2, "Obstacle cloud: every n-th pixel in x and y.", int_range=(1, 64)),
    Param("obstacle_min_range", 0.0, "Obstacle cloud: points nearer than this (m, from the camera) are left "
          "out.", float_range=(0.0, 1000.0)),
    Param("obstacle_max_range", 0.0, "Obstacle cloud: points farther than this (m, from the camera) are left "
          "out; 0 = no limit.", float_range=(0.0, 1000.0)),
    Param("marker_lifetime", 1.0, "Seconds an RViz marker on 'regions/markers' stays without an update.",
          float_range=(0.0, 3600.0)),
    Param("region_embeddings", False, "Each region carries its pooled, L2-normalised pixel embedding and "
          "'segmentation' the label embeddings (single-scale inference only)."),
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
    Param("log_throttle_period", 5.0, "Seconds before the same warning (same kind and reason) is logged again; "
          "a different reason is logged at once.", float_range=(0.0, 3600.0)),
)
PARAMS_BY_NAME = {p.name: p for p in PARAMETERS}


def descriptor(p: Param) -> ParameterDescriptor:
    """The ROS descriptor of a parameter: description, read-only flag, ranges, choices."""
    d = ParameterDescriptor(description=p.description, read_only=p.read_only, dynamic_typing=bool(p.kind))
    if p.choices:
        d.additional_constraints = "one of: " + ", ".join(p.choices)
    if p.int_range:
        d.integer_range = [IntegerRange(from_value=p.int_range[0], to_value=p.int_range[1], step=0)]
    if p.float_range:
        d.floating_point_range = [FloatingPointRange(from_value=p.float_range[0], to_value=p.float_range[1], step=0.0)]
    return d


def normalise(name: str, value: Any) -> Any:
    """A parameter value as the node keeps it: a `labels`-kind value as a str or a list of str,
    a `numbers`-kind value as a list of floats. ValueError naming the parameter for a wrong type."""
    p = PARAMS_BY_NAME.get(name)
    kind = p.kind if p is not None else ""
    if kind == "labels":
        if isinstance(value, str):
            return value
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ValueError(f"{name} must be a comma-separated string or a string array, got {value!r:.80}")
    if kind == "switch":  # YAML 1.1 (rcl, params files) reads on/off as booleans; `validate` checks the rest
        return ("on" if value else "off") if isinstance(value, bool) else value
    if kind == "numbers":
        values = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
        if (isinstance(values, (list, tuple)) or hasattr(values, "tolist")) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in list(values)):
            return [float(v) for v in values]
        raise ValueError(f"{name} must be a number or a number array, got {value!r:.80}")
    return value


def validate(values: dict[str, Any], current: dict[str, Any]) -> str | None:
    """Why `values` (a change on top of `current`, normalised) is refused, or None when it is fine.
    The reason names the parameter at fault."""
    merged = {**current, **values}
    for name, value in values.items():
        p = PARAMS_BY_NAME.get(name)
        if p is None:
            continue
        if p.kind:
            try:
                value = normalise(name, value)
            except ValueError as exc:
                return str(exc)
        elif p.default is not None and type(value) is not type(p.default) and not (
                isinstance(p.default, float) and isinstance(value, int) and not isinstance(value, bool)):
            return f"{name} must be of type {type(p.default).__name__}, got {value!r:.80}"
        if p.choices and value not in p.choices:
            return f"{name} must be one of {', '.join(p.choices)}, got {value!r:.80}"
        if p.int_range and not p.int_range[0] <= value <= p.int_range[1]:
            return f"{name} must be in [{p.int_range[0]}, {p.int_range[1]}], got {value}"
        if p.float_range and not p.float_range[0] <= value <= p.float_range[1]:
            return f"{name} must be in [{p.float_range[0]}, {p.float_range[1]}], got {value}"
    try:
        check_device(merged.get("device", "auto"))
    except ValueError:
        return f"device must be {DEVICE_CHOICES}, got {merged.get('device')!r:.80}"
    scales = list(merged.get("scales", [1.0]))
    if not 1 <= len(scales) <= MAX_SCALES:
        return f"scales must hold 1 to {MAX_SCALES} values, got {len(scales)}"
    if any(not (math.isfinite(v) and SCALE_RANGE[0] <= v <= SCALE_RANGE[1]) for v in scales):
        return f"scales must be values in [{SCALE_RANGE[0]}, {SCALE_RANGE[1]}], got {scales}"
    label_params = [n for n in ("labels", "stuff_labels", "max_labels", "max_label_chars") if n in values]
    if label_params:
        try:
            parse_label_spec(merged["labels"], merged["stuff_labels"], merged["max_labels"], merged["max_label_chars"])
        except ValueError as exc:
            return f"{label_params[0]}: {exc}"
    if "traversable_labels" in values:
        try:
            traversable_of(merged["traversable_labels"])
        except ValueError as exc:
            return f"traversable_labels: {exc}"
    if "cameras" in values:
        try:
            cameras_of(values["cameras"])
        except ValueError as exc:
            return f"cameras: {exc}"
    for name in ("publish_cloud", "publish_aligned_points"):
        if merged.get(name) and not merged.get("use_depth"):
            return f"{name} needs depth: set use_depth (a start-up parameter) to true"
    if "warmup_sizes" in values:
        try:
            warmup_sizes_of(values["warmup_sizes"])
        except ValueError as exc:
            return f"warmup_sizes: {exc}"
    checkpoint = merged.get("checkpoint", "")
    if ("checkpoint" in values and checkpoint and checkpoint not in EMBEDDED_MODELS
            and not os.path.isfile(os.path.expanduser(checkpoint))):
        return f"checkpoint {checkpoint!r} is not a file (nor an embedded model: {', '.join(EMBEDDED_MODELS)})"
    return None


def _node_matches(key: str, fqn: str) -> bool:
    """A params file's node key ("/**", "/**/lang_seg", "/robot/lang_seg", "lang_seg") against
    the node's fully qualified name, with rcl's wildcards (* one name, ** any names)."""
    key = key if key.startswith("/") else "/" + key
    pattern = re.escape(key).replace(r"/\*\*", "(/[^/]+)*").replace(r"\*", "[^/]+")
    return re.fullmatch(pattern, fqn) is not None


def list_overrides(argv: Sequence[str], fqn: str, names: Sequence[str],
                   any_type: Collection[str] = ()) -> dict[str, Any]:
    """The `names` whose last override on the command line is a list: {name: list}; for the names
    in `any_type`, the last override whatever its type.

    rcl keeps an overridden parameter's values of every type it was given, and rclpy then reads
    the string before the string array, and a boolean before a string:
    `--params-file segment.yaml -p labels:="[a, b]"` would give the file's string, a file's
    `overlap_postprocessing: off` (a boolean) would beat `-p overlap_postprocessing:=auto`. This
    reads the ROS arguments in order (params files and -p rules, as rcl applies them, as YAML 1.1)
    so that the last one given wins, whatever its type."""
    found: dict[str, Any] = {}
    args = list(argv)
    i, ros_args = 0, False
    while i < len(args):
        arg = args[i]
        if arg in ("--ros-args", "--"):  # only ROS arguments count: --ros-args ... [--]
            ros_args = arg == "--ros-args"
            i += 1
            continue
        if not ros_args:
            i += 1
            continue
        if arg == "--params-file" and i + 1 < len(args):
            try:
                with open(args[i + 1]) as f:
                    document = yaml.safe_load(f) or {}
            except (OSError, yaml.YAMLError):
                document = {}
            for key, section in (document.items() if isinstance(document, dict) else ()):
                values = section.get("ros__parameters") if isinstance(section, dict) else None
                if isinstance(values, dict) and _node_matches(str(key), fqn):
                    found.update({n: values[n] for n in names if n in values})
            i += 2
            continue
        if arg in ("-p", "--param") and i + 1 < len(args):
            rule, _, text = args[i + 1].partition(":=")
            name = rule.rpartition(":")[2]
            if name in names and (":" not in rule or _node_matches(rule.rpartition(":")[0], fqn)
                                  or rule.rpartition(":")[0] == fqn.rpartition("/")[2]):
                try:
                    found[name] = yaml.safe_load(text)
                except yaml.YAMLError:
                    found[name] = text
            i += 2
            continue
        i += 1
    return {name: [str(v) for v in value] if isinstance(value, list) else value for name, value in found.items()
            if isinstance(value, list) or name in any_type}


def warmup_sizes_of(text: str) -> list[tuple[int, int]]:
    """'640x480, 1280x720' -> [(480, 640), (720, 1280)] as (height, width); at most 8 sizes, each
    side 32..8192 pixels. ValueError saying why."""
    sizes = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        match = re.fullmatch(r"([0-9]{1,5})\s*[xX]\s*([0-9]{1,5})", part)
        if not match:
            raise ValueError(f"expected 'WIDTHxHEIGHT', got {part!r:.40}")
        width, height = int(match.group(1)), int(match.group(2))
        if not (32 <= width <= 8192 and 32 <= height <= 8192):
            raise ValueError(f"{width}x{height}: each side must be 32..8192 pixels")
        sizes.append((height, width))
    if len(sizes) > 8:
        raise ValueError(f"at most 8 sizes, got {len(sizes)}")
    return sizes


#: Cameras one node serves at most (each adds its subscriptions, publishers and a frame per round).
MAX_CAMERAS = 16
_CAMERA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def cameras_of(value: str | Sequence[str]) -> tuple[str, ...]:
    """The `cameras` parameter as a tuple of names; () when blank (one camera, today's topics).
    ValueError for a name that is not a ROS name token, a repeated name or more than MAX_CAMERAS."""
    entries = parse_labels(value) if isinstance(value, str) else list(value)
    names = tuple(e.strip() for e in entries if isinstance(e, str) and e.strip())
    for name in names:
        if not _CAMERA_NAME.fullmatch(name):
            raise ValueError(f"camera name {name[:40]!r} is not a ROS name token (a letter, then letters, "
                             "digits or '_', at most 64)")
    if len(set(names)) != len(names):
        raise ValueError(f"a camera is named twice in {list(names)}")
    if len(names) > MAX_CAMERAS:
        raise ValueError(f"at most {MAX_CAMERAS} cameras, got {len(names)}")
    return names


def traversable_of(value: str | Sequence[str]) -> tuple[str, ...]:
    """The `traversable_labels` parameter as a clean tuple; () when blank (nothing is traversable).
    ValueError as the label policy says (duplicates, control characters, too long)."""
    entries = parse_labels(value) if isinstance(value, str) else list(value)
    if not any(e.strip() for e in entries if isinstance(e, str)):
        return ()
    return clean_labels(entries)


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
        referring_min_score=float(s["referring_min_score"]), referring_vocabulary=bool(s["referring_vocabulary"]),
        referring_pixel_threshold=float(s["referring_pixel_threshold"]),
        referring_relative_area=float(s["referring_relative_area"]),
        referring_min_area_fraction=float(s["referring_min_area_fraction"]), overlay=bool(s["publish_overlay"]),
        overlay_alpha=float(s["overlay_alpha"]), cloud=bool(s["publish_cloud"]), cloud_stride=int(s["cloud_stride"]),
        traversable=traversable_of(s["traversable_labels"]), obstacle_stride=int(s["obstacle_stride"]),
        obstacle_range=(float(s["obstacle_min_range"]), float(s["obstacle_max_range"]) or math.inf),
        region_embeddings=bool(s["region_embeddings"]))


def build_pipeline(s: dict[str, Any], default_threads: int = 0):
    """The model (`Segmenter`) and the frame pipeline the parameters describe. `default_threads`:
    torch's CPU thread count before any `cpu_threads` (set again for `cpu_threads` 0; 0 = leave as is).

    Raises RuntimeError with a message for the log (what could not be loaded, and what to do)."""
    checkpoint = s["checkpoint"] or None
    from ..model.device import resolve_device  # torch is imported here, not at node import

    try:
        resolve_device(s["device"])
    except ValueError as exc:  # a device this machine lacks is no checkpoint problem
        raise RuntimeError(f"could not load the model on device {s['device']!r}: {exc}") from exc
    try:
        from ..inference import Segmenter
        from ..pipeline import FramePipeline

        threads = int(s["cpu_threads"]) or default_threads
        if threads > 0:
            import torch
            torch.set_num_threads(threads)
        import cv2

        # The per-frame OpenCV work (regions, overlay, depth) is on camera-sized images, where
        # OpenCV's own threads only compete with the model's: one thread (measured in bench_node).
        cv2.setNumThreads(1)
        segmenter = Segmenter(checkpoint, device=s["device"], precision=s["precision"], backend=s["backend"],
                              working_size=int(s["working_size"]))
        segmenter.warmup(warmup_sizes_of(s["warmup_sizes"]))
        return FramePipeline(segmenter, pipeline_settings(s))
    except Exception as exc:  # noqa: BLE001 - any failure is reported the same way
        what = f"checkpoint {checkpoint!r}" if checkpoint else "the embedded default model (checkpoint '')"
        hint = "" if checkpoint else " -- set the 'checkpoint' parameter to a .ckpt or .safetensors file"
        raise RuntimeError(f"could not load {what}: {type(exc).__name__}: {exc}{hint}") from exc
