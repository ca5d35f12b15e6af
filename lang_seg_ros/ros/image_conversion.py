"""sensor_msgs/Image and CompressedImage <-> numpy, written here instead of cv_bridge.

Raw encodings: rgb8, bgr8, rgba8, bgra8, mono8, 8UC1, 8UC3 (as bgr8), mono16, 16UC1, 32FC1, 32SC1,
with any row padding (`step` >= width * bytes per pixel) and either byte order
(`is_bigendian`). Compressed: JPEG, PNG, WebP, BMP, PBM/PGM/PPM ("compressedDepth" excepted).
Every malformed message raises `ImageConversionError` (a `ValueError`) whose
text says what is wrong, before any large allocation.

Arrays are (H, W) for one channel and (H, W, C) otherwise, in the native byte order; a raw
image with unpadded rows in the native byte order comes back as a read-only view of the
message's buffer (no copy: the model input is the one copy), anything else as a new array.

The one rule for raw images (`check_image`), applied before anything is allocated: a known
encoding; width and height > 0 and width * height <= `max_pixels`; `step` >= width * bytes
per pixel; `len(data)` >= height * step (the last row's padding too; longer data is fine,
the surplus is ignored), so a huge `step` is refused unless the message really carries it.
The only allocation that follows is the output (height * width * bytes per pixel; none for
the zero-copy view).

Compressed images: the payload's header gives the decoded size (`image_headers.image_size`:
JPEG, PNG, WebP, BMP, PBM/PGM/PPM; other formats are refused), checked against `max_pixels`
before `cv2.imdecode` is called; OpenCV's own `OPENCV_IO_MAX_IMAGE_PIXELS` is a second fence
where it was set before cv2 was imported (`image_headers.set_opencv_pixel_fence`).
"""
from __future__ import annotations

import array
import struct
import sys
from typing import NamedTuple

from .image_headers import HeaderError, image_size, set_opencv_pixel_fence

#: True when OpenCV's own pixel limit was set here, before cv2 was first imported (else it is
#: whatever OPENCV_IO_MAX_IMAGE_PIXELS said when something else imported cv2, by default 2^30).
OPENCV_FENCE_SET = set_opencv_pixel_fence()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

__all__ = [
    "ENCODINGS", "DEFAULT_MAX_PIXELS", "ImageConversionError", "check_image",
    "compressed_size", "compressed_to_numpy", "decode_frame", "image_to_numpy", "numpy_to_compressed", "numpy_to_image",
    "serialized_stamp_ns", "to_model_input", "to_rgb8",
]


class _Encoding(NamedTuple):
    dtype: np.dtype
    channels: int


ENCODINGS: dict[str, _Encoding] = {
    "rgb8": _Encoding(np.dtype(np.uint8), 3),
    "bgr8": _Encoding(np.dtype(np.uint8), 3),
    "rgba8": _Encoding(np.dtype(np.uint8), 4),
    "bgra8": _Encoding(np.dtype(np.uint8), 4),
    "mono8": _Encoding(np.dtype(np.uint8), 1),
    "8UC1": _Encoding(np.dtype(np.uint8), 1),
    "8UC3": _Encoding(np.dtype(np.uint8), 3),
    "mono16": _Encoding(np.dtype(np.uint16), 1),
    "16UC1": _Encoding(np.dtype(np.uint16), 1),
    "32FC1": _Encoding(np.dtype(np.float32), 1),
    "32SC1": _Encoding(np.dtype(np.int32), 1),  # panoptic id images
}
#: Colour order of the 3/4-channel encodings, as `Segmenter.segment(color_order=...)` takes it.
_COLOR_ORDER = {"rgb8": "rgb", "rgba8": "rgb", "bgr8": "bgr", "bgra8": "bgr", "8UC3": "bgr"}
#: 4096 x 4096; larger images are refused (a 10,000 x 10,000 frame is a mistake, not a camera).
DEFAULT_MAX_PIXELS = 1 << 24
#: Compressed payloads larger than this are refused without decoding.
DEFAULT_MAX_COMPRESSED_BYTES = 64 << 20
_NATIVE_BIG_ENDIAN = sys.byteorder == "big"


