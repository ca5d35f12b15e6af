"""sensor_msgs Image / CompressedImage <-> numpy: round trips and every malformed-message error."""
from __future__ import annotations

import array
import sys

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed: run scripts/setup_ros.sh (ROS 2 Jazzy wheels)")
import cv2  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from lang_seg_ros.ros.image_conversion import (ENCODINGS, ImageConversionError, compressed_to_numpy,  # noqa: E402
                                               image_to_numpy, numpy_to_compressed, numpy_to_image,
                                               to_model_input, to_rgb8)

RNG = np.random.default_rng(0)


def _array(encoding: str, height: int = 7, width: int = 11) -> np.ndarray:
    dtype, channels = ENCODINGS[encoding]
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype == np.float32:
        return RNG.standard_normal(shape).astype(np.float32)
    return RNG.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_round_trip_every_encoding(encoding):
    image = _array(encoding)
    header = Header(frame_id="cam")
    msg = numpy_to_image(image, encoding, header)
    assert (msg.height, msg.width, msg.encoding, msg.header.frame_id) == (7, 11, encoding, "cam")
    assert msg.step == 11 * image.itemsize * (1 if image.ndim == 2 else image.shape[2])
    out = image_to_numpy(msg)
    assert out.dtype == image.dtype and out.shape == image.shape
    np.testing.assert_array_equal(out, image)
    if image.itemsize == 1 or not msg.is_bigendian:  # zero copy: a read-only view of the message's buffer
        assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8)) and not out.flags.writeable


@pytest.mark.parametrize("encoding", ["rgb8", "mono8", "mono16", "32FC1", "bgra8"])
def test_padded_step(encoding):
    image = _array(encoding)
    plain = numpy_to_image(image, encoding)
    pad = 5
    rows = np.frombuffer(plain.data, np.uint8).reshape(plain.height, plain.step)
    padded = np.concatenate([rows, np.full((plain.height, pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=plain.height, width=plain.width, encoding=encoding, is_bigendian=plain.is_bigendian,
                step=plain.step + pad, data=array.array("B", padded.tobytes()))
    np.testing.assert_array_equal(image_to_numpy(msg), image)
    # a last row without its padding is fine too (some drivers send that)
    msg.data = array.array("B", padded.tobytes()[:-pad])
    np.testing.assert_array_equal(image_to_numpy(msg), image)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "32FC1"])
def test_big_endian(encoding):
    image = _array(encoding)
    swapped = image.astype(image.dtype.newbyteorder(">"))
    msg = Image(height=7, width=11, encoding=encoding, is_bigendian=1, step=11 * image.itemsize,
                data=array.array("B", swapped.tobytes()))
    out = image_to_numpy(msg)
    np.testing.assert_array_equal(out, image)
    assert out.dtype.byteorder in ("=", "<" if sys.byteorder == "little" else ">", "|")


def test_big_endian_flag_is_irrelevant_for_8_bit():
    image = _array("rgb8")
    msg = numpy_to_image(image, "rgb8")
    msg.is_bigendian = 1
    np.testing.assert_array_equal(image_to_numpy(msg), image)


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_round_trip(fmt):
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:, :32] = (200, 30, 10)
    rgb[:, 32:] = (10, 30, 200)
    msg = numpy_to_compressed(rgb, fmt, Header(frame_id="cam"), color_order="rgb")
    assert msg.format == fmt and msg.header.frame_id == "cam"
    out, encoding = compressed_to_numpy(msg)
    assert encoding == "bgr8" and out.shape == (48, 64, 3)
    error = np.abs(to_rgb8(out, encoding).astype(int) - rgb)
    if fmt == "png":
        assert error.max() == 0
    else:  # lossy, and chroma is subsampled at the colour edge: compare away from it
        assert error[:, 8:24].max() <= 12 and error[:, 40:56].max() <= 12


def test_compressed_mono_and_16_bit_png():
    mono = _array("mono8", 20, 30)
    out, encoding = compressed_to_numpy(numpy_to_compressed(mono, "png"))
    assert encoding == "mono8"
    np.testing.assert_array_equal(out, mono)
    depth = _array("16UC1", 20, 30)
    out, encoding = compressed_to_numpy(numpy_to_compressed(depth, "png"))
    assert encoding == "mono16"
    np.testing.assert_array_equal(out, depth)


# ---- malformed messages: each a clear ImageConversionError -------------------------------------
def _rgb_msg(height=4, width=5) -> Image:
    return numpy_to_image(_array("rgb8", height, width), "rgb8")


