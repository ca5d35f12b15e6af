"""Referring expressions generated from semantic ground truth (CamVid label maps), target known.

No referring data set covers street scenes, but a label map already says where every car is:
the instances are the connected components of "thing" classes (8-connected, at least
`min_area` pixels), and templates name one of them by position, size, rank or a neighbouring
object ("the car on the left", "the largest car", "the second car from the left", "the
pedestrian next to the car"), or by an everyday word ("the person" when one pedestrian is in
view). An expression is kept only when its answer is unambiguous: the runner-up is clearly
worse (a margin in pixels or in area), and counting the smaller components that were left out
(between `min_area / 16` and `min_area`: a distant pedestrian is still a pedestrian) would not
change it. Frames also get expressions for categories they do not show: far ones ("the
giraffe") and thing classes with no pixel in that frame ("the bicyclist"), whose right answer
is "not found".

Two generators, reported side by side by `lang-seg eval-refer --generator both`:

- "named" (`frame_expressions`): the templates above over instances of at least `min_area`
  pixels, an answer kept only when the smaller components would not change it;
- "pieces" (`piece_expressions`): left / right / largest over EVERY visible piece of a class
  (8-connected components of at least `piece_area` pixels, 20 by default: a car cut in two by a
  pole is two pieces, a distant pedestrian is a piece), the answer kept only when it is an object
  of at least `min_area` pixels and clearly ahead of the runner-up piece; two absent categories on
  every third frame, drawn from the far categories and from the worded absent ones.

With `worded` (a fraction, 0.25 in `eval-refer`), that share of the positive expressions names
its class with a wording no training or alias list holds (`referring.wordings.CAMVID_WORDED`:
"the hatchback on the right", "the bike rider on the left"); `RefExpression.worded` marks them.

Sample `i` of a frame depends only on (seed, frame name): the set is deterministic.
"""
from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np

from .datasets import CAMVID_IGNORE

__all__ = ["ABSENT_CATEGORIES", "CAMVID_THINGS", "GENERATORS", "SYNONYMS", "CamVidReferring", "Component",
           "RefExpression", "camvid_frames", "frame_components", "frame_expressions", "generate", "piece_expressions",
           "word_expressions"]

#: Thing classes of CamVid (name -> label id) whose components are the instances.
CAMVID_THINGS = {"car": 8, "pedestrian": 9, "bicyclist": 10}
#: Categories no CamVid frame shows, far from the street labels: their answer is "not found".
ABSENT_CATEGORIES = ("dog", "boat", "giraffe", "horse", "elephant", "airplane", "cow", "sheep", "bed",
                     "sofa", "refrigerator", "zebra", "cat", "toilet", "piano")
#: Everyday words for the thing classes ("only_synonym": "the person" when one pedestrian is in view).
SYNONYMS = {"car": "automobile", "pedestrian": "person", "bicyclist": "cyclist"}
#: Relation templates (category, other category): the first is the referred one.
RELATION_PAIRS = (("pedestrian", "car"), ("car", "pedestrian"), ("bicyclist", "car"), ("pedestrian", "bicyclist"),
                  ("bicyclist", "pedestrian"))


@dataclass(frozen=True)
class Component:
    """One connected component of one class: area in pixels, box (x0, y0, x1, y1) half-open,
    centroid (x, y) pixels, and its id in the class's component map."""

    category: str
    index: int
    area: int
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]


@dataclass(frozen=True)
class RefExpression:
    """One benchmark expression on one frame.

    template: "only", "only_synonym", "left", "right", "largest", "second_left", "second_right",
    "next_to", "absent_far", "absent_street" or "absent_worded"; target: (H, W) bool mask of the
    referred component, or None when the right answer is "not found"; worded: the class is named by
    a held-out wording ("the hatchback"); generator: "named" or "pieces"; unlabelled: (H, W) bool,
    the pixels the ground truth leaves unlabelled (one array shared by a frame's expressions; None:
    not known): an answer there may be an object nobody annotated, which IoU cannot tell.
    """

    frame: str
    expression: str
    template: str
    category: str
    target: np.ndarray | None
    worded: bool = False
    generator: str = "named"
    unlabelled: np.ndarray | None = None

    @property
    def positive(self) -> bool:
        return self.target is not None


