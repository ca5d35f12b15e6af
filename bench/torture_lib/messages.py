"""The torture run's inputs: every message it sends, made from one seeded RNG with unique stamps
(valid frames, malformed and odd raw Images, CompressedImages and their bombs, depth frames,
CameraInfos, label sets as typed, referring expressions), and the checkpoints for the swaps.

How malformed input is told apart downstream: valid frames carry frame_id `cam`
(`VALID_FRAME`), odd but valid ones `odd_<kind>`, malformed ones `bad_<kind>`; depth frames
`depth_cam` (`DEPTH_FRAME`) or `bad_depth_<kind>`.
"""
from __future__ import annotations

import array
import math
import random
from pathlib import Path
from typing import Callable

import harness  # test/ros/harness.py (on the path through torture_lib/__init__.py)
import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from lang_seg_ros.ros.image_conversion import numpy_to_compressed, numpy_to_image

VALID_FRAME, DEPTH_FRAME = "cam", "depth_cam"
VOCABULARY = ["floor", "wall", "person", "chair", "mug", "red thing", "green thing", "blue thing", "white box",
              "sky", "road", "car", "tree", "Stuhl", "椅子", "café table", "door", "laptop", "bottle", "cat"]


# -- checkpoints ------------------------------------------------------------------------------------
def make_checkpoints(folder: Path, main: str | None = None, alt: str | None = None) -> dict[str, str]:
    """Paths for the swaps: main and alt (valid; tiny random models unless given), broken (random
    bytes), truncated (alt cut in half), directory, missing, misnamed (a name that is neither a
    file nor an embedded model: refused by the parameter check; loading an embedded model by name
    is test_startup's, whose footprint the fuzz's memory budget does not hold)."""
    folder.mkdir(parents=True, exist_ok=True)
    if main is None or alt is None:
        import torch

        from lang_seg_ros.model import build_model, save_checkpoint
        for seed, name in ((0, "main"), (1, "alt")):
            if (main if name == "main" else alt) is None:
                torch.manual_seed(seed)
                path = save_checkpoint(build_model("lseg_tiny").eval(), folder / f"{name}.safetensors")
                main, alt = (str(path), alt) if name == "main" else (main, str(path))
    broken = folder / "broken.safetensors"
    broken.write_bytes(random.Random(7).randbytes(4096))
    truncated = folder / "truncated.safetensors"
    data = Path(alt).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    directory = folder / "a_directory.safetensors"
    directory.mkdir(exist_ok=True)
    return {"main": str(main), "alt": str(alt), "broken": str(broken), "truncated": str(truncated),
            "directory": str(directory), "missing": str(folder / "missing.safetensors"),
            "misnamed": "default-larger"}


# -- message makers -------------------------------------------------------------------------------
def _bytes(data: bytes) -> array.array:
    return array.array("B", data)


def _jpeg_bomb(rng: random.Random, base: bytes) -> tuple[str, bytes]:
    """A small JPEG whose frame header says it is huge, hidden in one of the ways the old scan missed."""
    i = min(j for j in (base.find(bytes([0xFF, m])) for m in (0xC0, 0xC1, 0xC2)) if j >= 0)
    side = rng.choice([20000, 30000, 65000])
    data = base[:i + 5] + side.to_bytes(2, "big") + side.to_bytes(2, "big") + base[i + 9:]
    how = rng.choice(["plain", "fill", "fills", "exif", "app_segments"])
    if how == "fill":
        data = data[:i] + b"\xff" + data[i:]
    elif how == "fills":
        data = data[:i] + b"\xff" * rng.randint(2, 5000) + data[i:]
    elif how == "exif":
        data = data[:2] + b"\xff\xe1\xff\xffExif\x00\x00" + bytes(65535 - 8) + data[2:]
    elif how == "app_segments":
        seg = b"".join(bytes([0xFF, 0xE0 + rng.randint(2, 15)]) + (300).to_bytes(2, "big") + bytes(298)
                       for _ in range(rng.randint(1, 50)))
        data = data[:2] + seg + data[2:]
    return f"jpeg_bomb_{how}", data


