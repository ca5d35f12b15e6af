"""The models shipped inside the package (this folder), by the names that `checkpoint` arguments
accept in place of a path: `lang-seg ... --checkpoint default-large`, the node's
`checkpoint: default-large`, `Segmenter("default-large")`. MODEL_CARD.md describes each.

Torch-free, so the node can check a `checkpoint` parameter before it imports the model.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["EMBEDDED_MODELS", "embedded_model_file"]

#: name -> file in this folder. "default": the fast street model every command loads without a
#: checkpoint; "default-large": EfficientNet-Lite1, slower and more accurate. A file of one of
#: these names in the working directory is loaded as "./default-large".
EMBEDDED_MODELS = {"default": "default.safetensors", "default-large": "default-large.safetensors"}


def embedded_model_file(name: str) -> Path:
    """The path of the embedded model `name` (a key of `EMBEDDED_MODELS`; the file may be absent
    from a checkout that was not built with it)."""
    if name not in EMBEDDED_MODELS:
        raise ValueError(f"no embedded model {name!r}: the embedded models are {', '.join(EMBEDDED_MODELS)}")
    return Path(__file__).resolve().parent / EMBEDDED_MODELS[name]
