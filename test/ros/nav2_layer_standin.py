"""A stand-in of the INTAKE of Nav2's semantic segmentation layer (not its costmap).

Upstream: github.com/kiwicampus/semantic_segmentation_layer (Apache-2.0), read at commit
a70cf6ec8a44d0903209b6f433d9f8c40dbca0db (branch rolling, 2026-04-02); branch jazzy (commit
274c713b78c80f2cb2fa9ef2700dcc0bd63bcaef) has the same intake logic, only the rclcpp/nav2 API
wrappers differ and its line numbers run 0-4 lines later in semantic_segmentation_layer.cpp;
branch humble has no approximate-time option. Line numbers below are the rolling commit's.
This module is our own reading of that code in Python, not a port of it.

What it mirrors, and where upstream does it:

Parameters (src/semantic_segmentation_layer.cpp, onInitialize, lines 73-177)
  * layer: enabled (bool, true), combination_method (int, 1), observation_sources (string,
    space separated), publish_debug_topics (bool, false), use_approximate_time_sync (bool, true)
    (lines 73-77); per source: segmentation_topic, confidence_topic, labels_topic,
    pointcloud_topic (strings), observation_persistence, expected_update_rate,
    max_obstacle_distance (5.0), min_obstacle_distance (0.3), tile_map_decay_time (5.0)
    (doubles), class_types (string array), visualize_tile_map (bool, false),
    use_cost_selection (bool, true) (lines 104-115); per class type: classes (string array),
    base_cost, max_cost, mark_confidence, samples_to_max_cost (ints), dominant_priority (bool)
    (lines 143-148). `LAYER_PARAMETERS`, `SOURCE_PARAMETERS`, `GROUP_PARAMETERS` below.
  * empty class_types: the layer exits (lines 130-134); a class type with no classes is skipped
    with an error (151-155); no class at all: exits (173-177). A class named by two types keeps
    the first (std::unordered_map::insert, line 169).

Synchronisation (lines 180-283)
  * mask, cloud (and confidence when confidence_topic is not empty) go through one
    message_filters synchroniser: TimeSynchronizer (identical stamps) when
    use_approximate_time_sync is false, else ApproximateTime with setMaxIntervalDuration 100 ms
    (lines 229-258, 263-282). Without a confidence topic the pair mask + cloud is synchronised.
  * the cloud first passes a tf2_ros::MessageFilter to the costmap's global frame (lines
    215-220): it needs a frame_id that tf can transform (here: only "non-empty" is checked).
  * QoS: mask, confidence, cloud SensorDataQoS(50) = best effort, volatile (line 182);
    LabelInfo LatchedSubscriptionQoS(5) = reliable, transient local (line 188).

Frame callbacks (syncSegmPointcloudCb lines 422-458, syncSegmConfPointcloudCb 460-491)
  * refused: mask width * height != cloud width * height (427-435, 465-473); mask data shorter
    than width * height (437-444, 475-482); no usable LabelInfo yet (445-449, 483-487).
  * no confidence topic: every pixel gets confidence 255 (453-454).

LabelInfo (src/segmentation_buffer.cpp, createSegmentationCostMultimap, lines 92-107)
  * class_map entries whose class_name no class type lists are ignored with an error log
    (98-103); the others map name -> class_id, stored as uint8_t (line 94).

Per pixel (bufferSegmentation, src/segmentation_buffer.cpp lines 109-239)
  * pixel i = v * width + u of the mask (line 148), read as one byte, pairs with the i-th
    point of the cloud, read by PointCloud2ConstIterator<float> on fields "x", "y", "z"
    (137-139); points whose z is not finite after tf are skipped (150-156) (a NaN or inf in
    x, y or z of the camera point makes the transformed z non-finite, so: all three finite);
    points with squared distance to the sensor >= max_obstacle_distance^2 or <=
    min_obstacle_distance^2 are skipped (157-167) (a distance is the same in the camera frame);
    class ids that LabelInfo did not map are skipped (212-219).
  * the tile's cost (src/semantic_segmentation_layer.cpp lines 352-361): max_cost once the
    tile's queue holds >= samples_to_max_cost observations whose mean confidence is
    > mark_confidence, else base_cost. This stand-in counts per pixel, per class group, the
    points the layer would use and how many of them have a confidence above the group's
    mark_confidence; it does not build tiles.

What upstream does NOT check but silently relies on, which this stand-in refuses (the node must
never send it, the layer would read garbage): a mask encoding other than mono8 (README: "mono8";
a mono16 mask passes the layer's size check and its bytes are read as class ids), a mask or
confidence `step` other than `width` (pixel index v * width + u ignores `step`), a confidence
image of another size than the mask (indexed with the mask's pixel index, no size check),
cloud fields x, y, z that are not one float32 each (read as float), cloud rows with padding
(`row_step` != width * point_step: the iterator walks the data by point_step), a cloud with
less data than width * height points, and a byte order other than this machine's.

Plain Python + numpy + the message classes; `vision_msgs` is only needed by the caller that
builds a LabelInfo (this module reads `class_map[i].class_id` / `.class_name` of whatever it gets).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

__all__ = ["APPROXIMATE_MAX_INTERVAL_NS", "ClassGroup", "DEFAULT_CONFIG", "FrameRefused", "FrameSummary", "GroupCount",
           "LabelMapping", "LayerConfig", "PLUGIN", "SemanticLayerIntake", "SourceConfig", "UPSTREAM_COMMIT",
           "find_semantic_layers", "labelled_classes", "load_layer_config", "parameter_problems"]

UPSTREAM = "kiwicampus/semantic_segmentation_layer"
UPSTREAM_COMMIT = "a70cf6ec8a44d0903209b6f433d9f8c40dbca0db"
PLUGIN = "semantic_segmentation_layer::SemanticSegmentationLayer"
APPROXIMATE_MAX_INTERVAL_NS = 100_000_000  # setMaxIntervalDuration(rclcpp::Duration(0, 100000000))
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "nav2_semantic_layer.yaml"

# name -> (type, upstream default); the layer declares these and nothing else.
LAYER_PARAMETERS: dict[str, tuple[type, Any]] = {
    "enabled": (bool, True), "combination_method": (int, 1), "observation_sources": (str, ""),
    "publish_debug_topics": (bool, False), "use_approximate_time_sync": (bool, True)}
SOURCE_PARAMETERS: dict[str, tuple[type, Any]] = {
    "segmentation_topic": (str, ""), "confidence_topic": (str, ""), "labels_topic": (str, ""),
    "pointcloud_topic": (str, ""), "observation_persistence": (float, 0.0), "expected_update_rate": (float, 0.0),
    "class_types": (list, []), "max_obstacle_distance": (float, 5.0), "min_obstacle_distance": (float, 0.3),
    "tile_map_decay_time": (float, 5.0), "visualize_tile_map": (bool, False), "use_cost_selection": (bool, True)}
GROUP_PARAMETERS: dict[str, tuple[type, Any]] = {
    "classes": (list, []), "base_cost": (int, 0), "max_cost": (int, 0), "mark_confidence": (int, 0),
    "samples_to_max_cost": (int, 0), "dominant_priority": (bool, False)}

_FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32
_HOST_BIG_ENDIAN = sys.byteorder == "big"


# --------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ClassGroup:
    """One entry of `class_types`: its classes and cost heuristic."""

    name: str
    classes: tuple[str, ...]
    base_cost: int = 0
    max_cost: int = 0
    mark_confidence: int = 0
    samples_to_max_cost: int = 0
    dominant_priority: bool = False


@dataclass(frozen=True)
class SourceConfig:
    """One observation source (camera) of the layer."""

    name: str
    segmentation_topic: str
    confidence_topic: str
    labels_topic: str
    pointcloud_topic: str
    min_obstacle_distance: float
    max_obstacle_distance: float
    use_cost_selection: bool
    tile_map_decay_time: float
    groups: tuple[ClassGroup, ...]
    skipped_groups: tuple[str, ...] = ()  # class types without classes (upstream: error, skipped)
    duplicate_classes: tuple[str, ...] = ()  # named by more than one group: the first group keeps it

    def class_groups(self) -> dict[str, ClassGroup]:
        """class name -> its group (the first group naming it, as upstream's map insert)."""
        out: dict[str, ClassGroup] = {}
        for group in self.groups:
            for name in group.classes:
                out.setdefault(name, group)
        return out


@dataclass(frozen=True)
class LayerConfig:
    """The semantic layer's parameters in one costmap of a Nav2 params file."""

    costmap: str
    layer: str  # its name in the costmap's `plugins`
    enabled: bool
    combination_method: int
    use_approximate_time_sync: bool
    sources: tuple[SourceConfig, ...]

    def source(self, name: str | None = None) -> SourceConfig:
        if name is None:
            if len(self.sources) != 1:
                raise ValueError(f"{len(self.sources)} observation sources; name one of {[s.name for s in self.sources]}")
            return self.sources[0]
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(f"no observation source {name!r} in {self.costmap}/{self.layer}")


def _ros_parameters(doc: Mapping[str, Any], costmap: str) -> Mapping[str, Any]:
    """`<costmap>: <costmap>: ros__parameters:` as Nav2 lays its params files out (a node named
    like its namespace); `<costmap>: ros__parameters:` is accepted too."""
    section = doc.get(costmap)
    if not isinstance(section, Mapping):
        raise KeyError(f"no {costmap!r} section")
    if "ros__parameters" in section:
        return section["ros__parameters"]
    inner = section.get(costmap)
    if isinstance(inner, Mapping) and "ros__parameters" in inner:
        return inner["ros__parameters"]
    raise KeyError(f"no {costmap}/{costmap}/ros__parameters")


def find_semantic_layers(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(costmap, layer name) of every plugin of class `PLUGIN` listed in a costmap's `plugins`."""
    found = []
    for costmap in doc:
        try:
            params = _ros_parameters(doc, costmap)
        except KeyError:
            continue
        for layer in params.get("plugins", []):
            if isinstance(params.get(layer), Mapping) and params[layer].get("plugin") == PLUGIN:
                found.append((costmap, layer))
    return found


def _typed(value: Any, kind: type) -> bool:
    """The YAML value has the ROS parameter type the layer declares (rclcpp refuses an int for
    a double parameter and a double for an int one; bools are not ints here)."""
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, float)
    if kind is str:
        return isinstance(value, str)
    if kind is list:  # string arrays: rcl needs a non-empty list to know the type
        return isinstance(value, list) and len(value) > 0 and all(isinstance(v, str) for v in value)
    raise TypeError(kind)


def parameter_problems(layer_params: Mapping[str, Any]) -> list[str]:
    """Keys the layer does not declare, and values of another type than it declares: what
    would be ignored (unknown key) or fail the costmap's start (type mismatch)."""
    problems = []

    def check(block: Mapping[str, Any], table: Mapping[str, tuple[type, Any]], where: str, nested: set[str]) -> None:
        for key, value in block.items():
            if key in nested:
                continue
            if key not in table:
                problems.append(f"{where}{key}: not a parameter of the layer")
            elif not _typed(value, table[key][0]):
                problems.append(f"{where}{key}: {value!r} is not of the declared type {table[key][0].__name__}")

    sources = str(layer_params.get("observation_sources", "")).split()
    check(layer_params, {**LAYER_PARAMETERS, "plugin": (str, "")}, "", set(sources))
    for source in sources:
        block = layer_params.get(source)
        if not isinstance(block, Mapping):
            problems.append(f"{source}: observation source without a parameter block")
            continue
        types = block.get("class_types", [])
        check(block, SOURCE_PARAMETERS, f"{source}.", set(types))
        for group in types:
            if not isinstance(block.get(group), Mapping):
                problems.append(f"{source}.{group}: class type without a parameter block")
                continue
            check(block[group], GROUP_PARAMETERS, f"{source}.{group}.", set())
    return problems


def load_layer_config(path: str | Path = DEFAULT_CONFIG, costmap: str = "local_costmap",
                      layer: str | None = None) -> LayerConfig:
    """The semantic layer's configuration in `costmap` of a Nav2 params file, with upstream's
    defaults for keys left out and its start-up rules (see the module docstring)."""
    doc = yaml.safe_load(Path(path).read_text())
    params = _ros_parameters(doc, costmap)
    if layer is None:
        names = [name for cm, name in find_semantic_layers(doc) if cm == costmap]
        if len(names) != 1:
            raise ValueError(f"{costmap}: {len(names)} layers of plugin {PLUGIN}; name one")
        layer = names[0]
    block = params[layer]

    def get(b: Mapping[str, Any], table: Mapping[str, tuple[type, Any]], key: str) -> Any:
        return b.get(key, table[key][1])

    sources = []
    for source in str(get(block, LAYER_PARAMETERS, "observation_sources")).split():
        sb = block.get(source, {})
        class_types = list(get(sb, SOURCE_PARAMETERS, "class_types"))
        if not class_types:
            raise ValueError(f"{source}: no class types defined (the layer exits)")
        groups, skipped, seen, duplicates = [], [], set(), []
        for name in class_types:
            gb = sb.get(name, {})
            classes = tuple(get(gb, GROUP_PARAMETERS, "classes"))
            if not classes:
                skipped.append(name)
                continue
            for c in classes:
                if c in seen:
                    duplicates.append(c)
                seen.add(c)
            groups.append(ClassGroup(name=name, classes=classes,
                                     **{k: get(gb, GROUP_PARAMETERS, k) for k in GROUP_PARAMETERS if k != "classes"}))
        if not groups:
            raise ValueError(f"{source}: no classes defined (the layer exits)")
        sources.append(SourceConfig(
            name=source, groups=tuple(groups), skipped_groups=tuple(skipped), duplicate_classes=tuple(duplicates),
            **{k: get(sb, SOURCE_PARAMETERS, k) for k in
               ("segmentation_topic", "confidence_topic", "labels_topic", "pointcloud_topic", "min_obstacle_distance",
                "max_obstacle_distance", "use_cost_selection", "tile_map_decay_time")}))
    return LayerConfig(costmap=costmap, layer=layer, enabled=get(block, LAYER_PARAMETERS, "enabled"),
                       combination_method=get(block, LAYER_PARAMETERS, "combination_method"),
                       use_approximate_time_sync=get(block, LAYER_PARAMETERS, "use_approximate_time_sync"),
                       sources=tuple(sources))


# --------------------------------------------------------------------------------------- intake


class FrameRefused(ValueError):
    """The layer would not buffer this frame set; `rule` names the rule (module docstring)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"[{rule}] {message}")
        self.rule = rule


@dataclass(frozen=True)
class LabelMapping:
    """What the layer makes of one LabelInfo."""

    ids: dict[str, int]  # configured class name -> class id (8 bits, as the layer stores it)
    missing: tuple[str, ...]  # class names the config's groups list but the LabelInfo does not have
    unconfigured: tuple[str, ...]  # LabelInfo names no group lists: the layer logs an error, ignores them
    wide_ids: tuple[str, ...] = ()  # names whose class_id > 255: the layer keeps only the low byte


@dataclass
class GroupCount:
    """Pixels of one class group the layer would turn into observations in one frame."""

    points: int = 0  # finite x, y, z within (min_obstacle_distance, max_obstacle_distance)
    confident_points: int = 0  # of those, confidence > the group's mark_confidence
    confidence_sum: int = 0

    @property
    def mean_confidence(self) -> float:
        return self.confidence_sum / self.points if self.points else 0.0


@dataclass
class FrameSummary:
    """One accepted frame set."""

    stamp_ns: int  # the mask's stamp
    width: int
    height: int
    groups: dict[str, GroupCount]
    unmapped_points: int  # usable points whose class id LabelInfo + config do not map (e.g. 255, no label)
    invalid_points: int  # x, y or z not finite (no depth)
    out_of_range_points: int  # finite but outside (min, max) obstacle distance
    confidence_used: bool  # False: no confidence topic configured, every pixel counts as 255
    label_ids: dict[str, int] = field(default_factory=dict)


def _stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _buffer(data: Any) -> np.ndarray:
    """A message's uint8[] (array.array, bytes, or a list) as a flat uint8 array."""
    try:
        return np.frombuffer(data, np.uint8)
    except TypeError:
        return np.asarray(data, np.uint8)


def _check_mono8(image: Any, what: str, rule: str) -> None:
    if image.encoding != "mono8":
        raise FrameRefused(rule, f"{what} encoding is {image.encoding!r}; the layer reads one byte per pixel (mono8)")
    if image.step != image.width:
        raise FrameRefused(rule, f"{what} step {image.step} != width {image.width}: the layer indexes v * width + u")


class SemanticLayerIntake:
    """Feed it what the layer subscribes to; it accepts a frame set only under the layer's rules.

    `on_label_info(msg)` as the latched LabelInfo arrives; `on_frame(mask, cloud, confidence)`
    for a frame set as the synchroniser would deliver it: returns a `FrameSummary` or raises
    `FrameRefused`. The rules and the sync policy come from the loaded config.
    """

    def __init__(self, config: LayerConfig, source: str | None = None) -> None:
        self.config = config
        self.source = config.source(source)
        self.mapping: LabelMapping | None = None
        self._lookup: np.ndarray | None = None  # class id (0..255) -> group index, -1 = not mapped

    @classmethod
    def from_file(cls, path: str | Path = DEFAULT_CONFIG, costmap: str = "local_costmap",
                  source: str | None = None) -> "SemanticLayerIntake":
        return cls(load_layer_config(path, costmap), source)

    @property
    def uses_confidence(self) -> bool:
        return bool(self.source.confidence_topic)

    def on_label_info(self, msg: Any) -> LabelMapping:
        """Upstream's createSegmentationCostMultimap: the newest LabelInfo replaces the mapping."""
        by_class = self.source.class_groups()
        ids: dict[str, int] = {}
        unconfigured, wide = [], []
        for vc in msg.class_map:
            name, class_id = str(vc.class_name), int(vc.class_id)
            if name not in by_class:
                unconfigured.append(name)
                continue
            if class_id > 255:
                wide.append(name)
            ids[name] = class_id & 0xFF
        missing = tuple(name for name in by_class if name not in ids)
        self.mapping = LabelMapping(ids=ids, missing=missing, unconfigured=tuple(unconfigured), wide_ids=tuple(wide))
        group_index = {g.name: i for i, g in enumerate(self.source.groups)}
        lookup = np.full(256, -1, np.int16)
        for name, class_id in ids.items():
            lookup[class_id] = group_index[by_class[name].name]
        self._lookup = lookup
        return self.mapping

    # -- the synchroniser's rules
    def _check_sync(self, mask: Any, cloud: Any, confidence: Any | None) -> None:
        stamps = {"mask": _stamp_ns(mask.header), "cloud": _stamp_ns(cloud.header)}
        if self.uses_confidence:
            if confidence is None:
                raise FrameRefused("no_confidence", f"confidence_topic {self.source.confidence_topic!r} is configured: "
                                                    "the three-way synchroniser never fires without a confidence image")
            stamps["confidence"] = _stamp_ns(confidence.header)
        spread = max(stamps.values()) - min(stamps.values())
        if self.config.use_approximate_time_sync:
            if spread > APPROXIMATE_MAX_INTERVAL_NS:
                raise FrameRefused("stamp", f"stamps {stamps} span {spread / 1e6:.1f} ms > 100 ms (ApproximateTime)")
        elif spread != 0:
            raise FrameRefused("stamp", f"stamps {stamps} differ by {spread / 1e6:.3f} ms (ExactTime needs equal stamps)")
        if not cloud.header.frame_id:
            raise FrameRefused("cloud_frame", "the cloud has no frame_id: the tf message filter cannot transform it")

    def on_frame(self, mask: Any, cloud: Any, confidence: Any | None = None) -> FrameSummary:
        self._check_sync(mask, cloud, confidence)
        n = int(mask.width) * int(mask.height)
        # upstream's explicit checks, in its order
        if n != int(cloud.width) * int(cloud.height):
            raise FrameRefused("cloud_size", f"mask {mask.width}x{mask.height} vs cloud {cloud.width}x{cloud.height}: "
                                             "width * height differ")
        mask_data = _buffer(mask.data)
        if mask_data.size < n:
            raise FrameRefused("mask_data", f"mask data has {mask_data.size} bytes < width * height = {n}")
        if self.mapping is None or not self.mapping.ids:
            why = "no LabelInfo received" if self.mapping is None else "the LabelInfo names none of the configured classes"
            raise FrameRefused("no_label_info", f"{why} on {self.source.labels_topic!r}: the class map is empty")
        # what upstream relies on without checking
        _check_mono8(mask, "mask", "mask_encoding")
        conf_used = self.uses_confidence
        if conf_used:
            _check_mono8(confidence, "confidence", "confidence_encoding")
            if (confidence.width, confidence.height) != (mask.width, mask.height):
                raise FrameRefused("confidence_size", f"confidence {confidence.width}x{confidence.height} != mask "
                                                      f"{mask.width}x{mask.height}")
            conf = _buffer(confidence.data)
            if conf.size < n:
                raise FrameRefused("confidence_size", f"confidence data has {conf.size} bytes < {n}")
            conf = conf[:n]
        else:
            conf = np.full(n, 255, np.uint8)
        xyz = self._points(cloud, n)

        ids = mask_data[:n]
        finite = np.isfinite(xyz).all(axis=1)
        d2 = np.where(finite[:, None], xyz, 0.0).astype(np.float64)
        d2 = (d2 * d2).sum(axis=1)
        lo, hi = self.source.min_obstacle_distance ** 2, self.source.max_obstacle_distance ** 2
        in_range = finite & (d2 > lo) & (d2 < hi)
        group_of = self._lookup[ids]
        groups = {}
        for gi, group in enumerate(self.source.groups):
            sel = in_range & (group_of == gi)
            c = conf[sel].astype(np.int64)
            groups[group.name] = GroupCount(points=int(sel.sum()), confident_points=int((c > group.mark_confidence).sum()),
                                            confidence_sum=int(c.sum()))
        return FrameSummary(stamp_ns=_stamp_ns(mask.header), width=int(mask.width), height=int(mask.height),
                            groups=groups, unmapped_points=int((in_range & (group_of < 0)).sum()),
                            invalid_points=int((~finite).sum()), out_of_range_points=int((finite & ~in_range).sum()),
                            confidence_used=conf_used, label_ids=dict(self.mapping.ids))

    @staticmethod
    def _points(cloud: Any, n: int) -> np.ndarray:
        """(n, 3) float32 of fields x, y, z as the layer's float iterators read them."""
        fields = {f.name: f for f in cloud.fields}
        for name in ("x", "y", "z"):
            f = fields.get(name)
            if f is None:
                raise FrameRefused("cloud_fields", f"the cloud has no field {name!r} (fields: {sorted(fields)})")
            if f.datatype != _FLOAT32 or f.count != 1:
                raise FrameRefused("cloud_fields", f"field {name!r} is datatype {f.datatype} x {f.count}; "
                                                   "the layer reads one float32")
            if f.offset + 4 > cloud.point_step:
                raise FrameRefused("cloud_fields", f"field {name!r} at offset {f.offset} overruns point_step {cloud.point_step}")
        if bool(cloud.is_bigendian) != _HOST_BIG_ENDIAN:
            raise FrameRefused("cloud_endianness", "the cloud's byte order is not this machine's; the layer reads native floats")
        if cloud.row_step != cloud.point_step * cloud.width:
            raise FrameRefused("cloud_layout", f"row_step {cloud.row_step} != width * point_step = "
                                               f"{cloud.width * cloud.point_step}: the layer walks points by point_step")
        data = _buffer(cloud.data)
        if data.size < n * cloud.point_step:
            raise FrameRefused("cloud_layout", f"cloud data has {data.size} bytes < {n} points x {cloud.point_step}")
        dtype = np.dtype({"names": ["x", "y", "z"], "formats": ["<f4" if not _HOST_BIG_ENDIAN else ">f4"] * 3,
                          "offsets": [fields["x"].offset, fields["y"].offset, fields["z"].offset],
                          "itemsize": int(cloud.point_step)})
        rec = np.frombuffer(data[:n * cloud.point_step].tobytes(), dtype, count=n)
        return np.stack([rec["x"], rec["y"], rec["z"]], axis=1)


def labelled_classes(config: LayerConfig) -> list[str]:
    """Every class name of every source's groups, in config order (for a node's label set)."""
    out: list[str] = []
    for s in config.sources:
        for g in s.groups:
            out.extend(c for c in g.classes if c not in out)
    return out
