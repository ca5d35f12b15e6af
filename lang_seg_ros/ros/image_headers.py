"""The pixel size a compressed image will decode to, read from its header without decoding it.

A CompressedImage's payload is a few kB, the image it decodes to can be gigabytes (a "bomb":
a 2.6 kB JPEG whose frame header says 20000 x 20000). OpenCV allocates the whole output before
it finds the data too short, so the size must be known, and refused, before `cv2.imdecode`.

`image_size(data)` returns (format, width, height) for the formats parsed here, by the same
signatures OpenCV picks its decoder by, and raises `HeaderError` for anything else:

- JPEG (ITU-T T.81 B.1.1): SOI, then marker segments up to the first frame header (SOF0-SOF15
  except DHT 0xC4, JPG 0xC8, DAC 0xCC): any number of 0xFF fill bytes before a marker,
  APPn / COM / DQT / DRI ... segments of any length (up to 65535 bytes each), baseline,
  extended, progressive, lossless, arithmetic; a height of 0 (defined later by a DNL marker) is
  refused, as libjpeg does; at most `MAX_JPEG_SEGMENTS` segments before the frame header.
- PNG (ISO 15948, 11.2.2): the signature, then IHDR, which must be the first chunk.
- WebP (RIFF container): a lossy "VP8 ", lossless "VP8L" or extended "VP8X" (canvas size) first chunk.
- BMP: the BITMAPCOREHEADER (12 bytes) or BITMAPINFOHEADER and later (40+ bytes) width and
  height (negative height = top-down rows).
- PBM / PGM / PPM (P1-P6, netpbm): width and height tokens after the magic, with the comments
  and white space OpenCV's reader skips.

Everything else OpenCV could decode (TIFF, GIF, AVIF, JPEG 2000, Radiance HDR, Sun raster,
PAM, PFM, OpenEXR) is refused: its size could not be checked before decoding. Parsing costs
microseconds to a millisecond (at most `MAX_JPEG_SEGMENTS` jumps; fill bytes skipped by a regex).

This module imports neither numpy nor OpenCV. `set_opencv_pixel_fence()` sets OpenCV's own
limit (`OPENCV_IO_MAX_IMAGE_PIXELS`, read once when cv2 is first imported) as a second fence;
it works only when called before anything in the process imports cv2.
"""
from __future__ import annotations

import os
import re
import sys

__all__ = ["FORMATS", "HeaderError", "MAX_JPEG_SEGMENTS", "OPENCV_PIXEL_FENCE", "image_size", "opencv_fence",
           "set_opencv_pixel_fence"]

#: Formats whose size is read here; any other payload is refused before decoding.
FORMATS = ("jpeg", "png", "webp", "bmp", "pnm")
#: Marker segments allowed before a JPEG's frame header (a camera writes fewer than 20: APP0,
#: APP1 EXIF, a few APP2 ICC chunks, DQT, DRI, COM); more are refused, so the scan stays bounded.
MAX_JPEG_SEGMENTS = 1024
#: OpenCV's own limit on decoded pixels set by `set_opencv_pixel_fence` (8192 x 8192), unless
#: OPENCV_IO_MAX_IMAGE_PIXELS is already set in the environment. OpenCV's default is 2^30.
OPENCV_PIXEL_FENCE = 1 << 26

