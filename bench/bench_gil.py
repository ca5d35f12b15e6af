"""The torch image branch beside other Python threads: eager PyTorch against the traced graph.

    python bench/bench_gil.py                      # default model, 480x384, fp32, one thread
    python bench/bench_gil.py --threads 2 --size 384x480

Eager PyTorch takes the GIL between its operators; in the node the finisher and the executor are
Python threads too. This times the default model's image branch (`TorchBackend.decode`, median
of --iters calls) alone, beside a thread that runs 10 ms of Python every 130 ms (about what the
node's finisher does per frame), and beside a thread running Python without pause, once eager
(`Segmenter(trace=False)`) and once as the traced graph (the default), in this one run. The node
sets OMP_WAIT_POLICY=PASSIVE; so does this script unless you set it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from _machine import cpu_name  # noqa: E402 - bench/_machine.py
from lang_seg_ros.inference import Segmenter  # noqa: E402


def python_load(stop: threading.Event, busy_s: float, pause_s: float) -> None:
    """Pure-Python work (it holds the GIL) for `busy_s`, then a pause of `pause_s`, until stopped."""
    while not stop.is_set():
        start = time.perf_counter()
        while time.perf_counter() - start < busy_s:
            {i: [i] * 3 for i in range(100)}
        if pause_s:
            time.sleep(pause_s)


def timed(decode, images: torch.Tensor, iters: int, load: tuple[float, float] | None) -> float:
    stop = threading.Event()
    thread = threading.Thread(target=python_load, args=(stop, *load), daemon=True) if load else None
    if thread:
        thread.start()
    times = []
    try:
        with torch.inference_mode():
            for _ in range(iters):
                start = time.perf_counter()
                decode(images)
                times.append((time.perf_counter() - start) * 1e3)
    finally:
        stop.set()
        if thread:
            thread.join()
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="384x480", help="HxW of the padded model input")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iters", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.size.lower().split("x"))
    images = torch.randn(1, 3, height, width)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__}, {args.threads} thread(s); "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
    print(f"default model image branch, {height}x{width}, fp32; median of {args.iters} calls (ms)")
    loads = {"alone": None, "beside 10 ms of Python / 130 ms": (0.010, 0.120), "beside busy Python": (0.020, 0.0)}
    print(f"{'graph':>8} " + " ".join(f"{name:>32}" for name in loads))
    for graph in ("eager", "traced"):
        backend = Segmenter(device="cpu", trace=graph == "traced").backend
        with torch.inference_mode():
            for _ in range(3):  # warm-up (and the trace)
                backend.decode(images)
        print(f"{graph:>8} " + " ".join(f"{timed(backend.decode, images, args.iters, load):>32.1f}"
                                          for load in loads.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
