"""The ROS package's files: parameters YAML vs the node's table, launch file, Fast DDS profile,
package.xml and CMakeLists.txt. What can be checked without `launch` installed is checked."""
from __future__ import annotations

import ast
import re
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "segment.yaml"
LAUNCH = ROOT / "launch" / "segment.launch.py"


def _yaml_params() -> dict:
    return yaml.safe_load(CONFIG.read_text())["/**"]["ros__parameters"]


def test_yaml_matches_the_declared_parameters_names_defaults_and_types():
    pytest.importorskip("rclpy", reason="rclpy is not installed: run scripts/setup_ros.sh")
    from lang_seg_ros.ros.lifecycle_node import LIFECYCLE_PARAMETERS
    from lang_seg_ros.ros.node import PARAMETERS

    table = {p.name: p.default for p in (*PARAMETERS, *LIFECYCLE_PARAMETERS)}
    config = _yaml_params()
    assert set(config) == set(table), f"only in YAML: {set(config) - set(table)}; only declared: {set(table) - set(config)}"
    for name, default in table.items():
        assert config[name] == default, f"{name}: YAML {config[name]!r} != declared default {default!r}"
        assert type(config[name]) is type(default), f"{name}: YAML type {type(config[name]).__name__}"


def test_every_yaml_parameter_is_commented():
    lines = CONFIG.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^ {4}\w+:", line):
            assert lines[i - 1].strip().startswith("#"), f"parameter without a comment: {line.strip()}"


