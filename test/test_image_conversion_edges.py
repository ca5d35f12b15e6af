"""sensor_msgs <-> numpy (lang_seg_ros/ros/image_conversion.py) at the edges: exact refusal messages
(what a user reads in the node log), size limits that are inclusive, the zero-copy and untouched-message
promises, 16-bit and constant images, encoder defaults, and a decoder that disagrees with the header
(simulated: the code that guards against it is otherwise unreachable)."""
from __future__ import annotations

import array
import re
import struct

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed: run scripts/setup_ros.sh (ROS 2 Jazzy wheels)")
import cv2  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from lang_seg_ros.ros import image_conversion  # noqa: E402
from lang_seg_ros.ros.image_conversion import (ENCODINGS, ImageConversionError, compressed_size,  # noqa: E402
                                               compressed_to_numpy, image_to_numpy, numpy_to_compressed,
                                               numpy_to_image, serialized_stamp_ns, to_model_input)

SUPPORTED = ", ".join(ENCODINGS)


def exactly(message: str) -> str:
    return "^" + re.escape(message) + "$"


def png(image: np.ndarray, fmt: str = "png") -> CompressedImage:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return CompressedImage(format=fmt, data=array.array("B", data.tobytes()))


# ---- raw images ----------------------------------------------------------------------------------
def test_one_pixel_wide_and_high_images_are_images():
    for shape in [(5, 1, 3), (1, 5, 3), (1, 1, 3)]:
        image = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
        np.testing.assert_array_equal(image_to_numpy(numpy_to_image(image, "rgb8")), image)


def test_unknown_encodings_are_named_with_the_supported_ones():
    long = "y" * 100
    msg = Image(height=1, width=1, encoding=long, step=1, data=array.array("B", b"\x00"))
    with pytest.raises(ImageConversionError, match=exactly(f"unknown image encoding {long[:64]!r} "
                                                           f"(supported: {SUPPORTED})")):
        image_to_numpy(msg)
    with pytest.raises(ImageConversionError, match=exactly(f"unknown image encoding 'yuv' (supported: {SUPPORTED})")):
        numpy_to_image(np.zeros((1, 1, 3), np.uint8), "yuv")
    with pytest.raises(ImageConversionError, match=exactly("unknown image encoding 'yuv'")):
        to_model_input(np.zeros((1, 1), np.uint8), "yuv")


def test_data_longer_than_height_times_step_is_fine():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    msg = numpy_to_image(image, "rgb8")
    msg.data = array.array("B", bytes(msg.data) + b"surplus")
    np.testing.assert_array_equal(image_to_numpy(msg), image)


def test_8_bit_images_flagged_big_endian_are_still_read_without_a_copy():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    msg = numpy_to_image(image, "rgb8")
    msg.is_bigendian = 1
    out = image_to_numpy(msg)
    np.testing.assert_array_equal(out, image)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8)) and not out.flags.writeable


def test_other_byte_order_without_padding_is_copied_and_the_message_is_untouched():
    values = np.array([[1, 2, 513]], np.uint16)
    msg = numpy_to_image(values.byteswap(), "mono16")  # the bytes a big-endian sender writes
    msg.is_bigendian = 1
    before = bytes(msg.data)
    out = image_to_numpy(msg)
    np.testing.assert_array_equal(out, values)
    assert bytes(msg.data) == before and not np.shares_memory(out, np.frombuffer(msg.data, np.uint8))


@pytest.mark.parametrize("encoding", ["mono8", "mono16", "32FC1", "8UC1"])
def test_one_channel_arrays_may_carry_a_trailing_axis(encoding):
    dtype = ENCODINGS[encoding].dtype
    image = np.arange(6, dtype=dtype).reshape(2, 3, 1)
    msg = numpy_to_image(image, encoding)
    assert (msg.height, msg.width, msg.step) == (2, 3, 3 * dtype.itemsize)
    np.testing.assert_array_equal(image_to_numpy(msg), image[:, :, 0])
    with pytest.raises(ImageConversionError, match=exactly(f"array of shape (2, 3, 2) does not fit encoding "
                                                           f"{encoding}")):
        numpy_to_image(np.zeros((2, 3, 2), dtype), encoding)


# ---- 16-bit and float single-channel images ------------------------------------------------------
def test_16_bit_values_are_stretched_over_their_range_rounding_half_up():
    values = np.array([[1000, 1500, 2000, 2500, 3000, 1001]], np.uint16)
    image, order = to_model_input(values, "mono16")
    assert image.dtype == np.uint8 and order == "rgb"
    assert image.tolist() == [[0, 64, 128, 191, 255, 0]]  # (v - 1000) * 255 / 2000 + 0.5, truncated