_ENV = "OPENCV_IO_MAX_IMAGE_PIXELS"
_fence_set = False  # set_opencv_pixel_fence ran before cv2 was imported
_FILL = re.compile(rb"\xff+")
# JPEG markers without a length field: TEM, RST0-7, SOI, EOI.
_STANDALONE = {0x01, *range(0xD0, 0xD8), 0xD8, 0xD9}
_SOF = {*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNM: white space and '#' comments (to the end of the line) before each decimal token, as
# OpenCV's PxM ReadNumber reads them.
_PNM_TOKEN = re.compile(rb"(?:[ \t\n\v\f\r]+|#[^\r\n]*[\r\n])*([0-9]+)")
_PNM_HEADER_LIMIT = 65536  # a header longer than this (comments) is refused
# Signatures of what OpenCV decodes but this module does not parse (for the refusal's message).
_OTHER = ((b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"II+\x00", "BigTIFF"), (b"MM\x00+", "BigTIFF"),
          (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
          (b"\xff\x4f\xff\x51", "JPEG 2000 codestream"), (b"#?RADIANCE", "Radiance HDR"), (b"#?RGBE", "Radiance HDR"),
          (b"\x59\xa6\x6a\x95", "Sun raster"), (b"P7", "PAM"), (b"PF", "PFM"), (b"Pf", "PFM"),
          (b"v/1\x01", "OpenEXR"))


class HeaderError(ValueError):
    """A compressed payload whose size cannot be read from its header; the message says why."""


def image_size(data: bytes | bytearray | memoryview) -> tuple[str, int, int]:
    """(format, width, height) in pixels as the payload will decode, from its header alone.

    `data` is the whole payload (only its header is read). Raises `HeaderError` for an
    unknown or unsupported format, a truncated or malformed header, or a zero size.
    """
    data = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else data
    head = bytes(data[:16])
    if head[:3] == b"\xff\xd8\xff":
        fmt, (width, height) = "jpeg", _jpeg_size(data)
    elif head[:8] == _PNG_SIGNATURE:
        fmt, (width, height) = "png", _png_size(data)
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        fmt, (width, height) = "webp", _webp_size(data)
    elif head[:2] == b"BM":
        fmt, (width, height) = "bmp", _bmp_size(data)
    elif len(head) >= 3 and head[:1] == b"P" and head[1:2] in b"123456" and head[2:3] in b" \t\n\v\f\r":
        fmt, (width, height) = "pnm", _pnm_size(data)
    else:
        other = next((name for signature, name in _OTHER if head.startswith(signature)), None)
        if other:
            raise HeaderError(f"{other} payloads are not accepted (their decoded size cannot be checked "
                              f"before decoding; accepted: {', '.join(FORMATS)})")
        raise HeaderError(f"not a {', '.join(FORMATS[:-1])} or {FORMATS[-1]} payload (first bytes {head[:8].hex(' ')})")
    if width <= 0 or height <= 0:
        raise HeaderError(f"{fmt} header gives a zero-size image ({width}x{height})")
    return fmt, width, height


def _u16(data, i: int) -> int:
    return data[i] << 8 | data[i + 1]


def _jpeg_size(data) -> tuple[int, int]:
    """Walk the marker segments from SOI to the first frame header (T.81 B.1.1.2-B.2.2)."""
    n, i = len(data), 2  # after SOI
    for _ in range(MAX_JPEG_SEGMENTS):
        if i >= n or data[i] != 0xFF:
            raise HeaderError(f"JPEG: no marker at byte {i} before the frame header"
                              + (" (truncated)" if i >= n else f" (0x{data[i]:02x})"))
        i = _FILL.match(data, i).end()  # the marker's 0xFF and any fill bytes before it
        if i >= n:
            raise HeaderError("JPEG: truncated before the frame header")
        marker = data[i]
        i += 1
        if marker in _STANDALONE:
            if marker in (0xD8, 0xD9):
                raise HeaderError(f"JPEG: {'SOI' if marker == 0xD8 else 'EOI'} before the frame header")
            continue
        if marker == 0x00:
            raise HeaderError(f"JPEG: stuffed 0xFF00 at byte {i - 2} outside entropy-coded data")
        if i + 2 > n:
            raise HeaderError("JPEG: truncated marker segment before the frame header")
        length = _u16(data, i)
        if length < 2 or i + length > n:
            raise HeaderError(f"JPEG: marker 0x{marker:02x} segment of length {length} at byte {i - 2} "
                              f"{'is invalid' if length < 2 else 'runs past the end of the data'}")
        if marker in _SOF:
            if length < 8:
                raise HeaderError(f"JPEG: frame header (SOF{marker - 0xC0}) of length {length} is too short")
            height, width = _u16(data, i + 3), _u16(data, i + 5)
            if height == 0:
                raise HeaderError("JPEG: frame header height 0 (defined by a DNL marker) is not supported")
            return width, height
        if marker == 0xDA:
            raise HeaderError("JPEG: scan (SOS) before any frame header")
        i += length
    raise HeaderError(f"JPEG: more than {MAX_JPEG_SEGMENTS} marker segments before the frame header")


def _png_size(data) -> tuple[int, int]:
    if len(data) < 24 or bytes(data[12:16]) != b"IHDR":
        raise HeaderError("PNG: IHDR is not the first chunk" if len(data) >= 24 else "PNG: truncated before IHDR")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _webp_size(data) -> tuple[int, int]:
    chunk = bytes(data[12:16])
    if chunk == b"VP8 " and len(data) >= 30:  # frame tag (3 bytes), start code 9d 01 2a, 14-bit sizes
        if bytes(data[23:26]) != b"\x9d\x01\x2a":
            raise HeaderError("WebP: VP8 start code missing")
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:  # signature 0x2f, then width-1 and height-1 in 14 bits each
        if data[20] != 0x2F:
            raise HeaderError("WebP: VP8L signature missing")
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:  # flags (4 bytes), canvas width-1 and height-1 in 24 bits
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    raise HeaderError(f"WebP: first chunk {chunk!r} is not VP8, VP8L or VP8X, or it is truncated")


def _bmp_size(data) -> tuple[int, int]:
    if len(data) < 26:
        raise HeaderError("BMP: truncated header")
    header = int.from_bytes(data[14:18], "little")
    if header == 12:  # BITMAPCOREHEADER: 16-bit unsigned sizes
        return int.from_bytes(data[18:20], "little"), int.from_bytes(data[20:22], "little")
    if header >= 40:
        width = int.from_bytes(data[18:22], "little", signed=True)
        height = int.from_bytes(data[22:26], "little", signed=True)
        return width, abs(height)  # negative height: rows stored top-down
    raise HeaderError(f"BMP: unknown DIB header size {header}")


def _pnm_size(data) -> tuple[int, int]:
    head = bytes(data[:_PNM_HEADER_LIMIT])
    width = _PNM_TOKEN.match(head, 2)
    height = _PNM_TOKEN.match(head, width.end()) if width else None
    if not height or height.end() == len(head):  # a token cut by the end of the header / data
        raise HeaderError(f"PNM: no width and height within the first {_PNM_HEADER_LIMIT} bytes")
    return int(width.group(1)), int(height.group(1))


def set_opencv_pixel_fence(pixels: int = OPENCV_PIXEL_FENCE) -> bool:
    """Set OPENCV_IO_MAX_IMAGE_PIXELS (unless already set) before cv2 is imported: OpenCV then
    refuses to decode more pixels, in its header check, before allocating. Returns whether the
    fence is in place: True when this (or an earlier call) ran before cv2 was imported, False
    when cv2 was imported first (too late: OpenCV read the variable at its import)."""
    global _fence_set
    if "cv2" not in sys.modules:
        os.environ.setdefault(_ENV, str(int(pixels)))
        _fence_set = True
    return _fence_set


def opencv_fence() -> int | None:
    """OpenCV's decoded-pixel limit in this process as set in the environment (None: its default, 2^30).
    Meaningful only when the variable was set before cv2 was imported."""
    value = os.environ.get(_ENV, "")
    return int(value) if value.isdigit() else None
