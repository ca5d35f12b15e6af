"""`lang-seg-ros`: talk to a running lang_seg_ros node without the `ros2` command line (the pip
set-up has rclpy but no `ros2`; with a ROS install it works too: `python3 -m lang_seg_ros.ros.client`).

    lang-seg-ros labels "road, car, sky:stuff"        # set_labels service: prints the active set or why not
    lang-seg-ros labels --topic "road, car"           # the `labels` topic, with the refusal from `status`
    lang-seg-ros refer "the car on the left" [--json] # refer service: the answer on the latest frame
    lang-seg-ros expression "the car on the left"     # `referring_expression` topic ("" clears)
    lang-seg-ros param threshold [0.3]                # get / set a parameter (VALUE read as YAML)
    lang-seg-ros echo segmentation|labels|referring|status [--once] [--count N] [--camera NAME]
    lang-seg-ros status                               # the node's /diagnostics, labels, last refusals

`--namespace NS` (default /) is the node's namespace, its topics are `NS/labels` etc.; `--node
NAME` its name (default lang_seg; a name starting with / is fully qualified, and gives the
namespace unless --namespace is given). Exit codes: 0 done, 1 refused or nothing received within
`--timeout` s, 2 usage error. rclpy is imported only when a command runs (`--help` is instant).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Callable, Sequence

__all__ = ["build_parser", "main"]

DEFAULT_NODE = "lang_seg"  # runner.NODE_NAME (not imported: that module imports rclpy)
#: Seconds a topic command waits for the node's answer on `status` / `current_labels`.
FEEDBACK_WAIT = 1.5
ECHO_TOPICS = ("segmentation", "labels", "referring", "status")


class Refused(Exception):
    """The node refused the request, or did not answer: exit code 1, the message on stderr."""


# -- command line ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    # The common options are accepted before and after the sub-command.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--namespace", default=argparse.SUPPRESS,
                        help="the node's namespace (default /); its topics are NAMESPACE/labels etc.")
    common.add_argument("--node", default=argparse.SUPPRESS,
                        help=f"the node's name (default {DEFAULT_NODE}), or its fully qualified name (/cam/lang_seg)")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS,
                        help="seconds to wait for the node or a message (default 10)")
    parser = argparse.ArgumentParser(
        prog="lang-seg-ros", parents=[common],
        description="Talk to a running lang_seg_ros node: change labels, ask for an object, set parameters, "
                    "see results and refusals. Exit codes: 0 done, 1 refused or nothing received, 2 usage error.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("labels", parents=[common], help="replace the label set (the set_labels service)")
    p.add_argument("text", metavar="TEXT", help='comma-separated labels, e.g. "road, car, sky:stuff"')
    p.add_argument("--topic", action="store_true",
                   help="publish on the `labels` topic instead (the refusal, if any, is read from `status`)")

    p = sub.add_parser("refer", parents=[common], help="answer an expression on the latest frame (the refer service)")
    p.add_argument("expression", metavar="EXPRESSION", help='e.g. "the car on the left"')
    p.add_argument("--json", action="store_true", help="print the answer as JSON")

    p = sub.add_parser("expression", parents=[common],
                       help="set the referring expression answered on every frame (\"\" clears it)")
    p.add_argument("text", metavar="TEXT")

    p = sub.add_parser("param", parents=[common], help="get a parameter, or set it with a VALUE (read as YAML)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("value", metavar="VALUE", nargs="?", help="0.3, true, [a, b], \"road, car\"")

    p = sub.add_parser("echo", parents=[common], help="print a readable line per message of an output")
    p.add_argument("what", choices=ECHO_TOPICS)
    p.add_argument("--once", action="store_true", help="one message, then exit (1 if none within --timeout)")
    p.add_argument("--count", type=int, metavar="N", help="N messages, then exit")
    p.add_argument("--camera", metavar="NAME", help="a node with several cameras (`cameras`): this camera's "
                   "segmentation / referring")

    sub.add_parser("status", parents=[common], help="the node's diagnostics, active labels and last refusals")
    return parser


def resolve_names(namespace: str | None, node: str | None) -> tuple[str, str]:
    """(topic prefix, the node's fully qualified name) from --namespace and --node."""
    node = node or DEFAULT_NODE
    if namespace is None:
        namespace = node.rsplit("/", 1)[0] if node.startswith("/") else "/"
    prefix = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return prefix, node if node.startswith("/") else f"{prefix}/{node}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prefix, fqn = resolve_names(getattr(args, "namespace", None), getattr(args, "node", None))
    args.timeout = getattr(args, "timeout", 10.0)
    if args.command == "echo" and args.count is not None and args.count < 1:
        print("lang-seg-ros: --count must be at least 1", file=sys.stderr)
        return 2
    if args.command == "param" and args.value is not None:
        try:
            args.parsed = _yaml_value(args.value)
        except ValueError as exc:
            print(f"lang-seg-ros: {exc}", file=sys.stderr)
            return 2
    session = None
    try:
        session = _Session(prefix, fqn, args.timeout)
        return COMMANDS[args.command](session, args)
    except Refused as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0 if args.command == "echo" else 130
    finally:
        if session is not None:
            session.close()


# -- the ROS side ----------------------------------------------------------------------------------
class _Session:
    """This process's node: one executor, subscriptions and calls with timeouts."""

    def __init__(self, prefix: str, fqn: str, timeout: float) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.prefix, self.fqn, self.timeout = prefix, fqn, timeout
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"lang_seg_ros_client_{os.getpid()}", context=self.context,
                                      start_parameter_services=False, enable_rosout=False)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def topic(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def close(self) -> None:
        import rclpy

        try:
            self.executor.shutdown()
            self.node.destroy_node()
        finally:
            rclpy.try_shutdown(context=self.context)

    def spin_until(self, predicate: Callable[[], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        value = predicate()
        while not value and time.monotonic() < deadline and self.context.ok():
            self.executor.spin_once(timeout_sec=min(0.05, max(0.0, deadline - time.monotonic())))
            value = predicate()
        return value

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def subscribe(self, msg_type, topic: str, latched: bool = False, depth: int = 10) -> list:
        """Messages of `topic` as they arrive (reliable; `latched`: transient local, the history first)."""
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
        received: list = []
        self.node.create_subscription(msg_type, topic, received.append, qos)
        return received

    def call(self, srv_type, name: str, request, answer_timeout: float | None = None):
        client = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=self.timeout):
            raise Refused(f"no node answers on {name} within {self.timeout:g} s (is it running? --namespace, --node?)")
        future = client.call_async(request)
        wait = answer_timeout if answer_timeout is not None else self.timeout
        if not self.spin_until(future.done, wait):
            raise Refused(f"{name}: no answer within {wait:g} s")
        return future.result()

    def publish_when_matched(self, msg_type, topic: str, msg) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        pub = self.node.create_publisher(msg_type, topic, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        if not self.spin_until(lambda: pub.get_subscription_count() > 0, self.timeout):
            raise Refused(f"nobody subscribes to {topic} within {self.timeout:g} s (is the node running? --namespace?)")
        pub.publish(msg)

    def latched_history(self, msg_type, topic: str, settle: float = 0.3, at_least: int = 0) -> list:
        """Subscribe to a latched topic and wait until its publisher matched and its history came:
        at least `at_least` messages (a topic the node always latches, e.g. current_labels: on a
        busy machine the history can take longer than `settle`), then `settle` s for the rest."""
        received = self.subscribe(msg_type, topic, latched=True)
        self.spin_until(lambda: self.node.count_publishers(topic) > 0, self.timeout)
        if at_least:
            self.spin_until(lambda: len(received) >= at_least, self.timeout)
        self.spin_for(settle)
        return received


def _values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def _send_on_topic(session: _Session, topic: str, text: str, accepted: Callable[[], Any] | None = None):
    """Publish `text` on `topic` and wait for the node's word: a new refusal on `status` naming this
    input and text (Refused), or `accepted()` (returned); None when neither came (no refusal seen)."""
    from diagnostic_msgs.msg import DiagnosticStatus
    from std_msgs.msg import String

    from .feedback import STATUS_TOPIC, sent_text

    status = session.latched_history(DiagnosticStatus, session.topic(STATUS_TOPIC))
    seen = len(status)
    sent = sent_text(text)

    def mine(entry) -> bool:
        v = _values(entry)
        return v.get("input") == topic and v.get("text", "") == sent

    earlier = [s for s in status if mine(s)]
    session.publish_when_matched(String, session.topic(topic), String(data=text))
    answer: dict[str, Any] = {}

    def heard() -> bool:
        refusals = [s for s in status[seen:] if mine(s)]
        if refusals:
            answer["refused"] = refusals[0]
        elif accepted is not None:
            answer["accepted"] = accepted()
        return bool(refusals or answer.get("accepted"))

    session.spin_until(heard, min(FEEDBACK_WAIT, session.timeout))
    if "refused" in answer:
        raise Refused(answer["refused"].message)
    if not answer.get("accepted") and earlier:  # a repeat within log_throttle_period is not reported again
        raise Refused(f"{earlier[-1].message} (at {_values(earlier[-1]).get('time', '?')}; a repeat within the "
                      "node's log_throttle_period is not reported again)")
    return answer.get("accepted") or None


# -- commands --------------------------------------------------------------------------------------
def cmd_labels(session: _Session, args) -> int:
    from lang_seg_ros.msg import LabelSet
    from lang_seg_ros.srv import SetLabels

    if args.topic:
        # the node latches its label set from the start: wait for it, or a late history reads as "accepted"
        current = session.latched_history(LabelSet, session.topic("current_labels"), at_least=1)
        before = current[-1].label_set_id if current else 0
        new = _send_on_topic(session, "labels", args.text,
                             accepted=lambda: [m for m in current if m.label_set_id > before])
        if new:
            latest = new[-1]
            print(f"labels accepted (set {latest.label_set_id}): {_label_list(latest.labels, latest.label_is_stuff)}")
        else:
            print(f"sent on {session.topic('labels')}; no refusal and no new label set (the same set?)")
        return 0
    response = session.call(SetLabels, session.topic("set_labels"), SetLabels.Request(labels_csv=args.text))
    labels = _label_list(response.labels, response.label_is_stuff)
    if not response.success:
        raise Refused(f"{_refusal(response.message)}\nactive labels (set {response.label_set_id}): {labels}")
    what = "unchanged" if response.message == "unchanged" else "accepted"
    print(f"labels {what} (set {response.label_set_id}): {labels}")
    return 0


def _refusal(message: str) -> str:
    return message if "refused" in message else f"refused: {message}"


def _label_list(labels, is_stuff) -> str:
    flags = list(is_stuff) + [False] * (len(labels) - len(is_stuff))
    return ", ".join(f"{label}:stuff" if stuff else label for label, stuff in zip(labels, flags))


def cmd_refer(session: _Session, args) -> int:
    from lang_seg_ros.srv import Refer

    # The node answers between two frames: one model pass, at most 60 s.
    response = session.call(Refer, session.topic("refer"), Refer.Request(expression=args.expression),
                            answer_timeout=max(session.timeout, 65.0))
    answer = refer_answer(response)
    if args.json:
        print(json.dumps(answer, indent=2))
    elif response.success:
        print(format_answer(answer))
    if not response.success:
        raise Refused(_refusal(response.message))
    return 0


def refer_answer(response) -> dict[str, Any]:
    """A Refer response as plain data (the --json output)."""
    r = response.result
    region = r.region
    box = region.bbox
    out: dict[str, Any] = {
        "success": bool(response.success), "message": response.message, "expression": r.expression,
        "found": bool(r.found), "category": r.category, "label": r.matched_label, "score": round(float(r.score), 4),
        "bbox": [box.x_offset, box.y_offset, box.x_offset + box.width, box.y_offset + box.height] if r.found else None,
        "area": int(region.area),
        "centroid": [round(region.centroid_x, 1), round(region.centroid_y, 1)] if r.found else None,
        "centroid_3d": None, "frame_id_3d": None, "reason": r.reason,
        "stamp": f"{r.header.stamp.sec}.{r.header.stamp.nanosec:09d}", "frame_id": r.header.frame_id,
    }
    if r.found and region.has_3d:
        c = region.centroid_3d
        out["centroid_3d"] = [round(c.x, 3), round(c.y, 3), round(c.z, 3)]
        out["frame_id_3d"] = region.frame_id_3d
    return out


def format_answer(a: dict[str, Any]) -> str:
    lines = [f"expression: {a['expression']}", f"found: {str(a['found']).lower()}", f"category: {a['category']}"]
    if a["found"]:
        lines += [f"label: {a['label']}", f"score: {a['score']:.2f}",
                  f"bbox: {a['bbox']} (x0, y0, x1, y1 px, half-open), area {a['area']} px"]
        lines.append(f"centroid 3D: {a['centroid_3d']} m in {a['frame_id_3d']}" if a["centroid_3d"] is not None
                     else "centroid 3D: none (no depth for this frame)")
    lines += [f"reason: {a['reason']}", f"frame: {a['stamp']} ({a['frame_id'] or 'no frame_id'})"]
    return "\n".join(lines)


def cmd_expression(session: _Session, args) -> int:
    _send_on_topic(session, "referring_expression", args.text)
    if args.text.strip():
        print(f"expression sent on {session.topic('referring_expression')} (not refused); answers per frame: "
              "lang-seg-ros echo referring")
    else:
        print("expression cleared")
    return 0


def _yaml_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"VALUE {text!r} is not valid YAML: {exc}") from None


def _coerce(value: Any, current_type: int, text: str) -> Any:
    """A YAML value in the parameter's type where that is unambiguous (1 -> 1.0 for a double)."""
    from rcl_interfaces.msg import ParameterType as T

    if current_type == T.PARAMETER_STRING and not isinstance(value, (str, list)):
        return "" if value is None else text

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    numbers = isinstance(value, list) and bool(value) and all(number(v) for v in value)
    if current_type in (T.PARAMETER_DOUBLE, T.PARAMETER_DOUBLE_ARRAY):
        if number(value):
            return float(value)
        if numbers:
            return [float(v) for v in value]
    if numbers and any(isinstance(v, float) for v in value):  # [1, 1.5]: one array type
        return [float(v) for v in value]
    return value


def cmd_param(session: _Session, args) -> int:
    from rcl_interfaces.msg import ParameterType
    from rcl_interfaces.srv import GetParameters, SetParameters
    from rclpy.parameter import Parameter, parameter_value_to_python

    got = session.call(GetParameters, f"{session.fqn}/get_parameters", GetParameters.Request(names=[args.name]))
    current = got.values[0] if got.values else None
    if current is None or current.type == ParameterType.PARAMETER_NOT_SET:
        raise Refused(f"{session.fqn} has no parameter {args.name!r}")
    if args.value is None:
        print(f"{args.name}: {_show(parameter_value_to_python(current))}")
        return 0
    value = _coerce(args.parsed, current.type, args.value)
    try:
        msg = Parameter(args.name, value=value).to_parameter_msg()
    except TypeError as exc:
        print(f"lang-seg-ros: VALUE {args.value!r} is no parameter value: {exc}", file=sys.stderr)
        return 2
    result = session.call(SetParameters, f"{session.fqn}/set_parameters", SetParameters.Request(parameters=[msg]))
    outcome = result.results[0]
    if not outcome.successful:
        raise Refused(_refusal(outcome.reason or "no reason given"))
    print(f"{args.name} set to {_show(value)}")
    return 0


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)) or type(value).__name__ == "array":
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) and (value == "" or value != value.strip()) else str(value)


