"""One prepared GPU check: builds, checks and times the model paths on an NVIDIA GPU, in minutes.

    bash bench/gpu_check.sh                  # = python bench/gpu_check.py, the full table
    python bench/gpu_check.py --quick        # fewer cases (fp16/bf16, eager vs the best compiled path)

Needs PyTorch with CUDA (and onnxruntime-gpu for the ONNX Runtime rows); no ROS, no network:
the models are built with random weights (speed does not depend on them) except the embedded
default model. For each model (ViT-L/16 LSeg at 480x640, the default model at 480x640), precision
(fp32, bf16, fp16), path (eager; torch.compile; torch.compile "reduce-overhead" = CUDA graphs;
ONNX Runtime CUDA) and label count (20, 150) it prints: model FPS (`Segmenter.segment`, label
decision included, synchronised), its ratio to eager fp32 of the same model in this run, and the
ROS-free frame pipeline end to end (`FramePipeline.process` with regions) FPS and p95 latency.
Every path is first checked against eager fp32 (label agreement on the same frame).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_name  # bench/_machine.py

import numpy as np
import torch

from lang_seg_ros.inference import Segmenter
from lang_seg_ros.model import build_model, save_checkpoint
from lang_seg_ros.pipeline import FramePipeline, PipelineSettings

LABELS = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
          "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle", "other"]


def labels(count: int) -> list[str]:
    return LABELS[:count] if count <= len(LABELS) else LABELS + [f"object {i}" for i in range(count - len(LABELS))]


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, iters: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--size", default="480x640", help="HxW")
    parser.add_argument("--device", default="cuda", help="cuda; cpu only to smoke-test this script")
    parser.add_argument("--models", nargs="+", default=["vitl16", "default"], choices=["vitl16", "default", "tiny"])
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing to measure", file=sys.stderr)
        return 1
    height, width = (int(v) for v in args.size.split("x"))
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "none"
    print(f"machine: GPU {gpu}, CPU {cpu_name()}, torch {torch.__version__}")
    try:
        import onnxruntime as ort
        has_ort = "CUDAExecutionProvider" in ort.get_available_providers() or args.device == "cpu"
        print(f"onnxruntime {ort.__version__}, providers {ort.get_available_providers()}")
    except ImportError:
        has_ort = False
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    torch.manual_seed(0)
    builders = {"vitl16": lambda: save_checkpoint(build_model("lseg_vitl16_384"), tmp / "vitl16.safetensors",
                                                  torch.float16),
                "tiny": lambda: save_checkpoint(build_model("lseg_tiny"), tmp / "tiny.safetensors"),
                "default": lambda: None}
    models = {name: builders[name]() for name in args.models}
    precisions = ["bf16", "fp16"] if args.quick else ["fp32", "bf16", "fp16"]
    paths = ["eager", "reduce-overhead"] if args.quick else ["eager", "default", "reduce-overhead", "onnxruntime"]
    counts = [20] if args.quick else [20, 150]
    print(f"\n{'model':<8} {'prec':<5} {'path':<16} {'labels':>6} {'model ms':>9} {'model FPS':>9} {'x eager32':>9} "
          f"{'agree %':>8} {'pipe FPS':>8} {'pipe p95':>8}")
    for name, checkpoint in models.items():
        base_ms, reference = None, {}
        for precision in ["fp32"] + [p for p in precisions if p != "fp32"]:
            for path in paths:
                if path == "onnxruntime" and not has_ort:
                    continue
                if precision == "fp32" and path != "eager" and args.quick:
                    continue
                try:
                    if path == "onnxruntime":
                        segmenter = Segmenter(checkpoint, device=args.device, working_size=max(height, width),
                                              precision="fp16" if precision == "fp16" else "fp32", backend="onnxruntime")
                    else:
                        segmenter = Segmenter(checkpoint, device=args.device, precision=precision,
                                              working_size=max(height, width),
                                              compile=None if path == "eager" else path)
                    segmenter.warmup([(height, width)])
                except Exception as exc:  # noqa: BLE001 - report the row, go on
                    print(f"{name:<8} {precision:<5} {path:<16} failed: {type(exc).__name__}: {str(exc)[:120]}")
                    continue
                for count in counts:
                    segmenter.set_labels(labels(count))
                    try:
                        result = segmenter.segment(frame)
                        ms = statistics.median(timed(lambda: segmenter.segment(frame), args.iters, 3))
                    except Exception as exc:  # noqa: BLE001
                        print(f"{name:<8} {precision:<5} {path:<16} {count:6d} failed: {type(exc).__name__}: "
                              f"{str(exc)[:120]}")
                        continue
                    if precision == "fp32" and path == "eager":
                        reference[count] = result.label_map
                        base_ms = base_ms or ms
                    agree = 100 * (result.label_map == reference[count]).mean() if count in reference else float("nan")
                    pipeline = FramePipeline(segmenter, PipelineSettings(working_size=max(height, width)))
                    pipeline.set_labels(labels(count))
                    e2e = timed(lambda: pipeline.process(frame), args.iters, 3)
                    print(f"{name:<8} {precision:<5} {path:<16} {count:6d} {ms:9.2f} {1e3 / ms:9.1f} "
                          f"{(base_ms or ms) / ms:9.2f} {agree:8.2f} {1e3 / statistics.median(e2e):8.1f} "
                          f"{np.percentile(e2e, 95):8.1f}")
                segmenter = None  # free the GPU memory before the next path
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