class ImageConversionError(ValueError):
    """A sensor_msgs image that cannot be converted; the message says why."""


def _check_size(width: int, height: int, max_pixels: int | None) -> None:
    if width <= 0 or height <= 0:
        raise ImageConversionError(f"zero-size image ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageConversionError(
            f"image of {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} pixels")


class _Layout(NamedTuple):
    dtype: np.dtype
    channels: int
    width: int
    height: int
    step: int
    row_bytes: int


def check_image(msg: Image, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> _Layout:
    """Check a sensor_msgs/Image's size fields against its encoding and data length, allocating
    nothing; returns its layout. Raises `ImageConversionError` naming the numbers at fault."""
    encoding = msg.encoding
    if encoding not in ENCODINGS:
        raise ImageConversionError(
            f"unknown image encoding {encoding[:64]!r} (supported: {', '.join(ENCODINGS)})")
    dtype, channels = ENCODINGS[encoding]
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    _check_size(width, height, max_pixels)
    pixel_bytes = channels * dtype.itemsize
    row_bytes = width * pixel_bytes
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than width * bytes per pixel = {width} * {pixel_bytes} = {row_bytes} "
            f"for {encoding}")
    size = len(msg.data)
    if size < height * step:
        raise ImageConversionError(
            f"data has {size} bytes, a {width}x{height} {encoding} image with step {step} needs height * step = "
            f"{height} * {step} = {height * step}")
    return _Layout(dtype, channels, width, height, step, row_bytes)


