"""Locate-Then-Segment (Jing et al., "Locate then Segment: A Strong Pipeline for Referring Image
Segmentation", CVPR 2021, arXiv 2103.16284) on top of an LSeg model's encoders.

The paper's parts, as modules here:

- Sec. 3.1, visual and linguistic features. Visual: the LSeg image encoder (`lseg.pretrained`,
  maps at strides 4..32) replaces DarkNet-53, frozen or fine-tuned (`freeze_encoder`).
  Linguistic: the LSeg model's frozen `encode_text` sentence embedding replaces GloVe + bi-GRU.
  Word-level features are not used: the text-encoder contract yields one vector per string
  (CLIP and sentence-transformers alike), and LTS's locate and segment steps consume only the
  sentence feature.
- Sec. 3.1, cross-modal fusion (`CrossModalFusion`): at each level from stride 32 down to
  `stride`, the visual map and the tiled sentence feature are projected and multiplied
  element-wise, merged top-down, and 8 normalised coordinate maps are concatenated.
- Sec. 3.2, locate (`PositionPrior`): a linear layer on the sentence feature generates conv
  kernels ("language-generated kernels", relevance filtering) applied to the cross-modal
  features; their responses give the position prior, a one-channel coarse mask (logits).
- Sec. 3.3, segment (`SegmentationModule`): the prior concatenated with the cross-modal
  features through ASPP and a 3x3 conv, then transposed-conv (deconvolution) upsampling x2 per
  stage to the mask logits.
- Loss (`lts_loss`): BCE on the prior and on the mask, optional dice on the mask. The prior's
  target is the ground-truth mask area-downsampled to the prior's grid (the fraction of each
  cell the object covers), optionally Gaussian-blurred (`prior_sigma`, in prior cells) and
  rescaled to peak 1. The paper supervises the prior with the down-sampled ground truth; the
  soft area target and the optional blur are our choice (no published code to follow).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import GROUNDING_FIELDS

__all__ = [
    "ASPP", "CrossModalFusion", "LTSConfig", "LocateThenSegment", "PositionPrior", "SegmentationModule",
    "coord_maps", "load_lts", "lts_config", "lts_loss", "prior_target", "save_lts",
]

STRIDES = (4, 8, 16, 32)  # of the image encoder's four maps
FORMAT = "lang_seg_ros.lts/1"


@dataclass
class LTSConfig:
    """LTS head architecture and loss weights (the LSeg model supplies encoders and sizes)."""

    stride: int = 8  # stride of the cross-modal features and the position prior: 8, 16 or 32
    dim: int = 256  # width of the cross-modal features
    num_kernels: int = 8  # language-generated kernels; their ReLU'd responses are mixed into the prior
    kernel_size: int = 3  # spatial size of each generated kernel
    aspp_dim: int = 128  # width of the ASPP branches and the segmentation module
    aspp_rates: tuple[int, ...] = (6, 12, 18)  # atrous rates of the 3x3 ASPP branches, in feature cells
    upsample_layers: int = 2  # deconvolution stages (x2 each): mask logits at stride / 2**n
    freeze_encoder: bool = True  # keep the LSeg image encoder frozen (eval mode, no gradients)
    prior_weight: float = 1.0  # weight of the prior's BCE in the loss
    dice_weight: float = 0.0  # weight of the mask's dice loss (0 = BCE only)
    prior_sigma: float = 0.0  # Gaussian blur of the prior's target, in prior cells (0 = none)

    def __post_init__(self) -> None:
        self.aspp_rates = tuple(int(r) for r in self.aspp_rates)
        self.validate()

    def validate(self) -> None:
        if self.stride not in (8, 16, 32):
            raise ValueError(f"stride must be 8, 16 or 32, got {self.stride}")
        for name in ("dim", "num_kernels", "aspp_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got {self.kernel_size}")
        if not self.aspp_rates or min(self.aspp_rates) < 1:
            raise ValueError(f"aspp_rates must be one or more rates >= 1, got {self.aspp_rates}")
        if not 0 <= self.upsample_layers <= int(math.log2(self.stride)):
            raise ValueError(f"upsample_layers must be in [0, log2(stride)], got {self.upsample_layers}")
        for name in ("prior_weight", "dice_weight", "prior_sigma"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def mask_stride(self) -> int:
        return self.stride // 2**self.upsample_layers

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LTSConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown LTS config field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


_CONFIGS = {
    "lts": LTSConfig,
    # A few channels and small rates, for 64x64 test images (8x8 cross-modal grid).
    "lts_tiny": lambda: LTSConfig(dim=32, num_kernels=4, aspp_dim=32, aspp_rates=(1, 2), upsample_layers=1),
}


def lts_config(name: str, **overrides: Any) -> LTSConfig:
    """A named LTS config ("lts", "lts_tiny") with fields replaced by `overrides`."""
    if name not in _CONFIGS:
        raise ValueError(f"unknown LTS config {name!r}; known: {sorted(_CONFIGS)}")
    return LTSConfig.from_dict({**_CONFIGS[name]().to_dict(), **overrides})


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel_size: int = 1, dilation: int = 1) -> None:
        pad = dilation * (kernel_size // 2)
        super().__init__(
            nn.Conv2d(cin, cout, kernel_size, padding=pad, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


def coord_maps(batch: int, height: int, width: int, device=None, dtype=None) -> torch.Tensor:
    """(B, 8, h, w) coordinates of each cell in [-1, 1]: x_min, x_center, x_max, y_min,
    y_center, y_max, 1/w, 1/h (the 8-D spatial feature of the referring-segmentation
    literature that LTS Sec. 3.1 concatenates)."""
    def axis(n: int) -> torch.Tensor:
        edges = torch.arange(n + 1, device=device, dtype=dtype) / n * 2 - 1
        return torch.stack((edges[:-1], (edges[:-1] + edges[1:]) / 2, edges[1:]))  # (3, n)

    xs = axis(width)[:, None, :].expand(3, height, width)
    ys = axis(height)[:, :, None].expand(3, height, width)
    inv = torch.tensor([1.0 / width, 1.0 / height], device=device, dtype=dtype)[:, None, None]
    maps = torch.cat((xs, ys, inv.expand(2, height, width)))
    return maps.unsqueeze(0).expand(batch, -1, -1, -1)


class CrossModalFusion(nn.Module):
    """Encoder maps + sentence feature -> (B, dim, H/stride, W/stride) cross-modal features (Sec. 3.1).

    Each level from stride 32 down to `stride`: relu(BN(conv1x1(visual))) * relu(linear(sentence))
    tiled over the map; coarser results are upsampled (bilinear) and merged with a 3x3 conv;
    the 8 coordinate maps join before a last 3x3 conv.
    """

    def __init__(self, in_channels: tuple[int, ...], text_dim: int, dim: int, stride: int) -> None:
        super().__init__()
        self.levels = [STRIDES.index(s) for s in STRIDES if s >= stride][::-1]  # coarse to fine
        self.visual = nn.ModuleList(ConvBNReLU(in_channels[i], dim) for i in self.levels)
        self.text = nn.ModuleList(nn.Sequential(nn.Linear(text_dim, dim), nn.ReLU()) for _ in self.levels)
        self.merge = nn.ModuleList(ConvBNReLU(2 * dim, dim, 3) for _ in self.levels[1:])
        self.out = ConvBNReLU(dim + 8, dim, 3)

    def forward(self, feats: list[torch.Tensor], sentence: torch.Tensor) -> torch.Tensor:
        """feats: the encoder's 4 maps (B, C_i, H/s_i, W/s_i); sentence: (B, T)."""
        x = None
        for k, (level, visual, text) in enumerate(zip(self.levels, self.visual, self.text)):
            fused = visual(feats[level]) * text(sentence)[:, :, None, None]
            if x is None:
                x = fused
            else:
                x = F.interpolate(x, size=fused.shape[-2:], mode="bilinear", align_corners=False)
                x = self.merge[k - 1](torch.cat((x, fused), dim=1))
        b, _, h, w = x.shape
        return self.out(torch.cat((x, coord_maps(b, h, w, x.device, x.dtype)), dim=1))


