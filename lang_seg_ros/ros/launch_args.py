"""The launch file's argument handling as plain functions (testable without `launch` installed).

`launch/segment.launch.py` reads its arguments as strings and asks these functions what to pass
to the node. The rule: an argument the user did not give (left empty) passes nothing, so the
params file's value stands; only arguments given on the command line override it.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import yaml

__all__ = ["OVERRIDABLE", "camera_remappings", "node_overrides", "remappings", "truthy"]

#: Launch arguments that override the node parameter of the same name when given, and how the
#: string is read: "text", "bool", or "labels" (a comma-separated string or a YAML list).
OVERRIDABLE: dict[str, str] = {"labels": "labels", "checkpoint": "text", "device": "text",
                               "use_compressed": "bool", "use_depth": "bool", "cameras": "labels"}

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")

#: `<camera>/<input topic>` (a camera of the `cameras` parameter, a ROS name token): the launch
#: arguments that remap one camera's inputs.
_CAMERA_INPUT = re.compile(r"[A-Za-z][A-Za-z0-9_]*/(image/compressed|image|camera_info|depth/camera_info|depth)")


def truthy(text: str) -> bool:
    """A launch argument as a boolean; ValueError for anything but true/false/yes/no/on/off/1/0."""
    value = text.strip().lower()
    if value not in _TRUE + _FALSE:
        raise ValueError(f"expected true or false, got {text!r}")
    return value in _TRUE


def _labels(text: str) -> str | list[str]:
    """'road, sky' stays a string; '[road, sky]' (a YAML list, as in a params file) becomes a list."""
    stripped = text.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        value = yaml.safe_load(stripped)
        if isinstance(value, list):
            return [str(v) for v in value]
    return text


def node_overrides(values: Mapping[str, str]) -> dict[str, Any]:
    """The node parameters the given launch arguments set, typed; blank arguments set nothing."""
    out: dict[str, Any] = {}
    for name, kind in OVERRIDABLE.items():
        text = values.get(name, "")
        if not text.strip():
            continue
        try:
            out[name] = truthy(text) if kind == "bool" else _labels(text) if kind == "labels" else text
        except ValueError as exc:
            raise ValueError(f"launch argument {name}: {exc}") from exc
    return out


def _compressed(image_topic: str) -> str:
    """The CompressedImage sibling of an image topic (image_transport's `<image>/compressed`)."""
    return image_topic.rstrip("/") + "/compressed"


def remappings(values: Mapping[str, str]) -> list[tuple[str, str]]:
    """The node's input topics remapped to the camera's (the compressed one beside the image)."""
    image = values["image"]
    return [("image", image), ("image/compressed", _compressed(image)),
            ("camera_info", values["camera_info"]), ("depth", values["depth"]),
            ("depth/camera_info", values["depth_camera_info"])]


def camera_remappings(configurations: Mapping[str, str]) -> list[tuple[str, str]]:
    """Several cameras' inputs remapped as given on the command line (`front/image:=/robot/front/
    color/image_raw`): `ros2 launch` makes such a pair a launch configuration, never a remap of
    the node, so the launch file hands every `<camera>/<input>` configuration on (`configurations`:
    the launch context's, declared or not). A camera's image brings its compressed sibling, as
    `remappings` does, unless `<camera>/image/compressed` is given too; values are stripped, blank
    ones remap nothing."""
    out: dict[str, str] = {}
    for name, value in sorted(configurations.items()):  # NAME/image before NAME/image/compressed
        match, topic = _CAMERA_INPUT.fullmatch(str(name)), str(value).strip()
        if match is None or not topic:
            continue
        out[name] = topic
        if match.group(1) == "image":
            out[name + "/compressed"] = _compressed(topic)  # a given one follows
    return list(out.items())
