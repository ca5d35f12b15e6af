"""vision_msgs is wire-compatible with ROS 2 Jazzy's (ros-jazzy-vision-msgs 4.1.x): the type hash
a subscriber sees over DDS is upstream's, whether vision_msgs comes from a ROS install or from
our own definition (interfaces/vision_msgs, built by scripts/setup_ros.sh)."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed: run scripts/setup_ros.sh")

from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402

try:
    import vision_msgs.msg as vm  # noqa: E402
except ImportError as exc:  # rclpy present, vision_msgs missing: a set-up error, not a skip
    raise RuntimeError(f"vision_msgs.msg does not import ({exc}): run scripts/setup_ros.sh") from exc

from harness import spin_until  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

# RIHS01 computed with rosidl_generator_type_description 4.6.6 (ros-jazzy wheels, `rosidl hash`)
# from ros-perception/vision_msgs 4.1.1 (tag 4.1.1, commit e77fa2d9, the Jazzy release)
# vision_msgs/msg/*.msg, against the std_msgs / geometry_msgs 5.3.6 wheels' definitions.
UPSTREAM_RIHS01 = {
    "BoundingBox2D": "008eacbb0cf8f26e83795547bed013eec3675485ef386ec056d80eaaf1c1ce2f",
    "BoundingBox2DArray": "2464e82838009386d371b523211c21c91d74d313fcdd6788223c531d621cf691",
    "BoundingBox3D": "bbb73a65c163d7f9bb29009c7bde9f7faa576bd2d23299c4511d19230dab4698",
    "BoundingBox3DArray": "a81938db9576b10c2eecd7c5a5da3eac496efd00221b25ed051dfbc81fb56da6",
    "Classification": "f74db28d0eaef3afb78f48bf2161cd709a1383a0309d3454383b25be11345143",
    "Detection2D": "0d12b69df5c593b3455b7346fac8205437a7d4bcb09b9e0e0b2dde787ded38ea",
    "Detection2DArray": "214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968",
    "Detection3D": "ddd703be132ab0b69d33121f1bb034132bfbb3b0ac5f9fb1516005ba1c8a265b",
    "Detection3DArray": "793f5eab9595ac1c0da07873cc859db42eae51f0ee76056db8562515d830e018",
    "LabelInfo": "3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783",
    "ObjectHypothesis": "51da43cec11c01957a64d1e05a24acd18aae7745ec30b74348ad5f6d634f7f90",
    "ObjectHypothesisWithPose": "41c12344c0396c48b81df12467c192d99b2a0eb1463c5c37194e4223251c80bc",
    "Point2D": "eab0e83f44ab4de92ceaf76dd7d0e7638f2bdd1d16ffbe16c7a136c48e407247",
    "Pose2D": "b0b5d1d7b4c20dd4fcde3ed1d4b289a919290572007d67a97043814db25d3648",
    "VisionClass": "1e4a11f0fed50b5623cb8ff26ca0e37952a48a9c074d16f804b44e9164c2037a",
    "VisionInfo": "95d3116a17484ad91c9a2686e1d54890bbfc3ff6c6a2de137738c4950d45d284",
}


@pytest.mark.parametrize("name", sorted(UPSTREAM_RIHS01))
def test_advertised_type_hash_is_upstreams(ros, name):
    topic = f"/vision_msgs_hash_{os.getpid()}_{name}"
    publisher = ros.node.create_publisher(getattr(vm, name), topic, 1)
    try:
        infos = spin_until(ros.executor, lambda: ros.node.get_publishers_info_by_topic(topic))
        assert len(infos) == 1, infos
        assert infos[0].topic_type == f"vision_msgs/msg/{name}"
        assert str(infos[0].topic_type_hash) == f"RIHS01_{UPSTREAM_RIHS01[name]}"
    finally:
        ros.node.destroy_publisher(publisher)


def _round_trip(message):
    back = deserialize_message(serialize_message(message), type(message))
    assert back == message
    return back


def test_label_info_round_trips():
    info = vm.LabelInfo(class_map=[vm.VisionClass(class_id=0, class_name="floor"),
                                   vm.VisionClass(class_id=65535, class_name="UNLABELED")], threshold=0.25)
    info.header.frame_id = "camera"
    info.header.stamp.sec = 7
    back = _round_trip(info)
    assert [(c.class_id, c.class_name) for c in back.class_map] == [(0, "floor"), (65535, "UNLABELED")]
    assert back.threshold == 0.25 and back.header.frame_id == "camera" and back.header.stamp.sec == 7


def test_detection2d_round_trips():
    hypothesis = vm.ObjectHypothesisWithPose(hypothesis=vm.ObjectHypothesis(class_id="3", score=0.875))
    hypothesis.pose.pose.position.z = 1.5
    hypothesis.pose.covariance[0] = 0.01
    bbox = vm.BoundingBox2D(center=vm.Pose2D(position=vm.Point2D(x=320.5, y=240.0), theta=0.0),
                            size_x=64.0, size_y=32.0)
    detection = vm.Detection2D(results=[hypothesis], bbox=bbox, id="track-9")
    back = _round_trip(vm.Detection2DArray(detections=[detection])).detections[0]
    assert back.id == "track-9" and back.bbox.size_x == 64.0 and back.bbox.center.position.x == 320.5
    assert back.results[0].hypothesis.class_id == "3" and back.results[0].hypothesis.score == 0.875
    assert back.results[0].pose.pose.position.z == 1.5 and back.results[0].pose.covariance[0] == 0.01


def test_our_definition_stays_out_of_colcon_and_package_xml_depends_on_vision_msgs():
    ours = ET.parse(ROOT / "interfaces" / "vision_msgs" / "package.xml").getroot()
    assert ours.findtext("name") == "vision_msgs" and ours.findtext("version").startswith("4.1.")
    assert (ROOT / "interfaces" / "COLCON_IGNORE").exists()  # else colcon sees two vision_msgs
    package = ET.parse(ROOT / "package.xml").getroot()
    assert "vision_msgs" in {e.text for e in package if e.tag.endswith("depend")}