def test_fastdds_profile_has_a_16_mib_shm_segment_and_udp():
    root = ET.parse(ROOT / "config" / "fastdds_shm.xml").getroot()
    ns = {"f": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    transports = {t.findtext("f:transport_id", namespaces=ns): t for t in root.iterfind(".//f:transport_descriptor", ns)}
    kinds = {t.findtext("f:type", namespaces=ns) for t in transports.values()}
    assert kinds == {"SHM", "UDPv4"}
    shm = next(t for t in transports.values() if t.findtext("f:type", namespaces=ns) == "SHM")
    assert int(shm.findtext("f:segment_size", namespaces=ns)) == 16 * 1024 * 1024
    participant = root.find(".//f:participant", ns)
    assert participant.get("is_default_profile") == "true"
    used = {e.text for e in participant.iterfind(".//f:userTransports/f:transport_id", ns)}
    assert used == set(transports)
    assert participant.findtext(".//f:useBuiltinTransports", namespaces=ns) == "false"


def test_package_xml_and_cmake_lists():
    package = ET.parse(ROOT / "package.xml").getroot()
    assert package.get("format") == "3" and package.findtext("name") == "lang_seg_ros"
    assert package.findtext("export/build_type") == "ament_cmake"
    assert package.findtext("member_of_group") == "rosidl_interface_packages"
    deps = {e.text for e in package if e.tag.endswith("depend")}
    assert {"rosidl_default_generators", "rosidl_default_runtime", "rclpy", "sensor_msgs", "std_msgs", "std_srvs",
            "diagnostic_msgs", "lifecycle_msgs", "python3-numpy", "python3-opencv"} <= deps
    cmake = (ROOT / "CMakeLists.txt").read_text()
    for path in sorted((ROOT / "msg").glob("*.msg")) + sorted((ROOT / "srv").glob("*.srv")):
        assert f'"{path.parent.name}/{path.name}"' in cmake, f"{path.name} is not generated"
    assert "install(DIRECTORY lang_seg_ros/" in cmake
    for executable in ("lang_seg_ros", "lang_seg_ros_lifecycle", "lang_seg_ros_replay"):
        assert f"RENAME {executable})" in cmake


def test_launch_file_declares_the_documented_arguments():
    tree = ast.parse(LAUNCH.read_text())
    declared = {node.args[0].value for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument"}
    assert {"image", "labels", "checkpoint", "device", "params_file", "namespace"} <= declared
    assert "FASTRTPS_DEFAULT_PROFILES_FILE" in LAUNCH.read_text()


class _Recorder:
    """Stands in for one `launch` / `launch_ros` class: records its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _stub_launch_modules(monkeypatch) -> None:
    """Minimal stand-ins for `launch` and `launch_ros` (not installable here) that record calls."""
    class LaunchConfiguration(_Recorder):
        def perform(self, context):
            return context.launch_configurations[self.args[0]]

    names = {
        "launch": ["LaunchDescription"],
        "launch.actions": ["DeclareLaunchArgument", "OpaqueFunction", "SetEnvironmentVariable"],
        "launch.substitutions": ["PathJoinSubstitution"],
        "launch_ros.actions": ["LifecycleNode", "Node"],
        "launch_ros.substitutions": ["FindPackageShare"],
    }
    for module_name, classes in names.items():
        module = types.ModuleType(module_name)
        for cls in classes:
            setattr(module, cls, type(cls, (_Recorder,), {}))
        monkeypatch.setitem(sys.modules, module_name, module)
    sys.modules["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    monkeypatch.setitem(sys.modules, "launch_ros", types.ModuleType("launch_ros"))


def test_launch_file_builds_the_node_it_documents(monkeypatch):
    try:
        import launch_ros  # noqa: F401 - a real ROS install: the stand-ins are not needed
        pytest.skip("launch_ros is installed; run `ros2 launch lang_seg_ros segment.launch.py --show-args`")
    except ImportError:
        pass
    _stub_launch_modules(monkeypatch)
    namespace: dict = {}
    exec(compile(LAUNCH.read_text(), str(LAUNCH), "exec"), namespace)
    description = namespace["generate_launch_description"]()
    actions = description.args[0]
    defaults = {a.args[0]: a.kwargs["default_value"] for a in actions if type(a).__name__ == "DeclareLaunchArgument"}
    env = next(a for a in actions if type(a).__name__ == "SetEnvironmentVariable")
    assert env.args[0] == "FASTRTPS_DEFAULT_PROFILES_FILE"
    opaque = next(a for a in actions if type(a).__name__ == "OpaqueFunction")

    # the launch context's configurations: the declared arguments, and any other `name:=value` given
    configurations = {name: value if isinstance(value, str) else "/share/x" for name, value in defaults.items()}
    context = types.SimpleNamespace(launch_configurations=configurations)
    configurations.update(image="/cam/color/image_raw", labels="floor, person", namespace="robot", lifecycle="false")
    (node,) = opaque.kwargs["function"](context)
    assert type(node).__name__ == "Node" and node.kwargs["executable"] == "lang_seg_ros"
    assert node.kwargs["namespace"] == "robot" and node.kwargs["name"] == "lang_seg"
    remaps = dict(node.kwargs["remappings"])
    assert remaps["image"] == "/cam/color/image_raw"
    assert remaps["image/compressed"] == "/cam/color/image_raw/compressed"
    params_file, overrides = node.kwargs["parameters"]
    # arguments not given leave the params file's values alone
    assert overrides == {"labels": "floor, person"}
    assert remaps["depth"] == "/camera/aligned_depth_to_color/image_raw"
    assert remaps["depth/camera_info"] == "/camera/aligned_depth_to_color/camera_info"

    configurations.update(lifecycle="true", checkpoint="/models/lseg.ckpt", labels="")
    (node,) = opaque.kwargs["function"](context)
    assert type(node).__name__ == "LifecycleNode" and node.kwargs["executable"] == "lang_seg_ros_lifecycle"
    assert node.kwargs["parameters"][1]["checkpoint"] == "/models/lseg.ckpt"
    assert "labels" not in node.kwargs["parameters"][1]

    # several cameras, one node, each camera's topics remapped on the command line as docs/ros.md shows
    configurations.update({"lifecycle": "false", "cameras": "[front, rear]", "front/image": "/robot/front/image_raw",
                           "front/camera_info": "/robot/front/camera_info", "rear/image": "/robot/rear/image_raw"})
    (node,) = opaque.kwargs["function"](context)
    assert node.kwargs["parameters"][1]["cameras"] == ["front", "rear"]
    remaps = dict(node.kwargs["remappings"])
    assert remaps["front/image"] == "/robot/front/image_raw" and remaps["rear/image"] == "/robot/rear/image_raw"
    assert remaps["front/camera_info"] == "/robot/front/camera_info"
    assert remaps["front/image/compressed"] == "/robot/front/image_raw/compressed"
    assert "rear/camera_info" not in remaps  # not given: the camera keeps its own topic name


def test_launch_arguments_override_the_params_file_only_when_given():
    """A params file with device: cpu, use_compressed: true keeps them unless the user says otherwise."""
    from lang_seg_ros.ros.launch_args import node_overrides, remappings

    blank = {"labels": "", "checkpoint": "", "device": "", "use_compressed": "", "use_depth": "  "}
    assert node_overrides(blank) == {}
    given = node_overrides({**blank, "device": "cuda:1", "use_compressed": "false", "use_depth": "True",
                            "labels": "[road, sky, 'sign, symbol']"})
    assert given == {"device": "cuda:1", "use_compressed": False, "use_depth": True,
                     "labels": ["road", "sky", "sign, symbol"]}  # a YAML list stays a list of labels
    assert node_overrides({"labels": "road, sky"}) == {"labels": "road, sky"}
    assert node_overrides({"cameras": "[front, rear]"}) == {"cameras": ["front", "rear"]}
    with pytest.raises(ValueError, match="use_depth"):
        node_overrides({"use_depth": "maybe"})
    remaps = dict(remappings({"image": "/cam/image/", "camera_info": "/cam/info", "depth": "/d",
                              "depth_camera_info": "/d/info"}))
    assert remaps["image/compressed"] == "/cam/image/compressed" and remaps["depth/camera_info"] == "/d/info"


def test_camera_topics_given_as_launch_arguments_become_remaps():
    """`ros2 launch ... front/image:=/x` sets a launch configuration named front/image: only the
    camera inputs among them are remaps, blank ones are not, and a given compressed topic wins."""
    from lang_seg_ros.ros.launch_args import camera_remappings

    given = {"front/image": "/robot/front/", "front/image/compressed": "/robot/front/jpeg",
             "rear/depth": "/robot/rear/depth", "rear/depth/camera_info": "/robot/rear/depth/info",
             "wrist/camera_info": "  ", "labels": "road", "front/labels": "/x", "2cam/image": "/y",
             "a/b/image": "/z", "image": "/single"}
    assert dict(camera_remappings(given)) == {
        "front/image": "/robot/front/", "front/image/compressed": "/robot/front/jpeg",
        "rear/depth": "/robot/rear/depth", "rear/depth/camera_info": "/robot/rear/depth/info"}
    assert dict(camera_remappings({"rear/image": " /r/image_raw/ "})) == {
        "rear/image": "/r/image_raw/", "rear/image/compressed": "/r/image_raw/compressed"}


def test_one_licence_everywhere():
    text = (ROOT / "LICENSE").read_text()
    package = ET.parse(ROOT / "package.xml").getroot()
    assert package.findtext("license") == "MIT" and text.startswith("MIT License")
    assert 'license="MIT"' in (ROOT / "setup.py").read_text()


def test_rviz_config_shows_topics_the_node_publishes():
    config = yaml.safe_load((ROOT / "config" / "segment.rviz").read_text())
    displays = {d["Name"]: d for d in config["Visualization Manager"]["Displays"]}
    topics = {d["Class"].rpartition("/")[2]: d["Topic"]["Value"] for d in displays.values() if "Topic" in d}
    assert topics["Image"] == "/overlay" and topics["MarkerArray"] == "/regions/markers"
    clouds = [d["Topic"]["Value"] for d in displays.values() if d["Class"].endswith("PointCloud2")]
    assert sorted(clouds) == ["/cloud", "/obstacles"]
    from lang_seg_ros.ros.outputs import FRAME_TOPICS

    for topic in ("overlay", "regions/markers", "cloud", "obstacles"):
        assert topic in FRAME_TOPICS


def test_a_list_given_after_a_string_wins(tmp_path):
    """rcl would hand rclpy the params file's string; the node reads its ROS arguments in order."""
    from lang_seg_ros.ros.parameters import list_overrides

    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters:\n    labels: 'a, b'\n    stuff_labels: [x]\n"
                      "/other_node:\n  ros__parameters:\n    traversable_labels: [q]\n")
    names = ["labels", "stuff_labels", "traversable_labels"]
    argv = ["prog", "-p", "labels:=[ignored]", "--ros-args", "--params-file", str(params), "-p", "labels:=[road, sky]"]
    assert list_overrides(argv, "/ns/lang_seg", names) == {"labels": ["road", "sky"], "stuff_labels": ["x"]}
    # the last one given wins, whatever its type; node-specific rules for other nodes do not count
    argv = ["prog", "--ros-args", "-p", "labels:=[road, sky]", "--params-file", str(params),
            "-p", "other:stuff_labels:=[y]", "-p", "lang_seg:traversable_labels:=[grass]"]
    assert list_overrides(argv, "/ns/lang_seg", names) == {"stuff_labels": ["x"], "traversable_labels": ["grass"]}


def test_a_switch_given_after_a_yaml_boolean_wins(tmp_path):
    """rclpy reads a parameter's boolean before its string: a params file's `off` (YAML 1.1: false)
    would beat `-p overlap_postprocessing:=auto`. The last one given wins, read as rcl reads it."""
    from lang_seg_ros.ros.parameters import list_overrides

    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters:\n    overlap_postprocessing: off\n")
    names, switch = ["labels", "overlap_postprocessing"], ["overlap_postprocessing"]
    argv = ["prog", "--ros-args", "--params-file", str(params), "-p", "overlap_postprocessing:=auto"]
    assert list_overrides(argv, "/lang_seg", names, any_type=switch) == {"overlap_postprocessing": "auto"}
    argv = ["prog", "--ros-args", "-p", "overlap_postprocessing:=on", "--params-file", str(params)]
    assert list_overrides(argv, "/lang_seg", names, any_type=switch) == {"overlap_postprocessing": False}
    assert list_overrides(argv, "/lang_seg", names) == {}  # without any_type: lists only
