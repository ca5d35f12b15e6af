"""Referring expressions -> the referred category phrase and the qualifiers that pick one instance.

"the second car from the left" -> category "car", ordinal 2 from the left;
"the red mug next to the laptop" -> category "red mug", relation next_to "laptop".
Attributes stay in the category phrase ("red mug", "person in the white shirt"): the text
encoder reads them. The grammar is small on purpose: what it does not recognise stays in the
category phrase instead of being guessed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..inference.labels import MAX_EXPRESSION_CHARS, clean_expression  # noqa: F401 - re-exported


_ORDINALS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4,
             "fifth": 5, "5th": 5}
_SIDES = {"left": "left", "right": "right", "top": "top", "bottom": "bottom"}
# Position words -> qualifier. Longer phrases first so "on the left" wins over "left".
_POSITIONS = [
    (r"(?:on|at|to|in) the (?:far )?left(?: side)?|leftmost|left-most|left", "left"),
    (r"(?:on|at|to|in) the (?:far )?right(?: side)?|rightmost|right-most|right", "right"),
    (r"(?:on|at|in) the top|topmost|upper|top", "top"),
    (r"(?:on|at|in) the bottom|bottommost|lower|bottom", "bottom"),
    (r"(?:in|at) the (?:middle|center|centre)|middle|center|centre|central", "middle"),
    (r"largest|biggest|big|large", "largest"),
    (r"smallest|tiniest|small|little", "smallest"),
    (r"nearest|closest", "nearest"),
    (r"farthest|furthest|most distant", "farthest"),
]
# Relations to another category -> relation kind. The first group shares words with the
# position qualifiers and is read before them; the second after them.
_RELATIONS_FIRST = [
    (r"to the left of|on the left of|left of", "left_of"),
    (r"to the right of|on the right of|right of", "right_of"),
    (r"closest to|nearest to", "next_to"),
]
_RELATIONS_AFTER = [
    (r"next to|beside|besides|near|close to|by", "next_to"),
    (r"above|over|on top of|on", "above"),
    (r"below|under|underneath|beneath", "below"),
]
_IMAGE_WORDS = r"\b(?:side )?(?:of|in) the (?:image|picture|photo|frame|scene|view)\b"
_ARTICLE = r"(?:the|a|an|that|this)\s+"


@dataclass(frozen=True)
class ReferringQuery:
    """What an expression asks for.

    Attributes:
        expression: the whitespace-normalised input.
        category: phrase naming the referred object class, attributes included.
        qualifiers: position/size/depth words in reading order: "left", "right", "top",
            "bottom", "middle", "largest", "smallest", "nearest", "farthest".
        ordinal: (k, side) for "k-th from the <side>", else None.
        relation: (kind, other category phrase) for "next to the laptop" etc., else None; kind is
            one of "next_to", "left_of", "right_of", "above", "below".
    """

    expression: str
    category: str
    qualifiers: tuple[str, ...] = ()
    ordinal: tuple[int, str] | None = None
    relation: tuple[str, str] | None = None


def _strip_article(text: str) -> str:
    return re.sub(rf"^{_ARTICLE}", "", text.strip()).strip()


def _take_relation(work: str, relations: list[tuple[str, str]]) -> tuple[tuple[str, str] | None, str]:
    """Find "<relation> the <other>" at the end of `work`: ((kind, other), rest) or (None, work)."""
    for pattern, kind in relations:
        match = re.search(rf"\s(?:which is |that is |who is )?(?:{pattern})\s+(?:{_ARTICLE})?(.+)$", work)
        if match and match.start() > 0:
            other = _strip_article(match.group(1))
            if other:
                return (kind, other), work[: match.start()]
    return None, work


def parse_expression(expression: str) -> ReferringQuery:
    """Parse an English referring expression.

    Raises `ValueError` when nothing is left to look for, or when the expression breaks the
    expression policy (`lang_seg_ros.inference.labels.clean_expression`: length, control characters).
    """
    text = clean_expression(str(expression))
    work = text.lower().strip(" .!?")
    if not work:
        raise ValueError("empty referring expression")

    # "left of the car" must be read before the position words eat its "left"; the other
    # relations after them, so that "the car on the left" is a position, not "on" + "left".
    relation, work = _take_relation(re.sub(_IMAGE_WORDS, " ", work), _RELATIONS_FIRST)

    ordinal = None
    word = "|".join(map(re.escape, _ORDINALS))
    match = re.search(rf"\b({word}|last)\b(.*?)\bfrom (?:the )?(left|right|top|bottom)\b", work)
    if match:
        k = _ORDINALS.get(match.group(1))
        side = _SIDES[match.group(3)]
        if match.group(1) == "last":  # "last from the left" = first from the right
            k, side = 1, {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}[side]
        ordinal = (k, side)
        work = f"{work[: match.start()]} {match.group(2)} {work[match.end():]}".strip()
    else:
        match = re.search(rf"\b({word})\s+(?:one\s+)?", work)
        if match and _ORDINALS[match.group(1)] > 1:  # "the second car" = second from the left
            ordinal = (_ORDINALS[match.group(1)], "left")
            work = (work[: match.start()] + work[match.end():]).strip()

    qualifiers: list[tuple[int, str]] = []
    for pattern, name in _POSITIONS:
        qualifiers += [(m.start(), name) for m in re.finditer(rf"\b(?:{pattern})\b", work)]
        work = re.sub(rf"\b(?:{pattern})\b", " ", work)
    qualifiers.sort()
    if relation is None:
        relation, work = _take_relation(work, _RELATIONS_AFTER)

    category = " ".join(w for w in _strip_article(" ".join(work.split())).split() if w not in {"one", "object"})
    category = re.sub(r"(?:\s+(?:on|at|in|to|of|from|the|which|that|is))+$", "", category).strip()
    if not category:
        raise ValueError(f"no object category in {text!r}: say what to look for, e.g. 'the car on the left'")
    return ReferringQuery(text, category, tuple(dict.fromkeys(q for _, q in qualifiers)), ordinal, relation)


def read_expression(text: str, max_chars: int = MAX_EXPRESSION_CHARS) -> tuple[str, ReferringQuery | None]:
    """An expression as a user sends it -> (clean text, parsed query); ("", None) clears.

    Raises `ValueError` for what the expression policy or the parser refuses."""
    text = clean_expression(text, max_chars)
    return text, parse_expression(text) if text else None
