"""Forward latency and throughput per input size and precision, label-encoding cost cached vs
not, and peak memory. Prints the machine so figures are never quoted without it.

    python bench/bench_inference.py --model lseg_vitb32_384 --sizes 360x480 480x640 --precisions fp32 bf16
    python bench/bench_inference.py --model path/to/checkpoint.safetensors --device cuda --precisions fp16
    python bench/bench_inference.py --model default --graphs traced eager       # the torch image branch both ways
    python bench/bench_inference.py --model default-large --precisions fp32 bf16 # the larger embedded model

`--graphs`: the torch backend's image branch as traced graphs (the default, `backends.graphs`) and/or
eager PyTorch, timed one after the other in this run. Latency: one `Segmenter.segment` call (pre-
processing, model, label decision); batch FPS: --batch images through the image branch and the label
logits at stride 2, as the Segmenter runs them.

Models given by name are randomly initialised: speed does not depend on the weights.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

from _machine import cpu_name  # bench/_machine.py (scripts run as python bench/NAME.py)

import numpy as np
import torch

from lang_seg_ros.inference import Segmenter
from lang_seg_ros.model import build_model, list_models, load_checkpoint
from lang_seg_ros.weights import EMBEDDED_MODELS

LABELS = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
          "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle", "other"]


def machine(device: torch.device) -> str:
    cpu = cpu_name()
    text = f"CPU: {cpu}, {torch.get_num_threads()} torch threads; torch {torch.__version__}"
    if device.type == "cuda":
        text += f"; GPU: {torch.cuda.get_device_name(device)}"
    return text


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn, iters: int, device: torch.device, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def peak_memory_mb(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB GPU"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB RSS (process peak)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="lseg_tiny",
                        help=f"a checkpoint path, an embedded model ({', '.join(EMBEDDED_MODELS)}) or one of {list_models()}")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", nargs="+", default=["360x480"], help="HxW of the camera image")
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4, help="batch size for the throughput figure")
    parser.add_argument("--labels", type=int, default=len(LABELS))
    parser.add_argument("--graphs", nargs="+", default=["traced"], choices=["traced", "eager"],
                        help="the torch image branch as traced graphs and/or eager PyTorch")
    args = parser.parse_args()

    model = (load_checkpoint(args.model) if args.model in EMBEDDED_MODELS or Path(args.model).is_file()
             else build_model(args.model).eval())
    labels = [LABELS[i % len(LABELS)] + (f" {i}" if i >= len(LABELS) else "") for i in range(args.labels)]
    segmenter = Segmenter(model, device=args.device)
    device = segmenter.device
    print(machine(device))
    print(f"model: {args.model}; {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters; "
          f"{len(labels)} labels")

    uncached = time_calls(lambda: model.encode_text(labels), max(2, args.iters // 2), device)
    segmenter.set_labels(labels)
    cached = time_calls(lambda: segmenter.text_cache(labels), args.iters, device)
    print(f"label encoding: uncached {1e3 * statistics.median(uncached):.1f} ms, "
          f"cached {1e3 * statistics.median(cached):.3f} ms per label set "
          f"({statistics.median(uncached) / statistics.median(cached):.0f}x)")

    print(f"{'size':>9} {'precision':>9} {'graph':>7} {'working':>9} {'latency ms':>11} {'FPS':>6} {'batch FPS':>9}")
    for precision, graph in ((p, g) for p in args.precisions for g in args.graphs):
        segmenter = Segmenter(model, device=args.device, precision=precision, trace=graph == "traced")
        decode = segmenter.backend.decode
        segmenter.set_labels(labels)
        folded = segmenter.prepare(labels).folded  # the head folded once, as the Segmenter keeps it
        for size in args.sizes:
            h, w = (int(v) for v in size.lower().split("x"))
            image = (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)
            segmenter.working_size = max(h, w)
            latency = statistics.median(time_calls(lambda: segmenter.segment(image), args.iters, device))
            batch = torch.randn(args.batch, 3, (h + 31) // 32 * 32, (w + 31) // 32 * 32, device=device,
                                dtype=segmenter.dtype)
            with torch.inference_mode():
                per_batch = statistics.median(time_calls(
                    lambda: model.decoded_logits(decode(batch), folded=folded), max(1, args.iters // 2), device))
            print(f"{size:>9} {precision:>9} {graph:>7} {max(h, w):>9} {1e3 * latency:>11.1f} {1 / latency:>6.2f} "
                  f"{args.batch / per_batch:>9.2f}")
    print(f"peak memory: {peak_memory_mb(device)}")


if __name__ == "__main__":
    main()
