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
    out = image_to_numpy(msg)
    np.testing.assert_array_equal(out, image)
    assert not np.shares_memory(out, np.frombuffer(msg.data, np.uint8))  # the pixels only, copied once
    # The one rule: data shorter than height * step is refused, also when only the last row's
    # padding is missing (docs/ros.md); it used to be padded with zeros up to height * step.
    msg.data = array.array("B", padded.tobytes()[:-pad])
    with pytest.raises(ImageConversionError, match=f"needs height \\* step = 7 \\* {msg.step} = {7 * msg.step}"):
        image_to_numpy(msg)


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
    with pytest.raises(ImageConversionError, match=r"data has 59 bytes.*needs height \* step = 4 \* 15 = 60"):
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
        with pytest.raises(ImageConversionError, match="could not be decoded|is not an image|refused"):
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


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "8UC3"])
def test_colour_encodings_reach_the_model_as_the_same_rgb_picture(encoding):
    """Every 3/4-channel encoding of one picture gives the model the same input (bgra8 is not rgba8)."""
    import torch

    from lang_seg_ros.inference.preprocess import normalize, to_rgb

    rgb = np.random.default_rng(7).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    layout = rgb[:, :, ::-1] if encoding in ("bgr8", "bgra8", "8UC3") else rgb
    if ENCODINGS[encoding].channels == 4:
        layout = np.dstack([layout, np.full(rgb.shape[:2], 77, np.uint8)])
    received = image_to_numpy(numpy_to_image(np.ascontiguousarray(layout), encoding))
    image, order = to_model_input(received, encoding)
    np.testing.assert_array_equal(to_rgb(image, order), rgb)
    np.testing.assert_array_equal(to_rgb8(received, encoding), rgb)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    assert torch.equal(normalize(image, mean, std, torch.device("cpu"), order),
                       normalize(rgb, mean, std, torch.device("cpu"), "rgb"))


def test_a_png_with_alpha_decodes_to_bgra8_and_reaches_the_model_as_rgb():
    from lang_seg_ros.inference.preprocess import to_rgb

    rgb = np.random.default_rng(8).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    bgra = np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 128, np.uint8)])
    ok, png = cv2.imencode(".png", bgra)
    assert ok
    msg = CompressedImage(format="png")
    msg.data = array.array("B", png.tobytes())
    image, encoding = compressed_to_numpy(msg)
    assert encoding == "bgra8" and image.shape == (6, 9, 4)
    np.testing.assert_array_equal(to_rgb(*to_model_input(image, encoding)), rgb)
    np.testing.assert_array_equal(to_rgb8(image, encoding), rgb)


# ---- issue 13: sizes checked before any allocation, one rule for raw images -------------------
def _refusal(convert, *args, **kwargs) -> tuple[str, float, int]:
    """(error text, seconds, peak bytes traced by tracemalloc) of a conversion that must fail."""
    import time
    import tracemalloc

    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        convert(*args, **kwargs)
    except ImageConversionError as exc:
        error = str(exc)
    else:
        error = ""
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert error, "the conversion did not refuse"
    return error, seconds, peak


def test_data_one_byte_short_of_height_times_step_is_refused():
    """mono8 3x2 step 4 with 7 bytes: the last row's pixels are there, its padding is not. It used
    to be answered on every output although docs/ros.md says such data never produces output."""
    msg = Image(height=2, width=3, encoding="mono8", step=4, data=array.array("B", bytes(range(7))))
    with pytest.raises(ImageConversionError, match=r"data has 7 bytes, a 3x2 mono8 image with step 4 needs "
                                                   r"height \* step = 2 \* 4 = 8"):
        image_to_numpy(msg)
    msg.data = array.array("B", bytes(range(8)))
    assert image_to_numpy(msg).tolist() == [[0, 1, 2], [4, 5, 6]]


@pytest.mark.parametrize("height", [1, 2])
def test_absurd_step_is_refused_without_allocating(height):
    """rgb8 2 x height, step 2^32 - 1, 6 bytes: it was padded to height * step (VmHWM +4 GB, 11 s)."""
    msg = Image(height=height, width=2, encoding="rgb8", step=4294967295, data=array.array("B", bytes(6)))
    error, seconds, peak = _refusal(image_to_numpy, msg)
    assert f"needs height * step = {height} * 4294967295" in error
    assert peak < 1 << 20 and seconds < 0.05, (peak, seconds)


