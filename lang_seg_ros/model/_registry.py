"""Named architectures: `build_model("lseg_vitl16_384")`, in the style of timm's registry."""
from __future__ import annotations

from typing import Any, Callable

from .config import ImageEncoderConfig, LSegConfig, TextEncoderConfig

_MODELS: dict[str, Callable[[], LSegConfig]] = {}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def register(fn: Callable[[], LSegConfig]) -> Callable[[], LSegConfig]:
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def model_config(name: str) -> LSegConfig:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known: {list_models()}")
    return _MODELS[name]()


def config_with_overrides(name_or_config: str | LSegConfig | dict[str, Any], **overrides: Any) -> LSegConfig:
    if isinstance(name_or_config, str):
        config = model_config(name_or_config)
    elif isinstance(name_or_config, dict):
        config = LSegConfig.from_dict(name_or_config)
    elif isinstance(name_or_config, LSegConfig):
        config = name_or_config
    else:
        raise TypeError(f"expected a model name, LSegConfig or dict, got {type(name_or_config).__name__}")
    return config.replace(**overrides) if overrides else config


@register
def lseg_vitl16_384() -> LSegConfig:
    """The demo model (`demo_e200.ckpt`, `fss_l16.ckpt`): DPT on ViT-L/16, CLIP ViT-B/32 text."""
    return LSegConfig()


@register
def lseg_vitb32_384() -> LSegConfig:
    return LSegConfig(
        image_encoder=ImageEncoderConfig(
            patch_size=32, width=768, depth=12, num_heads=12, hooks=(2, 5, 8, 11),
            reassemble_channels=(96, 192, 384, 768),
        )
    )


@register
def lseg_rn101() -> LSegConfig:
    """Few-shot checkpoints (`fss_rn101.ckpt`, folds): torchvision ResNet-101, ImageNet normalisation."""
    return LSegConfig(
        image_encoder=ImageEncoderConfig(type="resnet", name="resnet101"),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


@register
def lseg_tiny() -> LSegConfig:
    """A few-channel model with the demo model's structure, for fast tests."""
    return LSegConfig(
        image_encoder=ImageEncoderConfig(
            img_size=64, patch_size=16, width=64, depth=4, num_heads=1, num_classes=0,
            hooks=(0, 1, 2, 3), reassemble_channels=(8, 16, 32, 32),
        ),
        # Head counts follow the 64-channel head width, so they can be read off the tensors.
        text_encoder=TextEncoderConfig(
            embed_dim=32,
            text_cfg={"width": 64, "heads": 1, "layers": 2},
            vision_cfg={"width": 64, "layers": 1, "patch_size": 32, "image_size": 64},
        ),
        features=16,
        embed_dim=32,
    )


@register
def lseg_effnet_lite0_minilm() -> LSegConfig:
    """The embedded default model's architecture: EfficientNet-Lite0 + a 32-channel fusion decoder,
    correlated with frozen all-MiniLM-L6-v2 label embeddings (both from PyPI, offline)."""
    return LSegConfig(
        image_encoder=ImageEncoderConfig(type="timm_cnn", name="tf_efficientnet_lite0", out_indices=(1, 2, 3, 4)),
        text_encoder=TextEncoderConfig(type="sentence_transformers", name="all-MiniLM-L6-v2"),
        features=32,
        embed_dim=384,
        mean=(127 / 255,) * 3,  # TF Lite weights take (x - 127) / 128
        std=(128 / 255,) * 3,
    )
