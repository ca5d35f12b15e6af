"""Architecture configs for LSeg (Li et al., "Language-driven Semantic Segmentation", ICLR 2022,
arXiv 2201.03546).

A config says everything needed to build the network; weights come separately. Configs are plain
dataclasses so they serialise to the JSON stored in our own checkpoints, and `from_dict` fails
loudly with a `ValueError` naming any unknown or bad field.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

#: Fixed temperature of the word-pixel correlation: 1 / 0.07, neither stored nor learned (paper Sec. 3).
LOGIT_SCALE = 1.0 / 0.07

BLOCK_TYPES = ("depthwise", "bottleneck")
BLOCK_ACTIVATIONS = ("relu", "lrelu", "tanh")


@dataclass
class ImageEncoderConfig:
    """Dense image encoder that yields four feature maps at strides 4, 8, 16 and 32."""

    type: str = "vit"  # "vit" (DPT on a timm ViT) | "resnet" (torchvision) | "timm_cnn"
    # vit: timm VisionTransformer geometry
    img_size: int = 384  # size the position embedding was trained at (grid = img_size / patch)
    patch_size: int = 16
    width: int = 1024
    depth: int = 24
    num_heads: int = 16
    num_classes: int = 1000  # the official checkpoints carry an unused ImageNet head
    hooks: tuple[int, ...] = (5, 11, 17, 23)  # 0-based blocks whose raw output is tapped
    reassemble_channels: tuple[int, ...] = (256, 512, 1024, 1024)
    # resnet: torchvision name; timm_cnn: timm model name
    name: str = ""
    out_indices: tuple[int, ...] = (1, 2, 3, 4)  # timm_cnn: feature levels at strides 4..32


#: The `ImageEncoderConfig` fields each encoder type reads.
_IMAGE_ENCODER_FIELDS = {
    "vit": ("img_size", "patch_size", "width", "depth", "num_heads", "num_classes", "hooks", "reassemble_channels"),
    "resnet": ("name",),
    "timm_cnn": ("name", "out_indices"),
}


@dataclass
class TextEncoderConfig:
    """Frozen text encoder whose label embeddings the pixel embeddings are correlated with."""

    type: str = "clip"  # "clip" (open_clip) | "sentence_transformers"
    name: str = "ViT-B-32-quickgelu"  # open_clip config name, or all-MiniLM-L6-v2 / a BERT sentence-transformers folder
    # Optional open_clip overrides (tiny test models); empty = the named config as published.
    embed_dim: int = 0
    text_cfg: dict[str, Any] = field(default_factory=dict)
    vision_cfg: dict[str, Any] = field(default_factory=dict)
    # The wordings the image branch was trained with, grouped by the class they name (the trainer
    # writes them): a label outside them is read through the ones WordNet puts it under
    # (`model.grounding`). Empty = none known (official checkpoints): labels are encoded as they are.
    vocabulary: tuple[tuple[str, ...], ...] = ()
    # Words trained as labels with no pixels (the trainer's negatives): known, so never grounded.
    negatives: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A checkpoint's metadata is untrusted: only short strings, in bounded numbers.
        groups = self.vocabulary
        if not isinstance(groups, (list, tuple)) or not all(
                isinstance(g, (list, tuple)) and 0 < len(g) <= MAX_CLASS_WORDINGS and all(map(_short_text, g))
                for g in groups):
            raise ValueError(f"text_encoder.vocabulary must be lists of 1 to {MAX_CLASS_WORDINGS} strings of <= "
                             f"{MAX_WORDING_CHARS} characters, one list per class")
        if not isinstance(self.negatives, (list, tuple)) or not all(map(_short_text, self.negatives)):
            raise ValueError(f"text_encoder.negatives must be a list of strings of <= {MAX_WORDING_CHARS} characters")
        if sum(len(g) for g in groups) + len(self.negatives) > MAX_VOCABULARY:
            raise ValueError(f"text_encoder.vocabulary and negatives hold more than {MAX_VOCABULARY} wordings")
        self.vocabulary = tuple(tuple(g) for g in groups)
        self.negatives = tuple(self.negatives)


#: Bounds of a trained vocabulary (`TextEncoderConfig.vocabulary` and `.negatives`) read from a
#: checkpoint: grounding's set-up grows with a class's wordings, so a hostile file cannot stall it.
MAX_VOCABULARY = 20_000
MAX_CLASS_WORDINGS = 256
MAX_WORDING_CHARS = 200
#: Fields of the text-encoder config that say how labels are read, not which encoder: absent from
#: a file when empty (files stay readable by versions without them), ignored where encoders are
#: compared (an LTS model trained on the same encoder).
GROUNDING_FIELDS = ("vocabulary", "negatives")


def _short_text(value: object) -> bool:
    return isinstance(value, str) and len(value) <= MAX_WORDING_CHARS


#: The referrer's thresholds a checkpoint may carry (`LSegConfig.referring`; the
#: `referring.ZeroShotReferrer` arguments of the same names) and the range each must lie in: a
#: checkpoint's metadata is untrusted.
REFERRING_FIELDS: dict[str, tuple[float, float]] = {
    "min_score": (0.0, 1.0), "min_area_fraction": (0.0, 1.0), "relative_area": (0.0, 1.0),
    "split_depth": (0.0, 1.0), "pixel_threshold": (0.0, 1.0), "upright_pixel_threshold": (0.0, 1.0),
    "upright_aspect": (1.0, 100.0),
}


def _referring_thresholds(values: object) -> dict[str, float]:
    """`LSegConfig.referring` checked: known names, finite numbers in their range."""
    if not isinstance(values, dict):
        raise ValueError(f"referring must be a mapping of threshold names to numbers, got {type(values).__name__}")
    out = {}
    for name, value in values.items():
        if name not in REFERRING_FIELDS:
            raise ValueError(f"unknown referring threshold {name!r}; known: {', '.join(REFERRING_FIELDS)}")
        low, high = REFERRING_FIELDS[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"referring.{name} must be a number in [{low:g}, {high:g}], got {value!r}")
        out[name] = float(value)
    return out


@dataclass
class LSegConfig:
    """The whole network: image encoder, DPT decoder ("scratch"), head and text encoder."""

    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    features: int = 256  # width of the fusion decoder
    embed_dim: int = 512  # pixel / label embedding size (must equal the text encoder's)
    use_bn: bool = True  # BatchNorm inside the fusion residual units (all released checkpoints)
    # Spatial regularisation blocks (paper Sec. 3, Fig. 3); None = absent (demo checkpoint).
    block_type: str | None = None
    block_depth: int = 0
    block_activation: str = "lrelu"
    # Input normalisation, in [0, 1] units, RGB order.
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # The zero-shot referrer's thresholds chosen for these weights on training frames (`lang-seg
    # eval-refer --choose-thresholds`; `REFERRING_FIELDS`): a model's probabilities are its own,
    # so thresholds chosen for one do not carry over (docs/referring.md). Empty: the referrer's
    # defaults. Not architecture: absent from a file when empty.
    referring: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.image_encoder, dict):
            self.image_encoder = _from_dict(ImageEncoderConfig, self.image_encoder, "image_encoder.")
        if isinstance(self.text_encoder, dict):
            self.text_encoder = _from_dict(TextEncoderConfig, self.text_encoder, "text_encoder.")
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        self.referring = _referring_thresholds(self.referring)
        self.validate()

    def validate(self) -> None:
        if self.block_type is not None:
            if self.block_type not in BLOCK_TYPES:
                raise ValueError(f"block_type must be one of {BLOCK_TYPES} or None, got {self.block_type!r}")
            if self.block_depth < 1:
                raise ValueError(f"block_depth must be >= 1 when block_type is set, got {self.block_depth}")
            if self.block_activation not in BLOCK_ACTIVATIONS:
                raise ValueError(
                    f"block_activation must be one of {BLOCK_ACTIVATIONS}, got {self.block_activation!r}"
                )
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean/std must be three values with std > 0, got {self.mean}/{self.std}")
        enc = self.image_encoder
        if enc.type not in ("vit", "resnet", "timm_cnn"):
            raise ValueError(f"image_encoder.type must be 'vit', 'resnet' or 'timm_cnn', got {enc.type!r}")
        if enc.type == "vit" and (len(enc.hooks) != 4 or len(enc.reassemble_channels) != 4):
            raise ValueError("image_encoder.hooks and image_encoder.reassemble_channels need 4 entries each")
        if self.text_encoder.type not in ("clip", "sentence_transformers"):
            raise ValueError(
                f"text_encoder.type must be 'clip' or 'sentence_transformers', got {self.text_encoder.type!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in GROUNDING_FIELDS:  # empty: left out, as files written before these fields
            if not out["text_encoder"][key]:
                del out["text_encoder"][key]
        if not out["referring"]:
            del out["referring"]
        return out

    def summary(self) -> dict[str, Any]:
        """`to_dict` without the fields the architecture does not use (a CNN has no patch size,
        heads or hooks; no spatial-regularisation block, no block settings): what `lang-seg info`
        shows."""
        out = self.to_dict()
        used = _IMAGE_ENCODER_FIELDS.get(self.image_encoder.type, tuple(out["image_encoder"]))
        out["image_encoder"] = {k: v for k, v in out["image_encoder"].items() if k == "type" or k in used}
        if self.text_encoder.type != "clip" or not (self.text_encoder.text_cfg or self.text_encoder.vision_cfg):
            out["text_encoder"] = {k: out["text_encoder"][k] for k in ("type", "name")}
        vocabulary = self.text_encoder.vocabulary
        for key in GROUNDING_FIELDS:
            out["text_encoder"].pop(key, None)
        if vocabulary:  # the names, not all ~100 wordings: grounding uses them (model.grounding)
            out["text_encoder"]["vocabulary"] = (f"{sum(map(len, vocabulary))} trained wordings of "
                                                 f"{len(vocabulary)} classes: "
                                                 + ", ".join(group[0] for group in vocabulary if group))
        if self.block_type is None:
            del out["block_depth"], out["block_activation"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LSegConfig":
        return _from_dict(cls, data, "")

    def replace(self, **overrides: Any) -> "LSegConfig":
        """A copy with top-level fields replaced; unknown names raise `ValueError`."""
        data, known = self.to_dict(), sorted(f.name for f in dataclasses.fields(self))
        for key, value in overrides.items():
            if key not in known:
                raise ValueError(f"unknown LSeg config field {key!r}; known: {known}")
            data[key] = value.to_dict() if hasattr(value, "to_dict") else value
        return LSegConfig.from_dict(data)


def _from_dict(cls: type, data: dict[str, Any], prefix: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown config field(s) {[prefix + k for k in unknown]}")
    kwargs = {}
    for key, value in data.items():
        if isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - dataclass signature errors
        raise ValueError(f"bad config for {prefix or cls.__name__}: {exc}") from exc
