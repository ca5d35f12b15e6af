"""Torture the node as a robot's network might: malformed and odd messages of every kind, a
flood of valid frames, a label change every frame, checkpoint swaps, bad parameters, SIGINT.

    python bench/torture.py                                   # 5,000 messages, seed 0
    python bench/torture.py --messages 10000 --seed 3 --duration 120 --json out/torture.json
    python bench/torture.py --soak 3600 --out out/soak        # 1-hour soak: CSV + PNG every 10 s
    python bench/torture.py --model default --size 640x480 --messages 1500 --duration 90

The node runs as a user starts it (`python -m lang_seg_ros.ros.node --ros-args --params-file
config/segment.yaml ...`, its own process and session, a random ROS_DOMAIN_ID, discovery on
this host: `test/ros/harness.py`'s `NodeProcess`), twice by default: one on raw `image` (with
`use_depth` and `publish_cloud`, so `depth` and both CameraInfo topics are fuzzed too) and one
on `image/compressed` (with `overlap_postprocessing: on`, the finisher thread a GPU gets).
This process is an ordinary DDS participant that publishes and calls services; a second
thread spins its executor.

Phases (per run): start-up; baseline (frames one at a time: the unloaded FPS and latency); fuzz
(`--messages` messages from `random.Random(--seed)`, within `--duration` s: malformed and odd
Images (with `--big WxH`, big valid frames among them), CompressedImages (bombs, garbage, other
formats), depth Images, CameraInfos, label sets on the topic and the service, referring
expressions on the topic and the `refer` service, parameter sets with bad values, valid frames
each after a new label set, checkpoint swaps (another valid one, a broken file, a truncated file,
a directory, a missing path, a misspelt embedded model's name) at fixed points; and round two's
classes: extreme but finite geometry (CameraInfos with fx = 5e-324, 1e-40 or 1e308, cx = 1e308, a
1x1 calibration; 32FC1 depth of 3e38 m beside valid depth) and label sets and expressions with
10^4-10^5 spaces); text probe (the next frame after three normal label sets and after three with a
label of 10^4-10^5 spaces, each waited for); storm (`--storm` set_labels and refer calls fired at
once, valid frames at 5 Hz meanwhile: every call answered or refused with a reason, the longest
gap between answered frames); flood (valid frames at `--flood` x the baseline FPS, a new label set
before each, malformed ones between); liveness (one more valid frame must be answered); end (a
`scales` list of 10,000 values set on the raw node, a frame in flight, then SIGINT to every node:
exit code and time).

How malformed input is told apart: every message gets a unique stamp; valid and "odd but valid"
frames carry frame_id `cam` / `odd_<kind>` and are remembered with their size, malformed ones
`bad_<kind>`, depth frames `depth_cam` / `bad_depth_<kind>`. Every output of the node (all the
topics it publishes, discovered from the graph, but `current_labels` and `/diagnostics`) must
carry the stamp and frame_id of a valid input (the cloud: the frame_id of a valid depth
frame), each at most once; `segmentation` must name a label set this process sent (parsed by
the core's own policy, `lang_seg_ros.inference.labels`), with one label set per
`label_set_id`, a mask of the input's size whose values index those labels, regions whose
label is `labels[label_index]`, and stamps and `sequence` that only increase (nothing stale
re-published); its `depth_header` must be a valid depth frame's.

Invariants reported: alive (the process never exited, and answers a frame at the end), no
output for malformed input, outputs consistent with their label set, no NaN / inf in any float
of the segmentation, 3D and referring outputs (`aligned_points`: NaN only as a whole point where
depth is invalid) and `is_dense` true exactly when every point is finite, service storms
answered, long text answered like a normal label set (3x + 0.5 s), bad parameters refused,
peak RSS (VmHWM, reset by /proc/PID/clear_refs when the fuzz starts, and VmRSS sampled every
0.25 s) within start RSS + `--rss-budget` MiB, SIGINT exit code 0. Also: the time this process
takes to refuse each malformed image in `lang_seg_ros.ros.image_conversion` (the node's own
code, the same call), numpy warnings and tracebacks in the node's log, FPS and latency under
the flood relative to the baseline.

`--soak S`: after the fuzz, S seconds of valid frames at the baseline rate with one malformed
message in ten and a label change every 10 s; every 10 s the node's VmRSS / VmHWM, the FPS and
latency p50 / p95 are appended to OUT/soak.csv, and OUT/soak.png is drawn (matplotlib, if
installed). The RSS slope after the first 20 % is reported in MiB per 10 minutes.

The code: this file is the command line; the harness is `bench/torture_lib/` (inputs in
`messages.py`, node processes in `nodes.py`, sending in `sending.py`, the checks in
`invariants.py`, the phases in `runner.py`, the report and soak record in `report.py`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from torture_lib.runner import Options, Torture  # bench/torture_lib/: the harness, one module per concern


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=5000, help="fuzzed messages (default 5000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duration", type=float, default=90.0, help="s: the fuzz phase ends after this (default 90)")
    p.add_argument("--flood", type=float, default=10.0, help="flood rate as a multiple of the baseline FPS")
    p.add_argument("--flood-seconds", type=float, default=10.0)
    p.add_argument("--soak", type=float, default=0.0, metavar="SECONDS", help="soak after the fuzz (CSV + PNG)")
    p.add_argument("--inputs", default="raw,compressed", help="raw, compressed or both")
    p.add_argument("--model", choices=("tiny", "default"), default="tiny",
                   help="tiny: random tiny models at working_size 128 (fast); default: the embedded default "
                        "model at config/segment.yaml's working_size (the swaps reload it)")
    p.add_argument("--storm", default="300,100", metavar="SET_LABELS,REFER",
                   help="calls fired at once per node after the fuzz (default 300,100; 0,0: none)")
    p.add_argument("--checkpoint", help="a .safetensors the node loads (default: a tiny random model)")
    p.add_argument("--alt-checkpoint", help="a second valid checkpoint for the swaps")
    p.add_argument("--size", default="160x120", help="valid frames, WxH")
    p.add_argument("--big", help="also send big valid frames of WxH among the odd ones, e.g. 1920x1080 (peak RSS "
                   "grows with the largest frame accepted: docs/ros.md, Memory and floods)")
    p.add_argument("--no-swaps", action="store_true")
    p.add_argument("--no-dos", action="store_true", help="skip scales=[1.0]*10000 before SIGINT")
    p.add_argument("--rss-budget", type=float, default=300.0, help="MiB above the start RSS (default 300)")
    p.add_argument("--out", type=Path, default=Path("out/torture"), help="node logs, soak CSV/PNG")
    p.add_argument("--json", type=Path, help="write the report as JSON")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                   help="extra node parameter (YAML value), e.g. -p working_size:=256")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    import yaml
    width, height = (int(v) for v in args.size.lower().split("x"))
    options = Options(messages=args.messages, seed=args.seed, duration=args.duration, flood=args.flood,
                      flood_seconds=args.flood_seconds, size=(width, height),
                      big=tuple(int(v) for v in args.big.lower().split("x")) if args.big else None,
                      inputs=tuple(x.strip() for x in args.inputs.split(",") if x.strip()),
                      checkpoint=args.checkpoint, alt_checkpoint=args.alt_checkpoint, swaps=not args.no_swaps,
                      dos=not args.no_dos, rss_budget_mib=args.rss_budget, soak=args.soak, out=args.out,
                      node_params={k: yaml.safe_load(v) for k, v in (x.split(":=", 1) for x in args.param)},
                      verbose=args.verbose, model=args.model,
                      storm=tuple(int(v) for v in args.storm.split(",")))
    from _machine import cpu_name  # bench/_machine.py
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; ROS_DOMAIN_ID {os.environ.get('ROS_DOMAIN_ID')}")
    report = Torture(options).run()
    print(report.summary())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_json(), indent=1, default=str))
    return 0 if all(ok for ok, _ in report.checks().values()) else 1


if __name__ == "__main__":
    sys.exit(main())