def frame_components(label_map: np.ndarray, class_id: int, category: str, min_area: int,
                     minor_area: int | None = None) -> tuple[list[Component], list[Component], np.ndarray]:
    """(instances >= min_area, minor components in [minor_area, min_area), component id map);
    minor_area defaults to min_area / 16 (25 pixels for 400: a distant person is still a person)."""
    minor_area = min_area / 16 if minor_area is None else minor_area
    count, ids, stats, centroids = cv2.connectedComponentsWithStats(
        (label_map == class_id).astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    kept, minor = [], []
    for c in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[c])
        comp = Component(category, c, area, (x, y, x + w, y + h), (float(centroids[c, 0]), float(centroids[c, 1])))
        if area >= min_area:
            kept.append(comp)
        elif area >= minor_area:
            minor.append(comp)
    return kept, minor, ids


def _gap(a: Component, b: Component) -> float:
    """Distance between two boxes in pixels (0 when they touch or overlap)."""
    dx = max(b.bbox[0] - a.bbox[2], a.bbox[0] - b.bbox[2], 0)
    dy = max(b.bbox[1] - a.bbox[3], a.bbox[1] - b.bbox[3], 0)
    return math.hypot(dx, dy)


def _ranked_pick(comps: Sequence[Component], key: Callable[[Component], float], rank: int,
                 margin: float) -> Component | None:
    """The rank-th (0-based) component by `key`, when its neighbours in that order are at least
    `margin` away (else None: too close to call)."""
    if len(comps) <= rank:
        return None
    ordered = sorted(comps, key=key)
    value = key(ordered[rank])
    if rank > 0 and value - key(ordered[rank - 1]) < margin:
        return None
    if rank + 1 < len(ordered) and key(ordered[rank + 1]) - value < margin:
        return None
    return ordered[rank]


def _stable_pick(kept, minor, pick: Callable[[Sequence[Component]], Component | None]) -> Component | None:
    """`pick` on the instances, kept only when the left-out small components would not change it."""
    chosen = pick(kept)
    if chosen is None or not minor:
        return chosen
    with_minor = pick(list(kept) + list(minor))
    return chosen if with_minor is not None and with_minor.index == chosen.index else None


def frame_expressions(label_map: np.ndarray, frame: str = "", seed: int = 0, min_area: int = 400,
                      margin_fraction: float = 0.05, area_ratio: float = 1.5, absent_far: int = 2,
                      absent_street: int = 1, things: dict[str, int] | None = None,
                      worded: float = 0.0) -> list[RefExpression]:
    """The benchmark expressions of one frame.

    label_map: (H, W) class ids (CamVid ids by default); frame: its name (seeds the absent picks);
    min_area: smallest instance in pixels; margin_fraction: position margins as a fraction of the
    width; area_ratio: "largest" needs the largest at least this times the runner-up;
    absent_far / absent_street: how many "not found" expressions of each kind; worded: share of
    the positives reworded (`word_expressions`).
    """
    things = dict(things or CAMVID_THINGS)
    height, width = label_map.shape
    margin = margin_fraction * width
    comps = {name: frame_components(label_map, cid, name, min_area) for name, cid in things.items()}
    out: list[RefExpression] = []

    def add(text: str, template: str, comp: Component | None) -> None:
        if comp is not None:
            target = comps[comp.category][2] == comp.index
            out.append(RefExpression(frame, text, template, comp.category, target))

    def left(c: Component) -> float:
        return c.centroid[0]

    def right(c: Component) -> float:
        return -c.centroid[0]

    for name, (kept, minor, _) in comps.items():
        if len(kept) == 1 and not minor:
            add(f"the {name}", "only", kept[0])
            if name in SYNONYMS:
                add(f"the {SYNONYMS[name]}", "only_synonym", kept[0])
        if len(kept) >= 2:
            add(f"the {name} on the left", "left",
                _stable_pick(kept, minor, lambda cs: _ranked_pick(cs, left, 0, margin)))
            add(f"the {name} on the right", "right",
                _stable_pick(kept, minor, lambda cs: _ranked_pick(cs, right, 0, margin)))
            add(f"the largest {name}", "largest", _largest(kept, area_ratio))
        if len(kept) >= 3:
            add(f"the second {name} from the left", "second_left",
                _stable_pick(kept, minor, lambda cs: _ranked_pick(cs, left, 1, margin)))
            add(f"the second {name} from the right", "second_right",
                _stable_pick(kept, minor, lambda cs: _ranked_pick(cs, right, 1, margin)))
    for name, other in RELATION_PAIRS:
        if name in comps and other in comps:
            add(f"the {name} next to the {other}", "next_to", _next_to(comps[name], comps[other][0], margin))

    rng = np.random.default_rng([seed, zlib.crc32(frame.encode())])
    for i in rng.permutation(len(ABSENT_CATEGORIES))[:absent_far]:
        out.append(RefExpression(frame, f"the {ABSENT_CATEGORIES[i]}", "absent_far", ABSENT_CATEGORIES[i], None))
    missing = [name for name, cid in things.items() if not (label_map == cid).any()]
    for i in rng.permutation(len(missing))[:absent_street]:
        out.append(RefExpression(frame, f"the {missing[i]}", "absent_street", missing[i], None))
    return word_expressions(out, worded, seed)


