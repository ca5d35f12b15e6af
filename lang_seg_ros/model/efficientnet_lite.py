"""EfficientNet-Lite (Tan & Le, ICML 2019, arXiv 1905.11946; the "Lite" variants: no
squeeze-excitation, ReLU6, fixed stem and head) as a plain `nn.Module` feature pyramid.

Why not timm's builder: `import timm` imports torchvision, which imports torch._dynamo: 1.7 s of
every process that builds the default model (a 5.2 s `lang-seg segment`, a 4.9 s node start on a
2-core Xeon), for a network of a few dozen lines. This module builds the `tf_efficientnet_lite0`
... `tf_efficientnet_lite4` networks exactly as timm builds them with `features_only=True,
out_indices=(1, 2, 3, 4)`: the same parameter names (`conv_stem`, `bn1`,
`blocks.<stage>.<block>.conv_pw` ...), TF "same" padding, batch-norm eps 1e-3, and the same
outputs (checked against timm in the tests), so checkpoints and the ImageNet weight mapping
(`timm_cnn.efficientnet_pytorch_to_timm`) are shared with timm's models. ReLU6 runs in place, as in
timm: out of place, the frozen graph's 32 activations each allocated a fresh map and the encoder
took 77.9 ms against timm's 52.6 (480x384, one thread, a 2-core Xeon with AVX-512); in place it
runs at timm's speed (same weights, one process, median of 3 x 15 runs: 56.0 vs 55.2 ms frozen,
78.4 vs 81.8 eager; the machine's own speed moves by ~10 % between sessions).

Shapes: (B, 3, H, W) -> four maps at strides 4, 8, 16, 32 (`out_channels`: 24, 40, 112, 320 for lite0).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EfficientNetLite", "VARIANTS"]

#: timm name -> (channel multiplier, depth multiplier), as in the TF reference implementation.
VARIANTS = {
    "tf_efficientnet_lite0": (1.0, 1.0),
    "tf_efficientnet_lite1": (1.0, 1.1),
    "tf_efficientnet_lite2": (1.1, 1.2),
    "tf_efficientnet_lite3": (1.2, 1.4),
    "tf_efficientnet_lite4": (1.4, 1.8),
}
#: Per stage: (repeats, kernel, stride, expansion, output channels) at multiplier 1.0.
_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
           (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
#: The stages whose outputs are the pyramid (strides 4, 8, 16, 32): timm's out_indices (1, 2, 3, 4).
_OUTPUT_STAGES = (1, 2, 4, 6)
_BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the weights were trained with
_STEM = 32


def _round_channels(channels: int, multiplier: float, divisor: int = 8) -> int:
    """Channels scaled and rounded to a multiple of 8, never more than 10 % down (timm's rule:
    lite3's 16 x 1.2 = 19.2 becomes 24, not 16)."""
    scaled = channels * multiplier
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def _repeats(stage: int, multiplier: float) -> int:
    """Blocks in a stage: scaled up (ceil) except in the first and last stage (fixed in Lite)."""
    repeats = _STAGES[stage][0]
    return repeats if stage in (0, len(_STAGES) - 1) else int(math.ceil(repeats * multiplier))


class _SameConv(nn.Conv2d):
    """A convolution with TensorFlow's "same" padding: output size ceil(input / stride); for stride 2
    the extra row / column of padding goes at the bottom / right (an asymmetric pad per call)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride, padding=kernel // 2 if stride == 1 else 0, groups=groups,
                         bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        height, width = x.shape[-2:]
        pad_h, pad_w = (_same_padding(size, self.kernel_size[0], self.stride[0]) for size in (height, width))
        return super().forward(F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2]))


def _same_padding(size: int | torch.Tensor, kernel: int, stride: int) -> int | torch.Tensor:
    """Total padding along one axis for output size ceil(size / stride). As tensor arithmetic when
    the size is traced (an ONNX export with dynamic height and width), so the graph pads each input
    size as eager does instead of keeping the traced size's padding."""
    if isinstance(size, torch.Tensor):
        return torch.clamp(((size / stride).ceil() - 1) * stride + kernel - size, min=0).to(torch.int64)
    return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS)


class _DepthwiseSeparable(nn.Module):
    """First stage's block: depthwise conv, BN, ReLU6, pointwise conv, BN; no residual (the stem's
    32 channels become 16 x the width multiplier, never 32, in every variant)."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        self.conv_dw = _SameConv(cin, cin, kernel, groups=cin)
        self.bn1 = _bn(cin)
        self.conv_pw = _SameConv(cin, cout, 1)
        self.bn2 = _bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv_pw(F.relu6(self.bn1(self.conv_dw(x)), inplace=True)))


class _InvertedResidual(nn.Module):
    """Expand (1x1), depthwise (k x k, stride), project (1x1), each with BN, ReLU6 after the
    first two; the input added back when stride is 1 and the channels stay."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = cin * expansion
        self.conv_pw = _SameConv(cin, mid, 1)
        self.bn1 = _bn(mid)
        self.conv_dw = _SameConv(mid, mid, kernel, stride, groups=mid)
        self.bn2 = _bn(mid)
        self.conv_pwl = _SameConv(mid, cout, 1)
        self.bn3 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu6(self.bn1(self.conv_pw(x)), inplace=True)
        out = self.bn3(self.conv_pwl(F.relu6(self.bn2(self.conv_dw(out)), inplace=True)))
        return out + x if self.residual else out


class EfficientNetLite(nn.Module):
    """An EfficientNet-Lite's stem and blocks, returning the outputs of stages 1, 2, 4 and 6.

    name: a key of `VARIANTS` (timm's names). Weights start random (a checkpoint or the ImageNet
    mapping supplies them)."""

    def __init__(self, name: str = "tf_efficientnet_lite0") -> None:
        super().__init__()
        if name not in VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite {name!r}; known: {', '.join(VARIANTS)}")
        width, depth = VARIANTS[name]
        self.conv_stem = _SameConv(3, _STEM, 3, 2)
        self.bn1 = _bn(_STEM)
        stages, cin = [], _STEM
        for index, (_, kernel, stride, expansion, channels) in enumerate(_STAGES):
            cout = _round_channels(channels, width)
            blocks = []
            for b in range(_repeats(index, depth)):
                step = stride if b == 0 else 1
                blocks.append(_DepthwiseSeparable(cin, cout, kernel) if index == 0
                              else _InvertedResidual(cin, cout, kernel, step, expansion))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.out_channels = tuple(_round_channels(_STAGES[i][4], width) for i in _OUTPUT_STAGES)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self.bn1(self.conv_stem(x)), inplace=True)
        features = []
        for index, stage in enumerate(self.blocks):
            x = stage(x)
            if index in _OUTPUT_STAGES:
                features.append(x)
        return features
