"""``lang-seg train`` and ``lang-seg eval``: registered on the main CLI by ``register(subparsers)``.

Public contract of ``eval`` (checked from outside the project)::

    lang-seg eval --images DIR --masks DIR --names "n0,n1,..." --ignore-index K
                  [--checkpoint PATH] [--scales S ...] [--flip] --json OUT.json
                  [--wording-sets FILE ...] [--limit N]

Images and single-channel mask PNGs are paired by file name (stem); mask value ``i`` means
``names[i]``; values equal to K (or >= the number of names) are ignored. Without
``--checkpoint`` the embedded default model is used. Every image goes through the same
``lang_seg_ros.inference.Segmenter`` as ``lang-seg segment``, built from the same model options
(``--device --precision --working-size --scales --flip`` and the block settings). OUT.json
holds ``miou`` (fraction in [0, 1]), ``per_class_iou`` (name -> fraction, null for a label
absent from both ground truth and prediction), ``pixel_accuracy``, ``mean_accuracy``,
``fb_iou`` (background = first name), ``confusion_matrix`` (rows ground truth, columns
prediction) and the settings used.

``--wording-sets`` scores the same masks again under other wordings of the same classes (one
file per set, one label per line in class order, e.g. ``configs/wordings/camvid/*.txt``):
OUT.json gains ``wording_sets`` (file stem -> ``names``, ``miou``, ``per_class_iou``,
``pixel_accuracy``) and ``wording_sets_mean_miou``; everything above is unchanged.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

_LOG = logging.getLogger("lang_seg_ros.train")

__all__ = ["add_train_arguments", "register", "cmd_train", "cmd_eval", "parse_names"]


def parse_names(text: str) -> list[str]:
    """``"sky, road,sign symbol"`` -> ``["sky", "road", "sign symbol"]``, or the lines of a file.
    Empty or duplicate names are a ``ValueError``."""
    path = Path(text)
    if "," not in text and path.is_file():
        from ..data import read_names

        names = read_names(path)
    else:
        names = [n.strip() for n in text.split(",")]
    if not names or any(not n for n in names):
        raise ValueError(f"--names: empty label name in {text!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"--names: duplicate label names {dupes}")
    return names


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_train_config
    from .trainer import Trainer

    overrides = {}
    for key in ("iterations", "out_dir", "device", "batch_size", "seed", "num_threads"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    cfg = load_train_config(args.config, **overrides)
    if "out_dir" in overrides:
        cfg.out_dir = str(Path(overrides["out_dir"]).resolve())
    t0 = time.perf_counter()
    trainer = Trainer(cfg, progress=not args.no_progress, resume=not args.no_resume)
    try:
        best = trainer.fit()
    finally:
        trainer.dist.close()
    if trainer.dist.is_main:  # one report per run, not one per process
        best = {k: v for k, v in best.items() if k != "confusion_matrix"}
        print(json.dumps({"best": best, "seconds": round(time.perf_counter() - t0, 1), "out_dir": cfg.out_dir,
                          "processes": trainer.dist.world_size}, indent=2))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Score the model on an image/mask folder through the same `Segmenter` as `lang-seg segment`."""
    import torch

    from ..cli_options import segmenter_from_args
    from ..data import FolderSegDataset
    from .metrics import plot_confusion_matrix, swallowed
    from .trainer import evaluate_model

    names = parse_names(args.names)
    wording_sets = {}
    for path in args.wording_sets or []:
        words = parse_names(path)
        if len(words) != len(names):
            raise ValueError(f"--wording-sets {path}: {len(words)} labels, --names has {len(names)}; "
                             "a wording set names the same classes in the same order")
        wording_sets[Path(path).stem] = words
    dataset = FolderSegDataset(args.images, args.masks, names, args.ignore_index, name="eval")
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    from ..model.checkpoint import resolve_checkpoint

    checkpoint = str(resolve_checkpoint(args.checkpoint))
    segmenter = segmenter_from_args(args)
    multiscale = bool(segmenter.scales)
    if args.flip and not multiscale:
        _LOG.warning("--flip applies to multi-scale evaluation only (with --scales); single scale runs unflipped")
    t0 = time.perf_counter()
    metrics = evaluate_model(segmenter, dataset, names, progress=not args.no_progress, max_images=args.limit,
                             desc="eval (--names)")
    metrics.update({
        "checkpoint": str(checkpoint),
        "images": len(dataset) if args.limit is None else min(len(dataset), args.limit),
        "scales": list(segmenter.scales) if multiscale else [1.0],
        "flip": segmenter.flip if multiscale else False,
        "working_size": None if multiscale else segmenter.working_size,
        "precision": segmenter.precision,
        "ignore_index": args.ignore_index,
        "seconds": round(time.perf_counter() - t0, 2),
    })
    if wording_sets:
        metrics["wording_sets"] = {}
        for set_name, words in wording_sets.items():
            m = evaluate_model(segmenter, dataset, words, progress=not args.no_progress, max_images=args.limit,
                               desc=f"eval ({set_name})")
            metrics["wording_sets"][set_name] = {k: m[k] for k in ("miou", "per_class_iou", "pixel_accuracy")}
            metrics["wording_sets"][set_name]["names"] = words
            # reported by the --names class each wording stands for, so the sets compare
            metrics["wording_sets"][set_name]["swallowed"] = [
                {**e, "class": names[words.index(e["class"])], "wording": e["class"]}
                for e in swallowed(m["confusion_matrix"], words)]
        mious = [v["miou"] for v in metrics["wording_sets"].values() if v["miou"] is not None]
        metrics["wording_sets_mean_miou"] = sum(mious) / len(mious) if mious else None
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2))
    if args.plot:
        plot_confusion_matrix(metrics["confusion_matrix"], names, args.plot)
    width = max(len(n) for n in names)
    for n in names:
        iou = metrics["per_class_iou"][n]
        print(f"{n:<{width}}  {'   n/a' if iou is None else f'{100 * iou:6.2f}'}")
    print(f"{'mIoU':<{width}}  {100 * (metrics['miou'] or 0):6.2f}")
    print(f"{'pixel acc':<{width}}  {100 * (metrics['pixel_accuracy'] or 0):6.2f}")
    print(f"{'FB-IoU':<{width}}  {100 * (metrics['fb_iou'] or 0):6.2f}")
    if wording_sets:
        print("\nwording set mIoU (same masks, other label wordings):")
        w = max(len(k) for k in wording_sets)
        for set_name, res in metrics["wording_sets"].items():
            worst = min(((v, k) for k, v in res["per_class_iou"].items() if v is not None), default=(0.0, "-"))
            print(f"  {set_name:<{w}}  {100 * (res['miou'] or 0):6.2f}   (weakest: {worst[1]} {100 * worst[0]:.1f})")
        print(f"  {'mean':<{w}}  {100 * (metrics['wording_sets_mean_miou'] or 0):6.2f}")
        print("\nswallowed classes (a label won >= 15 % of a class's pixels; the failure a mean hides):")
        for set_name, res in [("--names", {"swallowed": [{**e, "wording": e["class"]} for e in
                                                          swallowed(metrics["confusion_matrix"], names)]}),
                              *metrics["wording_sets"].items()]:
            lines = [f"'{e['wording']}' ({e['class']}) -> {100 * e['share']:.0f} % '{e['as']}'"
                     for e in res["swallowed"]]
            print(f"  {set_name:<{w}}  {'; '.join(lines) if lines else 'none'}")
    return 0