def test_padded_big_endian_rows_are_copied_once_and_the_message_is_untouched():
    image = _array("mono16")
    swapped = image.astype(image.dtype.newbyteorder(">")).view(np.uint8).reshape(7, 22)
    padded = np.concatenate([swapped, np.zeros((7, 10), np.uint8)], axis=1).tobytes()
    msg = Image(height=7, width=11, encoding="mono16", is_bigendian=1, step=32, data=array.array("B", padded))
    np.testing.assert_array_equal(image_to_numpy(msg), image)
    assert bytes(msg.data) == padded


def test_pixel_cap_is_checked_before_the_data():
    """More than `max_pixels` is refused whatever step and data say, with nothing allocated."""
    msg = Image(height=5000, width=5000, encoding="rgb8", step=15000, data=array.array("B", bytes(16)))
    error, seconds, peak = _refusal(image_to_numpy, msg)
    assert "5000x5000 = 25000000 pixels exceeds the limit of 16777216" in error and peak < 1 << 20


# ---- compressed images: the decoded size read from the header, before decoding -----------------
def _jpeg(height=48, width=64, **params) -> bytes:
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (10, 200, 30)
    flags = []
    for key, value in params.items():
        flags += [getattr(cv2, f"IMWRITE_JPEG_{key.upper()}"), int(value)]
    ok, encoded = cv2.imencode(".jpg", image, flags)
    assert ok
    return encoded.tobytes()


def _sof(data: bytes) -> int:
    """Offset of the first frame header marker (the 0xFF of SOFn) in a JPEG written by OpenCV."""
    return min(i for i in (data.find(bytes([0xFF, m])) for m in (0xC0, 0xC1, 0xC2)) if i >= 0)


