"""The one label and expression policy: what a label set and a referring expression may be.

The CLI, the Python API, the frame pipeline and the ROS node all go through these functions, so
a label set is refused (with the reason) in the same way wherever it comes from, and nothing is
ever cut or dropped silently. Blank entries ("a, b,") are not labels and are skipped; everything
else that is wrong raises `ValueError`.

A label may carry a ":stuff" mark ("floor:stuff"): the mark is not part of the text the model
reads; it says the label is "stuff" (one region per label, never split into instances).

Everything here runs in time linear in the text a sender controls, and refuses a text longer
than `MAX_INPUT_CHARS` before doing anything else with it: a label of 40,000 spaces once took
3 s (a suffix pattern that backtracked) while the node's executor waited.
"""
from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from typing import Iterable

#: A label set this large is almost certainly a mistake (and would need >1 GB of logits per frame).
MAX_LABELS = 1024
#: CLIP reads 75 tokens; a longer "label" is a paragraph, not a label.
MAX_LABEL_CHARS = 256
#: A referring expression is a phrase, not a text.
MAX_EXPRESSION_CHARS = 256
#: The most characters of raw text (a whole label set, or one entry of a list) read at all: a
#: full set of the longest labels with generous whitespace, far below what would cost time.
MAX_INPUT_CHARS = 1 << 20


def _bounded(text: str, what: str) -> str:
    """`text` itself, or ValueError before anything reads it when it is longer than `MAX_INPUT_CHARS`."""
    if isinstance(text, str) and len(text) > MAX_INPUT_CHARS:
        raise ValueError(f"{what} of {len(text)} characters is longer than the {MAX_INPUT_CHARS} read at all")
    return text


def parse_labels(text: str) -> list[str]:
    """Split a comma-separated label string; whitespace around labels is dropped."""
    return [part.strip() for part in _bounded(text, "a label text").split(",")]


def _strip_stuff_mark(entry: str) -> tuple[str, bool]:
    """("floor", True) for "floor : STUFF", (entry, False) without the mark; linear in the entry."""
    head, colon, tail = entry.rpartition(":")
    if colon and tail.strip().casefold() == "stuff":
        return head, True
    return entry, False


def _normalised(text: str, what: str, limit: int, limit_name: str) -> str:
    """Whitespace collapsed; ValueError for control characters or more than `limit` characters."""
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a string, got {type(text).__name__}")
    _bounded(text, f"a {what}")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") and not ch.isspace() for ch in text):
        raise ValueError(f"{what} {text[:40]!r} contains control characters")
    text = " ".join(text.split())
    if len(text) > limit:
        raise ValueError(f"a {what} of {len(text)} characters exceeds {limit_name}={limit}")
    return text


def clean_labels(labels: Iterable[str] | str, max_labels: int = MAX_LABELS,
                 max_label_chars: int = MAX_LABEL_CHARS) -> tuple[str, ...]:
    """A label set as typed -> a clean tuple (whitespace collapsed, blank entries skipped).

    Raises `ValueError` saying why for: no label, more than `max_labels` (at most `MAX_LABELS`),
    a label longer than `max_label_chars` (at most `MAX_LABEL_CHARS`), control characters, a
    non-string label or a duplicate (two channels with one text would split its pixels at random),
    compared without case: the text encoders (CLIP's tokenizer, MiniLM's uncased vocabulary) read
    "Car" and "car" alike.
    """
    if isinstance(labels, str):
        labels = parse_labels(labels)
    max_labels, max_label_chars = min(max_labels, MAX_LABELS), min(max_label_chars, MAX_LABEL_CHARS)
    cleaned = [label for label in (_normalised(e, "label", max_label_chars, "max_label_chars") for e in labels) if label]
    if not cleaned:
        raise ValueError("the label set is empty: give at least one non-empty label, e.g. 'floor, person, other'")
    if len(cleaned) > max_labels:
        raise ValueError(f"{len(cleaned)} labels given, at most max_labels={max_labels} are allowed")
    seen: dict[str, str] = {}
    for label in cleaned:
        key = label.casefold()
        if key in seen:
            same = "" if seen[key] == label else f" (same as {seen[key][:40]!r}: case is ignored)"
            raise ValueError(f"duplicate label {label[:40]!r}{same}: give each label once")
        seen[key] = label
    return tuple(cleaned)


@dataclass(frozen=True)
class LabelSpec:
    """A label set as a user gave it: the labels the model reads and which of them are stuff."""

    labels: tuple[str, ...]
    is_stuff: tuple[bool, ...]

    @functools.cached_property
    def stuff(self) -> frozenset[int]:
        """The indices of the stuff labels (computed once per label set)."""
        return frozenset(i for i, flag in enumerate(self.is_stuff) if flag)


def parse_label_spec(entries: Iterable[str] | str, stuff_labels: Iterable[str] | str = (),
                     max_labels: int = MAX_LABELS, max_label_chars: int = MAX_LABEL_CHARS) -> LabelSpec:
    """Labels with optional ":stuff" marks, plus labels named stuff elsewhere -> a `LabelSpec`.

    "floor:stuff, chair, mug" -> labels ("floor", "chair", "mug"), stuff (True, False, False).
    `stuff_labels` (comma-separated or a list) names more stuff labels, matched case-insensitively.
    Raises `ValueError` as `clean_labels` does (the marks do not count towards the length).
    """
    if isinstance(entries, str):
        entries = parse_labels(entries)
    texts, marked = [], set()
    for entry in entries:
        text, is_marked = _strip_stuff_mark(_bounded(entry, "a label")) if isinstance(entry, str) else (entry, False)
        if is_marked:
            marked.add(" ".join(text.split()))
        texts.append(text)
    labels = clean_labels(texts, max_labels, max_label_chars)
    if isinstance(stuff_labels, str):
        stuff_labels = parse_labels(stuff_labels)
    stuff_labels = list(stuff_labels)
    if len(stuff_labels) > MAX_LABELS:
        raise ValueError(f"{len(stuff_labels)} stuff labels given, at most {MAX_LABELS} are allowed")
    named = {_normalised(s, "stuff label", max_label_chars, "max_label_chars").lower() for s in stuff_labels} - {""}
    return LabelSpec(labels, tuple(label in marked or label.lower() in named for label in labels))


def clean_expression(text: str, max_chars: int = MAX_EXPRESSION_CHARS) -> str:
    """A referring expression with whitespace collapsed ("" clears it).

    Raises `ValueError` for control characters or more than `max_chars` (at most
    `MAX_EXPRESSION_CHARS`) characters: an expression is never cut.
    """
    return _normalised(text, "referring expression", min(max_chars, MAX_EXPRESSION_CHARS), "max_expression_chars")