def add_train_arguments(tr: argparse.ArgumentParser) -> None:
    """The options of ``lang-seg train``, shared with ``python -m lang_seg_ros.train`` (torchrun)."""
    tr.add_argument("config", help="training config YAML (e.g. configs/train/camvid_v2_wordings.yaml)")
    tr.add_argument("--iterations", type=int, help="override the config's iterations")
    tr.add_argument("--batch-size", dest="batch_size", type=int,
                    help="override the config's batch_size (the global batch, split over processes)")
    tr.add_argument("--out-dir", dest="out_dir", help="override the config's out_dir")
    tr.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: the config's)")
    tr.add_argument("--seed", type=int)
    tr.add_argument("--num-threads", dest="num_threads", type=int, help="torch CPU threads (per process)")
    tr.add_argument("--no-resume", action="store_true", help="start over even if out_dir holds last.pt")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.set_defaults(func=cmd_train)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``eval`` to the ``lang-seg`` sub-commands."""
    from ..cli_options import add_model_arguments

    tr = subparsers.add_parser("train", help="train LSeg from a YAML config (see docs/training.md)")
    add_train_arguments(tr)

    ev = subparsers.add_parser("eval", help="mIoU / per-class IoU / pixel accuracy on image + mask folders")
    ev.add_argument("--images", required=True, help="folder of RGB images")
    ev.add_argument("--masks", required=True, help="folder of single-channel PNG masks, same file names")
    ev.add_argument("--names", required=True, help='"n0,n1,...": mask value i means names[i] (or a file, one per line)')
    ev.add_argument("--ignore-index", dest="ignore_index", type=int, default=255, help="mask value to ignore")
    add_model_arguments(ev)  # --checkpoint --device --precision --working-size --scales --flip, as `segment`
    ev.add_argument("--num-threads", dest="num_threads", type=int, default=0, help="torch CPU threads")
    ev.add_argument("--json", required=True, help="write the metrics here")
    ev.add_argument("--plot", help="also write the row-normalised confusion matrix as a PNG")
    ev.add_argument("--wording-sets", dest="wording_sets", nargs="+", metavar="FILE",
                    help="also score other wordings of the same classes: files with one label per line, "
                         "in the order of --names (mIoU per set in the JSON and printed)")
    ev.add_argument("--limit", type=int, help="first N images only (sorted by name)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bars (one per label wording set)")
    ev.set_defaults(func=cmd_eval)