def _resize_sof(data: bytes, height: int, width: int) -> bytes:
    i = _sof(data)
    return data[:i + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[i + 9:]


def _exif_app1(size: int = 65535) -> bytes:
    """An APP1 "Exif" segment of `size` bytes after the marker (the longest a segment can be)."""
    return b"\xff\xe1" + size.to_bytes(2, "big") + b"Exif\x00\x00" + bytes(size - 8)


def _bombs() -> dict[str, bytes]:
    base = _resize_sof(_jpeg(), 20000, 20000)  # 64x48 of data, a frame header saying 20000x20000
    i = _sof(base)
    return {
        "plain": base,
        "fill byte before SOF": base[:i] + b"\xff" + base[i:],
        "1000 fill bytes before SOF": base[:i] + b"\xff" * 1000 + base[i:],
        "64 kB EXIF APP1 before SOF": base[:2] + _exif_app1() + base[2:],
        "four 64 kB APP segments and a COM": (base[:2] + _exif_app1() * 3 + b"\xff\xfe\xff\xff" + bytes(65533)
                                              + base[2:]),
        "progressive": _resize_sof(_jpeg(progressive=1), 20000, 20000),
        "restart interval": _resize_sof(_jpeg(rst_interval=4), 20000, 20000),
    }


@pytest.mark.parametrize("case", sorted(_bombs()))
def test_jpeg_bomb_is_refused_from_its_header_in_milliseconds(case, monkeypatch):
    """A 64x48 JPEG whose SOF says 20000x20000: OpenCV decoded it (VmHWM +2.3 GB, 4-5 s) when a
    fill byte or a 64 kB APP1 segment hid the SOF from the old header scan."""
    from lang_seg_ros.ros import image_conversion

    def no_decode(*_):
        raise AssertionError("cv2.imdecode was called for a bomb")

    monkeypatch.setattr(image_conversion.cv2, "imdecode", no_decode)
    msg = CompressedImage(format="jpeg", data=array.array("B", _bombs()[case]))
    times = []
    for _ in range(5):
        error, seconds, peak = _refusal(compressed_to_numpy, msg)
        times.append(seconds)
    assert "compressed image (jpeg) of 20000x20000 = 400000000 pixels exceeds the limit of 16777216" in error
    assert peak < 1 << 20, peak  # nothing image-sized: the payload is read in place
    assert sorted(times)[2] < 0.005, times  # median of 5 under 5 ms (a busy 2-core machine: ~0.05 ms)


@pytest.mark.parametrize("params", [{}, {"progressive": 1}, {"optimize": 1}, {"rst_interval": 2}])
def test_valid_jpeg_variants_with_fill_bytes_and_app_segments_decode(params):
    """What the header walk accepts is what libjpeg reads: fill bytes before markers, long
    APPn / COM segments, progressive and restart-interval files all decode to the same image."""
    plain = _jpeg(**params)
    expected, _ = compressed_to_numpy(CompressedImage(format="jpeg", data=array.array("B", plain)))
    i = _sof(plain)
    variants = [plain[:i] + b"\xff\xff\xff" + plain[i:],
                plain[:2] + _exif_app1() + b"\xff\xfe\x00\x05abc" + _exif_app1(300) + plain[2:]]
    for data in variants:
        out, encoding = compressed_to_numpy(CompressedImage(format="jpeg", data=array.array("B", data)))
        assert encoding == "bgr8"
        np.testing.assert_array_equal(out, expected)
    gray = cv2.imencode(".jpg", np.full((9, 13), 77, np.uint8))[1].tobytes()
    assert compressed_to_numpy(CompressedImage(format="jpeg", data=array.array("B", gray)))[0].shape == (9, 13)


@pytest.mark.parametrize("payload,reason", [
    (b"\xff\xd8\xff\xda\x00\x08" + bytes(20), "scan \\(SOS\\) before any frame header"),
    (b"\xff\xd8\xff\xd9", "EOI before the frame header"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "runs past the end"),
    (b"\xff\xd8\xff\xe0\x00\x04ab\x00\xff\xc0", "no marker at byte 8"),
    (b"\xff\xd8" + b"\xff\xfe\x00\x02" * 2000, "more than 1024 marker segments"),
    (b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x00\x00\x40\x03" + bytes(20), "height 0 \\(defined by a DNL marker\\)"),
    (b"\xff\xd8\xff" + b"\xff" * 70000, "truncated before the frame header"),
])
def test_malformed_jpeg_headers_are_refused(payload, reason):
    msg = CompressedImage(format="jpeg", data=array.array("B", payload))
    error, seconds, _ = _refusal(compressed_to_numpy, msg)
    assert seconds < 0.05
    import re
    assert re.search(reason, error), error


def _encoded(ext: str, image: np.ndarray, *params: int) -> bytes:
    ok, encoded = cv2.imencode(ext, image, list(params))
    assert ok
    return encoded.tobytes()


def test_png_webp_bmp_pnm_decode_and_their_bombs_are_refused(monkeypatch):
    rgb = RNG.integers(0, 255, (30, 40, 3), np.uint8)
    big = 30000  # 30000 x 30000 = 9e8 pixels
    png = _encoded(".png", rgb)
    webp_lossy = _encoded(".webp", rgb, cv2.IMWRITE_WEBP_QUALITY, 80)
    webp_lossless = _encoded(".webp", rgb, cv2.IMWRITE_WEBP_QUALITY, 101)
    bmp = _encoded(".bmp", rgb)
    ppm = _encoded(".ppm", rgb)
    assert webp_lossy[12:16] == b"VP8 " and webp_lossless[12:16] == b"VP8L"
    for data in (png, webp_lossy, webp_lossless, bmp, ppm):
        out, encoding = compressed_to_numpy(CompressedImage(format="x", data=array.array("B", data)))
        assert out.shape == (30, 40, 3) and encoding == "bgr8"

    size32 = big.to_bytes(4, "big")
    vp8x = (b"RIFF" + (22).to_bytes(4, "little") + b"WEBPVP8X" + (10).to_bytes(4, "little") + bytes(4)
            + (big - 1).to_bytes(3, "little") + (big - 1).to_bytes(3, "little"))
    bombs = {
        "png": png[:16] + size32 + size32 + png[24:],
        "webp": webp_lossy[:26] + (0x3FFF).to_bytes(2, "little") + (0x3FFF).to_bytes(2, "little") + webp_lossy[30:],
        "webp lossless": webp_lossless[:21] + (0xFFFFFFF).to_bytes(4, "little") + webp_lossless[25:],
        "webp extended": vp8x,
        "bmp": bmp[:18] + big.to_bytes(4, "little") + (-big).to_bytes(4, "little", signed=True) + bmp[26:],
        "pnm": b"P6\n# a comment 1 2\n" + f"{big} {big}\n255\n".encode() + bytes(64),
    }
    from lang_seg_ros.ros import image_conversion
    monkeypatch.setattr(image_conversion.cv2, "imdecode", lambda *_: pytest.fail("decoded a bomb"))
    for name, data in bombs.items():
        error, seconds, peak = _refusal(compressed_to_numpy, CompressedImage(format="x", data=array.array("B", data)))
        assert "pixels exceeds the limit of 16777216" in error, (name, error)
        assert seconds < 0.05 and peak < 1 << 20, (name, seconds, peak)
    moved = png[:12] + b"tEXt" + png[16:]  # IHDR must be the first chunk
    with pytest.raises(ImageConversionError, match="IHDR is not the first chunk"):
        compressed_to_numpy(CompressedImage(format="png", data=array.array("B", moved)))


@pytest.mark.parametrize("ext,name", [(".tiff", "TIFF"), (".gif", "GIF"), (".jp2", "JPEG 2000"),
                                      (".hdr", "Radiance HDR"), (".ras", "Sun raster"), (".pfm", "PFM"),
                                      (".pam", "PAM")])
def test_formats_whose_size_is_not_parsed_are_refused(ext, name):
    image = np.zeros((64, 64, 3), np.float32 if ext in (".hdr", ".pfm") else np.uint8)
    data = _encoded(ext, image)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is not None  # OpenCV would decode it
    with pytest.raises(ImageConversionError, match=f"{name} payloads are not accepted"):
        compressed_to_numpy(CompressedImage(format=ext[1:], data=array.array("B", data)))


def test_opencv_pixel_fence_works_when_set_before_cv2_is_imported():
    """The second fence: OPENCV_IO_MAX_IMAGE_PIXELS, read by OpenCV once at import, makes
    imdecode refuse a bomb in its own header check (this OpenCV build honours it)."""
    import subprocess

    script = ("import sys; from lang_seg_ros.ros import image_headers as h; assert h.set_opencv_pixel_fence();"
              "import cv2, numpy as np; data = np.frombuffer(sys.stdin.buffer.read(), np.uint8)\n"
              "try:\n    cv2.imdecode(data, cv2.IMREAD_UNCHANGED)\n"
              "except cv2.error as e:\n    print('refused', h.opencv_fence())")
    bomb = _resize_sof(_jpeg(), 8200, 8200)  # 67.2 M pixels, just over the fence (2^26)
    run = subprocess.run([sys.executable, "-c", script], input=bomb, capture_output=True, timeout=60,
                         env={k: v for k, v in __import__("os").environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"})
    assert run.stdout.decode().strip() == f"refused {1 << 26}", run.stderr.decode()[-2000:]


# ---- extreme depth / mono values: no numpy warnings --------------------------------------------
@pytest.mark.parametrize("encoding", ["32FC1", "16UC1", "mono16"])
def test_extreme_values_convert_without_numpy_warnings(encoding):
    """32FC1 with inf, nan, +-1e38, +-3.4e38 flooded the log with overflow warnings."""
    import warnings

    if encoding == "32FC1":
        f32 = np.finfo(np.float32)
        values = np.array([[np.inf, -np.inf, np.nan, 1e38], [-1e38, f32.max, f32.min, 0.0]], np.float32)
        expected = [[0, 0, 0, 165], [90, 255, 0, 128]]
    else:
        values = np.array([[0, 65535], [1, 32768]], np.uint16)
        expected = [[0, 255], [0, 128]]
    msg = numpy_to_image(values, encoding)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image, _ = to_model_input(image_to_numpy(msg), encoding)
        rgb = to_rgb8(image_to_numpy(msg), encoding)
        everything_non_finite = to_model_input(np.array([[np.nan, np.inf]], np.float32), "32FC1")[0]
    assert image.tolist() == expected
    assert rgb.shape == (*image.shape, 3) and (rgb[:, :, 0] == image).all()
    assert everything_non_finite.tolist() == [[0, 0]]


def test_the_node_process_has_the_opencv_pixel_fence():
    """OpenCV's own decoded-pixel limit, the second fence behind the header check, is set before
    anything in the node's process imports cv2 (lang_seg_ros/ros/__init__.py)."""
    import os
    import subprocess

    script = ("import os, lang_seg_ros.ros.node; from lang_seg_ros.ros import image_conversion as ic;"
              "print(ic.OPENCV_FENCE_SET, os.environ.get('OPENCV_IO_MAX_IMAGE_PIXELS'))")
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120, env=env)
    assert run.stdout.decode().split() == ["True", str(1 << 26)], run.stderr.decode()[-2000:]
