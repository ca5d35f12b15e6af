"""`lang-seg`: the command line. Every model feature works from here without ROS."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from .device_spec import quiet_openmp
from .cli_options import (CHECKPOINT_HELP, add_block_arguments, add_model_arguments, block_overrides, checkpoint_argument,
                          segmenter_from_args)

_LOG = logging.getLogger("lang_seg_ros")
#: Default `--working-size` of `refer` and `eval-refer`: small objects (a distant cyclist) need
#: more pixels than whole-frame labelling does (CamVid val benchmark: 79% vs 69% at 480).
REFER_WORKING_SIZE = 720


def read_image(path: str) -> np.ndarray:
    import cv2

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read image {path}")
    return bgr


def write_label_png(path: str | Path, label_map: np.ndarray, count: int) -> None:
    """Class ids as PNG: uint8 (255 = no label) up to 255 labels, else uint16 (65535 = no label)."""
    import cv2

    dtype, none = (np.uint8, 255) if count <= 255 else (np.uint16, 65535)
    ids = np.where(label_map < 0, none, label_map).astype(dtype)
    if not cv2.imwrite(str(path), ids):
        raise SystemExit(f"cannot write {path}")


def cmd_segment(args: argparse.Namespace) -> int:
    import cv2

    from .inference.labels import parse_label_spec
    from .pipeline import FramePipeline, PipelineSettings
    from .visualize import label_shares

    try:  # checked before the model is loaded: a typo should not cost a model load
        spec = parse_label_spec(args.labels)
    except ValueError as exc:
        raise SystemExit(f"--labels: {exc}")
    image = read_image(args.image)
    # One image: eager (a traced graph, ~0.6 s to build for the default model, would be used once)
    segmenter = segmenter_from_args(args, threshold=args.threshold, trace=False)
    # The frame pipeline the node runs: the same label policy, inference path and overlay.
    pipeline = FramePipeline(segmenter, PipelineSettings(
        working_size=segmenter.working_size, scales=segmenter.scales, flip=segmenter.flip,
        threshold=segmenter.threshold, overlay=True))
    labels = pipeline.set_labels(spec).labels
    result = pipeline.process(image, color_order="bgr")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(args.out, result.overlay[:, :, ::-1]):
        raise SystemExit(f"cannot write {args.out}")
    if args.mask:
        write_label_png(args.mask, result.label_map, len(labels))
    shares = label_shares(result.label_map, len(labels))
    width = max(len(label) for label in labels)
    for label, share in sorted(zip(labels, shares), key=lambda item: -item[1]):
        print(f"{label:<{width}}  {100 * share:6.2f}%")
    if (result.label_map < 0).any():
        print(f"{'(no label)':<{width}}  {100 * (result.label_map < 0).mean():6.2f}%")
    _LOG.info("timings (ms): %s", {k: round(v, 1) for k, v in result.timings_ms.items()})
    return 0


def cmd_refer(args: argparse.Namespace) -> int:
    import cv2

    from .inference import clean_labels, parse_labels
    from .referring import ZeroShotReferrer, parse_expression
    from .referring.vocabulary import model_vocabulary
    from .visualize import render_referring

    try:
        parse_expression(args.expression)
        context = clean_labels(parse_labels(args.labels)) if args.labels else None
    except ValueError as exc:
        raise SystemExit(f"lang-seg refer: {exc}")
    image = read_image(args.image)
    depth = None
    if args.depth:
        depth = cv2.imread(args.depth, cv2.IMREAD_UNCHANGED)
        if depth is None:
            raise SystemExit(f"cannot read depth image {args.depth}")
        depth = depth.astype(np.float32) * args.depth_scale
    segmenter = segmenter_from_args(args)
    if args.lts:
        from .referring import load_lts
        from .referring.lts_referrer import LTSReferrer

        referrer = LTSReferrer(load_lts(args.lts, segmenter.model, device=segmenter.device),
                               min_score=0.5 if args.min_score is None else args.min_score)
        result = referrer.refer(image, args.expression, color_order="bgr")
    else:
        # Without --labels the phrase competes with the model's own vocabulary (its training
        # names; ADE20K's 150 classes for official checkpoints), never with "other" alone.
        vocabulary = model_vocabulary(segmenter, args.checkpoint)
        referrer = ZeroShotReferrer(segmenter, vocabulary=vocabulary,
                                    **({} if args.min_score is None else {"min_score": args.min_score}))
        result = referrer.refer(image, args.expression, color_order="bgr", depth=depth, labels=context)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(args.out, result.mask.astype(np.uint8) * 255):
        raise SystemExit(f"cannot write {args.out}")
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_json(), indent=2))
    if args.overlay:
        caption = (f"{args.expression}: {result.score:.2f}" if result.found
                   else f"{args.expression}: not found ({result.reason})")
        overlay = render_referring(image[:, :, ::-1], result.mask, result.bbox, caption)
        Path(args.overlay).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(args.overlay, overlay[:, :, ::-1])
    if result.found:
        print(f"found {result.query.category!r} (score {result.score:.2f}, box {list(result.bbox)}): {result.reason}")
    else:
        print(f"not found: {result.reason}")
    return 0


def cmd_eval_refer(args: argparse.Namespace) -> int:
    """Referring on real frames: expressions generated from the ground-truth label maps
    (`lang_seg_ros.data.referring_camvid`), scored by `lang_seg_ros.referring.benchmark`."""

    from .data.datasets import CAMVID_IGNORE
    from .data.referring_camvid import CAMVID_THINGS, GENERATORS, camvid_frames, generate
    from .inference import clean_labels, parse_labels
    from .referring import ZeroShotReferrer
    from .referring.benchmark import evaluate_referring, print_report
    from .referring.vocabulary import model_vocabulary

    context = clean_labels(parse_labels(args.labels)) if args.labels else None
    things = dict(CAMVID_THINGS)
    if args.things:
        try:
            things = {name.strip(): int(cid) for name, cid in (item.split("=") for item in args.things.split(","))}
        except ValueError:
            raise SystemExit(f"--things: expected 'name=id, ...', got {args.things!r}") from None
    segmenter = segmenter_from_args(args)
    if args.lts and args.choose_thresholds:
        raise SystemExit("eval-refer: --choose-thresholds tunes the zero-shot path, not --lts")
    if args.save_chosen and not args.choose_thresholds:
        raise SystemExit("eval-refer: --save-chosen writes the thresholds --choose-thresholds chooses")
    if args.save_chosen:  # before a sweep of minutes, not after it
        from .model.checkpoint import own_checkpoint

        try:
            own_checkpoint(args.checkpoint)
        except ValueError as exc:
            raise SystemExit(f"eval-refer: --save-chosen: {exc}") from None
    if args.lts:
        from .referring import load_lts
        from .referring.lts_referrer import LTSReferrer

        lts = LTSReferrer(load_lts(args.lts, segmenter.model, device=segmenter.device),
                          min_score=0.5 if args.min_score is None else args.min_score)

        def refer_many(image, expressions):
            return [lts.refer(image, e, color_order="bgr") for e in expressions]
    else:
        referrer = ZeroShotReferrer(segmenter, vocabulary=model_vocabulary(segmenter, args.checkpoint),
                                    **({} if args.min_score is None else {"min_score": args.min_score}))

        def refer_many(image, expressions):
            return referrer.refer_many(image, expressions, color_order="bgr", labels=context)

    generators = GENERATORS if args.generator == "both" else (args.generator,)
    unlabelled_id = None if args.things else CAMVID_IGNORE  # other id schemes: no known unlabelled id
    frames = ((read_image(str(path)), generate(label_map, name, generators, seed=args.seed, min_area=args.min_area,
                                               things=things, worded=args.worded, unlabelled_id=unlabelled_id))
              for name, path, label_map in camvid_frames(args.images, args.masks, args.limit, args.every))
    if not args.no_progress:  # minutes on a CPU: show where it is
        from tqdm import tqdm

        total = len(list(camvid_frames(args.images, args.masks, args.limit, args.every, read=False)))
        frames = tqdm(frames, desc="eval-refer", unit="frame", total=total)
    if args.choose_thresholds:
        from .referring.benchmark import choose_thresholds, print_threshold_choice

        choice = choose_thresholds(referrer, frames, labels=context)
        print_threshold_choice(choice, args.json)
        if args.save_chosen:
            from .model import with_referring_thresholds

            try:
                saved = with_referring_thresholds(args.checkpoint, args.save_chosen, choice["chosen"])
            except ValueError as exc:
                raise SystemExit(f"eval-refer: --save-chosen: {exc}") from None
            print(f"wrote {saved}: {args.checkpoint or 'default'} with these thresholds")
        return 0
    report = evaluate_referring(refer_many, frames, keep_cases=bool(args.json))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
    print_report(report)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """The image branch as ONNX, labels as a run-time input (`inference.backends.onnx_export`)."""
    from .inference.backends.onnx_export import export_onnx
    from .model import load_checkpoint

    if args.dynamic and (args.height or args.width):
        raise SystemExit("export: give --height/--width or --dynamic, not both")
    model = load_checkpoint(args.checkpoint, **block_overrides(args))  # None: the embedded default
    height, width = args.height or 384, args.width or 480
    info = export_onnx(model, args.out, height, width, dynamic=args.dynamic, precision=args.precision,
                       outputs=args.outputs)
    size = "dynamic size" if info.size is None else f"{info.size[0]}x{info.size[1]}"
    extra = f" and {info.text_weights}" if info.text_weights.is_file() else ""
    print(f"wrote {info.path}{extra} ({info.outputs}, {size}, {info.precision}; labels dynamic)")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    import torch

    from .model import convert_checkpoint

    dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    path = convert_checkpoint(args.src, args.dst, dtype=dtype, **block_overrides(args))
    print(f"wrote {path}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """The architecture (only the fields it uses) and size of a checkpoint or an exported .onnx."""
    if str(args.checkpoint).endswith(".onnx"):
        from .inference.backends.onnx_export import read_onnx_info

        info = read_onnx_info(args.checkpoint)
        size = list(info.size) if info.size else "dynamic"
        print(json.dumps({"format": "onnx", "outputs": info.outputs, "precision": info.precision,
                          "input_size": size, "head_block": info.has_head_block,
                          "config": info.config.summary()}, indent=2))
        return 0
    from .model import load_checkpoint

    model = load_checkpoint(args.checkpoint, **block_overrides(args))
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"parameters": params, "config": model.config.summary()}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lang-seg", description="Language-driven semantic segmentation (LSeg).")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    seg = sub.add_parser("segment", help="segment an image against a label set")
    seg.add_argument("image")
    seg.add_argument("--labels", required=True, help='comma-separated, e.g. "dog, grass, other"')
    seg.add_argument("--out", required=True, help="colour overlay with legend (PNG/JPEG)")
    seg.add_argument("--mask", help="class-id PNG (value i = i-th label; 255/65535 = none)")
    seg.add_argument("--threshold", type=float, default=0.0, help="min softmax probability for a label")
    add_model_arguments(seg)
    seg.set_defaults(func=cmd_segment)

    ref = sub.add_parser("refer", help="mask of the one object a referring expression names")
    ref.add_argument("image")
    ref.add_argument("expression", help='e.g. "the car on the left"')
    ref.add_argument("--out", required=True, help="mask PNG: 255 on the object, 0 elsewhere (all 0: not found)")
    ref.add_argument("--json", help="write found, score, bbox [x0, y0, x1, y1] (half-open pixels), reason")
    ref.add_argument("--labels", help="context label set the phrase competes with (default: the model's "
                                      "vocabulary: its training names, or ADE20K's 150 classes)")
    ref.add_argument("--min-score", type=float, help="min mean probability of the object (default: the referrer's, "
                                                     "chosen on CamVid train)")
    ref.add_argument("--depth", help="depth image aligned with IMAGE, for nearest/farthest")
    ref.add_argument("--depth-scale", type=float, default=0.001, help="metres per depth unit (default: mm)")
    ref.add_argument("--overlay", help="also write the image with the object highlighted")
    ref.add_argument("--lts", help="a trained Locate-then-Segment checkpoint (on --checkpoint's model) "
                                   "instead of the zero-shot path")
    add_model_arguments(ref)
    # Referring measured best at 1.5x the CamVid frame's long side (docs/referring.md).
    ref.set_defaults(func=cmd_refer, working_size=REFER_WORKING_SIZE)

    evr = sub.add_parser("eval-refer", help="referring on real frames: expressions generated from label maps")
    evr.add_argument("--images", required=True, help="folder of RGB frames (CamVid layout)")
    evr.add_argument("--masks", required=True, help="folder of label PNGs with the same file names")
    evr.add_argument("--json", help="write the report (overall, per template, per category, every case)")
    evr.add_argument("--limit", type=int, help="first N frames only")
    evr.add_argument("--every", type=int, default=1, help="every N-th frame only (a subset spread over sequences)")
    evr.add_argument("--generator", default="both", choices=["named", "pieces", "both"],
                     help="expression generator(s): named instances, every visible piece, or both (default)")
    evr.add_argument("--worded", type=float, default=0.25,
                     help="share of positive expressions worded with held-out wordings (default 0.25)")
    evr.add_argument("--choose-thresholds", action="store_true",
                     help="sweep the zero-shot thresholds on these frames (use train frames) and print the best")
    evr.add_argument("--save-chosen", metavar="OUT.safetensors",
                     help="with --choose-thresholds: write a copy of --checkpoint whose config carries the chosen "
                          "thresholds (the referrer then uses them with that file)")
    evr.add_argument("--labels", help="context label set (default: the model's vocabulary)")
    evr.add_argument("--things", help="thing classes as 'name=id, ...' (default: car=8, pedestrian=9, bicyclist=10)")
    evr.add_argument("--min-area", type=int, default=400, help="smallest ground-truth instance, pixels")
    evr.add_argument("--min-score", type=float, help="min mean probability of the object (default: the referrer's)")
    evr.add_argument("--seed", type=int, default=0, help="seed of the absent-category picks")
    evr.add_argument("--lts", help="score a Locate-then-Segment checkpoint instead of the zero-shot path")
    evr.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_arguments(evr)
    evr.set_defaults(func=cmd_eval_refer, working_size=REFER_WORKING_SIZE)

    exp = sub.add_parser("export", help="export the image branch to ONNX, the label set stays a run-time input")
    exp.add_argument("out", help="the .onnx file to write")
    exp.add_argument("--checkpoint", type=checkpoint_argument, help=CHECKPOINT_HELP)
    exp.add_argument("--height", type=int, help="input height, a multiple of 32 (default 384)")
    exp.add_argument("--width", type=int, help="input width, a multiple of 32 (default 480)")
    exp.add_argument("--dynamic", action="store_true", help="any input size (checked against torch at two sizes)")
    exp.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    exp.add_argument("--outputs", default="logits", choices=["logits", "embeddings"],
                     help="logits: inputs image + text_features (N dynamic); embeddings: pixel embeddings only")
    add_block_arguments(exp)
    exp.set_defaults(func=cmd_export)

    conv = sub.add_parser("convert", help="official lang-seg .ckpt -> lang_seg_ros .safetensors")
    conv.add_argument("src")
    conv.add_argument("dst")
    conv.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    add_block_arguments(conv)
    conv.set_defaults(func=cmd_convert)

    info = sub.add_parser("info", help="print a checkpoint's architecture")
    info.add_argument("checkpoint", type=checkpoint_argument, help=CHECKPOINT_HELP)
    add_block_arguments(info)
    info.set_defaults(func=cmd_info)

    try:  # training and evaluation commands live with the training code
        from .train.commands import register
    except ImportError:
        pass
    else:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quiet_openmp()  # before torch loads, as the node does
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"lang-seg: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