# -- echo and status -------------------------------------------------------------------------------
def _stamp(header) -> str:
    return f"{header.stamp.sec}.{header.stamp.nanosec:09d}"


def segmentation_line(msg, top: int = 5) -> str:
    """stamp, label set, the largest label shares of the mask, the regions by label, latency."""
    import numpy as np

    labels = list(msg.labels)
    m = msg.mask
    shares = ""
    if m.width and m.height:
        wide = m.encoding in ("mono16", "16UC1")
        dtype = np.dtype(">u2" if m.is_bigendian else "<u2") if wide else np.dtype(np.uint8)
        rows = np.frombuffer(bytes(m.data), np.uint8)[:m.height * m.step].reshape(m.height, m.step)
        mask = rows[:, :m.width * dtype.itemsize].copy().view(dtype)
        counts = np.bincount(mask.ravel().astype(np.int64), minlength=max(len(labels), int(msg.no_label) + 1))
        total = mask.size
        named = {labels[i] if i < len(labels) else ("no label" if i == msg.no_label else f"#{i}"): int(c)
                 for i, c in enumerate(counts) if c}
        ranked = sorted(named.items(), key=lambda kv: -kv[1])
        shares = ", ".join(f"{name} {100.0 * c / total:.1f}%" for name, c in ranked[:top])
        if len(ranked) > top:
            shares += f", +{len(ranked) - top} more"
    by_label: dict[str, int] = {}
    for r in msg.regions:
        by_label[r.label] = by_label.get(r.label, 0) + 1
    regions = ", ".join(f"{n} {label}" if n > 1 else label for label, n in by_label.items())
    return (f"{_stamp(msg.header)} ({msg.header.frame_id or 'no frame_id'}) {m.width}x{m.height} set "
            f"{msg.label_set_id} | {shares or 'empty mask'} | {len(msg.regions)} regions"
            + (f": {regions}" if regions else "") + f" | latency {msg.latency_ms:.0f} ms")


