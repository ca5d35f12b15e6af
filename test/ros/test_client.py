"""`lang-seg-ros` (lang_seg_ros/ros/client.py) against the real node over DDS, and the feedback a
topic sender gets: every distinct refusal logged (repeats throttled, not kinds) and published on
the latched `status` topic.

The client runs as a subprocess (`python -m lang_seg_ros.ros.client`), in this session's DDS
domain (harness.py sets ROS_DOMAIN_ID etc. in os.environ, which the subprocess inherits).
"""
from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed: run scripts/setup_ros.sh (ROS 2 Jazzy wheels)")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from harness import RELIABLE, ROOT, TEST_LABELS, serving, spin_for  # noqa: E402

THROTTLE = 30.0  # s: every test here runs well within one throttle period
STATUS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture(scope="module")
def node(ros, node_checkpoint, tmp_path_factory):
    """One node for this module, with a real log throttle period (the other modules use 0)."""
    with serving(ros, tmp_path_factory, node_checkpoint, f"/cli{os.getpid()}_{random.randint(0, 99999)}",
                 log_throttle_period=THROTTLE) as client:
        yield client


@pytest.fixture(scope="module")
def status(node):
    """Every entry of the node's `status` topic, as this process receives them."""
    received: list = []
    sub = node.node.create_subscription(DiagnosticStatus, node.proc.topic("status"), received.append, STATUS_QOS)
    spin_for(node.executor, 0.3)
    yield received
    node.node.destroy_subscription(sub)


def run_client(node, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lang_seg_ros.ros.client", "--namespace", node.proc.namespace,
                           "--timeout", "20", *args], capture_output=True, text=True, timeout=timeout, cwd=str(ROOT),
                          env=dict(os.environ))


def values(entry) -> dict[str, str]:
    return {kv.key: kv.value for kv in entry.values}


def entries(status, topic: str) -> list:
    return [e for e in status if values(e).get("input") == topic]


def log_lines(node, pattern: str, start: int = 0) -> list[str]:
    return re.findall(pattern, node.proc.log()[start:])


# ---- the client: no node needed ----------------------------------------------------------------
def test_help_is_fast_usage_errors_exit_2_and_the_console_script_is_declared():
    tries = []
    for _ in range(3):
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "lang_seg_ros.ros.client", "--help"], capture_output=True,
                              text=True, cwd=str(ROOT))
        tries.append(time.perf_counter() - t0)
        assert done.returncode == 0 and "labels" in done.stdout and "echo" in done.stdout, done.stderr
    assert min(tries) < 0.5, f"--help took {min(tries):.2f} s"
    code = "import sys, lang_seg_ros.ros.client as c; c.build_parser(); print('rclpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    for bad in (["bogus"], ["echo", "nothing"], ["echo", "labels", "--count", "0"], ["param", "threshold", "[1, "],
                ["labels"]):
        done = subprocess.run([sys.executable, "-m", "lang_seg_ros.ros.client", *bad], capture_output=True, text=True,
                              cwd=str(ROOT), timeout=30)
        assert done.returncode == 2, (bad, done.stdout, done.stderr)
    assert '"lang-seg-ros = lang_seg_ros.ros.client:main"' in (ROOT / "setup.py").read_text()


