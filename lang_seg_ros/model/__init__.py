"""The LSeg network, its named configs and checkpoint I/O. Depends on torch, timm and open_clip only."""
from ._registry import list_models, model_config
from .checkpoint import build_model, convert_checkpoint, load_checkpoint, save_checkpoint, with_referring_thresholds
from .config import LOGIT_SCALE, ImageEncoderConfig, LSegConfig, TextEncoderConfig
from .device import resolve_device
from .lseg import LSeg

__all__ = [
    "LOGIT_SCALE", "ImageEncoderConfig", "LSeg", "LSegConfig", "TextEncoderConfig", "build_model",
    "convert_checkpoint", "list_models", "load_checkpoint", "model_config", "resolve_device", "save_checkpoint",
    "with_referring_thresholds",
]