def word_expressions(examples: Sequence[RefExpression], share: float, seed: int = 0,
                     wordings: dict[str, Sequence[str]] | None = None) -> list[RefExpression]:
    """`examples` with `share` of the positives (those whose class has held-out wordings; not
    "only_synonym", already an everyday word) naming the class by one of `wordings` (default
    `referring.wordings.CAMVID_WORDED`): "the car on the left" -> "the hatchback on the left".
    Deterministic per (seed, frame, expression)."""
    if share <= 0:
        return list(examples)
    if wordings is None:
        from ..referring.wordings import CAMVID_WORDED as wordings
    out = []
    for example in examples:
        words = wordings.get(example.category, ())
        if not example.positive or not words or example.template == "only_synonym" or example.worded:
            out.append(example)
            continue
        rng = np.random.default_rng([seed, zlib.crc32(f"{example.frame}|{example.expression}".encode())])
        if rng.random() >= share:
            out.append(example)
            continue
        word = words[int(rng.integers(len(words)))]
        text = re.sub(rf"\b{re.escape(example.category)}\b", word, example.expression, count=1)
        out.append(replace(example, expression=text, worded=True))
    return out


#: Expression generators of `generate` (`lang-seg eval-refer --generator`).
GENERATORS = ("named", "pieces")


def piece_expressions(label_map: np.ndarray, frame: str = "", seed: int = 0, min_area: int = 400,
                      piece_area: int = 20, margin_fraction: float = 0.05, area_ratio: float = 1.5,
                      absent_every: int = 3, absent: int = 2, things: dict[str, int] | None = None,
                      worded: float = 0.0) -> list[RefExpression]:
    """The "pieces" generator: "the <class> on the left / on the right", "the largest <class>"
    with every visible piece of the class counting.

    The pieces are the class's 8-connected components of at least `piece_area` pixels. The
    leftmost (rightmost) piece by centroid is the answer when it has at least `min_area` pixels
    and the next piece is at least `margin_fraction` of the width further; the largest when it
    has `min_area` pixels and `area_ratio` times the runner-up's. A piece under `min_area` that
    wins makes the expression ambiguous (a fragment is no answer): it is left out. On every
    `absent_every`-th frame (by a hash of its name), `absent` categories no frame shows: far ones
    and worded ones ("the hippo", "the sailing boat").
    """
    from ..referring.wordings import CAMVID_WORDED_ABSENT

    things = dict(things or CAMVID_THINGS)
    width = label_map.shape[1]
    margin = margin_fraction * width
    out: list[RefExpression] = []
    for name, cid in things.items():
        pieces, _, ids = frame_components(label_map, cid, name, piece_area, minor_area=piece_area)
        if len(pieces) < 2:
            continue

        def add(text: str, template: str, piece: Component | None) -> None:
            if piece is not None and piece.area >= min_area:
                out.append(RefExpression(frame, text, template, name, ids == piece.index, generator="pieces"))

        add(f"the {name} on the left", "left", _ranked_pick(pieces, lambda c: c.centroid[0], 0, margin))
        add(f"the {name} on the right", "right", _ranked_pick(pieces, lambda c: -c.centroid[0], 0, margin))
        add(f"the largest {name}", "largest", _largest(pieces, area_ratio))
    if absent and zlib.crc32(f"{seed}|{frame}".encode()) % absent_every == 0:
        pool = list(ABSENT_CATEGORIES) + list(CAMVID_WORDED_ABSENT)
        rng = np.random.default_rng([seed, zlib.crc32(frame.encode()), 1])
        for i in rng.permutation(len(pool))[:absent]:
            template = "absent_far" if pool[i] in ABSENT_CATEGORIES else "absent_worded"
            out.append(RefExpression(frame, f"the {pool[i]}", template, pool[i], None, worded=template == "absent_worded",
                                     generator="pieces"))
    return word_expressions(out, worded, seed)