@pytest.mark.parametrize("values, encoding", [(np.full((2, 3), 700, np.uint16), "mono16"),
                                              (np.full((2, 3), 2.5, np.float32), "32FC1"),
                                              (np.array([[2.5, np.nan]], np.float32), "32FC1"),
                                              (np.array([[np.nan, np.inf]], np.float32), "32FC1")])
def test_constant_or_non_finite_images_are_black_uint8(values, encoding):
    image, _ = to_model_input(values, encoding)
    assert image.dtype == np.uint8 and image.shape == values.shape and not image.any()


def test_float_values_are_stretched_over_their_finite_range():
    values = np.array([[-1.0, 0.0, 1.0, np.inf, 0.5]], np.float32)
    image, _ = to_model_input(values, "32FC1")
    assert image.tolist() == [[0, 128, 255, 0, 191]]


# ---- compressed images ---------------------------------------------------------------------------
def test_compressed_depth_is_refused_by_name_in_any_case():
    for fmt in ("16UC1; compressedDepth png", "16UC1; COMPRESSEDDEPTH"):
        msg = CompressedImage(format=fmt, data=array.array("B", b"1234"))
        with pytest.raises(ImageConversionError, match=exactly(f"CompressedImage format {fmt!r} (compressedDepth) is "
                                                               "not supported")):
            compressed_to_numpy(msg)
    long = "compressedDepth" + "x" * 100
    with pytest.raises(ImageConversionError, match=exactly(f"CompressedImage format {long[:64]!r} (compressedDepth) "
                                                           "is not supported")):
        compressed_size(CompressedImage(format=long, data=array.array("B", b"1234")))


def test_refusals_quote_the_format_or_a_question_mark():
    with pytest.raises(ImageConversionError, match=exactly("empty CompressedImage (format '?')")):
        compressed_size(CompressedImage())
    long = "f" * 100
    with pytest.raises(ImageConversionError, match=exactly(f"empty CompressedImage (format {long[:64]!r})")):
        compressed_size(CompressedImage(format=long))
    with pytest.raises(ImageConversionError, match=r"^CompressedImage \(format '\?', 7 bytes\) refused: "):
        compressed_size(CompressedImage(data=array.array("B", b"garbage")))
    with pytest.raises(ImageConversionError, match=r"^CompressedImage \(format " + re.escape(repr(long[:64]))
                       + r", 7 bytes\) refused: "):
        compressed_size(CompressedImage(format=long, data=array.array("B", b"garbage")))


def test_size_limits_are_inclusive():
    msg = png(np.zeros((4, 5, 3), np.uint8))
    size = len(msg.data)
    assert compressed_size(msg, max_pixels=20, max_bytes=size) == ("png", 5, 4)
    assert compressed_to_numpy(msg, max_pixels=20, max_bytes=size)[0].shape == (4, 5, 3)
    with pytest.raises(ImageConversionError, match=exactly(f"CompressedImage of {size} bytes exceeds the limit of "
                                                           f"{size - 1} bytes")):
        compressed_size(msg, max_bytes=size - 1)
    with pytest.raises(ImageConversionError, match=exactly("compressed image (png) of 5x4 = 20 pixels exceeds the "
                                                           "limit of 19 pixels")):
        compressed_size(msg, max_pixels=19)


def test_a_payload_opencv_cannot_decode_is_named_with_its_format_and_size():
    good = png(np.zeros((6, 9, 3), np.uint8))
    header_only = bytes(good.data)[:33]  # signature and IHDR: the size is readable, the image is not
    for fmt, shown in (("png", "'png'"), ("", "'?'"), ("p" * 100, repr("p" * 64))):
        msg = CompressedImage(format=fmt, data=array.array("B", header_only + b"\x00" * 10))
        with pytest.raises(ImageConversionError, match=exactly(f"CompressedImage (format {shown}, 43 bytes) is not an "
                                                               "image OpenCV can decode")):
            compressed_to_numpy(msg)


def test_an_opencv_error_is_reported_with_the_end_of_its_text(monkeypatch):
    text = "start " + "m" * 300 + " the end"

    def failing(*args):
        raise cv2.error(text)

    monkeypatch.setattr(image_conversion.cv2, "imdecode", failing)
    for fmt, shown in (("", "'?'"), ("p" * 100, repr("p" * 64))):
        msg = png(np.zeros((4, 5, 3), np.uint8), fmt=fmt)
        with pytest.raises(ImageConversionError) as error:
            compressed_to_numpy(msg)
        assert str(error.value) == (f"CompressedImage (format {shown}, {len(msg.data)} bytes) could not be decoded: "
                                    f"{str(cv2.error(text)).strip()[-200:]}")