def test_step_smaller_than_row():
    msg = _rgb_msg()
    msg.step = 5 * 3 - 1
    with pytest.raises(ImageConversionError, match="step 14 is smaller than width"):
        image_to_numpy(msg)


def test_data_shorter_than_height_times_step():
    msg = _rgb_msg()
    msg.data = msg.data[:-1]
    with pytest.raises(ImageConversionError, match="data has 59 bytes.*needs 60"):
        image_to_numpy(msg)


@pytest.mark.parametrize("height,width", [(0, 5), (4, 0), (0, 0)])
def test_zero_size(height, width):
    msg = Image(height=height, width=width, encoding="rgb8", step=width * 3)
    with pytest.raises(ImageConversionError, match="zero-size image"):
        image_to_numpy(msg)


def test_unknown_encoding():
    msg = _rgb_msg()
    msg.encoding = "yuv422_yuy2"
    with pytest.raises(ImageConversionError, match="unknown image encoding 'yuv422_yuy2'"):
        image_to_numpy(msg)


def test_oversize_is_refused_before_looking_at_the_data():
    msg = Image(height=10000, width=10000, encoding="mono8", step=10000)  # no data at all
    with pytest.raises(ImageConversionError, match="10000x10000 = 100000000 pixels exceeds"):
        image_to_numpy(msg)
    msg = _rgb_msg(4, 5)
    with pytest.raises(ImageConversionError, match="exceeds the limit of 19 pixels"):
        image_to_numpy(msg, max_pixels=19)
    assert image_to_numpy(msg, max_pixels=20).shape == (4, 5, 3)


def test_compressed_that_is_not_an_image():
    for payload in (b"this is not a jpeg", b"\xff\xd8\xff\xe0garbage", b"\x89PNG\r\n\x1a\nbroken"):
        msg = CompressedImage(format="jpeg", data=array.array("B", payload))
        with pytest.raises(ImageConversionError, match="could not be decoded|is not an image"):
            compressed_to_numpy(msg)
    with pytest.raises(ImageConversionError, match="empty CompressedImage"):
        compressed_to_numpy(CompressedImage(format="jpeg"))
    depth = CompressedImage(format="16UC1; compressedDepth png", data=array.array("B", b"1234"))
    with pytest.raises(ImageConversionError, match="compressedDepth"):
        compressed_to_numpy(depth)


def test_compressed_oversize_is_refused_from_the_header():
    big = np.zeros((300, 400), np.uint8)
    for fmt in ("png", "jpeg"):
        msg = numpy_to_compressed(big, fmt)
        with pytest.raises(ImageConversionError, match="400x300 = 120000 pixels exceeds"):
            compressed_to_numpy(msg, max_pixels=100_000)
    ok, encoded = cv2.imencode(".png", big)
    msg = CompressedImage(format="png", data=array.array("B", encoded.tobytes()))
    with pytest.raises(ImageConversionError, match="exceeds the limit of 10 bytes"):
        compressed_to_numpy(msg, max_bytes=10)


def test_numpy_to_image_rejects_mismatched_arrays():
    with pytest.raises(ImageConversionError, match="does not fit encoding rgb8"):
        numpy_to_image(np.zeros((4, 5), np.uint8), "rgb8")
    with pytest.raises(ImageConversionError, match="dtype float64"):
        numpy_to_image(np.zeros((4, 5)), "mono8")
    with pytest.raises(ImageConversionError, match="unknown image encoding"):
        numpy_to_image(np.zeros((4, 5), np.uint8), "nv12")


def test_model_input_and_rgb8():
    bgr = _array("bgr8")
    image, order = to_model_input(bgr, "bgr8")
    assert order == "bgr" and image is bgr
    np.testing.assert_array_equal(to_rgb8(bgr, "bgr8"), bgr[:, :, ::-1])
    rgba = _array("rgba8")
    np.testing.assert_array_equal(to_rgb8(rgba, "rgba8"), rgba[:, :, :3])
    depth = np.array([[0.5, 1.5], [np.nan, 2.5]], np.float32)
    image, order = to_model_input(depth, "32FC1")
    assert image.dtype == np.uint8 and image.tolist() == [[0, 128], [0, 255]]
    mono16 = np.array([[1000, 3000]], np.uint16)
    assert to_model_input(mono16, "mono16")[0].tolist() == [[0, 255]]
    assert to_rgb8(_array("mono8"), "mono8").shape == (7, 11, 3)