def generate(label_map: np.ndarray, frame: str, generators: Sequence[str] = ("named",), seed: int = 0,
             min_area: int = 400, things: dict[str, int] | None = None, worded: float = 0.0,
             unlabelled_id: int | None = CAMVID_IGNORE) -> list[RefExpression]:
    """The expressions of one frame from each of `generators` ("named", "pieces"), each knowing
    the frame's unlabelled pixels (`label_map == unlabelled_id`; CamVid's 11; None: not marked)."""
    out: list[RefExpression] = []
    for generator in generators:
        if generator == "named":
            out += frame_expressions(label_map, frame, seed, min_area, things=things, worded=worded)
        elif generator == "pieces":
            out += piece_expressions(label_map, frame, seed, min_area, things=things, worded=worded)
        else:
            raise ValueError(f"unknown generator {generator!r}; known: {', '.join(GENERATORS)}")
    if unlabelled_id is not None:
        unlabelled = label_map == unlabelled_id
        out = [replace(example, unlabelled=unlabelled) for example in out]
    return out


def _largest(kept: Sequence[Component], ratio: float) -> Component | None:
    ordered = sorted(kept, key=lambda c: -c.area)
    return ordered[0] if len(ordered) >= 2 and ordered[0].area >= ratio * ordered[1].area else None


def _next_to(referred: tuple, others: Sequence[Component], margin: float) -> Component | None:
    """The instance nearest to any of `others` when it touches one (gap <= margin / 2) and every
    other candidate (minor ones included) is at least `margin` farther."""
    kept, minor, _ = referred
    if not kept or not others:
        return None
    gaps = sorted(((min(_gap(c, o) for o in others), i, c) for i, c in enumerate(list(kept) + list(minor))),
                  key=lambda t: t[:2])
    best_gap, _, best = gaps[0]
    if best not in kept or best_gap > margin / 2:
        return None
    if len(gaps) > 1 and gaps[1][0] - best_gap < margin:
        return None
    return best


def camvid_frames(images: str | Path, masks: str | Path, limit: int | None = None, every: int = 1,
                  read: bool = True) -> Iterator[tuple[str, Path, np.ndarray | None]]:
    """(frame name, image path, label map) for each image with a mask of the same stem, sorted;
    every `every`-th such frame only (a subset spread over the sequences), at most `limit`;
    without `read`, the label map is None (just the list)."""
    images, masks = Path(images), Path(masks)
    paths = sorted(p for p in images.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not paths:
        raise FileNotFoundError(f"no images in {images}")
    count = seen = 0
    for path in paths:
        mask_path = next((m for m in (masks / path.name, masks / f"{path.stem}.png") if m.is_file()), None)
        if mask_path is None:
            continue
        seen += 1
        if (seen - 1) % max(1, every):
            continue
        if not read:
            yield path.stem, path, None
            count += 1
            if limit is not None and count >= limit:
                return
            continue
        label_map = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        if label_map is None or label_map.ndim != 2:
            raise ValueError(f"{mask_path}: not a single-channel label PNG")
        yield path.stem, path, label_map
        count += 1
        if limit is not None and count >= limit:
            return


class CamVidReferring:
    """(image, sentence, mask) samples for training or validating a referring model (LTS) on
    expressions generated from a label-map data set (CamVid layout: `<root>/<split>/` images,
    `<root>/<split>annot/` label PNGs), positives only unless `absent` (then the mask is empty).

    Built once from the label maps (fast: no images are read); sample `i` is the same for the
    same arguments. `limit`: the first N frames only.
    """

    def __init__(self, root: str | Path, split: str = "train", seed: int = 0, min_area: int = 400,
                 absent: bool = False, limit: int | None = None, things: dict[str, int] | None = None) -> None:
        root = Path(root)
        self.items: list[tuple[Path, str, str, int]] = []  # image, expression, category, component id (0: none)
        for name, path, label_map in camvid_frames(root / split, root / f"{split}annot", limit):
            things_map = dict(things or CAMVID_THINGS)
            for example in frame_expressions(label_map, name, seed, min_area, things=things_map):
                if example.target is None and not absent:
                    continue
                index = 0
                if example.target is not None:
                    ids = frame_components(label_map, things_map[example.category], example.category, min_area)[2]
                    index = int(np.bincount(ids[example.target]).argmax())
                self.items.append((path, example.expression, example.category, index))
        self._label_paths = {path: root / f"{split}annot" / path.name for path, *_ in self.items}
        self.things = dict(things or CAMVID_THINGS)
        self.min_area = min_area

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        from .refcoco import RefSample

        path, expression, category, component = self.items[index]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"cannot read {path}")
        mask = np.zeros(bgr.shape[:2], np.uint8)
        if component:
            label_map = cv2.imread(str(self._label_paths[path]), cv2.IMREAD_UNCHANGED)
            ids = frame_components(label_map, self.things[category], category, self.min_area)[2]
            mask = (ids == component).astype(np.uint8)
        return RefSample(np.ascontiguousarray(bgr[:, :, ::-1]), expression, mask)
