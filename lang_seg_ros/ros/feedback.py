"""Feedback to whoever sends the node input on a topic (`labels`, `referring_expression`,
`image`): a topic has no response, so every refusal is logged (throttled per distinct message,
`diagnostics.Throttle`) and, when logged, also published on the latched `status` topic, so a
sender sees why nothing changed (`lang-seg-ros status`, `ros2 topic echo /status`).

One `diagnostic_msgs/DiagnosticStatus` per refusal: level WARN, name `<node>: input`, message =
the refusal as logged (what was refused and why); values `input` (the topic), `kind` (the log's
tag: `bad_labels`, `bad_expression`, `bad_image`), `text` (the first 80 characters of what was
sent: labels and expressions only), `stamp` (node time, `sec.nanosec`), `time` (the same, ISO 8601
UTC) and `repeats` (refusals of the same message held back since the previous entry).
"""
from __future__ import annotations

from datetime import datetime, timezone

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

__all__ = ["STATUS_DEPTH", "STATUS_TOPIC", "TEXT_CHARS", "refusal_status", "sent_text"]

STATUS_TOPIC = "status"
#: History a late subscriber gets (reliable, transient local).
STATUS_DEPTH = 10
#: Characters of the sent text kept in the `text` value.
TEXT_CHARS = 80
_MESSAGE_CHARS = 400


def sent_text(sent: str | list[str] | tuple[str, ...] | None) -> str | None:
    """What was sent, white space collapsed, at most TEXT_CHARS characters (a list: comma-joined)."""
    if sent is None:
        return None
    if not isinstance(sent, str):
        sent = ", ".join(str(s) for s in sent)
    return " ".join(sent.split())[:TEXT_CHARS]


def refusal_status(node_name: str, topic: str, kind: str, message: str, sent: str | list[str] | None,
                   stamp_ns: int, repeats: int = 0) -> DiagnosticStatus:
    """The `status` entry of one refused input (see the module doc)."""
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    values = {"input": topic, "kind": kind}
    text = sent_text(sent)
    if text is not None:
        values["text"] = text
    values["stamp"] = f"{sec}.{nanosec:09d}"
    when = datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    values["time"] = f"{when}.{nanosec // 1_000_000:03d}Z"
    values["repeats"] = str(repeats)
    return DiagnosticStatus(level=DiagnosticStatus.WARN, name=f"{node_name}: input", message=message[:_MESSAGE_CHARS],
                            hardware_id="", values=[KeyValue(key=k, value=v) for k, v in values.items()])
