"""The ROS node under load: frames replayed over DDS at a fixed rate, what comes back measured.

    python bench/bench_node.py                                   # all cases, 30 Hz, 20 s each
    python bench/bench_node.py --seconds 8 --cases tiny-20 default-20
    python bench/bench_node.py --size 640x480 --rate 15 --json out/bench_node.json
  python bench/bench_node.py --size 480x360 --cameras 1 2 4      # one node, several cameras (issue 23)

Per case this script first times the model alone, in this process (sequential
`Segmenter.segment` calls on the same frames with the same labels and settings, after a
warm-up; timed again once the node has stopped, the median over both sets of calls is the
model's figure: the machine's speed drifts), then starts the node in its own process
(`python -m lang_seg_ros.ros.node`, its own process group, a random ROS_DOMAIN_ID, discovery on
this host only, the shared-memory Fast DDS profile), waits until it answers a first frame (model loaded), publishes frames at --rate for a
warm-up and then for the measuring window, and reports one table row:

  model FPS      1000 / median ms of one `Segmenter.segment` call (the model alone, no ROS)
  node FPS       segmentation messages received per second of the measuring window
  % of model     node FPS / model FPS
  e2e p50/p95    end-to-end latency in ms: receive time here minus the input header stamp (the
                 node's own `latency_ms` field, stamp to its publish call, is in --json)
  cost ms        what the node adds to its model: e2e p50 minus the model-alone call minus half a
                 frame period (a frame's mean wait in the node's latest-frame slot)
  ovh p50/p95    node overhead in ms: end-to-end latency minus the model's own time in that frame,
                 i.e. the sum of the node's "preprocess" and "forward" stage timings
  excl. queue    the same without the time the frame spent queued in the node (its "wait" and
                 "handoff" stages: waiting for the model busy with the previous frame, and for the
                 previous frame's publishing): the node's own work plus DDS transport
  pub/ans        frames published during the window / those answered (matched by stamp)
  dropped        published minus answered; "node" = the increase of the node's `dropped_frames`
                 (frames replaced in its one-frame slot before the model got to them)
  RSS MiB        peak resident memory of the node process (VmHWM), read at the end of the case

--repeat N runs the cases N times in turn and prints each case's median and range of the
model's FPS, the node's FPS, % of model, e2e p50 / p95 and cost (also "medians" in --json): on a
shared VM one 12 s window moves by 5-15 %, the model-alone figure as much as the node's.

--json OUT writes {"machine", "code", ..., "rows": [one dict per case: the columns above and more,
e.g. the node's stage medians, its latency_ms field, the CPU cores the node, this script and other
processes used during the window, the node's busiest threads], "samples": [per row, every answer
received: t_s from the window's start (negative = warm-up), e2e_ms, stages_ms, dropped_frames]}.
Rows print "n/a (!)" for the overhead, with a loud warning, when the node's timings lack a
"preprocess" or "forward" stage: no other stage name is taken for the model's time.

Cases: <model>-<labels>[-instances|-noregions], model "default" (the embedded model, checkpoint
"") or "tiny" (a random `lseg_tiny` saved to a temporary .safetensors), 1, 20, 150 or 1024 labels.
--backend and --precision apply to the node and the model-alone figure alike (fp32 by default, so
that figures from machines with and without native bf16 compare).
Regions, region masks, label mask and overlay are on unless "-noregions" (max_regions 0, no
region masks, no overlay); with the overlay on, this script also subscribes to it (the node
renders it only while someone does); "-instances" sets `instances: true` (watershed split).
Frames: the PNGs of --frames (sorted), published as bgr8, optionally resized to --size WxH.
--device (default "auto", as the node) applies to the node and the model-alone figure. The
machine is printed first; this script's own publishing and message decoding share the CPU with
the node (as a real camera driver and consumer would).
"""
from __future__ import annotations

import argparse
import array
import gc
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from _machine import cpu_name  # bench/_machine.py (scripts run as python bench/NAME.py)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FRAMES = ROOT.parent / "shared" / "datasets" / "camvid" / "val"
FASTDDS_PROFILE = ROOT / "config" / "fastdds_shm.xml"
PARAMS_FILE = ROOT / "config" / "segment.yaml"
MODEL_STAGES = ("preprocess", "forward")  # the node's stages that are the model's own time
QUEUE_STAGES = ("wait", "handoff")

# Before rclpy, torch or any DDS participant exists: this run's own domain, this host only,
# passive OpenMP waits (spinning OpenMP threads crawl on a shared 2-core machine).
os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 100))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(FASTDDS_PROFILE)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
os.environ["RCUTILS_COLORIZED_OUTPUT"] = "0"
os.environ["PYTHONUNBUFFERED"] = "1"