class Messages:
    """Every message this run sends, made from one seeded RNG, with unique stamps."""

    def __init__(self, rng: random.Random, size: tuple[int, int], clock: Callable[[], int],
                 big: tuple[int, int] | None = None) -> None:
        import cv2

        self.rng = rng
        self.width, self.height = size
        # big valid frames among the odd ones (`--big`): a frame's memory grows with its pixels
        self.big = harness.pattern_image(big[1], big[0]) if big else None
        self._big_jpeg = numpy_to_compressed(self.big, "jpeg", color_order="rgb").data.tobytes() if big else b""
        self._clock = clock
        self._last = 0
        self.pattern = harness.pattern_image(self.height, self.width)
        # The "other aspect" depth: the first multiple of the frames' width whose aspect is 3 % or
        # more away from every frame sent (the frames', the 1x1-3x3 odd_tiny ones', `--big`'s):
        # the node tolerates 1 %, and a depth of a frame's aspect is registered to it, not malformed.
        sent = [self.width / self.height, 1.0] + ([big[0] / big[1]] if big else [])
        self._other_width = next(k * self.width for k in range(2, 100)
                                 if all(abs(k * self.width / self.height / a - 1) >= 0.03 for a in sent))
        self._jpeg = numpy_to_compressed(self.pattern, "jpeg", color_order="rgb").data.tobytes()
        self._progressive = cv2.imencode(".jpg", self.pattern, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
        self._png = numpy_to_compressed(self.pattern, "png", color_order="rgb").data.tobytes()
        self._others = {ext: cv2.imencode(ext, self.pattern)[1].tobytes() for ext in (".tiff", ".gif", ".webp", ".bmp")}

    def stamp(self):
        from builtin_interfaces.msg import Time
        ns = max(self._clock(), self._last + 1000)
        self._last = ns
        return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)

    def _header(self, msg, frame_id: str):
        msg.header.stamp = self.stamp()
        msg.header.frame_id = frame_id
        return msg

    # valid frames
    def valid_image(self) -> Image:
        return self._header(numpy_to_image(self.pattern, "rgb8"), VALID_FRAME)

    def valid_compressed(self) -> CompressedImage:
        return self._header(CompressedImage(format="jpeg", data=_bytes(self._jpeg)), VALID_FRAME)

    def valid_depth(self, stamp) -> Image:
        depth = np.full((self.height, self.width), 1500, np.uint16)
        depth[:, : self.width // 4] = 0  # invalid pixels
        msg = numpy_to_image(depth, "16UC1")
        msg.header.stamp, msg.header.frame_id = stamp, DEPTH_FRAME
        return msg

    # raw images: (kind, message, malformed)
    def raw_image(self) -> tuple[str, Image, bool]:
        rng, w, h = self.rng, self.width, self.height
        kind = rng.choice(["step_small", "short_data", "one_byte_short", "absurd_step", "huge_dims", "zero_size",
                           "bad_encoding", "wrong_data_for_encoding", "uint32_height", "empty_data", "padding_missing",
                           "odd_padded", "odd_big_endian", "odd_float_extremes", "odd_mono", "odd_bgra", "odd_tiny",
                           "odd_longer_data", "odd_8UC3", *(["odd_big"] if self.big is not None else [])])
        msg = numpy_to_image(self.pattern, "rgb8")
        malformed = not kind.startswith("odd_")
        if kind == "step_small":
            msg.step = rng.randint(0, w * 3 - 1)
        elif kind == "short_data":
            msg.data = msg.data[: rng.randint(0, len(msg.data) - 1)]
        elif kind == "one_byte_short":  # the case: 3x2 mono8, step 4, 7 bytes
            msg = Image(height=2, width=3, encoding="mono8", step=4, data=_bytes(bytes(7)))
        elif kind == "absurd_step":
            msg = Image(height=rng.choice([1, 2]), width=2, encoding="rgb8", step=4294967295, data=_bytes(bytes(6)))
        elif kind == "huge_dims":
            msg = Image(height=100000, width=100000, encoding="rgb8", step=300000, data=_bytes(bytes(64)))
        elif kind == "zero_size":
            msg.width, msg.height = rng.choice([(0, h), (w, 0), (0, 0)])
        elif kind == "bad_encoding":
            msg.encoding = rng.choice(["yuv422", "", "RGB8", "rgb8 ", "16FC1", "bayer_rggb8", "\x00", "é" * 300,
                                       "x" * 10000])
        elif kind == "wrong_data_for_encoding":
            msg.encoding, msg.step = "32FC1", w * 4
            msg.data = msg.data[: w * h]  # rgb8 bytes are 3/4 of a 32FC1 image
            msg.data = msg.data[: w * h * 4 - 1] if len(msg.data) >= w * h * 4 else msg.data
        elif kind == "uint32_height":
            msg.height = 4294967295
        elif kind == "empty_data":
            msg.data = _bytes(b"")
        elif kind == "padding_missing":
            pad = rng.randint(1, 64)
            rows = np.frombuffer(msg.data, np.uint8).reshape(h, w * 3)
            padded = np.concatenate([rows, np.zeros((h, pad), np.uint8)], axis=1).tobytes()
            msg.step, msg.data = w * 3 + pad, _bytes(padded[:-pad])
        elif kind == "odd_padded":
            pad = rng.randint(1, 4096)
            rows = np.frombuffer(msg.data, np.uint8).reshape(h, w * 3)
            msg.step = w * 3 + pad
            msg.data = _bytes(np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1).tobytes())
        elif kind == "odd_big_endian":
            gray = self.pattern.mean(axis=2).astype(np.uint16) * 257
            msg = Image(height=h, width=w, encoding=rng.choice(["mono16", "16UC1"]), is_bigendian=1, step=w * 2,
                        data=_bytes(gray.astype(">u2").tobytes()))
        elif kind == "odd_float_extremes":
            values = np.array([np.inf, -np.inf, np.nan, 1e38, -1e38, 3.4e38, 0.0, 1.0], np.float32)
            msg = numpy_to_image(np.resize(values, (h, w)).astype(np.float32), "32FC1")
        elif kind == "odd_mono":
            msg = numpy_to_image(self.pattern[:, :, 0].copy(), rng.choice(["mono8", "8UC1"]))
        elif kind == "odd_bgra":
            msg = numpy_to_image(np.dstack([self.pattern, np.full((h, w), 255, np.uint8)]), "bgra8")
        elif kind == "odd_tiny":
            side = rng.randint(1, 3)
            msg = numpy_to_image(self.pattern[:side, :side].copy(), "rgb8")
        elif kind == "odd_longer_data":
            msg.data = _bytes(msg.data.tobytes() + bytes(rng.randint(1, 1000)))
        elif kind == "odd_8UC3":
            msg = numpy_to_image(self.pattern[:, :, ::-1].copy(), "8UC3")
        elif kind == "odd_big":
            msg = numpy_to_image(self.big, "rgb8")
        return kind, self._header(msg, f"bad_{kind}" if malformed else kind), malformed

    def compressed(self) -> tuple[str, CompressedImage, bool]:
        rng = self.rng
        kind = rng.choice(["jpeg_bomb", "jpeg_bomb", "progressive_bomb", "png_bomb", "webp_bomb", "bmp_bomb",
                           "pnm_bomb", "garbage", "jpeg_garbage", "empty", "compressed_depth", "tiff", "gif",
                           "sos_before_sof", "png_ihdr_not_first", "odd_png", "odd_webp", "odd_bmp", "odd_gray_png",
                           "odd_fill_bytes", "odd_truncated", *(["odd_big_jpeg"] if self.big is not None else [])])
        malformed = not kind.startswith("odd_")
        fmt = rng.choice(["jpeg", "png", "", "rgb8; jpeg compressed bgr8", "x" * 300])
        if kind == "jpeg_bomb":
            kind, data = _jpeg_bomb(rng, self._jpeg)
        elif kind == "progressive_bomb":
            kind, data = _jpeg_bomb(rng, self._progressive)
            kind = "progressive_" + kind
        elif kind == "png_bomb":
            side = rng.choice([20000, 100000, 2**31 - 1]).to_bytes(4, "big")
            data = self._png[:16] + side + side + self._png[24:]
        elif kind == "webp_bomb":
            data = (b"RIFF" + (22).to_bytes(4, "little") + b"WEBPVP8X" + (10).to_bytes(4, "little") + bytes(4)
                    + (29999).to_bytes(3, "little") + (29999).to_bytes(3, "little"))
        elif kind == "bmp_bomb":
            bmp = self._others[".bmp"]
            data = bmp[:18] + (30000).to_bytes(4, "little") + (-30000).to_bytes(4, "little", signed=True) + bmp[26:]
        elif kind == "pnm_bomb":
            data = b"P6\n# fuzz\n30000 30000\n255\n" + rng.randbytes(256)
        elif kind == "garbage":
            data = rng.randbytes(rng.randint(1, 5000))
        elif kind == "jpeg_garbage":
            data = b"\xff\xd8\xff" + rng.randbytes(rng.randint(1, 5000))
        elif kind == "empty":
            data = b""
        elif kind == "compressed_depth":
            fmt, data = "16UC1; compressedDepth png", self._png
        elif kind in ("tiff", "gif"):
            data = self._others["." + kind]
        elif kind == "sos_before_sof":
            data = b"\xff\xd8\xff\xda\x00\x08" + rng.randbytes(100)
        elif kind == "png_ihdr_not_first":
            data = self._png[:12] + b"tEXt" + self._png[16:]
        elif kind == "odd_png":
            data = self._png
        elif kind == "odd_webp":
            data = self._others[".webp"]
        elif kind == "odd_bmp":
            data = self._others[".bmp"]
        elif kind == "odd_gray_png":
            import cv2
            data = cv2.imencode(".png", self.pattern[:, :, 1])[1].tobytes()
        elif kind == "odd_big_jpeg":
            fmt, data = "jpeg", self._big_jpeg
        elif kind == "odd_fill_bytes":
            i = self._jpeg.find(b"\xff\xc0")
            data = self._jpeg[:i] + b"\xff" * rng.randint(1, 100) + self._jpeg[i:]
        else:  # odd_truncated: the header is whole, the scan data cut (libjpeg decodes it, grey-filled)
            data = self._jpeg[: len(self._jpeg) * 2 // 3]
        msg = CompressedImage(format=fmt, data=_bytes(data))
        return kind, self._header(msg, f"bad_{kind}" if malformed else kind), malformed

    def depth(self, near_stamp) -> tuple[str, Image, bool]:
        rng, w, h = self.rng, self.width, self.height
        kind = rng.choice(["short", "step_small", "absurd_step", "rgb_encoding", "zero", "other_aspect", "huge",
                           "odd_float_extremes", "odd_half_size", "odd_all_invalid"])
        malformed = not kind.startswith("odd_")
        msg = numpy_to_image(np.full((h, w), 1200, np.uint16), "16UC1")
        if kind == "short":
            msg.data = msg.data[:-1]
        elif kind == "step_small":
            msg.step = w
        elif kind == "absurd_step":
            msg = Image(height=1, width=2, encoding="16UC1", step=4294967295, data=_bytes(bytes(4)))
        elif kind == "rgb_encoding":
            msg = numpy_to_image(self.pattern, "rgb8")
        elif kind == "zero":
            msg.width = 0
        elif kind == "other_aspect":  # never the aspect of a frame sent (`_other_width`)
            msg = numpy_to_image(np.full((h, self._other_width), 1200, np.uint16), "16UC1")
        elif kind == "huge":
            msg = Image(height=50000, width=50000, encoding="16UC1", step=100000, data=_bytes(bytes(16)))
        elif kind == "odd_float_extremes":
            values = np.array([np.inf, -np.inf, np.nan, 1e38, -1e38, 0.0, 1.5, 3.4e38], np.float32)
            msg = numpy_to_image(np.resize(values, (h, w)).astype(np.float32), "32FC1")
        elif kind == "odd_half_size":
            msg = numpy_to_image(np.full((h // 2, w // 2), 800, np.uint16), "16UC1")
        elif kind == "odd_all_invalid":
            msg = numpy_to_image(np.zeros((h, w), np.uint16), "16UC1")
        ns = near_stamp.sec * 1_000_000_000 + near_stamp.nanosec + rng.randint(-2_000_000, 2_000_000)
        from builtin_interfaces.msg import Time
        msg.header.stamp = Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
        msg.header.frame_id = DEPTH_FRAME if not malformed else f"bad_depth_{kind}"
        return "depth_" + kind, msg, malformed

    def camera_info(self) -> tuple[str, CameraInfo]:
        rng = self.rng
        kind = rng.choice(["valid", "zero_size", "huge", "nan_k", "inf_k", "zero_k", "negative_k", "long_d",
                           "other_size"])
        w, h = self.width, self.height
        k = [100.0, 0.0, w / 2, 0.0, 100.0, h / 2, 0.0, 0.0, 1.0]
        msg = CameraInfo(width=w, height=h, k=k, p=[*k[:3], 0.0, *k[3:6], 0.0, *k[6:], 0.0])
        if kind == "zero_size":
            msg.width = msg.height = 0
        elif kind == "huge":
            msg.width = msg.height = 4294967295
        elif kind == "nan_k":
            msg.k = [math.nan] * 9
        elif kind == "inf_k":
            msg.k = [math.inf, 0.0, 1.0, 0.0, -math.inf, 1.0, 0.0, 0.0, 1.0]
        elif kind == "zero_k":
            msg.k = [0.0] * 9
        elif kind == "negative_k":
            msg.k = [-100.0, 0.0, -5.0, 0.0, -100.0, -5.0, 0.0, 0.0, -1.0]
        elif kind == "long_d":
            msg.d = [rng.uniform(-1e30, 1e30) for _ in range(10000)]
        elif kind == "other_size":
            msg.width, msg.height = w * 3, h * 7
        return "camera_info_" + kind, self._header(msg, DEPTH_FRAME)

    # round two (issue 22): extreme but finite geometry, long whitespace
    def extreme_camera_info(self) -> tuple[str, CameraInfo]:
        """Intrinsics that are finite (and positive where they must be) yet unusable: the node must
        give the frame no 3D ([bad_depth]) rather than NaN / inf points."""
        rng = self.rng
        kind = rng.choice(["fx_denormal", "fx_1e-40", "cx_1e308", "cy_-1e308", "fx_1e308", "skew_1e308",
                           "small_size"])
        w, h = self.width, self.height
        fx = fy = 100.0
        cx, cy, skew = w / 2, h / 2, 0.0
        width, height = w, h
        if kind == "fx_denormal":
            fx = fy = 5e-324
        elif kind == "fx_1e-40":
            fx = fy = 1e-40
        elif kind == "cx_1e308":
            cx = 1e308
        elif kind == "cy_-1e308":
            cy = -1e308
        elif kind == "fx_1e308":
            fx = fy = 1e308
        elif kind == "skew_1e308":
            skew = 1e308
        else:  # for a 1 x 1 image: scaled to the frame, every value is multiplied by the frame's size
            width = height = 1
            cx = cy = 1e300
        k = [fx, skew, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
        msg = CameraInfo(width=width, height=height, k=k, p=[*k[:3], 0.0, *k[3:6], 0.0, *k[6:], 0.0])
        return "camera_info_extreme_" + kind, self._header(msg, DEPTH_FRAME)

    def extreme_depth(self, stamp) -> tuple[str, Image]:
        """A 32FC1 depth frame of the colour frame's size (so `depth_cam`: a valid message) whose
        values are finite but no depth (3e38 m, 1e30 m, 1e-45 m) beside ordinary ones."""
        rng, w, h = self.rng, self.width, self.height
        kind = rng.choice(["3e38", "max_float32", "1e30", "denormal"])
        value = {"3e38": 3e38, "max_float32": float(np.finfo(np.float32).max), "1e30": 1e30, "denormal": 1e-45}[kind]
        depth = np.full((h, w), 1.5, np.float32)
        depth[:, w // 2:] = value
        msg = numpy_to_image(depth, "32FC1")
        msg.header.stamp, msg.header.frame_id = stamp, DEPTH_FRAME
        return "depth_extreme_" + kind, msg

    def long_whitespace_labels(self) -> str | list[str]:
        """A label set whose label holds tens of thousands of spaces (accepted: it collapses to "x y")."""
        rng = self.rng
        spaces = " " * rng.choice([10_000, 40_000, 200_000])
        mark = rng.choice(["", ":stuff", " : STUFF", ":"])
        label = f"x{spaces}y{mark}"
        return rng.choice([[label, "road"], f"{label}, road", f"road,{spaces}, {label}"])

    def long_whitespace_expression(self) -> str:
        return "the" + " " * self.rng.choice([10_000, 100_000]) + "white box"

    def label_text(self) -> str:
        """A label set as typed: valid most of the time, else one of the refusals of the policy."""
        rng = self.rng
        kind = rng.random()
        if kind < 0.7:
            labels = rng.sample(VOCABULARY, rng.randint(1, 6))
            labels = [f"{label}{rng.choice(['', '', ':stuff', ' : STUFF'])}" for label in labels]
            return rng.choice([", ", ",", " ,  "]).join(labels)
        return rng.choice(["", ",,, ,", ", ".join(f"l{i}" for i in range(rng.choice([600, 1025, 5000]))),
                           "x" * rng.choice([101, 257, 100_000]), "cat, dog, cat", "car, CAR, Car",
                           "floor:stuff, floor", "cat, d\x07og", "a\u200bb, c", "\ud7ff, \x00",
                           "person:stuff:stuff, ok"])

    def expression(self) -> str:
        rng = self.rng
        return rng.choice(["the red thing on the left", "the largest blue thing", "the white box",
                           "the second green thing from the left", "the mug next to the laptop", "",
                           "the one on the left", "x" * rng.choice([257, 10_000]), "the cat\x07",
                           "левая кружка",
                           "the " + " ".join(rng.sample(VOCABULARY, 3)), "\u202e the box"])