class PositionPrior(nn.Module):
    """Locate (Sec. 3.2): sentence -> `num_kernels` conv kernels (+ biases) by one linear layer,
    convolved with each sample's cross-modal features; their ReLU'd responses are mixed by a
    1x1 conv into the position prior, (B, 1, h, w) logits."""

    def __init__(self, text_dim: int, dim: int, num_kernels: int, kernel_size: int) -> None:
        super().__init__()
        self.shape = (num_kernels, dim, kernel_size, kernel_size)
        self.generate = nn.Linear(text_dim, math.prod(self.shape) + num_kernels)
        self.mix = nn.Conv2d(num_kernels, 1, 1)

    def forward(self, x: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        k, _, ks, _ = self.shape
        params = self.generate(sentence)
        fan_in = c * ks * ks
        weight = params[:, : k * fan_in].reshape(b * k, c, ks, ks) / math.sqrt(fan_in)
        bias = params[:, k * fan_in:].reshape(b * k)
        # One grouped conv applies every sample's own kernels to that sample only.
        responses = F.conv2d(x.reshape(1, b * c, h, w), weight, bias, padding=ks // 2, groups=b)
        return self.mix(F.relu(responses.reshape(b, k, h, w)))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLab v3): 1x1, dilated 3x3 per rate and image pooling
    branches, concatenated and projected by a 1x1 conv. The pooling branch has no BatchNorm
    (its 1x1 map would break BN at batch size 1)."""

    def __init__(self, cin: int, cout: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList([ConvBNReLU(cin, cout)] + [ConvBNReLU(cin, cout, 3, r) for r in rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=True))
        self.project = ConvBNReLU(cout * (len(rates) + 2), cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        outs.append(self.pool(x).expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(outs, dim=1))


class SegmentationModule(nn.Module):
    """Segment (Sec. 3.3): [cross-modal features, sigmoid(prior)] -> ASPP -> 3x3 conv ->
    `upsample_layers` x (ConvTranspose 4x4 stride 2 + BN + ReLU) -> 1x1 conv: mask logits."""

    def __init__(self, dim: int, width: int, rates: tuple[int, ...], upsample_layers: int) -> None:
        super().__init__()
        self.aspp = ASPP(dim + 1, width, rates)
        self.refine = ConvBNReLU(width, width, 3)
        ups: list[nn.Module] = []
        for _ in range(upsample_layers):
            ups += [nn.ConvTranspose2d(width, width, 4, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        self.upsample = nn.Sequential(*ups)
        self.head = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor, prior_logits: torch.Tensor) -> torch.Tensor:
        y = self.refine(self.aspp(torch.cat((x, torch.sigmoid(prior_logits)), dim=1)))
        return self.head(self.upsample(y))


class LocateThenSegment(nn.Module):
    """LTS over an LSeg model: `forward(images, sentences) -> (prior_logits, mask_logits)`.

    images: (B, 3, H, W) normalised with `lseg_model.config.mean/std`, H and W multiples of 32.
    The LSeg image encoder becomes the submodule `encoder` (so `.to()` and the optimiser see
    it): it is shared, so fine-tuning it (`freeze_encoder=False`) changes `lseg_model` too; give
    a fine-tuned LTS its own copy (`copy.deepcopy`) when the LSeg model also segments. The text
    encoder stays outside the module tree (frozen, never saved with LTS weights) and sentence
    embeddings are cached per string.
    """

    def __init__(self, cfg: LTSConfig, lseg_model: nn.Module, cache_size: int = 4096) -> None:
        super().__init__()
        self.config = cfg
        self.lseg_config = lseg_model.config
        self.encoder = lseg_model.pretrained
        # Sentences as the frozen encoder gives them (never grounded: `model.grounding` reads labels);
        # a bound method, not registered as a submodule.
        self._encode_text = lseg_model.text_encoder.encode_labels
        self._cache: dict[str, torch.Tensor] = {}
        self._cache_size = cache_size
        text_dim = lseg_model.config.embed_dim
        self.fusion = CrossModalFusion(tuple(self.encoder.out_channels), text_dim, cfg.dim, cfg.stride)
        self.locate = PositionPrior(text_dim, cfg.dim, cfg.num_kernels, cfg.kernel_size)
        self.segment = SegmentationModule(cfg.dim, cfg.aspp_dim, cfg.aspp_rates, cfg.upsample_layers)
        if cfg.freeze_encoder:
            self.encoder.requires_grad_(False)

    def train(self, mode: bool = True) -> "LocateThenSegment":
        super().train(mode)
        if self.config.freeze_encoder:
            self.encoder.eval()  # frozen: BatchNorm statistics (CNN encoders) stay as loaded
        return self

    def encode_sentences(self, sentences: list[str], device: torch.device) -> torch.Tensor:
        """(B, T) sentence features: the frozen text embedding scaled to unit-variance entries."""
        missing = [s for s in dict.fromkeys(sentences) if s not in self._cache]
        if missing:
            if len(self._cache) + len(missing) > self._cache_size:
                self._cache.clear()
            self._cache.update(zip(missing, self._encode_text(missing).float().cpu()))
        emb = torch.stack([self._cache[s] for s in sentences]).to(device)
        return F.normalize(emb, dim=-1) * math.sqrt(emb.shape[-1])

    def forward(self, images: torch.Tensor, sentences: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> prior logits (B, 1, H/stride, W/stride), mask logits (B, 1, H/mask_stride, W/mask_stride)."""
        h, w = images.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"image height and width must be multiples of 32, got {h}x{w}")
        if len(sentences) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(sentences)} sentences")
        sentence = self.encode_sentences(list(sentences), images.device).to(images.dtype)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_encoder):
            feats = self.encoder(images)
        x = self.fusion(feats, sentence)
        prior = self.locate(x, sentence)
        return prior, self.segment(x, prior)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, sentences: list[str]) -> torch.Tensor:
        """(B, H, W) probability that each pixel belongs to the referred object, at input size."""
        if self.training:
            raise RuntimeError("LocateThenSegment.predict needs eval mode: call model.eval() first")
        _, mask = self(images, sentences)
        mask = F.interpolate(mask, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(mask[:, 0])

    def lts_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights an LTS checkpoint stores: the head, plus the encoder when it was fine-tuned."""
        state = self.state_dict()
        if self.config.freeze_encoder:
            state = {k: v for k, v in state.items() if not k.startswith("encoder.")}
        return state


def prior_target(mask: torch.Tensor, size: tuple[int, int], sigma: float = 0.0) -> torch.Tensor:
    """(B, 1, H, W) {0,1} mask -> (B, 1, h, w) soft prior target: the fraction of each cell the
    object covers; with `sigma` > 0 (cells) Gaussian-blurred and rescaled to peak 1 per sample."""
    target = F.adaptive_avg_pool2d(mask.float(), size)
    if sigma > 0:
        radius = max(1, int(math.ceil(3 * sigma)))
        t = torch.arange(-radius, radius + 1, dtype=target.dtype, device=target.device)
        g = torch.exp(-(t**2) / (2 * sigma**2))
        g = g / g.sum()
        target = F.conv2d(target, g.view(1, 1, 1, -1), padding=(0, radius))  # zeros outside the image
        target = F.conv2d(target, g.view(1, 1, -1, 1), padding=(radius, 0))
        peak = target.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)
        target = torch.where(peak > 1e-6, target / peak, target)
    return target


def lts_loss(
    prior_logits: torch.Tensor, mask_logits: torch.Tensor, mask: torch.Tensor, cfg: LTSConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts: BCE(prior, `prior_target`) * prior_weight + BCE(mask) (+ dice).

    mask: (B, H, W) or (B, 1, H, W) ground truth in {0, 1} at input resolution; mask logits are
    upsampled (bilinear) to it.
    """
    target = (mask if mask.dim() == 4 else mask[:, None]).to(mask_logits.dtype)
    l_prior = F.binary_cross_entropy_with_logits(
        prior_logits, prior_target(target, tuple(prior_logits.shape[-2:]), cfg.prior_sigma)
    )
    logits = F.interpolate(mask_logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    l_mask = F.binary_cross_entropy_with_logits(logits, target)
    total = l_mask + cfg.prior_weight * l_prior
    parts = {"prior": float(l_prior.detach()), "mask": float(l_mask.detach())}
    if cfg.dice_weight > 0:
        prob = torch.sigmoid(logits).flatten(1)
        t = target.flatten(1)
        dice = 1 - (2 * (prob * t).sum(1) + 1) / (prob.sum(1) + t.sum(1) + 1)
        total = total + cfg.dice_weight * dice.mean()
        parts["dice"] = float(dice.mean().detach())
    parts["total"] = float(total.detach())
    return total, parts


def save_lts(model: LocateThenSegment, path: str | os.PathLike) -> Path:
    """safetensors with the LTS weights (`lts_state_dict`) and, in the metadata, the LTS config
    and the LSeg config it was trained on, as JSON."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.lts_state_dict().items()}
    meta = {
        "format": FORMAT,
        "lts_config": json.dumps(model.config.to_dict()),
        "lseg_config": json.dumps(model.lseg_config.to_dict()),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=meta)
    return path


def load_lts(path: str | os.PathLike, lseg_model: nn.Module, device: str | torch.device = "cpu") -> LocateThenSegment:
    """An LTS checkpoint on top of `lseg_model`, in eval mode.

    Raises ValueError when the file is not an LTS checkpoint or was trained on an LSeg model
    with another image or text encoder. With a fine-tuned encoder the stored encoder weights
    replace `lseg_model.pretrained`'s in place.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an LTS checkpoint (format {meta.get('format')!r}, expected {FORMAT!r})")
    trained_on = json.loads(meta["lseg_config"])
    current = lseg_model.config.to_dict()
    for d in (current, trained_on):  # how labels are read (grounding) is not which encoder reads them
        d["text_encoder"] = {k: v for k, v in d["text_encoder"].items() if k not in GROUNDING_FIELDS}
    for key in ("image_encoder", "text_encoder", "embed_dim"):
        if json.loads(json.dumps(current[key])) != trained_on[key]:
            raise ValueError(f"{path} was trained on an LSeg model with another {key}: {trained_on[key]}")
    model = LocateThenSegment(LTSConfig.from_dict(json.loads(meta["lts_config"])), lseg_model)
    state = load_file(str(path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (model.config.freeze_encoder and k.startswith("encoder."))]
    if missing or unexpected:
        raise ValueError(f"{path}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    return model.to(device).eval()