LABELS_20 = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "tree", "grass",
    "sky", "person", "bicycle", "car", "truck", "bus", "floor", "door", "window", "other",
]
LABELS_150 = [
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper",
    "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow",
    "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower",
    "book", "hill", "bench", "countertop", "stove", "palm tree", "kitchen island", "computer", "swivel chair",
    "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television", "airplane", "dirt track", "apparel", "pole", "land",
    "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "motorbike", "cradle", "oven", "ball", "food", "step", "tank", "trade name",
    "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "projection screen", "blanket",
    "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen",
    "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
]
assert len(LABELS_20) == 20 and len(set(LABELS_20)) == 20
assert len(LABELS_150) == 150 and len(set(LABELS_150)) == 150

CASES = ("default-20", "default-150", "tiny-20", "tiny-150", "default-20-instances", "default-20-noregions")
#: Label counts a case may name: 20 and 150 are the lists above; 1 is "road"; 1024 is the 150 plus
#: "object 0" ... (LSeg's cost of a label is one row of a matrix product, not a pass per prompt).
LABEL_COUNTS = (1, 20, 150, 1024)


def case_labels(count: int) -> tuple[str, ...]:
    if count == 1:
        return ("road",)
    if count == 20:
        return tuple(LABELS_20)
    return tuple((LABELS_150 + [f"object {i}" for i in range(count)])[:count])


class NodeDied(RuntimeError):
    """The node process exited during a case (the message carries its output's tail)."""


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    name: str
    model: str  # "default" | "tiny"
    labels: tuple[str, ...]
    instances: bool = False
    regions: bool = True

    @staticmethod
    def parse(name: str) -> "Case":
        parts = name.split("-")
        counts = tuple(str(c) for c in LABEL_COUNTS)
        if len(parts) < 2 or parts[0] not in ("default", "tiny") or parts[1] not in counts or \
                any(p not in ("instances", "noregions") for p in parts[2:]):
            raise ValueError(f"unknown case {name!r}: <default|tiny>-<{'|'.join(counts)}>[-instances][-noregions], "
                             f"e.g. {', '.join(CASES)}")
        return Case(name, parts[0], case_labels(int(parts[1])),
                    instances="instances" in parts[2:], regions="noregions" not in parts[2:])

    def node_params(self, checkpoint: str, args: argparse.Namespace) -> dict[str, Any]:
        params: dict[str, Any] = {
            "checkpoint": checkpoint, "device": args.device, "cpu_threads": args.cpu_threads,
            "backend": args.backend, "precision": args.precision,
            "working_size": args.working_size, "labels": ", ".join(self.labels),
            "instances": self.instances, "publish_label_mask": True, "log_throttle_period": 5.0,
            "max_labels": max(512, len(self.labels)),  # the node's default allows 512
            "reliability": "best_effort",
        }
        if self.regions:
            params.update(publish_overlay=True, region_masks=True, max_regions=256)
        else:
            params.update(publish_overlay=False, region_masks=False, max_regions=0)
        for item in args.set or []:  # --set NAME=VALUE: any other node parameter, as YAML
            name, _, value = item.partition("=")
            params[name.strip()] = yaml.safe_load(value)
        return params


@dataclass
class Answer:
    rx_ns: int
    stamp_ns: int
    latency_ms: float
    stages: dict[str, float]
    dropped_frames: int
    sequence: int


@dataclass
class Record:
    """Everything one case saw: published stamps (ns -> publish time ns; warm-up and window) and the answers."""

    published: dict[int, int] = field(default_factory=dict)
    answers: list[Answer] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    first_answer_s: float = float("nan")  # from the node process's start to its first answer


