"""A BERT encoder as a plain `nn.Module` (Devlin et al., NAACL 2019, arXiv 1810.04805), for
sentence-transformers text encoders such as all-MiniLM-L6-v2.

Why not `transformers.BertModel`: importing transformers and building its model took ~4 s of a
6 s `lang-seg segment` (2-core Xeon; the import alone 2.3 s) for a 6-layer, 384-wide encoder
that is a few dozen lines of PyTorch. Parameter names are those of the published checkpoints
(`embeddings.word_embeddings.weight`, `encoder.layer.0.attention.self.query.weight`, ...), so a
sentence-transformers `model.safetensors` loads as it is; outputs equal `BertModel`'s up to float
rounding (checked in the tests against transformers where it is installed). Tokens come from the
model's own `tokenizer.json` through the `tokenizers` library (the Rust tokenizer transformers'
fast tokenizers wrap).

Shapes: input_ids, attention_mask (N, T) int64 -> last hidden states (N, T, hidden_size).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BertConfig", "BertEncoder", "load_bert"]

#: Checkpoint entries the encoder does not use: the pooler (sentence-transformers pool the hidden
#: states themselves) and the position-id buffer older checkpoints store.
_UNUSED = ("pooler.", "embeddings.position_ids")


@dataclass(frozen=True)
class BertConfig:
    """The fields of a BERT `config.json` that define the network (all-MiniLM-L6-v2's values)."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_json(cls, path: Path) -> BertConfig:
        """Read `config.json`; a BERT variant this module does not implement raises ValueError."""
        raw = json.loads(Path(path).read_text())
        wanted = {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute",
                  "is_decoder": False, "add_cross_attention": False}
        for key, value in wanted.items():
            if raw.get(key, value) != value:
                raise ValueError(f"{path}: {key} {raw[key]!r} is not supported (only {value!r})")
        config = cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"{path}: hidden_size {config.hidden_size} is not a multiple of "
                             f"num_attention_heads {config.num_attention_heads}")
        return config


class _Embeddings(nn.Module):
    """Token + position + segment embeddings, then LayerNorm: (N, T) ids -> (N, T, D)."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        return self.LayerNorm(x + self.position_embeddings(positions))


class _SelfAttention(nn.Module):
    """Multi-head scaled dot-product attention over the real tokens (no dropout: frozen)."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.heads = c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x: (N, T, D); keep: (N, 1, 1, T) bool, True for real tokens -> (N, T, D)."""
        n, t, d = x.shape

        def split(linear: nn.Linear) -> torch.Tensor:  # (N, heads, T, D / heads)
            return linear(x).view(n, t, self.heads, d // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.query), split(self.key), split(self.value), attn_mask=keep)
        return out.transpose(1, 2).reshape(n, t, d)


class _Residual(nn.Module):
    """dense -> add the block's input -> LayerNorm (BERT's post-norm residual)."""

    def __init__(self, width: int, c: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(width, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _Attention(nn.Module):
    """Self-attention and its residual output (`attention.self`, `attention.output`)."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.self = _SelfAttention(c)
        self.output = _Residual(c.hidden_size, c)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, keep), x)


class _Intermediate(nn.Module):
    """The feed-forward's widening dense + GELU (`intermediate.dense`)."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # BERT's "gelu": the exact (erf) form


class _Layer(nn.Module):
    """One transformer layer: attention, then the feed-forward with its residual output."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.attention = _Attention(c)
        self.intermediate = _Intermediate(c)
        self.output = _Residual(c.intermediate_size, c)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, keep)
        return self.output(self.intermediate(x), x)


class _Layers(nn.Module):
    """Holds the layers only so that their parameters are named `encoder.layer.N...` as published
    (`BertEncoder.forward` runs them)."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(c) for _ in range(c.num_hidden_layers))


class BertEncoder(nn.Module):
    """BERT without its pooler: token ids -> last hidden states (N, T, hidden_size)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = _Embeddings(config)
        self.encoder = _Layers(config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids, attention_mask (1 = token, 0 = padding), token_type_ids: (N, T) int64."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        keep = attention_mask.bool()[:, None, None, :]
        for layer in self.encoder.layer:
            x = layer(x, keep)
        return x


def load_bert(model_dir: Path) -> BertEncoder:
    """The encoder of a sentence-transformers / BERT directory (`config.json`, `model.safetensors`),
    weights read with safetensors (no pickle: a checkpoint cannot run code). Missing or unexpected
    weights raise ValueError naming them."""
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{model_dir}: no model.safetensors (only safetensors weights are read)")
    encoder = BertEncoder(BertConfig.from_json(model_dir / "config.json"))
    state = {k: v for k, v in load_file(str(weights)).items() if not k.startswith(_UNUSED)}
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights}: weights do not match a BERT encoder (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    return encoder