def labels_line(msg) -> str:
    return f"set {msg.label_set_id} ({_stamp(msg.header)}): {_label_list(msg.labels, msg.label_is_stuff)}"


def referring_line(msg) -> str:
    head = f"{_stamp(msg.header)} {msg.expression!r}: "
    if not msg.found:
        return head + f"not found ({msg.reason})"
    box, c = msg.region.bbox, msg.region.centroid_3d
    where = f" at [{c.x:.2f}, {c.y:.2f}, {c.z:.2f}] m" if msg.region.has_3d else ""
    corners = [box.x_offset, box.y_offset, box.x_offset + box.width, box.y_offset + box.height]
    return head + f"{msg.matched_label} {msg.score:.2f} bbox {corners}{where} ({msg.reason})"


def status_line(msg) -> str:
    v = _values(msg)
    text = f" text {v['text']!r}" if "text" in v else ""
    repeats = f" (+{v['repeats']} repeats before)" if v.get("repeats", "0") != "0" else ""
    return f"{v.get('time', v.get('stamp', '?'))} {v.get('input', '?')}{text}: {msg.message}{repeats}"


def cmd_echo(session: _Session, args) -> int:
    from diagnostic_msgs.msg import DiagnosticStatus

    from lang_seg_ros.msg import LabelSet, ReferringRegion, Segmentation

    from .feedback import STATUS_TOPIC

    topic, msg_type, latched, line = {
        "segmentation": ("segmentation", Segmentation, False, segmentation_line),
        "labels": ("current_labels", LabelSet, True, labels_line),
        "referring": ("referring/region", ReferringRegion, False, referring_line),
        "status": (STATUS_TOPIC, DiagnosticStatus, True, status_line),
    }[args.what]
    if getattr(args, "camera", None) and args.what in ("segmentation", "referring"):
        topic = f"{args.camera}/{topic}"  # per-camera outputs live under the camera's name
    name = session.topic(topic)
    received = session.subscribe(msg_type, name, latched=latched)
    count = 1 if args.once else args.count
    printed = 0
    while count is None or printed < count:
        if not session.spin_until(lambda: len(received) > printed, session.timeout if count else 3600.0):
            if count is None or not session.context.ok():  # no count: until Ctrl-C
                if not session.context.ok():
                    return 0
                continue
            raise Refused(f"nothing on {name} within {session.timeout:g} s"
                          + (f" ({printed} of {count})" if printed else ""))
        while len(received) > printed and (count is None or printed < count):
            print(line(received[printed]), flush=True)
            printed += 1
    return 0


