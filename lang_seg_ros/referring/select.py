"""Which instance an expression means: qualifiers and relations applied to candidate regions.

Pure geometry on `Region`s (pixels; x right, y down), so every rule is testable on constructed
scenes without a model.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from ..objects.regions import Region
from .parse import ReferringQuery

_SIDE_KEYS: dict[str, Callable[[Region], float]] = {
    "left": lambda r: r.centroid[0],
    "right": lambda r: -r.centroid[0],
    "top": lambda r: r.centroid[1],
    "bottom": lambda r: -r.centroid[1],
}


def median_depth(region: Region, depth: np.ndarray) -> float:
    """Median of the valid (finite, > 0) depth values under the region; inf when there are none."""
    x0, y0, x1, y1 = region.bbox
    values = depth[y0:y1, x0:x1][region.mask]
    values = values[np.isfinite(values) & (values > 0)]
    return float(np.median(values)) if values.size else math.inf


def _gap(a: Region, b: Region) -> float:
    """Distance between two boxes in pixels (0 when they touch or overlap)."""
    dx = max(b.bbox[0] - a.bbox[2], a.bbox[0] - b.bbox[2], 0)
    dy = max(b.bbox[1] - a.bbox[3], a.bbox[1] - b.bbox[3], 0)
    return math.hypot(dx, dy)


def _relation_distance(kind: str, candidate: Region, other: Region) -> float:
    """How well `candidate` satisfies "<kind> `other`": lower is better, inf when it does not."""
    (cx, cy), (ox, oy) = candidate.centroid, other.centroid
    direction_ok = {
        "next_to": True,
        "left_of": cx < ox,
        "right_of": cx > ox,
        "above": cy < oy,
        "below": cy > oy,
    }[kind]
    return _gap(candidate, other) if direction_ok else math.inf


def _qualifier_key(name: str, shape: tuple[int, int], depth: np.ndarray | None) -> Callable[[Region], float]:
    if name in _SIDE_KEYS:
        return _SIDE_KEYS[name]
    if name == "middle":
        cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
        return lambda r: math.hypot(r.centroid[0] - cx, r.centroid[1] - cy)
    if name == "largest":
        return lambda r: -r.area
    if name == "smallest":
        return lambda r: r.area
    if name in ("nearest", "farthest"):
        sign = 1 if name == "nearest" else -1
        if depth is not None:
            def by_depth(region: Region) -> float:
                value = median_depth(region, depth)
                return sign * value if math.isfinite(value) else math.inf  # no valid depth: last

            return by_depth
        # Without depth: a camera looking over the ground sees nearer objects lower in the image.
        return lambda r: -sign * r.bbox[3]
    raise ValueError(f"unknown qualifier {name!r}")


def select_instance(
    candidates: Sequence[Region],
    query: ReferringQuery,
    shape: tuple[int, int],
    depth: np.ndarray | None = None,
    others: Sequence[Region] = (),
) -> tuple[Region | None, str]:
    """The candidate the query selects, or None, with a short reason either way.

    candidates: regions of the referred category; others: regions of the relation's category;
    shape: (H, W) of the label map; depth: (H, W) metres aligned with it, 0/NaN = invalid.
    """
    pool = list(candidates)
    if not pool:
        return None, f"no {query.category!r} in view"
    how = []
    if query.relation is not None:
        kind, other_name = query.relation
        if not others:
            return None, f"no {other_name!r} in view to relate to"
        scored = [(min(_relation_distance(kind, c, o) for o in others), c) for c in pool]
        scored = [(d, c) for d, c in scored if math.isfinite(d)]
        if not scored:
            return None, f"no {query.category!r} is {kind.replace('_', ' ')} a {other_name!r}"
        scored.sort(key=lambda item: item[0])
        pool = [c for _, c in scored]  # nearest to the related object first
        how.append(f"{kind.replace('_', ' ')} {other_name}")
    if query.ordinal is not None:
        k, side = query.ordinal
        ranked = sorted(pool, key=_SIDE_KEYS[side])
        if len(ranked) < k:
            return None, f"only {len(ranked)} {query.category!r} in view, not {k}"
        return ranked[k - 1], "; ".join(how + [f"{k} from the {side}"])
    if query.qualifiers:
        keys = [_qualifier_key(q, shape, depth) for q in query.qualifiers]
        chosen = min(pool, key=lambda r: tuple(key(r) for key in keys))
        return chosen, "; ".join(how + list(query.qualifiers))
    if query.relation is not None:
        return pool[0], how[0]
    return max(pool, key=lambda r: (r.area, r.score)), "largest match"
