"""Label sets as users type them: "floor, wall, person" -> a clean, duplicate-free tuple."""
from __future__ import annotations

import logging
from typing import Iterable

_LOG = logging.getLogger(__name__)

#: A label set this large is almost certainly a mistake (and would need >1 GB of logits per frame).
MAX_LABELS = 1024
#: Longer labels are cut; CLIP reads only 75 tokens anyway.
MAX_LABEL_CHARS = 256


def parse_labels(text: str) -> list[str]:
    """Split a comma-separated label string; whitespace around labels is dropped."""
    return [part.strip() for part in text.split(",")]


def clean_labels(labels: Iterable[str] | str) -> tuple[str, ...]:
    """Strip, drop empties and duplicates (first occurrence wins), check the size.

    Raises `ValueError` for an empty set, a set of more than `MAX_LABELS`, or a non-string label.
    """
    if isinstance(labels, str):
        labels = parse_labels(labels)
    cleaned: list[str] = []
    seen: set[str] = set()
    for label in labels:
        if not isinstance(label, str):
            raise ValueError(f"labels must be strings, got {type(label).__name__}")
        label = " ".join(label.split())
        if len(label) > MAX_LABEL_CHARS:
            _LOG.warning("label of %d characters cut to %d", len(label), MAX_LABEL_CHARS)
            label = label[:MAX_LABEL_CHARS]
        if not label:
            continue
        if label in seen:
            _LOG.info("duplicate label %r dropped", label)
            continue
        seen.add(label)
        cleaned.append(label)
    if not cleaned:
        raise ValueError("the label set is empty: give at least one non-empty label, e.g. 'floor, person, other'")
    if len(cleaned) > MAX_LABELS:
        raise ValueError(f"{len(cleaned)} labels given; at most {MAX_LABELS} are supported")
    return tuple(cleaned)