def cmd_status(session: _Session, args) -> int:
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    from lang_seg_ros.msg import LabelSet

    from .feedback import STATUS_TOPIC

    diagnostics = session.subscribe(DiagnosticArray, "/diagnostics")

    def mine():
        return [s for array in diagnostics for s in array.status if s.name.startswith(session.fqn + ":")]

    found = session.spin_until(mine, session.timeout)
    if not found:
        raise Refused(f"no /diagnostics from {session.fqn} within {session.timeout:g} s (is it running? --node?)")
    # The latched histories once their publishers matched (on a busy machine /diagnostics can come
    # first): the label set the node always latches, then the refusals with a settle.
    labels = session.latched_history(LabelSet, session.topic("current_labels"), settle=0.0, at_least=1)
    refusals = session.latched_history(DiagnosticStatus, session.topic(STATUS_TOPIC))
    status = found[-1]
    level = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}.get(ord(status.level) if isinstance(status.level, bytes)
                                                           else int(status.level), "?")
    print(f"{status.name}: {level} {status.message} (device {status.hardware_id})")
    for kv in status.values:
        print(f"  {kv.key}: {kv.value}")
    if labels:
        print(f"labels: {labels_line(labels[-1])}")
    print(f"refusals of topic inputs on {session.topic(STATUS_TOPIC)} (last {len(refusals)}, oldest first):"
          if refusals else f"no refusals of topic inputs on {session.topic(STATUS_TOPIC)}")
    for entry in refusals:
        print(f"  {status_line(entry)}")
    return 0


COMMANDS: dict[str, Callable[[_Session, Any], int]] = {
    "labels": cmd_labels, "refer": cmd_refer, "expression": cmd_expression, "param": cmd_param,
    "echo": cmd_echo, "status": cmd_status,
}

if __name__ == "__main__":
    sys.exit(main())
