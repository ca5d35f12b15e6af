"""Near-synonyms of the context labels: "the person" read as "pedestrian".

A model trained on a few names knows them, not their synonyms: against the CamVid names,
"person" loses every pixel to "pedestrian" and "the person on the left" is "not found" although
people are in view. When a phrase is not itself a context label but its text embedding is
close to one (cosine >= `min_similarity`, with the model's own text encoder), the query is
read as that label. With the embedded default model (MiniLM embeddings) person -> pedestrian
0.65, cyclist -> bicyclist 0.77, automobile -> car 0.86, street -> road 0.81, sidewalk ->
pavement 0.68, while the far categories stay far (dog 0.48, boat 0.46, airplane 0.53 at most):
0.6 separates them.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import numpy as np

from .parse import ReferringQuery

__all__ = ["DEFAULT_ALIAS_SIMILARITY", "nearest_label", "resolve_aliases"]

#: Default minimum cosine similarity between a phrase and a label for the phrase to mean the label.
DEFAULT_ALIAS_SIMILARITY = 0.6

#: texts -> (N, C) embeddings (any array-like; normalised here).
Encode = Callable[[list[str]], object]


def _normalised(vectors: object) -> np.ndarray:
    array = vectors.detach().float().cpu().numpy() if hasattr(vectors, "detach") else np.asarray(vectors, np.float32)
    return array / np.maximum(np.linalg.norm(array, axis=1, keepdims=True), 1e-12)


def nearest_label(phrase: str, labels: Sequence[str], encode: Encode,
                  min_similarity: float = DEFAULT_ALIAS_SIMILARITY) -> tuple[str, float] | None:
    """The label of `labels` whose embedding is closest to `phrase`'s, with the cosine, when at
    least `min_similarity`; None otherwise, and when `phrase` already is one of the labels."""
    if not labels or phrase.lower() in (label.lower() for label in labels):
        return None
    vectors = _normalised(encode([phrase, *labels]))
    similarity = vectors[1:] @ vectors[0]
    best = int(np.argmax(similarity))
    return (labels[best], float(similarity[best])) if similarity[best] >= min_similarity else None


def resolve_aliases(query: ReferringQuery, labels: Sequence[str], encode: Encode,
                    min_similarity: float = DEFAULT_ALIAS_SIMILARITY) -> tuple[ReferringQuery, str]:
    """`query` with its category (and related category) replaced by near-synonym labels, and a
    note saying which ("'person' read as 'pedestrian'"; "" when nothing changed)."""
    notes, changes = [], {}
    category = nearest_label(query.category, labels, encode, min_similarity)
    if category is not None:
        changes["category"] = category[0]
        notes.append(f"{query.category!r} read as {category[0]!r}")
    if query.relation is not None:
        other = nearest_label(query.relation[1], labels, encode, min_similarity)
        if other is not None:
            changes["relation"] = (query.relation[0], other[0])
            notes.append(f"{query.relation[1]!r} read as {other[0]!r}")
    return (replace(query, **changes) if changes else query), "; ".join(notes)
