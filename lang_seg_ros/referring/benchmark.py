"""Referring on real frames, scored against expressions generated from ground truth.

`evaluate_referring` runs a referrer over (frame, expressions) pairs (e.g. from
`lang_seg_ros.data.referring_camvid`) and reports, overall and per template and category:

- positives (a target exists): found rate, precision at IoU >= 0.5 (a "not found" counts as
  IoU 0), mean IoU;
- absent categories (the right answer is "not found"): not-found accuracy.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from ..data.referring_camvid import RefExpression
from .zero_shot import ReferringResult

__all__ = ["BenchmarkTally", "evaluate_referring", "mask_iou", "unlabelled_share"]

#: refer(image BGR uint8, expressions) -> one result per expression, in order.
ReferMany = Callable[[np.ndarray, Sequence[str]], Sequence[ReferringResult]]


def mask_iou(pred: np.ndarray, target: np.ndarray) -> float:
    """|pred AND target| / |pred OR target| of two (H, W) bool masks (0 when both are empty)."""
    union = np.logical_or(pred, target).sum()
    return float(np.logical_and(pred, target).sum() / union) if union else 0.0


@dataclass
class BenchmarkTally:
    """Counts for one group of expressions."""

    positives: int = 0
    found: int = 0
    hits: int = 0  # IoU >= 0.5
    iou_sum: float = 0.0
    absent: int = 0
    not_found: int = 0
    misses_on_unlabelled: int = 0  # IoU < 0.5, the answer mostly where the ground truth has no label

    def add(self, example: RefExpression, result: ReferringResult) -> float | None:
        if example.target is None:
            self.absent += 1
            self.not_found += int(not result.found)
            return None
        iou = mask_iou(result.mask, example.target) if result.found else 0.0
        self.positives += 1
        self.found += int(result.found)
        self.hits += int(iou >= 0.5)
        self.iou_sum += iou
        share = unlabelled_share(example, result)
        self.misses_on_unlabelled += int(iou < 0.5 and share is not None and share >= 0.5)
        return iou

    def summary(self) -> dict:
        out: dict = {}
        if self.positives:
            out.update(positives=self.positives, found_rate=self.found / self.positives,
                       precision_at_0_5=self.hits / self.positives, mean_iou=self.iou_sum / self.positives,
                       misses_on_unlabelled=self.misses_on_unlabelled)
        if self.absent:
            out.update(absent=self.absent, not_found_accuracy=self.not_found / self.absent)
        return out


def unlabelled_share(example: RefExpression, result: ReferringResult) -> float | None:
    """The share of a found answer's pixels that the ground truth leaves unlabelled (None: not
    found, or the expression does not know): a miss there may be a real object nobody annotated
    (CamVid leaves distant crowds and parked bicycles unlabelled), a miss IoU cannot tell apart."""
    if not result.found or example.unlabelled is None:
        return None
    area = int(result.mask.sum())
    return float(np.logical_and(result.mask, example.unlabelled).sum()) / area if area else None


class _Report:
    """Tallies of one generator's expressions: overall, per template, category, wording (worded /
    named), category x template and category x wording."""

    def __init__(self) -> None:
        self.overall = BenchmarkTally()
        self.groups: dict[str, dict[str, BenchmarkTally]] = {
            k: defaultdict(BenchmarkTally) for k in ("templates", "categories", "wordings", "class_templates",
                                                     "class_wordings")}

    def add(self, example: RefExpression, result: ReferringResult) -> float | None:
        iou = self.overall.add(example, result)
        wording = "worded" if example.worded else "named"
        self.groups["templates"][example.template].add(example, result)
        self.groups["wordings"][wording].add(example, result)
        if example.positive:
            self.groups["categories"][example.category].add(example, result)
            self.groups["class_templates"][f"{example.category}/{example.template}"].add(example, result)
            self.groups["class_wordings"][f"{example.category}/{wording}"].add(example, result)
        else:
            self.groups["categories"]["(absent)"].add(example, result)
        return iou

    def summary(self) -> dict:
        out = {"overall": self.overall.summary()}
        for name, group in self.groups.items():
            out[name] = {k: v.summary() for k, v in sorted(group.items())}
        return out


def evaluate_referring(refer_many: ReferMany, frames: Iterable[tuple[np.ndarray, Sequence[RefExpression]]],
                       keep_cases: bool = True) -> dict:
    """Score `refer_many` on frames: each (BGR uint8 image, its expressions).

    Returns {"overall": ..., "templates": {name: ...}, "categories": {name: ...} (absent ones
    under "(absent)"), "wordings": {"named", "worded"}, "class_templates": {"car/left": ...},
    "class_wordings": {"car/worded": ...}, "frames", "seconds", "generators": {generator: the same
    groups for its expressions only}, and with keep_cases "cases": one dict per expression (frame,
    expression, generator, template, worded, found, score, iou, reason)}; every group as
    `BenchmarkTally.summary`. The top-level groups pool all generators.
    """
    pooled, per_generator = _Report(), defaultdict(_Report)
    cases: list[dict] = []
    frames_seen, start = 0, time.perf_counter()
    for image, examples in frames:
        frames_seen += 1
        if not examples:
            continue
        texts = list(dict.fromkeys(e.expression for e in examples))  # one answer per distinct text
        answers = dict(zip(texts, refer_many(image, texts)))
        for example in examples:
            result = answers[example.expression]
            iou = pooled.add(example, result)
            per_generator[example.generator].add(example, result)
            if keep_cases:
                cases.append({"frame": example.frame, "expression": example.expression,
                              "generator": example.generator, "template": example.template,
                              "category": example.category, "worded": example.worded,
                              "found": bool(result.found), "score": round(float(result.score), 4),
                              "iou": None if iou is None else round(iou, 4), "reason": result.reason,
                              "area": int(result.mask.sum()),
                              "target_area": None if example.target is None else int(example.target.sum()),
                              "answer_unlabelled": _rounded(unlabelled_share(example, result))})
    out = {"frames": frames_seen, "seconds": round(time.perf_counter() - start, 1), **pooled.summary(),
           "generators": {k: v.summary() for k, v in sorted(per_generator.items())}}
    if keep_cases:
        out["cases"] = cases
    return out


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _cell(summary: dict | None) -> str:
    if not summary:
        return "-"
    if "positives" in summary:
        return f"{100 * summary['precision_at_0_5']:.1f}% ({round(summary['precision_at_0_5'] * summary['positives'])}/{summary['positives']})"
    return f"{100 * summary['not_found_accuracy']:.1f}% ({round(summary['not_found_accuracy'] * summary['absent'])}/{summary['absent']})"


def report_tables(report: dict) -> str:
    """Markdown tables of an `evaluate_referring` report, per generator: per class x template
    (share of positives at IoU >= 0.5, hits/n), per class x wording (named / worded), absent
    categories "not found", and the overall line."""
    lines = [f"{report['frames']} frames, {report['seconds']} s"]
    generators = report.get("generators") or {"all": report}
    for name, rep in generators.items():
        classes = [c for c in rep["categories"] if c != "(absent)"]
        templates = [t for t in rep["templates"] if not t.startswith("absent")]
        lines += ["", f"### generator: {name}", "", "| class | " + " | ".join(templates) + " | all |",
                  "|---" * (len(templates) + 2) + "|"]
        for c in classes:
            cells = [_cell(rep["class_templates"].get(f"{c}/{t}")) for t in templates]
            lines.append(f"| {c} | " + " | ".join(cells) + f" | {_cell(rep['categories'][c])} |")
        cells = [_cell({k: v for k, v in rep["templates"][t].items() if k != "absent"}) for t in templates]
        overall = {k: v for k, v in rep["overall"].items() if k not in ("absent", "not_found_accuracy")}
        lines.append("| all | " + " | ".join(cells) + f" | {_cell(overall)} |")
        lines += ["", "| class | named | worded |", "|---|---|---|"]
        for c in classes:
            lines.append(f"| {c} | {_cell(rep['class_wordings'].get(f'{c}/named'))} | "
                         f"{_cell(rep['class_wordings'].get(f'{c}/worded'))} |")
        pos = {w: {k: v for k, v in s.items() if k not in ("absent", "not_found_accuracy")}
               for w, s in rep["wordings"].items()}
        lines.append(f"| all | {_cell(pos.get('named'))} | {_cell(pos.get('worded'))} |")
        absent = {t: s for t, s in rep["templates"].items() if t.startswith("absent")}
        if absent:
            lines += ["", "| absent | not found |", "|---|---|"]
            lines += [f"| {t} | {_cell(s)} |" for t, s in absent.items()]
            lines.append(f"| all | {_cell(rep['categories'].get('(absent)'))} |")
        o = rep["overall"]
        if "positives" in o:
            lines.append(f"\npositives {o['positives']}: IoU>=0.5 {100 * o['precision_at_0_5']:.1f}%, found "
                         f"{100 * o['found_rate']:.1f}%, mIoU {100 * o['mean_iou']:.1f}" +
                         (f"; absent {o['absent']}: not found {100 * o['not_found_accuracy']:.1f}%"
                          if "absent" in o else ""))
            misses = round((1 - o["precision_at_0_5"]) * o["positives"])
            if o.get("misses_on_unlabelled"):
                per_class = ", ".join(f"{c} {rep['categories'][c]['misses_on_unlabelled']}" for c in classes
                                      if rep["categories"][c].get("misses_on_unlabelled"))
                lines.append(f"misses answered where the ground truth has no label (>= half the answer): "
                             f"{o['misses_on_unlabelled']} of {misses} ({per_class})")
    return "\n".join(lines)


def print_report(report: dict) -> None:
    print(report_tables(report))


#: The zero-shot thresholds `choose_thresholds` sweeps (ZeroShotReferrer arguments): the
#: probability floors reach down to 0.3 and the watershed's split depth up to 0.6, where a model
#: trained with the Lovasz loss (less peaked probabilities, more people pixels around cars) needs
#: them; the people's split is fixed at what two earlier choices settled (upright pedestrians,
#: aspect 3: aspect 1.0 and upright cyclists lost on train).
THRESHOLD_GRID: dict[str, tuple] = {
    "pixel_threshold": (0.3, 0.4, 0.5),
    "upright_pixel_threshold": (0.6, 0.8),
    "upright_aspect": (3.0,),
    "upright_labels": (("pedestrian",),),
    "split_depth": (0.2, 0.4, 0.6),
    "min_area_fraction": (0.0005, 0.001),
    "min_score": (0.5, 0.6),
    "relative_area": (0.05, 0.1),
}
#: Those that shape the candidates (one extraction each); the rest only filter them (candidates
#: are extracted at the smallest `min_area_fraction` of the grid, then filtered by each).
_REGION_KEYS = ("pixel_threshold", "upright_pixel_threshold", "upright_aspect", "upright_labels", "split_depth")


def _region_iou(region, target: np.ndarray) -> float:
    x0, y0, x1, y1 = region.bbox
    inter = int((target[y0:y1, x0:x1] & region.mask).sum())
    return inter / max(1, region.area + int(target.sum()) - inter)


def choose_thresholds(referrer, frames: Iterable[tuple[np.ndarray, Sequence[RefExpression]]],
                      grid: dict[str, Sequence] | None = None, labels: Sequence[str] | None = None,
                      color_order: str = "bgr") -> dict:
    """Sweep `referrer`'s thresholds on frames (each segmented once per label set; candidates
    extracted once per setting of `_REGION_KEYS`) and rank the settings.

    The score of a setting is the mean over classes of the share of that class's positives (both
    generators pooled) at IoU >= 0.5, among the settings whose absent categories are "not found"
    as often as the best setting's (within half a point); ties: the share of all positives. Use it on frames the report is not made on (CamVid
    train): `lang-seg eval-refer --images .../train --masks .../trainannot --choose-thresholds`.
    Returns {"grid", "ranked": [{"params", "score", "per_class", "positives", "absent"}, ...],
    "chosen": the best params, "frames"}.
    """
    import itertools

    from .parse import parse_expression
    from .select import select_instance
    from .zero_shot import query_labels

    grid = dict(grid or THRESHOLD_GRID)
    region_keys = [k for k in _REGION_KEYS if k in grid]
    filter_keys = [k for k in grid if k not in region_keys]
    region_settings = list(itertools.product(*(grid[k] for k in region_keys)))
    filter_settings = list(itertools.product(*(grid[k] for k in filter_keys)))
    extract_at = {"min_area_fraction": min(grid["min_area_fraction"])} if "min_area_fraction" in grid else {}
    # (region setting, filter setting) -> (generator, class or "(absent)") -> [hits, n]
    tallies: dict = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    frames_seen = 0
    for image, examples in frames:
        frames_seen += 1
        if not examples:
            continue
        context = referrer.context(labels)
        texts = list(dict.fromkeys(e.expression for e in examples))
        queries = {t: referrer.resolve(parse_expression(t), context)[0] for t in texts}
        sets = {t: query_labels(q, context) for t, q in queries.items()}
        unique = list(dict.fromkeys(sets.values()))
        results = dict(zip(unique, referrer.segmenter.segment_sets(image, unique, color_order)))
        for rs in region_settings:
            variant = _replace_attrs(referrer, {**dict(zip(region_keys, rs)), **extract_at})
            if "upright_labels" in region_keys:
                variant.upright_labels = frozenset(label.lower() for label in variant.upright_labels)
            per_text = {}
            for t, q in queries.items():
                result = results[sets[t]]
                found = variant.regions(q, result.label_map, result.confidence, result.labels)
                per_text[t] = (q, found, result.labels, result.label_map.shape)
            for fs in filter_settings:
                chosen_referrer = _replace_attrs(variant, dict(zip(filter_keys, fs)))
                answers = {}
                for t, (q, found, labs, shape) in per_text.items():
                    if hasattr(chosen_referrer, "candidates"):
                        others = chosen_referrer.candidates(found, labs, q.relation[1], shape) if q.relation else []
                        pool = chosen_referrer.candidates(found, labs, q.category, shape)
                        answers[t] = select_instance(pool, q, shape, None, others)[0]
                    else:  # a referrer that answers itself (tests)
                        answers[t] = chosen_referrer.answer_regions(q, found, labs, shape)
                tally = tallies[(rs, fs)]
                for example in examples:
                    answer = answers[example.expression]
                    key = (example.generator, example.category if example.positive else "(absent)")
                    found = answer is not None and getattr(answer, "found", True)
                    if not example.positive:
                        hit = not found
                    elif not found:
                        hit = False
                    elif hasattr(answer, "bbox") and hasattr(answer, "area"):
                        hit = _region_iou(answer, example.target) >= 0.5
                    else:
                        hit = mask_iou(answer.mask, example.target) >= 0.5
                    tally[key][0] += int(hit)
                    tally[key][1] += 1
    ranked = []
    for (rs, fs), tally in tallies.items():
        params = {**dict(zip(region_keys, rs)), **dict(zip(filter_keys, fs))}
        per_class = {f"{g}/{c}": h / n for (g, c), (h, n) in tally.items() if c != "(absent)" and n}
        pooled: dict = defaultdict(lambda: [0, 0])
        for (g, c), (h, n) in tally.items():
            if c != "(absent)":
                pooled[c][0] += h
                pooled[c][1] += n
        absent_hits = sum(h for (g, c), (h, n) in tally.items() if c == "(absent)")
        absent_n = sum(n for (g, c), (h, n) in tally.items() if c == "(absent)")
        pos_hits = sum(h for (g, c), (h, n) in tally.items() if c != "(absent)")
        pos_n = sum(n for (g, c), (h, n) in tally.items() if c != "(absent)")
        class_shares = [h / n for h, n in pooled.values() if n]
        ranked.append({"params": params, "score": float(np.mean(class_shares)) if class_shares else 0.0,
                       "per_class": per_class, "positives": pos_hits / max(1, pos_n), "positives_n": pos_n,
                       "absent": absent_hits / absent_n if absent_n else 1.0, "absent_n": absent_n})
    best_absent = max((r["absent"] for r in ranked), default=1.0)
    ranked.sort(key=lambda r: (r["absent"] >= best_absent - 0.005, r["score"], r["positives"]), reverse=True)
    return {"grid": grid, "frames": frames_seen, "ranked": ranked, "chosen": ranked[0]["params"] if ranked else {}}


def _replace_attrs(referrer, values: dict):
    """A shallow copy of `referrer` with some attributes set (the segmenter is shared)."""
    import copy

    clone = copy.copy(referrer)
    for key, value in values.items():
        setattr(clone, key, value)
    return clone


def print_threshold_choice(choice: dict, json_path: str | None = None, top: int = 10) -> None:
    """The best `top` settings of `choose_thresholds` (and all of them as JSON)."""
    import json
    from pathlib import Path

    print(f"{choice['frames']} frames; {len(choice['ranked'])} settings; score = mean over classes of the share "
          f"of positives at IoU >= 0.5 (generators pooled)")
    for r in choice["ranked"][:top]:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        classes = "  ".join(f"{k} {100 * v:.1f}" for k, v in sorted(r["per_class"].items()))
        print(f"score {100 * r['score']:.1f}  positives {100 * r['positives']:.1f}% (n={r['positives_n']})  "
              f"absent not found {100 * r['absent']:.1f}% (n={r['absent_n']})  [{params}]\n    {classes}")
    print("chosen:", ", ".join(f"{k}={v}" for k, v in choice["chosen"].items()))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(choice, indent=1))