def test_throttle_keys_repeats_of_one_message_not_its_kind_with_bounded_memory():
    from lang_seg_ros.ros.diagnostics import Throttle

    lines: list[str] = []

    class Log:
        def warning(self, text):
            lines.append(text)

    throttle = Throttle(Log(), period=0.3, max_keys=8)
    assert throttle("warning", "bad_labels", "the label set is empty") == 0
    assert throttle("warning", "bad_labels", "duplicate label 'car'") == 0  # another message of the kind
    assert throttle("warning", "bad_labels", "the label set is empty") is None  # a repeat: held back
    for stamp in range(5):  # one reason, a stamp in the text: the key leaves the stamp out
        throttle("warning", "bad_image", f"frame {stamp}.0 ignored: unknown encoding 'x'", key="unknown encoding 'x'")
    assert lines == ["[bad_labels] the label set is empty", "[bad_labels] duplicate label 'car'",
                     "[bad_image] frame 0.0 ignored: unknown encoding 'x'"]
    time.sleep(0.35)
    assert throttle("warning", "bad_image", "frame 9.0 ignored: unknown encoding 'x'", key="unknown encoding 'x'") == 4
    assert lines[-1] == "[bad_image] frame 9.0 ignored: unknown encoding 'x' (4 more of this kind since the last message)"

    # a flood of distinct messages: the table stays bounded; once it is full of keys within their
    # period, new messages of a kind share one key (one more line, not one per message)
    flood = Throttle(Log(), period=0.3, max_keys=8)
    del lines[:]
    for i in range(1000):
        flood("warning", "bad_image", f"data has {i} bytes")
    assert len(flood) == 8 + 1 and lines == [f"[bad_image] data has {i} bytes" for i in range(9)]
    time.sleep(0.35)  # the periods are over: old keys make room for new messages, each logged
    for i in range(1000, 1008):
        flood("warning", "bad_image", f"data has {i} bytes")
    assert len(flood) == 8 and lines[9:] == [f"[bad_image] data has {i} bytes" for i in range(1000, 1008)]
    for i in range(1008, 1100):  # full again: the kind's shared key, with the count of what it held back
        flood("warning", "bad_image", f"data has {i} bytes")
    assert len(flood) == 9 and len(lines) == 9 + 8 + 1
    time.sleep(0.35)
    flood("warning", "bad_image", "data has 7 bytes")
    assert lines[-1] == "[bad_image] data has 7 bytes" and len(flood) <= 9


# ---- the client against the node ---------------------------------------------------------------
def test_labels_accepted_then_visible_in_echo_labels(node):
    done = run_client(node, "labels", "road, car, sky:stuff")
    assert done.returncode == 0, done.stderr
    assert re.search(r"labels accepted \(set \d+\): road, car, sky:stuff", done.stdout), done.stdout
    echo = run_client(node, "echo", "labels", "--once")
    assert echo.returncode == 0, echo.stderr
    assert re.fullmatch(r"set \d+ \(\d+\.\d{9}\): road, car, sky:stuff\n", echo.stdout), echo.stdout
    assert run_client(node, "labels", TEST_LABELS).returncode == 0


def test_a_refused_label_set_exits_1_with_the_reason(node):
    done = run_client(node, "labels", "car, car, road")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "refused: duplicate label 'car'" in done.stderr and "active labels (set" in done.stderr
    assert TEST_LABELS in done.stderr  # unchanged


def test_param_set_get_and_refused(node):
    try:
        done = run_client(node, "param", "threshold", "0.3")
        assert done.returncode == 0 and done.stdout.strip() == "threshold set to 0.3", (done.stdout, done.stderr)
        done = run_client(node, "param", "threshold")
        assert done.returncode == 0 and done.stdout.strip() == "threshold: 0.3", (done.stdout, done.stderr)
        done = run_client(node, "param", "threshold", "2")
        assert done.returncode == 1 and "threshold" in done.stderr and "2.0" in done.stderr, done.stderr
        done = run_client(node, "param", "no_such_parameter")
        assert done.returncode == 1 and "no parameter 'no_such_parameter'" in done.stderr
        done = run_client(node, "param", "scales", "[1, 1.5]")  # YAML list, ints read as the parameter's doubles
        assert done.returncode == 0 and done.stdout.strip() == "scales set to [1.0, 1.5]", (done.stdout, done.stderr)
    finally:
        assert all(r.successful for r in node.set_parameters(threshold=0.0, scales=[1.0]))


def test_refer_prints_the_answer(node):
    # A random tiny model is unsure of everything: accept any candidate of the category.
    assert run_client(node, "param", "referring_min_score", "0.0").returncode == 0
    try:
        segmentation = node.send(node.make_image(frame_id="refer_cam"))
        target = max(segmentation.regions, key=lambda r: r.area).label
        done = run_client(node, "refer", f"the {target} on the left")
        assert done.returncode == 0, done.stderr
        assert "found: true" in done.stdout and f"label: {target}" in done.stdout, done.stdout
        assert re.search(r"score: \d\.\d\d", done.stdout) and re.search(r"bbox: \[\d+, \d+, \d+, \d+\]", done.stdout)
        assert "centroid 3D: none" in done.stdout and "(refer_cam)" in done.stdout

        answer = json.loads(run_client(node, "refer", "--json", f"the {target} on the right").stdout)
        assert answer["success"] and answer["found"] and answer["label"] == target and answer["reason"]
        x0, y0, x1, y1 = answer["bbox"]
        assert 0 <= x0 < x1 <= 160 and 0 <= y0 < y1 <= 120 and answer["frame_id"] == "refer_cam"

        done = run_client(node, "refer", "the one on the left")
        assert done.returncode == 1 and "no object category" in done.stderr, (done.stdout, done.stderr)
    finally:
        assert all(r.successful for r in node.set_parameters(referring_min_score=0.5))


