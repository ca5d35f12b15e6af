"""Camera images -> model input (lang_seg_ros/inference/preprocess.py): colour order, channel counts,
normalisation, sizes, padding. Every colour order is checked against the same picture as RGB."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lang_seg_ros.inference.preprocess import (black_level, check_image, normalize, pad_bottom_right, round_up,
                                               square_input, to_rgb, working_shape)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # distinct per channel: a swap shows


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)


def as_order(rgb: np.ndarray, order: str, alpha: int = 9) -> np.ndarray:
    """The same picture laid out in `order` (rgb, bgr, rgba, bgra; any case)."""
    image = rgb[:, :, ::-1] if order.lower().startswith("bgr") else rgb
    if order.lower().endswith("a"):
        image = np.dstack([image, np.full(rgb.shape[:2], alpha, np.uint8)])
    return np.ascontiguousarray(image)


def reference(rgb: np.ndarray, mean=MEAN, std=STD) -> torch.Tensor:
    x = torch.from_numpy(rgb.astype(np.float64)).permute(2, 0, 1)[None] / 255.0
    return ((x - torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1))
            / torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)).float()


@pytest.mark.parametrize("order", ["rgb", "bgr", "rgba", "bgra", "BGRA", "Bgr", "RGBA"])
def test_every_colour_order_gives_the_rgb_picture(rgb, order):
    image = as_order(rgb, order)
    out = to_rgb(image, order)
    assert out.shape == rgb.shape and out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)
    torch.testing.assert_close(normalize(image, MEAN, STD, torch.device("cpu"), order), reference(rgb),
                               atol=1e-6, rtol=1e-6)


def test_bgra_is_not_read_as_rgba(rgb):
    """A BGRA frame whose red and blue differ: read as BGRA it is the RGB picture, read as RGBA it is not."""
    bgra = as_order(rgb, "bgra")
    assert not np.array_equal(to_rgb(bgra, "rgba"), rgb)
    np.testing.assert_array_equal(to_rgb(bgra, "bgra"), to_rgb(as_order(rgb, "rgb"), "rgb"))
    x = normalize(bgra, MEAN, STD, torch.device("cpu"), "bgra")
    torch.testing.assert_close(x, normalize(rgb, MEAN, STD, torch.device("cpu"), "rgb"))
    assert not torch.allclose(normalize(bgra, MEAN, STD, torch.device("cpu"), "rgba"), x)


def test_alpha_is_ignored(rgb):
    for order in ("rgba", "bgra"):
        a, b = as_order(rgb, order, alpha=0), as_order(rgb, order, alpha=255)
        np.testing.assert_array_equal(to_rgb(a, order), to_rgb(b, order))
        torch.testing.assert_close(normalize(a, MEAN, STD, torch.device("cpu"), order),
                                   normalize(b, MEAN, STD, torch.device("cpu"), order))


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1)])
@pytest.mark.parametrize("order", ["rgb", "bgr"])
def test_grey_images_are_repeated_into_three_channels(shape, order):
    grey = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    expected = np.repeat(grey.reshape(5, 7, 1), 3, axis=2)
    np.testing.assert_array_equal(to_rgb(grey, order), expected)
    torch.testing.assert_close(normalize(grey, MEAN, STD, torch.device("cpu"), order), reference(expected),
                               atol=1e-6, rtol=1e-6)


def test_normalize_keeps_the_callers_buffer_and_takes_a_dtype(rgb):
    frozen = rgb.copy()
    frozen.flags.writeable = False  # a ROS message's buffer is read-only
    x = normalize(frozen, MEAN, STD, torch.device("cpu"), "bgr", dtype=torch.bfloat16)
    assert x.dtype == torch.bfloat16 and x.shape == (1, 3, 5, 7)
    torch.testing.assert_close(x.float(), reference(rgb[:, :, ::-1].copy()), atol=0.05, rtol=0.01)
    np.testing.assert_array_equal(frozen, rgb)


def test_black_and_white_pixels_map_to_the_ends_of_the_range():
    image = np.zeros((1, 2, 3), np.uint8)
    image[0, 1] = 255
    x = normalize(image, MEAN, STD, torch.device("cpu"))
    for c in range(3):
        assert float(x[0, c, 0, 0]) == pytest.approx(black_level(MEAN, STD)[c], abs=1e-6)
        assert float(x[0, c, 0, 1]) == pytest.approx((1 - MEAN[c]) / STD[c], abs=1e-6)


@pytest.mark.parametrize("bad, order, error, message", [
    ([[1, 2]], "rgb", TypeError, "expected a numpy array, got list"),
    (np.zeros((4, 4, 3), np.float32), "rgb", ValueError, "uint8"),
    (np.zeros((4, 4, 3), np.uint16), "rgb", ValueError, "uint8"),
    (np.zeros((4, 4, 2), np.uint8), "rgb", ValueError, r"\(H, W, 4\) image, got shape \(4, 4, 2\)"),
    (np.zeros((4, 4, 3, 1), np.uint8), "rgb", ValueError, "got shape"),
    (np.zeros(4, np.uint8), "rgb", ValueError, "got shape"),
    (np.zeros((0, 4, 3), np.uint8), "rgb", ValueError, "empty image of shape"),
    (np.zeros((4, 0), np.uint8), "rgb", ValueError, "empty image"),
    (np.zeros((4, 4, 3), np.uint8), "hsv", ValueError, "color_order must be 'rgb' or 'bgr', got 'hsv'"),
    (np.zeros((4, 4, 3), np.uint8), "argb", ValueError, "color_order"),
])
def test_bad_images_are_refused_with_the_reason(bad, order, error, message):
    for call in (lambda: check_image(bad, order), lambda: to_rgb(bad, order),
                 lambda: normalize(bad, MEAN, STD, torch.device("cpu"), order)):
        with pytest.raises(error, match=message):
            call()


def test_the_default_colour_order_is_rgb(rgb):
    assert check_image(rgb) is None
    np.testing.assert_array_equal(to_rgb(rgb), rgb)
    torch.testing.assert_close(normalize(rgb, MEAN, STD, torch.device("cpu")), reference(rgb), atol=1e-6, rtol=1e-6)


def test_a_read_only_buffer_raises_no_warning():
    """torch warns once per process about a read-only numpy buffer: a fresh process sees it if it is not
    filtered (a ROS message's buffer is read-only; the warning would be noise in every node log)."""
    import subprocess
    import sys

    code = ("import numpy as np, torch; from lang_seg_ros.inference.preprocess import normalize; "
            "a = np.zeros((4, 5, 3), np.uint8); a.flags.writeable = False; "
            "normalize(a, (0.5,) * 3, (0.5,) * 3, torch.device('cpu'), 'bgr')")
    import os
    from pathlib import Path

    import lang_seg_ros

    # in this process too, so that tools that map tests to the code they run (mutmut) see this one
    normalize(np.zeros((2, 2, 3), np.uint8), (0.5,) * 3, (0.5,) * 3, torch.device("cpu"), "bgr")

    # the package this process tests (not whatever the working directory holds)
    here = str(Path(lang_seg_ros.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120,
                            env=env)
    assert result.returncode == 0, result.stderr[-2000:]


def test_outputs_are_made_on_the_device_asked_for(rgb):
    """The meta device stands for an accelerator: nothing is computed, every tensor must be there."""
    meta = torch.device("meta")
    x = normalize(rgb, MEAN, STD, meta, "bgr", dtype=torch.float16)
    assert x.device == meta and x.dtype == torch.float16 and x.shape == (1, 3, 5, 7)
    padded = pad_bottom_right(x, 8, 9, black_level(MEAN, STD))
    assert padded.device == meta and padded.dtype == torch.float16 and padded.shape == (1, 3, 8, 9)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_padding_keeps_the_input_dtype(dtype):
    x = torch.ones(1, 3, 2, 2, dtype=dtype)
    out = pad_bottom_right(x, 3, 3, (0.1, 0.2, 0.3))
    assert out.dtype == dtype
    assert float(out[0, 2, 2, 2]) == float(torch.tensor(0.3, dtype=dtype))


def test_good_images_pass_the_check():
    for image, order in [(np.zeros((1, 1), np.uint8), "rgb"), (np.zeros((2, 3, 1), np.uint8), "bgr"),
                         (np.zeros((2, 3, 4), np.uint8), "BGRA"), (np.zeros((2, 3, 4), np.uint8), "rgba")]:
        assert check_image(image, order) is None


@pytest.mark.parametrize("height, width, long_side, expected", [
    (75, 130, 96, (55, 96)), (130, 75, 96, (96, 55)), (100, 100, 64, (64, 64)),
    (480, 640, 480, (360, 480)), (1, 1000, 100, (1, 100)), (3, 2000, 100, (1, 100)), (60, 80, 80, (60, 80)),
    (10, 20, 30, (15, 30)), (21, 20, 10, (10, 10)), (1000, 1, 100, (100, 1)), (2000, 3, 100, (100, 1)),
])
def test_working_shape_keeps_the_aspect_ratio_with_the_long_side_given(height, width, long_side, expected):
    assert working_shape(height, width, long_side) == expected


@pytest.mark.parametrize("value, multiple, expected", [(1, 32, 32), (32, 32, 32), (33, 32, 64), (55, 32, 64),
                                                       (0, 32, 0), (10, 4, 12), (96, 32, 96)])
def test_round_up(value, multiple, expected):
    assert round_up(value, multiple) == expected


def test_round_up_defaults_to_32():
    assert round_up(33) == 64 and round_up(64) == 64


def test_black_level_is_the_normalised_zero():
    assert black_level((0.5, 0.25, 0.0), (0.5, 0.25, 2.0)) == (-1.0, -1.0, -0.0)
    assert black_level(MEAN, STD) == pytest.approx(tuple(-m / s for m, s in zip(MEAN, STD)))


def test_pad_bottom_right_fills_per_channel_and_keeps_the_content():
    x = torch.arange(2 * 3 * 2 * 3, dtype=torch.float32).view(2, 3, 2, 3)
    out = pad_bottom_right(x, 4, 5, (-1.0, -2.0, -3.0))
    assert out.shape == (2, 3, 4, 5) and out.dtype == x.dtype
    assert torch.equal(out[:, :, :2, :3], x)
    for c, fill in enumerate((-1.0, -2.0, -3.0)):
        assert bool((out[:, c, 2:, :] == fill).all()) and bool((out[:, c, :, 3:] == fill).all())
    assert pad_bottom_right(x, 2, 3, (0.0, 0.0, 0.0)) is x  # nothing to pad: no copy
    assert pad_bottom_right(x, 1, 1, (0.0, 0.0, 0.0)) is x
    taller = pad_bottom_right(x, 4, 2, (7.0, 7.0, 7.0))  # only one side short: the other is kept
    assert taller.shape == (2, 3, 4, 3) and torch.equal(taller[:, :, :2], x) and bool((taller[:, :, 2:] == 7).all())
    wider = pad_bottom_right(x, 1, 6, (7.0, 7.0, 7.0))
    assert wider.shape == (2, 3, 2, 6) and torch.equal(wider[..., :3], x) and bool((wider[..., 3:] == 7).all())


def test_square_input_puts_the_resized_image_top_left_in_a_square_of_zeros():
    image = np.random.default_rng(2).integers(0, 256, (30, 60, 3), dtype=np.uint8)
    x, (h, w) = square_input(image, 40, MEAN, STD)
    assert (h, w) == (20, 40)
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert bool((x[:, 20:, :] == 0).all()) and bool((x[:, :, 40:] == 0).all())
    import cv2

    resized = cv2.resize(image, (40, 20), interpolation=cv2.INTER_LINEAR)
    torch.testing.assert_close(x[:, :20, :40][None], reference(resized), atol=1e-5, rtol=1e-5)
    # bit for bit the float32 arithmetic the LTS trainer used: the referrer must see the same input
    exact = (resized.astype(np.float32) / np.float32(255.0) - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    np.testing.assert_array_equal(x[:, :20, :40].numpy(), exact.transpose(2, 0, 1))
    same, (h, w) = square_input(image, 60, MEAN, STD)  # already at the size: not resized
    assert (h, w) == (30, 60) and same.shape == (3, 64, 64)
    torch.testing.assert_close(same[:, :30, :60][None], reference(image), atol=1e-5, rtol=1e-5)
