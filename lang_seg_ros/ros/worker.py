"""The threads of the node: the worker that owns the model (newest frame wins, `refer` jobs,
model reloads) and the hand-off to the thread that finishes and publishes each frame.

Callbacks hand work over and return; one thread does it, in this order: a pending reload, then
queued `refer` jobs and the newest frames in turn (while jobs wait, waiting frames are taken after
each job, so a storm of requests delays frames by at most one job each). Each camera has its own
one-frame slot: a frame offered while another of the same camera waits replaces it (never a
queue: the node always segments each camera's newest frame; replaced frames are counted as
dropped), and the worker takes every camera's waiting frame at once (one batched model pass for
frames of one size), so no camera waits more than one round and none starves.
At most one worker thread runs at a time, whatever the lifecycle transitions: `start` waits
for a previous thread that has not yet finished its frame.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["FrameWorker", "Handoff", "Job"]


@dataclass(eq=False)
class Job:
    """A request answered by the worker (e.g. the `refer` service); `done` is set when answered.

    on_done(result) is called once, from the thread that finishes the job (the worker's, or the
    one that cancels or times it out): the first `finish` wins, later ones are ignored."""

    payload: Any
    on_done: Callable[[Any], None] | None = None
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def finish(self, result: Any) -> bool:
        """Answer the job; False when it was answered already (nothing changes then)."""
        with self._lock:
            if self.done.is_set():
                return False
            self.result = result
            self.done.set()
        if self.on_done is not None:
            self.on_done(result)
        return True


def _join(thread: threading.Thread | None, timeout: float) -> bool:
    """Wait up to `timeout` s for `thread` (not from itself); True when it has ended."""
    if thread is None or thread is threading.current_thread():
        return False
    thread.join(timeout)
    return not thread.is_alive()


class FrameWorker:
    """Runs `on_frames(items)` (every camera's waiting frame, in the order the cameras first
    offered one), `on_job(job)` and `on_reload()` on one thread.

    on_error(exc, job) is called when a handler raises (the thread keeps going); cancelled jobs
    get `cancel_result`.
    """

    def __init__(self, on_frames: Callable[[list[Any]], None], on_job: Callable[[Job], None],
                 on_reload: Callable[[], None], on_error: Callable[[BaseException, Job | None], None],
                 cancel_result: Any = None, logger: Any = None) -> None:
        self._on_frames, self._on_job, self._on_reload, self._on_error = on_frames, on_job, on_reload, on_error
        self._cancel_result = cancel_result
        self._logger = logger
        self._wake = threading.Condition()
        self._pending: dict[Any, Any] = {}  # camera -> its newest waiting frame
        self._jobs: deque[Job] = deque()
        self._reload = False
        self._job_last = False  # the last thing done was a job: a waiting frame goes next
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def on_thread(self) -> bool:
        """True when called from the worker thread itself."""
        return self._thread is not None and threading.current_thread() is self._thread

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self, reload_first: bool = False) -> None:
        """Start the thread; waits for a previous one still finishing its frame (never two)."""
        previous = self._thread
        if previous is not None and previous is not threading.current_thread():
            while previous.is_alive():
                previous.join(10.0)
                if previous.is_alive() and self._logger is not None:
                    self._logger.warning("waiting for the previous worker to finish its frame")
        self._stop.clear()
        self._reload = self._reload or reload_first  # a reload asked for while stopped is kept
        self._thread = threading.Thread(target=self._loop, name="lang_seg_worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to stop, cancel what waits, and join it for up to `timeout` s (a frame in
        progress finishes; `start` waits for it if it takes longer)."""
        self._stop.set()
        with self._wake:
            self._pending = {}
            jobs, self._jobs = list(self._jobs), deque()
            self._wake.notify_all()
        for job in jobs:
            job.finish(self._cancel_result)
        if _join(self._thread, timeout):
            self._thread = None

    def offer(self, item: Any, slot: Any = None) -> bool:
        """Hand over a frame of camera `slot`; True when it replaced one of that camera that was
        still waiting (a dropped frame)."""
        with self._wake:
            replaced = slot in self._pending
            self._pending[slot] = item
            self._wake.notify()
        return replaced

    def submit(self, job: Job) -> bool:
        """Queue a job; False when the worker is not running (the job is not queued)."""
        with self._wake:
            if self._thread is None or self._stop.is_set():
                return False
            self._jobs.append(job)
            self._wake.notify()
        return True

    def withdraw(self, job: Job) -> bool:
        """Take a job out of the queue; False when it is not queued (being answered, or done)."""
        with self._wake:
            if job in self._jobs:
                self._jobs.remove(job)
                return True
        return False

    def request_reload(self) -> None:
        with self._wake:
            self._reload = True
            self._wake.notify()

    def cancel_reload(self) -> None:
        """The model was (re)loaded by other means (a lifecycle configure): no reload pending."""
        with self._wake:
            self._reload = False

    def notify(self) -> None:
        """Wake the thread (e.g. a depth frame arrived while it waits for one)."""
        with self._wake:
            self._wake.notify_all()

    def wait(self, timeout: float) -> None:
        """For a handler on the worker thread: sleep up to `timeout` s or until `notify`."""
        with self._wake:
            self._wake.wait(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                while not self._pending and not self._jobs and not self._reload and not self._stop.is_set():
                    self._wake.wait(0.5)
                reload, self._reload = self._reload, False
                frame_turn = bool(self._pending) and (self._job_last or not self._jobs)
                job = self._jobs.popleft() if self._jobs and not reload and not frame_turn else None
                items = []
                if job is None and not reload:
                    items, self._pending = list(self._pending.values()), {}
                self._job_last = job is not None
            if self._stop.is_set():
                if job is not None:
                    job.finish(self._cancel_result)
                break
            try:
                if reload:
                    self._on_reload()
                elif job is not None:
                    self._on_job(job)
                elif items:
                    self._on_frames(items)
            except Exception as exc:  # noqa: BLE001 - the worker must survive anything
                self._on_error(exc, job)
                if job is not None and not job.done.is_set():
                    job.finish(self._cancel_result)


class Handoff:
    """A second thread that runs `on_item(item)` on what the worker hands over, in order.

    While the worker runs the model on frame k+1, this thread extracts objects from frame k and
    publishes it, so post-processing overlaps the next model pass instead of adding to it. `put`
    waits while an item is already waiting: at most one frame waits here besides the one being
    finished (and the worker's next one, blocked in `put`), nothing is dropped, memory stays bounded. on_error(exc) is called when `on_item` raises.
    """

    def __init__(self, on_item: Callable[[Any], None], on_error: Callable[[BaseException], None],
                 name: str = "lang_seg_publisher") -> None:
        self._on_item, self._on_error, self._name = on_item, on_error, name
        self._cond = threading.Condition()
        self._item: Any = None
        self._busy = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (waits for a previous one still finishing an item: never two)."""
        previous = self._thread
        if previous is not None and previous is not threading.current_thread():
            previous.join()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Drop what waits, let the item in progress finish (up to `timeout` s), end the thread."""
        self._stop.set()
        with self._cond:
            self._item = None
            self._cond.notify_all()
        if _join(self._thread, timeout):
            self._thread = None

    def put(self, item: Any) -> bool:
        """Hand over an item, waiting while another one waits; False when stopped (not queued)."""
        with self._cond:
            while self._item is not None and not self._stop.is_set():
                self._cond.wait(0.5)
            if self._stop.is_set() or self._thread is None:
                return False
            self._item = item
            self._cond.notify_all()
        return True

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until everything handed over is done; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._item is not None or self._busy) and time.monotonic() < deadline:
                self._cond.wait(max(0.0, min(0.5, deadline - time.monotonic())))
            return self._item is None and not self._busy

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._item is None and not self._stop.is_set():
                    self._cond.wait(0.5)
                if self._stop.is_set():
                    return
                item, self._item, self._busy = self._item, None, True
                self._cond.notify_all()
            try:
                self._on_item(item)
            except Exception as exc:  # noqa: BLE001 - the thread must survive anything
                self._on_error(exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
