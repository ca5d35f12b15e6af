"""The node's services under a storm: every request kept, and each one answered or refused.

- QoS (`SERVICE_QOS`): reliable, KEEP_LAST `SERVICE_QUEUE_DEPTH` (1000) requests, so a storm of
  calls waits in the node's request queue instead of being overwritten there (rclpy's default,
  depth 10, dropped all but 11-35 of 300 `set_labels` calls without an answer).
- `set_labels` is answered in its callback (the label set is checked there; the worker encodes
  it before the next frame), so it never waits behind a model pass.
- `refer` is a coroutine in its own reentrant callback group: it hands the expression to the
  worker and awaits the answer, so the executor goes on with frames, topics, other calls and
  more `refer` requests meanwhile (`PendingRefers.answer`; in the node's default, mutually
  exclusive group an awaiting coroutine would hold every other callback until answered). At
  most `MAX_PENDING_REFER` requests wait for the worker; one more is refused at once ("busy: N
  refer requests pending"), and one not answered within `REFER_TIMEOUT` s is answered with that
  (the worker answers every request it takes, and those it has not taken when it stops).

The worker finishes a request on its own thread: the rclpy `Future` the coroutine awaits is
created with the node's executor and given a done callback, so completing it from that thread
schedules a task on the executor, which wakes it (`Executor.create_task` triggers its guard
condition): the answer goes out at once, not at the executor's next event.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future

from .worker import Job

__all__ = ["MAX_PENDING_REFER", "PendingRefers", "REFER_TIMEOUT", "SERVICE_QOS", "SERVICE_QUEUE_DEPTH"]

#: Requests a service keeps while its callbacks catch up (per service, in the node's reader).
SERVICE_QUEUE_DEPTH = 1000
SERVICE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=SERVICE_QUEUE_DEPTH,
                         reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
#: `refer` requests waiting for the worker at most; each costs up to one model pass there.
MAX_PENDING_REFER = 32
#: Seconds a `refer` request waits for the worker before it is answered with a failure.
REFER_TIMEOUT = 60.0


def _wake(_future: Future) -> None:
    """A done callback: its being scheduled is what wakes the executor (see the module doc)."""


class PendingRefers:
    """The `refer` requests handed to the worker and not answered yet (used on the executor
    thread; the worker thread only finishes their jobs)."""

    def __init__(self, limit: int = MAX_PENDING_REFER, timeout: float = REFER_TIMEOUT) -> None:
        self.limit, self.timeout = limit, timeout
        self._pending: dict[Job, float] = {}  # job -> deadline (monotonic)

    def __len__(self) -> int:
        return len(self._pending)

    def busy(self) -> str | None:
        """Why one more request is refused now, or None."""
        if len(self._pending) >= self.limit:
            return (f"busy: {len(self._pending)} refer requests pending (at most {self.limit}); "
                    "call again when one is answered")
        return None

    def job(self, expression: str, executor: Any) -> tuple[Job, Future]:
        """A job for the worker and the future its answer completes (from the worker's thread)."""
        future = Future(executor=executor)
        future.add_done_callback(_wake)
        return Job(expression, on_done=future.set_result), future

    async def answer(self, job: Job, future: Future) -> Any:
        """Await the answer of a job the worker took (`submit`ted): its result tuple."""
        self._pending[job] = time.monotonic() + self.timeout
        try:
            return await future
        finally:
            self._pending.pop(job, None)

    def expire(self, withdraw: Callable[[Job], Any]) -> None:
        """Answer the requests waiting longer than `timeout` s (a timer calls this); `withdraw`
        takes a job out of the worker's queue."""
        now = time.monotonic()
        for job, deadline in list(self._pending.items()):
            if now > deadline:
                withdraw(job)
                job.finish((False, f"no answer within {self.timeout:.0f} s", None))