# ---- machine, frames, model ------------------------------------------------------------------
def machine_line(torch) -> str:
    cpu = cpu_name()
    text = (f"machine: {cpu}; {os.cpu_count()} cores; torch {torch.__version__} "
            f"({torch.get_num_threads()} threads); Python {platform.python_version()}; "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    try:
        load = os.getloadavg()
        text += f"; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    except OSError:
        pass
    if torch.cuda.is_available():
        text += f"; GPU: {torch.cuda.get_device_name(0)}"
    return text


def code_line() -> str:
    """The commit, and a digest of the node's and core's sources as they are now (work in progress shows)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((ROOT / "lang_seg_ros").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "?"
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "lang_seg_ros"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head, dirty = "?", ""
    return f"code: commit {head}{' + uncommitted changes' if dirty else ''}; lang_seg_ros/**.py sha256 " \
           f"{digest.hexdigest()[:12]}"


def load_frames(folder: Path, size: tuple[int, int] | None, limit: int):
    import cv2

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:limit]
    if not files:
        raise SystemExit(f"no .png/.jpg frames in {folder}")
    frames = []
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # BGR uint8
        if image is None:
            raise SystemExit(f"cannot read {path}")
        if size is not None and (image.shape[1], image.shape[0]) != size:
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        frames.append(image)
    return frames


def image_messages(frames, Image) -> list:
    msgs = []
    for frame in frames:
        msg = Image()
        msg.height, msg.width = int(frame.shape[0]), int(frame.shape[1])
        msg.encoding = "bgr8"
        msg.is_bigendian = 0
        msg.step = int(frame.shape[1] * 3)
        msg.header.frame_id = "camera_optical"
        msg.data = array.array("B", frame.tobytes())
        msgs.append(msg)
    return msgs


def model_alone(checkpoint: str, case: Case, frames, args: argparse.Namespace) -> dict[str, Any]:
    """Sequential `Segmenter.segment` calls, as the node makes them (bgr8 -> color_order "bgr"):
    their median, and every call (`bracketed` merges the calls before and after a node window)."""
    from lang_seg_ros.inference import Segmenter

    segmenter = Segmenter(checkpoint or None, device=args.device, working_size=args.working_size,
                          backend=args.backend, precision=args.precision)
    segmenter.set_labels(list(case.labels))
    for i in range(args.model_warmup):
        segmenter.segment(frames[i % len(frames)], color_order="bgr")
    calls, model_ms = [], []
    for i in range(args.model_iters):
        t0 = time.perf_counter()
        result = segmenter.segment(frames[i % len(frames)], color_order="bgr")
        calls.append((time.perf_counter() - t0) * 1e3)
        model_ms.append(sum(result.timings_ms.get(s, float("nan")) for s in MODEL_STAGES))
    del segmenter
    gc.collect()
    call = statistics.median(calls)
    return {"call_ms_p50": call, "fps": 1e3 / call, "preprocess_forward_ms_p50": statistics.median(model_ms),
            "calls_ms": calls, "model_ms": model_ms}


def bracketed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The model-alone figure of a case from the calls timed just before and just after its node
    window (median over both): a shared VM's speed drifts within minutes (one 1.6 s window here
    once ran at 8.2 FPS against 12-13), and a drift between the model's window and the node's then
    read as the node's cost. The two halves stay in the row (`model_fps_before` / `_after`)."""
    calls, model_ms = before["calls_ms"] + after["calls_ms"], before["model_ms"] + after["model_ms"]
    call = statistics.median(calls)
    return {"call_ms_p50": call, "fps": 1e3 / call, "preprocess_forward_ms_p50": statistics.median(model_ms),
            "fps_before": before["fps"], "fps_after": after["fps"]}


def cpu_snapshot(pid: int) -> dict[str, float]:
    """CPU seconds so far: the whole machine busy, the node process (all threads), this process."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"machine": float("nan"), "node": float("nan"), "bench": sum(os.times()[:2]), "wall": time.monotonic()}
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        values = [int(v) for v in fields]
        out["machine"] = (sum(values[:8]) - values[3] - values[4]) / tick  # all but idle and iowait
    except (OSError, ValueError, IndexError):
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        rest = stat[stat.rindex(")") + 2:].split()
        out["node"] = (int(rest[11]) + int(rest[12])) / tick  # utime, stime
    except (OSError, ValueError, IndexError):
        pass
    return out


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of each of the node's threads, keyed "tid:name"."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        name = "main" if tid == str(pid) else stat[stat.index("(") + 1:stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2:].split()
        out[f"{tid}:{name}"] = (int(rest[11]) + int(rest[12])) / tick
    return out


def busiest_threads(a: dict[str, float], b: dict[str, float], seconds: float, n: int = 4) -> list[tuple[str, float]]:
    """The node's threads that used the most CPU between two `thread_cpu` snapshots, in cores."""
    use = {k: (v - a.get(k, 0.0)) / seconds for k, v in b.items()}
    return sorted(((k, round(v, 2)) for k, v in use.items() if v > 0), key=lambda kv: -kv[1])[:n]


def cpu_use(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """Cores in use on average between two snapshots: node, bench, everything else."""
    wall = b["wall"] - a["wall"]
    node, bench = (b["node"] - a["node"]) / wall, (b["bench"] - a["bench"]) / wall
    machine = (b["machine"] - a["machine"]) / wall
    return {"node_cores": node, "bench_cores": bench, "other_cores": max(0.0, machine - node - bench),
            "machine_cores": machine}


# ---- the node process ------------------------------------------------------------------------
def yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a YAML double-quoted scalar
    return repr(value)


class NodeProcess:
    """`python -m lang_seg_ros.ros.node` in its own session (process group); output to a file."""

    live: set["NodeProcess"] = set()

    def __init__(self, namespace: str, params: dict[str, Any], workdir: Path) -> None:
        self.namespace = namespace
        self.params = params
        params_file = workdir / f"{namespace.strip('/')}.yaml"
        params_file.write_text("/**:\n  ros__parameters:\n" + "".join(
            f"    {key}: {yaml_scalar(value)}\n" for key, value in params.items()))
        self.log_path = workdir / f"{namespace.strip('/')}.log"
        cmd = [sys.executable, "-m", "lang_seg_ros.ros.node", "--ros-args", "-r", f"__ns:={namespace}",
               "-r", "__node:=lang_seg"]
        if PARAMS_FILE.is_file():
            cmd += ["--params-file", str(PARAMS_FILE)]
        cmd += ["--params-file", str(params_file)]
        self._log = open(self.log_path, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=str(ROOT), env=dict(os.environ), start_new_session=True)
        NodeProcess.live.add(self)

    def topic(self, name: str) -> str:
        return f"{self.namespace}/{name}"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise NodeDied(f"the node exited with code {code}; the tail of its output:\n{self.log_tail()}")

    def peak_rss_mib(self) -> tuple[float, float]:
        """(VmHWM, VmRSS) in MiB, NaN when unreadable."""
        values = {"VmHWM": float("nan"), "VmRSS": float("nan")}
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key in values:
                    values[key] = int(rest.split()[0]) / 1024
        except (OSError, ValueError, IndexError):
            pass
        return values["VmHWM"], values["VmRSS"]

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGINT to the group, wait; SIGKILL if it hangs. Returns the exit code."""
        try:
            if self.proc.poll() is None:
                self._signal(signal.SIGINT)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._signal(signal.SIGKILL)
                    self.proc.wait(5)
        finally:
            self._log.close()
            NodeProcess.live.discard(self)
        return self.proc.returncode

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        NodeProcess.live.discard(self)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass


def kill_all_nodes() -> None:
    for node in list(NodeProcess.live):
        node.kill()


# ---- one case ---------------------------------------------------------------------------------
class Bench:
    """This process's ROS side: one participant, one executor, an image publisher per case."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        import lang_seg_ros.ros  # noqa: F401 - puts the generated messages on the package path
        from lang_seg_ros.msg import Segmentation
        from sensor_msgs.msg import Image

        self.rclpy = rclpy
        self.Image, self.Segmentation = Image, Segmentation
        self.context = rclpy.Context()
        rclpy.init(context=self.context, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
        self.node = rclpy.create_node("lang_seg_bench", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        # What a camera driver offers (best effort), and a deep reliable queue for the answers.
        self.image_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.out_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)

    def spin(self, seconds: float, node: NodeProcess, until=None) -> bool:
        deadline = time.monotonic() + seconds
        next_check = 0.0
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
            now = time.monotonic()
            if now >= next_check:
                node.check_alive()
                next_check = now + 0.25
            if until is not None and until():
                return True
        return until is not None and bool(until())

    def run_case(self, node: NodeProcess, msgs: list, args: argparse.Namespace) -> tuple[Record, int, int, dict]:
        """Publish at args.rate: wait-ready, warm-up, measuring window. Returns (record, t0, t1, cpu)
        with the window in time.time_ns() units and the cores used during it."""
        record = Record()

        def on_segmentation(msg) -> None:
            rx = time.time_ns()
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            stages: dict[str, float] = {}
            for t in msg.timings:
                stages[t.stage] = stages.get(t.stage, 0.0) + float(t.duration_ms)
            answer = Answer(rx, stamp, float(msg.latency_ms), stages, int(msg.dropped_frames), int(msg.sequence))
            with record.lock:
                record.answers.append(answer)

        sub = self.node.create_subscription(self.Segmentation, node.topic("segmentation"), on_segmentation,
                                            self.out_qos)
        # A viewer of the overlay, as RViz would be: the node renders it only while someone listens.
        viewer = (self.node.create_subscription(self.Image, node.topic("overlay"), lambda msg: None, self.out_qos)
                  if node.params.get("publish_overlay") else None)
        pub = self.node.create_publisher(self.Image, node.topic("image"), self.image_qos)
        last_stamp = [0]

        def publish(i: int) -> int:
            msg = msgs[i % len(msgs)]
            ns = max(time.time_ns(), last_stamp[0] + 1000)  # unique stamps: answers are matched by them
            last_stamp[0] = ns
            msg.header.stamp.sec, msg.header.stamp.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
            pub.publish(msg)
            return ns

        try:
            # 1. Ready: one frame every 0.5 s until the first answer (model loaded, DDS matched).
            deadline = time.monotonic() + args.start_timeout
            i = 0
            while not record.answers:
                if time.monotonic() > deadline:
                    raise NodeDied(f"no answer within {args.start_timeout:.0f} s of start-up; the tail of the "
                                   f"node's output:\n{node.log_tail()}")
                publish(i)
                i += 1
                self.spin(0.5, node, until=lambda: bool(record.answers))
            record.first_answer_s = time.monotonic() - node.started
            # 2. Warm-up and 3. the window, frames from a thread at the rate; this thread spins.
            stop = threading.Event()
            window = [0, 0]  # time.time_ns(): frames stamped in [t0, t1) are the measured ones
            period = 1.0 / args.rate

            def publisher() -> None:
                start, k, frame = time.monotonic(), 0, i
                while not stop.is_set():
                    ns = publish(frame)
                    with record.lock:
                        record.published[ns] = time.time_ns()
                    frame += 1
                    k += 1
                    delay = start + k * period - time.monotonic()
                    if delay > 0:
                        stop.wait(delay)
                    elif delay < -1.0:  # fell far behind (busy CPU): do not burst to catch up
                        start, k = time.monotonic(), 0

            thread = threading.Thread(target=publisher, name="bench_publisher", daemon=True)
            thread.start()
            try:
                self.spin(args.warmup, node)
                cpu0, threads0 = cpu_snapshot(node.proc.pid), thread_cpu(node.proc.pid)
                window[0] = time.time_ns()
                self.spin(args.seconds, node)
                window[1] = time.time_ns()
                cpu1 = cpu_snapshot(node.proc.pid)
                cpu: dict[str, Any] = cpu_use(cpu0, cpu1)
                cpu["node_threads"] = busiest_threads(threads0, thread_cpu(node.proc.pid), cpu1["wall"] - cpu0["wall"])
            finally:
                stop.set()
                thread.join(5)
            # Let the frames still in flight come back: the node segments the newest frame it has,
            # so the answer to the last one published is the last to expect (unless DDS lost it).
            with record.lock:
                last = max(record.published)

            def last_back() -> bool:
                with record.lock:
                    return any(a.stamp_ns >= last for a in record.answers[-5:])

            self.spin(args.drain, node, until=last_back)
            self.spin(0.2, node)
            return record, window[0], window[1], cpu
        finally:
            self.node.destroy_subscription(sub)
            if viewer is not None:
                self.node.destroy_subscription(viewer)
            self.node.destroy_publisher(pub)


# ---- statistics ----------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    pos = (len(values) - 1) * q / 100
    lo, hi = int(pos), min(int(pos) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def summarize(case: Case, record: Record, t0: int, t1: int, model: dict[str, float], rate: float) -> dict[str, Any]:
    published = {ns: t for ns, t in record.published.items() if t0 <= ns < t1}
    answers = sorted(record.answers, key=lambda a: a.rx_ns)
    in_window = [a for a in answers if t0 <= a.rx_ns < t1]
    answered = [a for a in answers if a.stamp_ns in published]
    before = [a for a in answers if a.stamp_ns < t0]
    seconds = (t1 - t0) / 1e9
    e2e = [(a.rx_ns - a.stamp_ns) / 1e6 for a in answered]
    field_latency = [a.latency_ms for a in answered]
    stages_seen = sorted({s for a in answered for s in a.stages})
    missing = [s for s in MODEL_STAGES if not all(s in a.stages for a in answered)]
    if missing or not answered:
        overhead = field_overhead = []
        node_model = []
    else:
        node_model = [sum(a.stages[s] for s in MODEL_STAGES) for a in answered]
        overhead = [e - m for e, m in zip(e2e, node_model)]
        field_overhead = [f - m for f, m in zip(field_latency, node_model)]
    # Queueing inside the node: a frame waits in the one-frame slot while the model works on the
    # previous one ("wait") and a finished model pass waits for the previous frame's publishing
    # ("handoff"); nodes older than these stages do not report them.
    queued = [sum(a.stages.get(s, 0.0) for s in QUEUE_STAGES) for a in answered]
    has_queue = bool(answered) and all(any(s in a.stages for s in QUEUE_STAGES) for a in answered)
    work_overhead = [o - q for o, q in zip(overhead, queued)] if overhead and has_queue else []
    # The node's counter between its answer to the last frame before the window and its answer to
    # the last window frame answered (off by a frame or two at the edges).
    node_dropped = (answered[-1].dropped_frames - before[-1].dropped_frames) if answered and before else None
    node_fps = len(in_window) / seconds if seconds > 0 else float("nan")
    stage_p50 = {s: statistics.median([a.stages[s] for a in answered if s in a.stages]) for s in stages_seen}
    return {
        "case": case.name,
        "model": case.model,
        "labels": len(case.labels),
        "instances": case.instances,
        "regions_and_overlay": case.regions,
        "model_fps": model["fps"],
        "model_fps_before": model.get("fps_before", model["fps"]),
        "model_fps_after": model.get("fps_after", model["fps"]),
        "model_call_ms_p50": model["call_ms_p50"],
        "model_preprocess_forward_ms_p50": model["preprocess_forward_ms_p50"],
        "window_s": seconds,
        "node_fps": node_fps,
        "node_fps_pct_of_model": 100 * node_fps / model["fps"] if model["fps"] else float("nan"),
        "e2e_ms_p50": percentile(e2e, 50),
        "e2e_ms_p95": percentile(e2e, 95),
        # what the node adds to its model: latency p50 - the model-alone call - half a frame period
        # (the mean wait of a frame in a latest-frame slot); with "% of model" the targets' two figures
        "cost_over_model_ms": percentile(e2e, 50) - model["call_ms_p50"] - 500.0 / rate,
        "latency_ms_field_p50": percentile(field_latency, 50),
        "latency_ms_field_p95": percentile(field_latency, 95),
        "node_model_ms_p50": percentile(node_model, 50) if node_model else None,
        "overhead_ms_p50": percentile(overhead, 50) if overhead else None,
        "overhead_ms_p95": percentile(overhead, 95) if overhead else None,
        "overhead_field_ms_p50": percentile(field_overhead, 50) if field_overhead else None,
        "overhead_field_ms_p95": percentile(field_overhead, 95) if field_overhead else None,
        "overhead_excl_queue_ms_p50": percentile(work_overhead, 50) if work_overhead else None,
        "overhead_excl_queue_ms_p95": percentile(work_overhead, 95) if work_overhead else None,
        "missing_model_stages": missing,
        "stages_seen": stages_seen,
        "stage_ms_p50": stage_p50,
        "frames_published": len(published),
        "frames_answered": len(answered),
        "dropped": len(published) - len(answered),
        "node_dropped_frames": node_dropped,
        "node_dropped_frames_total": answers[-1].dropped_frames if answers else None,
        # published, neither answered nor counted by the node: lost in DDS or in the reader's queue
        "unaccounted": (len(published) - len(answered) - node_dropped) if node_dropped is not None else None,
        "answers_in_window": len(in_window),
        "sequence_gaps": sum(1 for x, y in zip(answers, answers[1:]) if y.sequence != x.sequence + 1),
    }


HEADER = (f"{'case':<22} {'model':>6} {'node':>6} {'% of':>6} {'e2e ms':>13} {'cost':>6} {'overhead ms':>13} "
          f"{'excl. queue':>13} {'frames':>9} {'dropped':>11} {'RSS':>6}\n"
          f"{'':<22} {'FPS':>6} {'FPS':>6} {'model':>6} {'p50 / p95':>13} {'ms':>6} {'p50 / p95':>13} "
          f"{'p50 / p95':>13} {'pub/ans':>9} {'ours/node':>11} {'MiB':>6}")


def row_text(r: dict[str, Any]) -> str:
    def ms(a, b) -> str:
        return "n/a (!)" if a is None else f"{a:.0f} / {b:.0f}"
    nd = "?" if r["node_dropped_frames"] is None else str(r["node_dropped_frames"])
    queue = ("-" if r.get("overhead_excl_queue_ms_p50") is None
             else ms(r["overhead_excl_queue_ms_p50"], r["overhead_excl_queue_ms_p95"]))
    return (f"{r['case']:<22} {r['model_fps']:>6.2f} {r['node_fps']:>6.2f} {r['node_fps_pct_of_model']:>5.0f}% "
            f"{ms(r['e2e_ms_p50'], r['e2e_ms_p95']):>13} {r['cost_over_model_ms']:>6.1f} "
            f"{ms(r['overhead_ms_p50'], r['overhead_ms_p95']):>13} "
            f"{queue:>13} "
            f"{r['frames_published']:>4}/{r['frames_answered']:<4} {r['dropped']:>5}/{nd:<5} "
            f"{r['peak_rss_mib']:>6.0f}")


#: The figures `--repeat` reports per case: the median over the runs, and their range.
MEDIAN_KEYS = ("model_fps", "node_fps", "node_fps_pct_of_model", "e2e_ms_p50", "e2e_ms_p95", "cost_over_model_ms")
MEDIAN_HEADER = (f"{'case':<22} {'runs':>4} {'model FPS':>17} {'node FPS':>17} {'% of model':>15} "
                 f"{'e2e p50 ms':>15} {'e2e p95 ms':>15} {'cost ms':>17}")


def case_medians(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per case (in first-run order): its runs, and for each of `MEDIAN_KEYS` the median and range."""
    by_case: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_case.setdefault(row["case"], []).append(row)
    return [{"case": case, "runs": len(runs),
             **{key: {"median": statistics.median(r[key] for r in runs), "min": min(r[key] for r in runs),
                      "max": max(r[key] for r in runs)} for key in MEDIAN_KEYS}}
            for case, runs in by_case.items()]


def median_text(m: dict[str, Any]) -> str:
    def cell(key: str, digits: int, width: int) -> str:
        v = m[key]
        return f"{v['median']:.{digits}f} ({v['min']:.{digits}f}-{v['max']:.{digits}f})".rjust(width)
    return (f"{m['case']:<22} {m['runs']:>4} {cell('model_fps', 2, 17)} {cell('node_fps', 2, 17)} "
            f"{cell('node_fps_pct_of_model', 0, 15)} {cell('e2e_ms_p50', 0, 15)} {cell('e2e_ms_p95', 0, 15)} "
            f"{cell('cost_over_model_ms', 1, 17)}")


# ---- main -------------------------------------------------------------------------------------------
def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size takes WIDTHxHEIGHT, e.g. 640x480, got {text!r}") from None
    if w < 8 or h < 8:
        raise argparse.ArgumentTypeError(f"--size too small: {text}")
    return w, h


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second published (default 30)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window per case (default 20)")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds at --rate before the window (default 4)")
    parser.add_argument("--frames", type=Path, default=DEFAULT_FRAMES, help=f"folder of PNG/JPG frames "
                        f"(default {DEFAULT_FRAMES})")
    parser.add_argument("--max-frames", type=int, default=200, help="use at most this many frames (default 200)")
    parser.add_argument("--size", type=parse_size, default=None, help="resize the frames to WIDTHxHEIGHT, e.g. 640x480")
    parser.add_argument("--cases", nargs="+", default=list(CASES), metavar="CASE",
                        help=f"any of {', '.join(CASES)} (default: all)")
    parser.add_argument("--device", default="auto", help="node and model device: auto (the node's default: CUDA "
                        "when available), cpu, cuda, cuda:N")
    parser.add_argument("--cpu-threads", type=int, default=0, help="the node's cpu_threads and this process's "
                        "torch threads for the model-alone figure; 0 = torch's default")
    parser.add_argument("--working-size", type=int, default=480, help="the node's working_size (default 480)")
    parser.add_argument("--backend", default="torch", help="node and model-alone backend: torch (default), "
                        "onnxruntime, openvino, tensorrt")
    parser.add_argument("--precision", default="fp32", help="node and model-alone precision (default fp32; "
                        "'auto' = what the device runs natively, the node's default)")
    parser.add_argument("--model-iters", type=int, default=20, help="timed model-alone calls (default 20)")
    parser.add_argument("--model-warmup", type=int, default=3, help="untimed model-alone calls first (default 3)")
    parser.add_argument("--start-timeout", type=float, default=180.0, help="seconds for the node's first answer")
    parser.add_argument("--drain", type=float, default=3.0, help="seconds to wait for answers after the window")
    parser.add_argument("--set", nargs="+", metavar="NAME=VALUE",
                        help="more node parameters for every case, e.g. overlap_postprocessing=false")
    parser.add_argument("--logs", type=Path, default=None, metavar="DIR",
                        help="keep the node's output and parameter files here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the rows (and the machine) here")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run the cases N times in turn (each time the model alone, then the node) and print "
                             "each case's medians: one window moves by 5-15 %% on a shared 2-core VM (default 1)")
    parser.add_argument("--cameras", type=int, nargs="+", default=None, metavar="N",
                        help="instead of the cases: N cameras on one node vs N single-camera nodes, e.g. "
                             "--cameras 1 2 4 (bench/cameras_bench.py)")
    args = parser.parse_args()
    try:
        cases = [Case.parse(name) for name in args.cases]
    except ValueError as exc:
        parser.error(str(exc))
    if args.rate <= 0 or args.seconds <= 0 or args.repeat < 1:
        parser.error("--rate, --seconds and --repeat must be positive")
    cases = [case for _ in range(args.repeat) for case in cases]  # in turn: case A, B, A, B, ...
    if not args.frames.is_dir():
        parser.error(f"--frames {args.frames} is not a folder")

    # Ctrl-C and SIGTERM end the run through the finally blocks, which stop the node.
    def on_sigterm(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)

    import torch

    if args.cpu_threads > 0:
        torch.set_num_threads(args.cpu_threads)
    machine = machine_line(torch)
    code = code_line()
    print(machine, flush=True)
    print(code, flush=True)
    frames = load_frames(args.frames, args.size, args.max_frames)
    h, w = frames[0].shape[:2]
    print(f"frames: {len(frames)} from {args.frames} ({w}x{h} bgr8); {args.rate:g} Hz; warm-up {args.warmup:g} s, "
          f"window {args.seconds:g} s per case; device {args.device}; working_size {args.working_size}; "
          f"ROS_DOMAIN_ID {os.environ['ROS_DOMAIN_ID']}", flush=True)

    if args.cameras:
        from cameras_bench import run_cameras

        with tempfile.TemporaryDirectory(prefix="bench_cameras_") as tmp:
            try:
                results = run_cameras(args, args.cameras, args.logs or Path(tmp))
            finally:
                kill_all_nodes()
        if args.json is not None:
            args.json.write_text(json.dumps({"machine": machine, "code": code, "rate": args.rate,
                                             "cameras": results}, indent=2, default=str) + "\n")
        return 0

    rows: list[dict[str, Any]] = []
    samples: list[list[dict[str, Any]]] = []
    failures: list[str] = []
    bench = None
    with tempfile.TemporaryDirectory(prefix="bench_node_") as tmp:
        workdir = Path(tmp)
        if args.logs is not None:
            args.logs.mkdir(parents=True, exist_ok=True)
        logdir = args.logs or workdir
        try:
            tiny = ""
            if any(c.model == "tiny" for c in cases):
                from lang_seg_ros.model import build_model, save_checkpoint
                torch.manual_seed(0)
                tiny = str(workdir / "tiny.safetensors")
                save_checkpoint(build_model("lseg_tiny").eval(), tiny)
            bench = Bench()
            msgs = image_messages(frames, bench.Image)
            print(HEADER, flush=True)
            for index, case in enumerate(cases):
                checkpoint = tiny if case.model == "tiny" else ""
                model_before = model_alone(checkpoint, case, frames, args)
                node = NodeProcess(f"/bench_{os.getpid()}_{index}_{case.name.replace('-', '_')}",
                                   case.node_params(checkpoint, args), logdir)
                try:
                    record, t0, t1, cpu = bench.run_case(node, msgs, args)
                    node.check_alive()
                    hwm, rss = node.peak_rss_mib()
                    exit_code = node.stop()
                except NodeDied as exc:
                    node.stop(timeout=2)
                    failures.append(f"{case.name}: {exc}")
                    print(f"{case.name:<22} FAILED: the node died or did not answer (details below)", flush=True)
                    continue
                except BaseException:
                    node.kill()
                    raise
                model = bracketed(model_before, model_alone(checkpoint, case, frames, args))  # the node stopped
                row = summarize(case, record, t0, t1, model, args.rate)
                row.update(peak_rss_mib=hwm, rss_at_end_mib=rss, node_exit_code=exit_code, cpu_during_window=cpu,
                           first_answer_s=record.first_answer_s)
                rows.append(row)
                samples.append([  # parallel to rows
                    {"t_s": (a.rx_ns - t0) / 1e9, "e2e_ms": (a.rx_ns - a.stamp_ns) / 1e6, "latency_ms": a.latency_ms,
                     "stages_ms": a.stages, "dropped_frames": a.dropped_frames, "sequence": a.sequence}
                    for a in sorted(record.answers, key=lambda a: a.rx_ns)])  # t_s < 0: start-up and warm-up
                print(row_text(row), flush=True)
                if row["missing_model_stages"]:
                    print(f"  !!! WARNING: the node's Segmentation.timings lack the stage(s) "
                          f"{', '.join(repr(s) for s in row['missing_model_stages'])} (stages seen: "
                          f"{', '.join(row['stages_seen']) or 'none'}): the model's own time is unknown, "
                          f"node overhead NOT computed !!!", flush=True)
                if not row["frames_answered"]:
                    print("  !!! WARNING: no frame of the window was answered: nothing measured !!!", flush=True)
                if cpu["other_cores"] > 0.25:
                    print(f"  note: other processes kept {cpu['other_cores']:.2f} of {os.cpu_count()} cores busy "
                          "during the window: figures are contended", flush=True)
                if exit_code not in (0, None):
                    print(f"  note: the node exited with code {exit_code} on SIGINT; its output's tail:\n"
                          f"{node.log_tail(1500)}", flush=True)
        except KeyboardInterrupt:
            print("\ninterrupted: stopping the node", file=sys.stderr)
            kill_all_nodes()
            return 130
        finally:
            kill_all_nodes()
            if bench is not None:
                bench.close()

    if rows:
        print("\ndetails: node stage medians (ms) | node preprocess+forward vs the model alone (ms) | the "
              "node's latency_ms field p50/p95 | cores busy during the window: node, this script, others;\n"
              "  the node's busiest threads (tid:name from /proc; main = the executor's)")
        for r in rows:
            stages = ", ".join(f"{s} {v:.1f}" for s, v in r["stage_ms_p50"].items())
            node_model = "n/a" if r["node_model_ms_p50"] is None else f"{r['node_model_ms_p50']:.1f}"
            c = r["cpu_during_window"]
            print(f"  {r['case']:<22} {stages} | {node_model} vs {r['model_preprocess_forward_ms_p50']:.1f} | "
                  f"{r['latency_ms_field_p50']:.0f} / {r['latency_ms_field_p95']:.0f} | "
                  f"{c['node_cores']:.2f}, {c['bench_cores']:.2f}, {c['other_cores']:.2f} of {os.cpu_count()}")
            print(f"  {'':<22} the node's busiest threads (cores): "
                  + ", ".join(f"{name} {use:.2f}" for name, use in c["node_threads"]))
            print(f"  {'':<22} start-up: first answer {r['first_answer_s']:.1f} s after the node's process started "
                  "(imports, model, DDS discovery; frames offered every 0.5 s); the model alone before / after "
                  f"the node's window {r['model_fps_before']:.2f} / {r['model_fps_after']:.2f} FPS")
    for failure in failures:
        print(f"\nFAILED {failure}", file=sys.stderr)
    medians = case_medians(rows) if args.repeat > 1 else []
    if medians:
        print(f"\nmedians over {args.repeat} runs per case (the model alone and the node measured anew each run):")
        print(MEDIAN_HEADER)
        for m in medians:
            print(median_text(m))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "code": code, "rate": args.rate, "seconds": args.seconds,
                                         "frames": str(args.frames), "frame_size": [w, h], "device": args.device,
                                         "rows": rows, "failures": failures, "medians": medians,
                                         "samples": samples}, indent=2, default=str) + "\n")
        print(f"rows written to {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
