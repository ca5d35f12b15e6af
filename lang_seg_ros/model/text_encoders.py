"""Text-encoder choice. LSeg's is the frozen CLIP ViT-B/32 text tower (paper Sec. 3, "Text
encoder"); any encoder that maps a label to a fixed-size vector can serve instead.

An encoder is an `nn.Module` with `embed_dim`, class attributes `checkpoint_prefix` (its
state-dict prefix inside LSeg) and `weights_in_checkpoint` (False when the frozen weights come
from an installed package and are never stored), and `encode_labels(list[str]) -> (N, D)`,
L2-normalised. Each encoder lives in its own module, imported only when a model uses it.
"""
from __future__ import annotations

from torch import nn

from .config import TextEncoderConfig


def build_text_encoder(cfg: TextEncoderConfig) -> nn.Module:
    if cfg.type == "clip":
        from .clip_text import CLIPTextEncoder

        return CLIPTextEncoder(cfg)
    if cfg.type == "sentence_transformers":
        from .sentence_text import SentenceTransformerTextEncoder

        return SentenceTransformerTextEncoder(cfg)
    raise ValueError(f"unknown text_encoder.type {cfg.type!r}")
