"""`bench_node.py --cameras 1 2 4`: several cameras on one node against one node per camera.

For each N: one node with `cameras: [cam0, ..., camN-1]` (N = 1: a plain single-camera node),
then N separate single-camera nodes started together; every camera gets CamVid frames at --rate
(one publishing thread, the N frames of a tick back to back, as N drivers would); per camera
the FPS and the end-to-end latency p50 / p95 over the window, then the aggregate FPS and the
peak RSS summed over the node processes. Default model and the node's other settings as the
"default-20" case (regions, region masks, overlay viewed).
"""
from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["run_cameras"]


def _summary(answers: dict[str, list[tuple[int, int]]], published: dict[str, set[int]], t0: int, t1: int
             ) -> dict[str, Any]:
    """Per camera FPS and latency (ms) of the frames stamped in [t0, t1)."""
    from bench_node import percentile

    seconds = (t1 - t0) / 1e9
    rows = {}
    for camera, got in answers.items():
        window = [(rx, stamp) for rx, stamp in got if t0 <= stamp < t1 and stamp in published[camera]]
        e2e = [(rx - stamp) / 1e6 for rx, stamp in window]
        rows[camera] = {"fps": len(window) / seconds, "p50": percentile(e2e, 50), "p95": percentile(e2e, 95)}
    return rows


def _run(bench, nodes: list, topics: list[tuple[Any, str]], msgs: list, args: argparse.Namespace) -> dict[str, Any]:
    """Publish to every (node, camera prefix) at args.rate; returns per camera figures and RSS."""
    answers: dict[str, list[tuple[int, int]]] = {}
    published: dict[str, set[int]] = {}
    lock = threading.Lock()
    subs, pubs, viewers = [], [], []
    for node, prefix in topics:
        key = f"{node.namespace}/{prefix}"
        answers[key], published[key] = [], set()

        def on_segmentation(msg, key=key) -> None:
            rx = time.time_ns()
            with lock:
                answers[key].append((rx, msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec))

        name = f"{prefix}/" if prefix else ""
        subs.append(bench.node.create_subscription(bench.Segmentation, node.topic(f"{name}segmentation"),
                                                   on_segmentation, bench.out_qos))
        viewers.append(bench.node.create_subscription(bench.Image, node.topic(f"{name}overlay"), lambda m: None,
                                                      bench.out_qos))
        pubs.append((key, bench.node.create_publisher(bench.Image, node.topic(f"{name}image"), bench.image_qos)))
    last = [0]

    def publish_tick(i: int) -> None:
        for key, pub in pubs:
            msg = msgs[i % len(msgs)]
            ns = max(time.time_ns(), last[0] + 1000)
            last[0] = ns
            msg.header.stamp.sec, msg.header.stamp.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
            pub.publish(msg)
            with lock:
                published[key].add(ns)

    def all_answered() -> bool:
        with lock:
            return all(answers.values())

    try:
        deadline = time.monotonic() + args.start_timeout
        i = 0
        while not all_answered():  # every node loaded and every camera matched
            if time.monotonic() > deadline:
                raise RuntimeError("the nodes did not answer every camera in time:\n"
                                   + "\n".join(n.log_tail(1500) for n in nodes))
            publish_tick(i)
            i += 1
            for node in nodes:
                bench.spin(0.5 / len(nodes), node)
        stop = threading.Event()

        def publisher() -> None:
            start, k = time.monotonic(), 0
            while not stop.is_set():
                publish_tick(i + k)
                k += 1
                delay = start + k / args.rate - time.monotonic()
                if delay > 0:
                    stop.wait(delay)
                elif delay < -1.0:
                    start, k = time.monotonic(), 0

        thread = threading.Thread(target=publisher, daemon=True)
        thread.start()
        try:
            bench.spin(args.warmup, nodes[0])
            t0 = time.time_ns()
            bench.spin(args.seconds, nodes[0])
            t1 = time.time_ns()
        finally:
            stop.set()
            thread.join(5)
        bench.spin(args.drain, nodes[0])
        with lock:
            rows = _summary(answers, published, t0, t1)
        rss = sum(node.peak_rss_mib()[0] for node in nodes)
        return {"cameras": rows, "peak_rss_mib": rss}
    finally:
        for sub in subs + viewers:
            bench.node.destroy_subscription(sub)
        for _, pub in pubs:
            bench.node.destroy_publisher(pub)


def run_cameras(args: argparse.Namespace, counts: list[int], workdir: Path) -> list[dict[str, Any]]:
    """The camera table: for each N, one N-camera node, then N single-camera nodes."""
    import os

    from bench_node import LABELS_20, Bench, Case, NodeProcess, image_messages, load_frames

    frames = load_frames(args.frames, args.size, args.max_frames)
    bench = Bench()
    msgs = image_messages(frames, bench.Image)
    case = Case("default-20", "default", tuple(LABELS_20))
    params = case.node_params("", args)
    results = []
    print(f"{'setup':<26} {'per camera FPS':>26} {'aggregate':>9} {'p50 / p95 ms (worst camera)':>28} {'RSS MiB':>8}")
    try:
        for n in counts:
            names = [f"cam{i}" for i in range(n)]
            setups = [("one node", [NodeProcess(f"/cams_{os.getpid()}_{n}", {**params, "cameras": names} if n > 1
                                                else params, workdir)], names if n > 1 else [""])]
            if n > 1:
                setups.append((f"{n} nodes", [NodeProcess(f"/cams_{os.getpid()}_{n}_node{i}", params, workdir)
                                              for i in range(n)], [""] * n))
            for label, nodes, prefixes in setups:
                topics = list(zip(nodes, prefixes)) if len(nodes) > 1 else [(nodes[0], p) for p in prefixes]
                try:
                    out = _run(bench, nodes, topics, msgs, args)
                finally:
                    for node in nodes:
                        node.stop()
                cams = out["cameras"]
                fps = [c["fps"] for c in cams.values()]
                worst = max(cams.values(), key=lambda c: c["p95"])
                row = {"cameras": n, "setup": label, "per_camera": cams, "aggregate_fps": sum(fps),
                       "fps_spread": (max(fps) - min(fps)) / max(max(fps), 1e-9), "peak_rss_mib": out["peak_rss_mib"]}
                results.append(row)
                setup, per_camera = f"{n} camera(s), {label}", " ".join(f"{f:.2f}" for f in fps)
                latency = f"{worst['p50']:.0f} / {worst['p95']:.0f}"
                print(f"{setup:<26} {per_camera:>26} {sum(fps):>9.2f} {latency:>28} {out['peak_rss_mib']:>8.0f}",
                      flush=True)
        single = next((r for r in results if r["cameras"] == 1), None)
        if single is not None:
            fps1 = single["aggregate_fps"]
            print(f"targets: one node's RSS vs the 1-camera node; aggregate FPS vs the 1-camera node's "
                  f"({fps1:.2f}); per-camera FPS spread; p95 vs 2 x N / single-camera FPS")
            for r in results:
                if r["setup"] == "one node" and r["cameras"] > 1:
                    limit = 2e3 * r["cameras"] / fps1
                    worst = max(c["p95"] for c in r["per_camera"].values())
                    print(f"  {r['cameras']} cameras: RSS {r['peak_rss_mib'] / single['peak_rss_mib']:.2f}x, aggregate "
                          f"{r['aggregate_fps'] / fps1:.2f}x, spread {100 * r['fps_spread']:.0f} %, p95 {worst:.0f} ms "
                          f"(limit {limit:.0f} ms)")
    finally:
        bench.close()
    return results
