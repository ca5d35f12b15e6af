"""Object-level post-processing cost per frame: `split_instances` (watershed split on and off) and
`classify_by_mask_pooling`, on CamVid val label maps resized (nearest) to each size. Prints the
machine so figures are never quoted without it.

    python bench/bench_objects.py --threads 1
    python bench/bench_objects.py --sizes 360x480 640x480 --frames 20 --camvid ../shared/datasets/camvid

Each case is timed once per frame (after one warm-up call) over `--frames` frames spread over the
val split, `--repeats` times; the median, 90th percentile and worst are in milliseconds. Pixel
features for pooling are random L2-normalised (C, h, w) maps at stride 2 of the working size (the
segmenter's single-scale output): their values do not change the cost.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

from _machine import cpu_name  # bench/_machine.py (scripts run as python bench/NAME.py)
from typing import Callable

import cv2
import numpy as np

from lang_seg_ros.objects.instances import classify_by_mask_pooling, split_instances

REPO = Path(__file__).resolve().parents[1]
# CamVid label ids: 0 sky, 1 building, 2 pole, 3 road, 4 pavement, 5 tree, 6 sign symbol, 7 fence,
# 8 car, 9 pedestrian, 10 bicyclist, 11 unlabelled (-> no label).
CAMVID_STUFF = (0, 1, 3, 4, 5, 7)
CAMVID_UNLABELLED = 11
CAMVID_CLASSES = 11


def limit_threads(threads: int | None) -> str:
    """Caps OpenCV, BLAS (through threadpoolctl when installed) and torch at `threads`; returns
    what was capped."""
    if threads is None:
        return f"default threads (cv2 {cv2.getNumThreads()})"
    cv2.setNumThreads(threads)
    capped = [f"cv2 {cv2.getNumThreads()}"]
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
        capped.append(f"BLAS {threads}")
    except ImportError:
        capped.append("BLAS not capped (no threadpoolctl; set OPENBLAS_NUM_THREADS)")
    try:
        import torch

        torch.set_num_threads(threads)
        capped.append(f"torch {torch.get_num_threads()}")
    except ImportError:
        pass
    return ", ".join(capped)


def machine(threads: str) -> str:
    cpu = cpu_name()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    import scipy
    import skimage

    return (f"CPU: {cpu}, {os.cpu_count()} cores ({usable} usable); {threads}\n"
            f"numpy {np.__version__}, opencv {cv2.__version__}, scipy {scipy.__version__}, "
            f"scikit-image {skimage.__version__}, Python {platform.python_version()}")


def find_camvid(given: str | None) -> Path:
    candidates = [Path(given)] if given else [REPO / "shared/datasets/camvid", REPO.parent / "shared/datasets/camvid"]
    for path in candidates:
        if (path / "valannot").is_dir():
            return path
    raise SystemExit(f"CamVid val labels not found in {', '.join(str(p / 'valannot') for p in candidates)}")


def load_label_maps(camvid: Path, frames: int) -> list[np.ndarray]:
    """`frames` val label maps spread evenly over the split, (360, 480) int32, -1 = unlabelled."""
    files = sorted((camvid / "valannot").glob("*.png"))
    picks = [files[i] for i in np.linspace(0, len(files) - 1, min(frames, len(files))).round().astype(int)]
    maps = []
    for path in picks:
        label_map = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.int32)
        label_map[label_map == CAMVID_UNLABELLED] = -1
        maps.append(label_map)
    return maps


def time_per_frame(fn: Callable[[int], object], frames: int, repeats: int) -> list[float]:
    fn(0)
    times = []
    for _ in range(repeats):
        for i in range(frames):
            start = time.perf_counter()
            fn(i)
            times.append((time.perf_counter() - start) * 1e3)
    return times


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return f"median {statistics.median(times):7.2f}  p90 {p90:7.2f}  max {ordered[-1]:7.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--camvid", default=None, help="CamVid folder holding valannot/ (default: shared/datasets)")
    parser.add_argument("--sizes", nargs="+", default=["360x480", "640x480"],
                        help="HxW (rows x columns) or WxH as written by cameras; 640x480 means 480 rows")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="cap cv2/BLAS/torch threads (1: one core)")
    parser.add_argument("--min-area", type=int, default=50)
    parser.add_argument("--split-depth", type=float, default=0.3)
    parser.add_argument("--feature-dim", type=int, default=512)
    parser.add_argument("--working-size", type=int, default=480, help="segmenter long side; features at half")
    args = parser.parse_args()

    print(machine(limit_threads(args.threads)))
    camvid = find_camvid(args.camvid)
    base_maps = load_label_maps(camvid, args.frames)
    frames = len(base_maps)
    print(f"{frames} CamVid val label maps from {camvid}, min_area {args.min_area}, split_depth {args.split_depth}, "
          f"{args.repeats} run(s) each; times in ms per frame")
    rng = np.random.default_rng(0)
    text = rng.normal(size=(CAMVID_CLASSES, args.feature_dim)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)

    for size in args.sizes:
        a, b = (int(v) for v in size.lower().split("x"))
        height, width = min(a, b), max(a, b)  # landscape frames: "640x480" and "480x640" alike
        maps = [cv2.resize(m, (width, height), interpolation=cv2.INTER_NEAREST) for m in base_maps]
        print(f"\n{height}x{width} (rows x columns)")
        cases: list[tuple[str, Callable[[int], object]]] = [
            ("split_instances split=True,  street stuff",
             lambda i: split_instances(maps[i], CAMVID_STUFF, args.min_area, args.split_depth, split=True)),
            ("split_instances split=True,  all things",
             lambda i: split_instances(maps[i], (), args.min_area, args.split_depth, split=True)),
            ("split_instances split=False, street stuff",
             lambda i: split_instances(maps[i], CAMVID_STUFF, args.min_area, args.split_depth, split=False)),
            ("split_instances split=False, all things",
             lambda i: split_instances(maps[i], (), args.min_area, args.split_depth, split=False)),
        ]
        for name, fn in cases:
            print(f"  {name:45s} {summary(time_per_frame(fn, frames, args.repeats))}")

        scale = args.working_size / max(height, width)
        h, w = (round(height * scale) + 1) // 2, (round(width * scale) + 1) // 2
        features = rng.normal(size=(args.feature_dim, h, w)).astype(np.float32)
        features /= np.linalg.norm(features, axis=0, keepdims=True)
        for stuff, what in ((CAMVID_STUFF, "street stuff"), ((), "all things")):
            instance_maps = [split_instances(m, stuff, args.min_area, args.split_depth)[0] for m in maps]
            counts = [int(m.max()) for m in instance_maps]
            name = f"classify_by_mask_pooling {what}, K {min(counts)}-{max(counts)}"
            times = time_per_frame(lambda i: classify_by_mask_pooling(instance_maps[i], features, text),
                                   frames, args.repeats)
            print(f"  {name:45s} {summary(times)}   (features {args.feature_dim}x{h}x{w})")


if __name__ == "__main__":
    main()
