"""The replay tool's sources (folder, video, bag) and bag writing, without a node."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed: run scripts/setup_ros.sh (ROS 2 Jazzy wheels)")
pytest.importorskip("rosbags", reason="rosbags is not installed: run scripts/setup_ros.sh")

from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from harness import pattern_image  # noqa: E402
from lang_seg_ros.msg import Segmentation  # noqa: E402
from lang_seg_ros.ros.image_conversion import image_to_numpy, numpy_to_image  # noqa: E402
from lang_seg_ros.ros.replay import frames_from, register_package_types  # noqa: E402


def test_folder_frames_are_sorted_bgr_and_unreadable_files_skipped(tmp_path, capsys):
    for i in (2, 0, 1):
        image = pattern_image(24, 32)
        image[0, 0] = (i, i, i)
        cv2.imwrite(str(tmp_path / f"frame_{i}.png"), image)
    (tmp_path / "frame_3.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("ignored")
    frames = list(frames_from(tmp_path))
    assert [int(f[0][0, 0, 0]) for f in frames] == [0, 1, 2]
    assert all(f[0].shape == (24, 32, 3) and f[1] == 0 for f in frames)
    assert "skipping frame_3.png" in capsys.readouterr().err


def test_video_frames(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG video")
    for _ in range(5):
        writer.write(pattern_image(24, 32)[:, :, ::-1].copy())
    writer.release()
    frames = list(frames_from(path))
    assert len(frames) == 5 and frames[0][0].shape == (24, 32, 3)


def test_bad_sources(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        list(frames_from(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no images"):
        list(frames_from(tmp_path))
    (tmp_path / "junk.xyz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="neither a bag nor a video"):
        list(frames_from(tmp_path / "junk.xyz"))


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_bag_round_trip_with_our_messages(tmp_path, storage):
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_JAZZY)
    register_package_types(typestore)
    bag = tmp_path / "bag"
    image = numpy_to_image(pattern_image(24, 32), "rgb8")
    image.header.stamp.sec, image.header.frame_id = 7, "cam"
    seg = Segmentation(labels=["a", "b"], label_set_id=3, no_label=255)
    seg.header = image.header
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(bag, version=9, storage_plugin=plugin) as writer:
        images = writer.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=typestore)
        segs = writer.add_connection("/lang_seg/segmentation", "lang_seg_ros/msg/Segmentation", typestore=typestore)
        for i in range(3):
            writer.write(images, 10 + i, serialize_message(image))
        writer.write(segs, 20, serialize_message(seg))

    frames = list(frames_from(bag))
    assert len(frames) == 3 and isinstance(frames[0][0], Image)
    assert frames[0][1] == 7_000_000_000 and frames[0][0].header.frame_id == "cam"
    np.testing.assert_array_equal(image_to_numpy(frames[0][0]), pattern_image(24, 32))
    with pytest.raises(ValueError, match="no image topic /other"):
        list(frames_from(bag, "/other"))

    with AnyReader([bag], default_typestore=typestore) as reader:
        (connection,) = [c for c in reader.connections if c.topic == "/lang_seg/segmentation"]
        (_, _, raw), = list(reader.messages(connections=[connection]))
        back = deserialize_message(bytes(raw), Segmentation)
        assert list(back.labels) == ["a", "b"] and back.label_set_id == 3
        decoded = reader.deserialize(raw, connection.msgtype)  # rosbags reads our type too
        assert list(decoded.labels) == ["a", "b"]
