"""The image-branch backends side by side, in one run: latency per frame, batch throughput, the
first frame with and without warm-up, and agreement of the label maps with eager torch.

    python bench/bench_backends.py                                   # default model, 360x480, CPU
    python bench/bench_backends.py --backends torch onnxruntime --sizes 480x640 --batch 4
    python bench/bench_backends.py --device cuda --backends torch onnxruntime tensorrt --precision fp16

Every backend segments the same frames (CamVid val when present, else random) with the same
labels through `Segmenter`; ratios are against the first backend listed, measured in this run.
An ONNX backend runs the checkpoint exported once (`lang-seg export`, cached); export time is
not counted. Backends that cannot run here are reported and skipped.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from _machine import cpu_name  # bench/_machine.py (scripts run as python bench/NAME.py)

import numpy as np
import torch

from lang_seg_ros.inference import Segmenter

LABELS = ["sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car", "pedestrian",
          "bicyclist", "person", "truck", "bus", "traffic light", "vegetation", "terrain", "wall", "rider", "other"]
CAMVID_VAL = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "camvid" / "val"


def frames(height: int, width: int, count: int) -> list[np.ndarray]:
    import cv2

    paths = sorted(CAMVID_VAL.glob("*.png"))[:count]
    if paths:
        return [cv2.resize(cv2.imread(str(p)), (width, height), interpolation=cv2.INTER_AREA) for p in paths]
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="default: the embedded model")
    parser.add_argument("--backends", nargs="+", default=["torch", "onnxruntime", "openvino"],
                        help="NAME or NAME:PRECISION (e.g. torch:bf16 openvino:bf16); default precision --precision")
    parser.add_argument("--sizes", nargs="+", default=["360x480"], help="HxW")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--labels", type=int, default=20)
    args = parser.parse_args(argv)
    print(f"machine: {cpu_name()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
          + (f", GPU {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""))
    labels = LABELS[:args.labels]
    for size in args.sizes:
        height, width = (int(v) for v in size.lower().split("x"))
        images = frames(height, width, args.frames)
        print(f"\n{height}x{width}, {len(labels)} labels, {len(images)} frames on {args.device}; ratios vs the first row")
        print(f"{'backend':<16} {'first ms':>9} {'warm first':>10} {'ms/frame':>9} {'FPS':>6} {'x first':>8} "
              f"{'batch FPS':>9} {'agree %':>8}")
        reference, base_ms = None, None
        for spec in args.backends:
            name, _, precision = spec.partition(":")
            precision = precision or args.precision
            try:
                t0 = time.perf_counter()
                segmenter = Segmenter(args.checkpoint, device=args.device, precision=precision,
                                      working_size=max(height, width), backend=name)
                load_s = time.perf_counter() - t0
            except Exception as exc:  # noqa: BLE001 - report and go on with the others
                print(f"{spec:<16} cannot run here: {type(exc).__name__}: {exc}")
                continue
            segmenter.set_labels(labels)
            t0 = time.perf_counter()
            segmenter.segment(images[0], "bgr")
            first_ms = (time.perf_counter() - t0) * 1e3
            fresh = Segmenter(args.checkpoint, device=args.device, precision=precision,
                              working_size=max(height, width), backend=name)
            fresh.warmup([(height, width)])
            fresh.set_labels(labels)
            t0 = time.perf_counter()
            fresh.segment(images[1 % len(images)], "bgr")
            warm_first_ms = (time.perf_counter() - t0) * 1e3
            del fresh
            times, maps = [], []
            for image in images:
                t0 = time.perf_counter()
                maps.append(segmenter.segment(image, "bgr").label_map)
                times.append((time.perf_counter() - t0) * 1e3)
            ms = statistics.median(times)
            batch = [images[i % len(images)] for i in range(args.batch)]
            segmenter.segment_batch(batch, "bgr")
            t0 = time.perf_counter()
            segmenter.segment_batch(batch, "bgr")
            batch_fps = args.batch / (time.perf_counter() - t0)
            if reference is None:
                reference, base_ms = maps, ms
            agree = 100 * np.mean([(a == b).mean() for a, b in zip(maps, reference)])
            print(f"{spec:<16} {first_ms:9.0f} {warm_first_ms:10.0f} {ms:9.1f} {1e3 / ms:6.2f} {base_ms / ms:8.2f} "
                  f"{batch_fps:9.2f} {agree:8.2f}   (load {load_s:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