@pytest.mark.parametrize("decoded, expected", [
    (np.zeros((5, 4, 3), np.uint8), "bgr8"),          # width and height swapped (EXIF rotation): accepted
    (np.zeros((4, 5, 1), np.uint8), "mono8"),         # one channel with an axis: squeezed
    (np.zeros((4, 5, 3), np.uint16), "bgr8"),         # 16-bit colour: the high bytes
])
def test_what_a_decoder_may_return_is_normalised(monkeypatch, decoded, expected):
    monkeypatch.setattr(image_conversion.cv2, "imdecode", lambda *args: decoded)
    image, encoding = compressed_to_numpy(png(np.zeros((4, 5, 3), np.uint8)))
    assert encoding == expected and image.dtype == np.uint8
    assert image.shape == (decoded.shape[:2] if expected == "mono8" else decoded.shape)


@pytest.mark.parametrize("decoded, message", [
    (np.zeros((6, 6, 3), np.uint8), "CompressedImage (png) decoded to 6x6, its header says 5x4"),
    (np.zeros((4, 6, 3), np.uint8), "CompressedImage (png) decoded to 6x4, its header says 5x4"),
    (np.zeros((4, 5, 3), np.float32), "CompressedImage decodes to unsupported dtype float32"),
    (np.zeros((4, 5, 2), np.uint8), "CompressedImage decodes to unsupported shape (4, 5, 2)"),
])
def test_what_a_decoder_must_not_return_is_refused(monkeypatch, decoded, message):
    monkeypatch.setattr(image_conversion.cv2, "imdecode", lambda *args: decoded)
    with pytest.raises(ImageConversionError, match=exactly(message)):
        compressed_to_numpy(png(np.zeros((4, 5, 3), np.uint8)))


def test_16_bit_colour_pngs_keep_their_high_bytes():
    wide = np.random.default_rng(0).integers(0, 65536, (4, 5, 3), dtype=np.uint16)
    image, encoding = compressed_to_numpy(png(wide))
    assert encoding == "bgr8" and image.dtype == np.uint8
    np.testing.assert_array_equal(image, (wide >> 8).astype(np.uint8))


# ---- encoding ------------------------------------------------------------------------------------
def test_jpeg_is_the_default_and_quality_is_applied():
    image = np.random.default_rng(1).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    default = numpy_to_compressed(image)
    assert default.format == "jpeg" and bytes(default.data) == bytes(numpy_to_compressed(image, "jpeg", quality=90).data)
    assert bytes(numpy_to_compressed(image, "JPG").data) == bytes(default.data)
    assert numpy_to_compressed(image, "jpg").format == "jpeg"
    small, large = numpy_to_compressed(image, quality=10), numpy_to_compressed(image, quality=95)
    assert len(small.data) < len(default.data) < len(large.data)


def test_png_is_lossless_in_either_colour_order_with_alpha_and_grey():
    rng = np.random.default_rng(2)
    rgba = rng.integers(0, 256, (6, 7, 4), dtype=np.uint8)
    image, encoding = compressed_to_numpy(numpy_to_compressed(rgba, "png", color_order="rgb"))
    assert encoding == "bgra8"
    np.testing.assert_array_equal(image, rgba[:, :, [2, 1, 0, 3]])
    bgr = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(compressed_to_numpy(numpy_to_compressed(bgr, "png"))[0], bgr)
    grey = rng.integers(0, 256, (6, 7), dtype=np.uint8)
    for order in ("rgb", "bgr"):
        image, encoding = compressed_to_numpy(numpy_to_compressed(grey, "png", color_order=order))
        assert encoding == "mono8"
        np.testing.assert_array_equal(image, grey)


def test_encoding_refusals_name_the_reason(monkeypatch):
    with pytest.raises(ImageConversionError, match=exactly("unsupported compressed format 'webp' (jpeg or png)")):
        numpy_to_compressed(np.zeros((2, 2, 3), np.uint8), "webp")
    monkeypatch.setattr(image_conversion.cv2, "imencode", lambda *args: (False, None))
    with pytest.raises(ImageConversionError, match=exactly("OpenCV could not encode a (2, 2, 3) uint8 array as png")):
        numpy_to_compressed(np.zeros((2, 2, 3), np.uint8), "png")


# ---- the stamp of a serialised frame -------------------------------------------------------------
def test_the_stamp_reads_seconds_signed_and_nanoseconds_unsigned_in_both_byte_orders():
    for order, flag in (("<", b"\x00\x01\x00\x00"), (">", b"\x00\x00\x00\x00")):
        assert serialized_stamp_ns(flag + struct.pack(order + "iI", -2, 3_000_000_000)) == -2_000_000_000 + 3_000_000_000
