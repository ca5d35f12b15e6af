"""The published multi-scale + flip evaluation rule (lang-seg's LSeg_MultiEvalModule)."""
from __future__ import annotations

import torch

from lang_seg_ros.inference.multiscale import PUBLISHED_SCALES, count_forward_passes, multiscale_logits
from lang_seg_ros.inference.segmenter import Segmenter


def test_a_4_by_3_frame_takes_36_passes():
    assert PUBLISHED_SCALES == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    assert count_forward_passes(480, 640) == 36
    assert count_forward_passes(480, 640, flip=False) == 18


class RecordingNet:
    """A deterministic stand-in network: logit = per-pixel mean intensity, for 2 labels; records inputs."""

    def __init__(self):
        self.inputs = []

    def __call__(self, x):
        self.inputs.append(x.clone())
        mean = x.mean(dim=1, keepdim=True)
        return torch.cat([mean, -mean], dim=1)


def test_small_scales_are_padded_to_the_crop_with_normalised_black():
    net = RecordingNet()
    image = torch.ones(1, 3, 300, 400)
    multiscale_logits(net, image, fill=(-1.0, -1.0, -1.0), scales=(0.5,), flip=False)
    (x,) = net.inputs
    assert x.shape == (1, 3, 480, 480)  # long side ceil(520 * 0.5) = 260 <= 480: one padded pass
    torch.testing.assert_close(x[:, :, :195, :260], torch.ones(1, 3, 195, 260))  # resized ones (rounding aside)
    assert torch.all(x[:, :, 195:, :] == -1) and torch.all(x[:, :, :, 260:] == -1)


def test_flips_are_added_and_scales_summed():
    image = torch.rand(1, 3, 300, 400, generator=torch.Generator().manual_seed(0))
    single = multiscale_logits(RecordingNet(), image, (-1.0,) * 3, scales=(1.0,), flip=False)
    flipped = multiscale_logits(RecordingNet(), image, (-1.0,) * 3, scales=(1.0,), flip=True)
    # The stand-in commutes with flipping, so the flipped pass doubles the logits: added, not averaged.
    torch.testing.assert_close(flipped, 2 * single)
    both = multiscale_logits(RecordingNet(), image, (-1.0,) * 3, scales=(1.0, 1.0), flip=False)
    torch.testing.assert_close(both, 2 * single)
    assert single.shape == (1, 2, 300, 400)


def test_large_scales_use_480_windows_at_stride_320():
    net = RecordingNet()
    multiscale_logits(net, torch.zeros(1, 3, 480, 640), (-1.0,) * 3, scales=(1.75,), flip=False)
    # long side 910, short 683: windows start at rows 0, 320 and columns 0, 320, 640
    assert len(net.inputs) == 6
    assert all(x.shape == (1, 3, 480, 480) for x in net.inputs)


def test_segmenter_multiscale_uses_the_published_rule(tiny_model):
    import numpy as np

    rgb = (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)
    segmenter = Segmenter(tiny_model, device="cpu", scales=(0.5, 1.0), flip=True)
    labels = segmenter.set_labels(["road", "sky", "car"])
    result = segmenter.segment(rgb)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    x = (x - 0.5) / 0.5
    text = tiny_model.encode_text(list(labels))
    with torch.no_grad():
        expected = multiscale_logits(lambda b: tiny_model(b, text), x, (-1.0,) * 3, (0.5, 1.0), True)
    assert np.array_equal(result.label_map, expected[0].argmax(0).numpy())