def test_echo_segmentation_prints_a_summary_while_frames_are_sent(node):
    proc = subprocess.Popen([sys.executable, "-m", "lang_seg_ros.ros.client", "--namespace", node.proc.namespace,
                             "echo", "segmentation", "--count", "2", "--timeout", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    try:
        deadline = time.monotonic() + 40
        while proc.poll() is None and time.monotonic() < deadline:
            node.send(node.make_image(), timeout=2.0, retries=1)
            spin_for(node.executor, 0.2)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 2, out
    for line in lines:  # stamp (frame) size, label set, top shares, regions by label, latency
        assert re.fullmatch(r"\d+\.\d{9} \(camera_optical\) 160x120 set \d+ \| .+ \| \d+ regions(: .+)? \| "
                            r"latency \d+ ms", line), line
        shares = [float(s) for s in re.findall(r" (\d+\.\d)%", line)]
        assert shares and (99.5 <= sum(shares) <= 100.5 or "+" in line), line
        assert any(label in line for label in TEST_LABELS.split(", "))


def test_status_prints_the_diagnostics_labels_and_refusals(node):
    done = run_client(node, "status")
    assert done.returncode == 0, done.stderr
    assert f"{node.proc.fqn}: segmentation: OK" in done.stdout, done.stdout
    for key in ("model_fps", "latency_ms_mean", "frames_processed", "frames_rejected", "active: true"):
        assert key in done.stdout, done.stdout
    assert re.search(rf"labels: set \d+ \(\d+\.\d+\): {TEST_LABELS}", done.stdout), done.stdout
    assert "refusals of topic inputs" in done.stdout


def test_expression_refused_exits_1_accepted_and_cleared(node, status):
    done = run_client(node, "expression", "the one on the left")
    assert done.returncode == 1 and "no object category" in done.stderr, (done.stdout, done.stderr)
    assert node.spin_until(lambda: [e for e in entries(status, "referring_expression")
                                    if values(e).get("text") == "the one on the left"], 5.0)
    done = run_client(node, "expression", "the red thing on the left")
    assert done.returncode == 0 and "not refused" in done.stdout, (done.stdout, done.stderr)
    assert node.proc.wait_log(r"referring expression: 'the red thing on the left'", 5.0)
    done = run_client(node, "expression", "")
    assert done.returncode == 0 and "cleared" in done.stdout, (done.stdout, done.stderr)
    assert node.proc.wait_log(r"referring expression cleared", 5.0)
    done = run_client(node, "status")
    assert "referring_expression text 'the one on the left'" in done.stdout, done.stdout


# ---- feedback to topic senders: the log and the `status` topic ---------------------------------
def _publish(node, topic: str, text: str) -> None:
    pub = node.node.create_publisher(String, node.proc.topic(topic), RELIABLE)
    node.spin_until(lambda: pub.get_subscription_count() > 0, 5.0)
    pub.publish(String(data=text))
    spin_for(node.executor, 0.1)
    node.node.destroy_publisher(pub)


def test_two_different_bad_label_sets_are_both_logged_and_on_the_status_topic(node, status):
    start = len(node.proc.log())
    before = len(entries(status, "labels"))
    _publish(node, "labels", "")
    _publish(node, "labels", "car, car, road")  # within the throttle period: a different message
    got = node.spin_until(lambda: len(entries(status, "labels")) >= before + 2 and entries(status, "labels"), 10.0)
    assert got, node.proc.log()[start:]
    empty, duplicate = got[before:before + 2]
    assert values(empty)["text"] == "" and "the label set is empty" in empty.message
    assert values(duplicate)["text"] == "car, car, road" and "duplicate label 'car'" in duplicate.message
    for entry in (empty, duplicate):
        v = values(entry)
        assert entry.name == f"{node.proc.fqn}: input" and entry.level == DiagnosticStatus.WARN
        assert v["kind"] == "bad_labels" and v["repeats"] == "0" and re.fullmatch(r"\d+\.\d{9}", v["stamp"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", v["time"])
    assert node.proc.wait_log(r"duplicate label 'car'.*\n", 5.0, start)
    assert len(log_lines(node, r"\[bad_labels\] label set from the 'labels' topic refused: the label set is empty",
                         start)) == 1
    assert len(log_lines(node, r"\[bad_labels\] label set from the 'labels' topic refused: duplicate label 'car'",
                         start)) == 1

    # the same refusal again within the period: neither logged nor published again; a late
    # subscriber (the client) still gets the history
    _publish(node, "labels", "car, car, road")
    spin_for(node.executor, 1.0)
    assert len(entries(status, "labels")) == before + 2
    assert len(log_lines(node, r"duplicate label 'car'", start)) == 1
    # the history holds every entry so far, up to its depth, oldest first; this test's two are the newest
    from lang_seg_ros.ros.feedback import STATUS_DEPTH

    echo = run_client(node, "echo", "status", "--count", str(min(len(status), STATUS_DEPTH)))
    assert echo.returncode == 0, echo.stderr
    assert "labels text '': label set from the 'labels' topic refused: the label set is empty" in echo.stdout
    done = run_client(node, "labels", "--topic", "car, car, road")  # the repeat: refused, said so
    assert done.returncode == 1 and "duplicate label 'car'" in done.stderr and "not reported again" in done.stderr
    done = run_client(node, "labels", "--topic", "red thing, blue thing, red thing")
    assert done.returncode == 1 and "duplicate label 'red thing'" in done.stderr, done.stderr
    done = run_client(node, "labels", "--topic", "red thing, green thing")
    assert done.returncode == 0 and re.search(r"labels accepted \(set \d+\): red thing, green thing", done.stdout)
    assert run_client(node, "labels", TEST_LABELS).returncode == 0


def _bad_images(node) -> list[tuple[Image, str]]:
    unknown = node.make_image()
    unknown.encoding = "foo8"
    short = node.make_image()
    short.data = bytes(short.data)[:100]
    narrow = node.make_image()
    narrow.step = 10
    return [(unknown, "unknown image encoding 'foo8'"), (short, "data has 100 bytes"),
            (narrow, "step 10")]


def test_three_different_bad_images_give_three_log_lines_and_status_entries(node, status):
    start = len(node.proc.log())
    before = len(entries(status, "image"))
    for n, (msg, reason) in enumerate(_bad_images(node), 1):
        for _ in range(5):  # one at a time (the worker's one-frame slot keeps only the newest); best effort
            node.publish(msg)
            if node.spin_until(lambda: len(entries(status, "image")) >= before + n, 2.0):
                break
        got = entries(status, "image")
        assert len(got) == before + n, (reason, node.proc.log()[start:])
        entry = got[-1]
        assert reason in entry.message and values(entry)["kind"] == "bad_image" and "text" not in values(entry)
        stamp = f"{msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}"
        assert entry.message.startswith(f"frame {stamp} (camera_optical) ignored:"), entry.message
        assert node.proc.wait_log(rf"\[bad_image\] frame {stamp} .*{re.escape(reason)}", 5.0, start)
    assert len(log_lines(node, r"\[bad_image\]", start)) == 3


def test_a_flood_of_one_bad_image_is_not_logged_per_frame(node, status):
    start = len(node.proc.log())
    before = len(entries(status, "image"))
    rejected_before = max((int(values(s)["frames_rejected"]) for s in node.out.get("diagnostics")), default=0)
    for _ in range(40):  # each with its own stamp, so each log text differs
        msg = node.make_image(np.zeros((4, 4), np.uint8), "mono8")
        msg.encoding = "bar8"
        node.publish(msg)
        spin_for(node.executor, 0.02)
    assert node.proc.wait_log(r"unknown image encoding 'bar8'", 5.0, start)
    rejected = node.spin_until(lambda: [s for s in node.out.get("diagnostics")
                                        if int(values(s)["frames_rejected"]) >= rejected_before + 10], 10.0)
    assert rejected, "the node rejected too few frames"
    spin_for(node.executor, 1.0)
    assert len(log_lines(node, r"\[bad_image\]", start)) == 1
    assert len(entries(status, "image")) == before + 1