def image_to_numpy(msg: Image, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A sensor_msgs/Image as an (H, W) or (H, W, C) array of the encoding's dtype (a view of
    `msg.data` when rows are unpadded and the byte order is native: treat it as read-only).

    Raises `ImageConversionError` (see `check_image`, before any allocation) for an unknown
    encoding, zero width or height, more than `max_pixels` pixels, `step` shorter than a row,
    or `data` shorter than height * step.
    """
    dtype, channels, width, height, step, row_bytes = check_image(msg, max_pixels)
    buffer = np.frombuffer(msg.data, dtype=np.uint8, count=height * step)  # a view, no copy
    rows = buffer.reshape(height, step)
    if step != row_bytes:  # the one copy, of the pixels only (height * row_bytes)
        rows = np.ascontiguousarray(rows[:, :row_bytes])
    out = rows.view(dtype)
    if dtype.itemsize > 1 and bool(msg.is_bigendian) != _NATIVE_BIG_ENDIAN:
        out = out.byteswap(inplace=step != row_bytes)  # a copy unless already one: the message stays as received
    elif np.shares_memory(out, buffer):
        out.flags.writeable = False
    return out.reshape(height, width) if channels == 1 else out.reshape(height, width, channels)


def numpy_to_image(image: np.ndarray, encoding: str, header: Header | None = None, into: Image | None = None) -> Image:
    """An array as a sensor_msgs/Image of `encoding`, unpadded, in the native byte order; written
    into `into` when given (a message's own default image field: building a second Image with its
    header costs more than the data copy of a small region's mask)."""
    if encoding not in ENCODINGS:
        raise ImageConversionError(f"unknown image encoding {encoding!r} (supported: {', '.join(ENCODINGS)})")
    dtype, channels = ENCODINGS[encoding]
    image = np.asarray(image)
    expected_ndim = 2 if channels == 1 else 3
    if image.ndim == 3 and channels == 1 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim != expected_ndim or (channels > 1 and image.shape[2] != channels):
        raise ImageConversionError(f"array of shape {image.shape} does not fit encoding {encoding}")
    if image.dtype != dtype:
        raise ImageConversionError(f"array of dtype {image.dtype} does not fit encoding {encoding} ({dtype})")
    image = np.ascontiguousarray(image)
    msg = Image() if into is None else into
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(image.shape[0]), int(image.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 1 if _NATIVE_BIG_ENDIAN else 0
    msg.step = int(image.shape[1] * channels * dtype.itemsize)
    msg.data = _as_byte_array(image)
    return msg


def _as_byte_array(image: np.ndarray) -> array.array:
    data = array.array("B")
    data.frombytes(np.ascontiguousarray(image).view(np.uint8).data)
    return data


def compressed_size(msg: CompressedImage, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                    max_bytes: int = DEFAULT_MAX_COMPRESSED_BYTES) -> tuple[str, int, int]:
    """(format, width, height) a CompressedImage will decode to, from its header, without
    decoding or allocating; raises `ImageConversionError` for anything `compressed_to_numpy`
    refuses before decoding (empty, over `max_bytes`, compressedDepth, a format whose header is
    not parsed, a malformed header, more than `max_pixels` pixels)."""
    fmt = msg.format or "?"
    if "compresseddepth" in fmt.lower():
        raise ImageConversionError(f"CompressedImage format {fmt[:64]!r} (compressedDepth) is not supported")
    size = len(msg.data)
    if size == 0:
        raise ImageConversionError(f"empty CompressedImage (format {fmt[:64]!r})")
    if size > max_bytes:
        raise ImageConversionError(f"CompressedImage of {size} bytes exceeds the limit of {max_bytes} bytes")
    try:
        kind, width, height = image_size(memoryview(msg.data))
    except HeaderError as exc:
        raise ImageConversionError(f"CompressedImage (format {fmt[:64]!r}, {size} bytes) refused: {exc}") from None
    if max_pixels is not None and width * height > max_pixels:
        raise ImageConversionError(f"compressed image ({kind}) of {width}x{height} = {width * height} pixels exceeds "
                                   f"the limit of {max_pixels} pixels")
    return kind, width, height


def compressed_to_numpy(msg: CompressedImage, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                        max_bytes: int = DEFAULT_MAX_COMPRESSED_BYTES) -> tuple[np.ndarray, str]:
    """Decode a sensor_msgs/CompressedImage; returns (array, encoding).

    The encoding is "bgr8", "bgra8", "mono8" or "mono16" (16-bit PNG). Raises
    `ImageConversionError` when the payload is empty, too large, not a format whose size is
    read from its header (`compressed_size`: checked against `max_pixels` before decoding),
    not an image OpenCV decodes, or decodes to another size than its header says.
    """
    fmt = msg.format or "?"
    kind, width, height = compressed_size(msg, max_pixels, max_bytes)
    size = len(msg.data)
    try:
        image = cv2.imdecode(np.frombuffer(msg.data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # e.g. beyond OpenCV's own pixel limit
        raise ImageConversionError(f"CompressedImage (format {fmt[:64]!r}, {size} bytes) could not be decoded: "
                                   f"{str(exc).strip()[-200:]}") from None
    if image is None:
        raise ImageConversionError(f"CompressedImage (format {fmt[:64]!r}, {size} bytes) is not an image OpenCV can "
                                   "decode")
    if image.shape[:2] != (height, width) and image.shape[:2] != (width, height):  # (EXIF rotation swaps them)
        raise ImageConversionError(f"CompressedImage ({kind}) decoded to {image.shape[1]}x{image.shape[0]}, its "
                                   f"header says {width}x{height}")
    _check_size(image.shape[1], image.shape[0], max_pixels)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype == np.uint16:
        if image.ndim == 2:
            return image, "mono16"
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageConversionError(f"CompressedImage decodes to unsupported dtype {image.dtype}")
    if image.ndim == 2:
        return image, "mono8"
    if image.shape[2] == 3:
        return image, "bgr8"
    if image.shape[2] == 4:
        return image, "bgra8"
    raise ImageConversionError(f"CompressedImage decodes to unsupported shape {image.shape}")


def numpy_to_compressed(image: np.ndarray, fmt: str = "jpeg", header: Header | None = None,
                        color_order: str = "bgr", quality: int = 90) -> CompressedImage:
    """Encode an (H, W) or (H, W, 3) array as a CompressedImage ("jpeg" or "png")."""
    fmt = fmt.lower()
    if fmt not in ("jpeg", "jpg", "png"):
        raise ImageConversionError(f"unsupported compressed format {fmt!r} (jpeg or png)")
    image = np.asarray(image)
    if image.ndim == 3 and color_order == "rgb":
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ext = ".png" if fmt == "png" else ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext == ".jpg" else []
    ok, encoded = cv2.imencode(ext, image, params)
    if not ok:
        raise ImageConversionError(f"OpenCV could not encode a {image.shape} {image.dtype} array as {fmt}")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = "png" if ext == ".png" else "jpeg"
    msg.data = _as_byte_array(encoded)
    return msg


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale a 16-bit or float single-channel image to uint8 by its finite min..max range.

    Non-finite values (NaN, +-inf) become 0; extreme finite ones (+-3.4e38) keep their place in
    the range: the arithmetic is float64, so nothing overflows and numpy warns about nothing."""
    if image.dtype.kind != "f":
        lo, hi = int(image.min()), int(image.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        return np.clip((image.astype(np.float32) - lo) * scale + 0.5, 0, 255).astype(np.uint8)
    finite = np.isfinite(image)
    if not finite.any():
        return np.zeros(image.shape, np.uint8)
    values = image[finite]
    lo, hi = float(values.min()), float(values.max())  # float64: hi - lo cannot overflow
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    out = np.zeros(image.shape, np.float64)
    out[finite] = (values.astype(np.float64) - lo) * scale
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def to_model_input(image: np.ndarray, encoding: str) -> tuple[np.ndarray, str]:
    """(uint8 image, color_order) as `Segmenter.segment` takes them.

    16-bit and float single-channel images are stretched to 0..255 over their finite range
    (NaN and +-inf: 0), without numpy warnings whatever the values.
    """
    if encoding not in ENCODINGS:
        raise ImageConversionError(f"unknown image encoding {encoding!r}")
    if image.dtype != np.uint8:
        image = _to_uint8(image)
    return image, _COLOR_ORDER.get(encoding, "rgb")


def to_rgb8(image: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of any supported image, for overlays."""
    image, order = to_model_input(image, encoding)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if order == "bgr" else cv2.COLOR_RGBA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if order == "bgr" else np.ascontiguousarray(image)


def serialized_stamp_ns(data: bytes) -> int:
    """header.stamp (ns) of a serialised message whose first field is a std_msgs/Header, read from
    the CDR bytes without deserialising (0 when too short): the stamp follows the 4-byte
    encapsulation header, as int32 seconds and uint32 nanoseconds in its byte order."""
    if len(data) < 12:
        return 0
    sec, nanosec = struct.unpack("<iI" if data[1] & 1 else ">iI", data[4:12])
    return sec * 1_000_000_000 + nanosec


def decode_frame(data: bytes, compressed: bool, max_pixels: int | None) -> tuple[Header, np.ndarray, str]:
    """A serialised Image / CompressedImage, as the node's raw subscription hands it over ->
    (its header, the uint8 image the model takes, its colour order). ImageConversionError saying
    why for bytes that are no such message or an image that cannot be used."""
    from rclpy.serialization import deserialize_message

    try:
        msg = deserialize_message(data, CompressedImage if compressed else Image)
    except Exception as exc:  # noqa: BLE001 - what the middleware hands over is not ours to trust
        raise ImageConversionError(f"frame ignored: not a valid serialised image: {exc}") from exc
    header = msg.header
    try:
        if compressed:
            image, encoding = compressed_to_numpy(msg, max_pixels)
        else:
            image, encoding = image_to_numpy(msg, max_pixels), msg.encoding
        image, color_order = to_model_input(image, encoding)
    except ImageConversionError as exc:
        stamp = f"{header.stamp.sec}.{header.stamp.nanosec:09d}"
        raise ImageConversionError(f"frame {stamp} ({header.frame_id or 'no frame_id'}) ignored: {exc}") from exc
    return header, image, color_order
