"""LSeg's text encoder: the frozen CLIP ViT-B/32 text tower (Li et al., ICLR 2022, arXiv
2201.03546, Sec. 3, "Text encoder"), from open_clip. Its own module so that models with another
text encoder (the default model's MiniLM) never import open_clip (~2 s of every start-up).
"""
from __future__ import annotations

import logging

import open_clip
import torch
import torch.nn.functional as F

from .config import TextEncoderConfig

__all__ = ["CLIPTextEncoder"]

_LOG = logging.getLogger(__name__)


class CLIPTextEncoder(open_clip.model.CLIP):
    """A whole open_clip CLIP, of which only the text tower is used.

    The visual tower is kept because the official checkpoints store it under
    `clip_pretrained.visual.*`; dropping it would break strict key parity. Labels are tokenised
    as plain strings, without prompt templates, as LSeg does.
    """

    checkpoint_prefix = "clip_pretrained"
    weights_in_checkpoint = True

    def __init__(self, cfg: TextEncoderConfig) -> None:
        model_cfg = open_clip.get_model_config(cfg.name)
        if model_cfg is None:
            raise ValueError(f"text_encoder.name {cfg.name!r} is not an open_clip model config")
        if not model_cfg.get("quick_gelu", False) and "quickgelu" not in cfg.name.lower():
            _LOG.warning("open_clip config %r uses exact GELU; OpenAI CLIP weights need a QuickGELU one", cfg.name)
        super().__init__(
            embed_dim=cfg.embed_dim or model_cfg["embed_dim"],
            vision_cfg={**model_cfg["vision_cfg"], **cfg.vision_cfg},
            text_cfg={**model_cfg["text_cfg"], **cfg.text_cfg},
            quick_gelu=model_cfg.get("quick_gelu", False),
        )
        self.embed_dim = self.text_projection.shape[1]
        self.tokenizer = open_clip.get_tokenizer(cfg.name, context_length=self.context_length)
        self.requires_grad_(False)

    def encode_labels(self, labels: list[str]) -> torch.Tensor:
        limit = self.context_length - 2  # start and end tokens
        for label in labels:
            count = len(self.tokenizer.encode(label))
            if count > limit:
                _LOG.warning("label %.40r... has %d tokens; CLIP reads only the first %d", label, count, limit)
        tokens = self.tokenizer(labels).to(self.token_embedding.weight.device)
        return F.normalize(self.encode_text(tokens).float(), dim=-1)
