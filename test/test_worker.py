"""The node's worker thread (lang_seg_ros/ros/worker.py): newest frame wins, one thread at a time.

Plain threads, no ROS calls: the module imports no rclpy, so this runs wherever the core does.
"""
from __future__ import annotations

import threading
import time

from lang_seg_ros.ros.worker import FrameWorker, Job


class Recorder:
    def __init__(self, frame_seconds: float = 0.0) -> None:
        self.frames, self.errors, self.rounds = [], [], []
        self.running = self.most_at_once = 0
        self.lock = threading.Lock()
        self.frame_seconds = frame_seconds

    def frame(self, items) -> None:
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(self.frame_seconds)
        with self.lock:
            self.running -= 1
            self.rounds.append(list(items))
            self.frames.extend(items)

    def worker(self) -> FrameWorker:
        return FrameWorker(self.frame, lambda job: job.finish(job.payload * 2), lambda: None,
                           lambda exc, job: self.errors.append(exc), cancel_result="cancelled")


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)
    return predicate()


def test_only_the_newest_waiting_frame_is_processed():
    rec = Recorder(frame_seconds=0.2)
    worker = rec.worker()
    worker.start()
    try:
        assert not worker.offer(1)
        assert wait_for(lambda: rec.running == 1)
        assert not worker.offer(2) and worker.offer(3) and worker.offer(4)  # 2 and 3 replaced while 1 runs
        assert wait_for(lambda: len(rec.frames) == 2)
        assert rec.frames == [1, 4]
    finally:
        worker.stop()


def test_each_camera_has_its_own_slot_and_a_round_takes_every_waiting_frame():
    """Two cameras: a newer frame replaces only its own camera's waiting one, and the worker takes
    both cameras' newest frames in one round (one batched pass), so neither waits a second round."""
    rec = Recorder(frame_seconds=0.2)
    worker = rec.worker()
    worker.start()
    try:
        assert not worker.offer("front 1", slot="front")
        assert wait_for(lambda: rec.running == 1)
        assert not worker.offer("front 2", slot="front")
        assert not worker.offer("rear 1", slot="rear")  # another camera: nothing replaced
        assert worker.offer("front 3", slot="front")  # replaces front 2 only
        assert wait_for(lambda: len(rec.rounds) == 2)
        assert rec.rounds == [["front 1"], ["front 3", "rear 1"]]
    finally:
        worker.stop()


def test_one_worker_at_a_time_whatever_the_transitions():
    """stop() gives up waiting after its timeout while a frame is still running; start() must not
    run a second thread beside it (today's deactivate/activate in quick succession)."""
    rec = Recorder(frame_seconds=0.5)
    worker = rec.worker()
    worker.start()
    worker.offer("slow")
    assert wait_for(lambda: rec.running == 1)
    worker.stop(timeout=0.01)  # returns with the frame still running
    worker.start()  # waits for the old thread first
    worker.offer("next")
    assert wait_for(lambda: rec.frames == ["slow", "next"])
    worker.stop()
    assert rec.most_at_once == 1
    assert sum(t.name == "lang_seg_worker" and t.is_alive() for t in threading.enumerate()) == 0


def test_jobs_are_answered_and_cancelled_on_stop_and_errors_do_not_kill_it():
    rec = Recorder()
    worker = FrameWorker(lambda items: 1 / items[0], lambda job: job.finish(job.payload * 2), lambda: None,
                         lambda exc, job: rec.errors.append(exc), cancel_result="cancelled")
    job = Job(21)
    assert not worker.submit(job)  # not running: refused, not queued
    worker.start()
    worker.offer(0)  # raises ZeroDivisionError in the worker
    assert wait_for(lambda: len(rec.errors) == 1)
    assert worker.submit(job) and job.done.wait(5.0) and job.result == 42
    worker.stop()
    late = Job(1)
    assert not worker.submit(late)


def test_the_handoff_keeps_order_drops_nothing_and_holds_the_worker_at_most_one_ahead():
    done, errors = [], []
    gate = threading.Event()

    def finish(item):
        gate.wait(5.0)
        if item == "bad":
            raise ValueError("bad item")
        done.append(item)

    from lang_seg_ros.ros.worker import Handoff

    handoff = Handoff(finish, errors.append)
    handoff.start()
    try:
        assert handoff.put(1)  # taken by the thread, which waits on the gate
        assert wait_for(lambda: handoff._busy)
        assert handoff.put(2)  # waits in the slot
        third = threading.Thread(target=handoff.put, args=(3,))
        third.start()
        time.sleep(0.1)
        assert third.is_alive(), "a third item must wait: the worker is at most one frame ahead"
        gate.set()
        third.join(5.0)
        assert handoff.put("bad") and handoff.put(4) and handoff.drain(5.0)
        assert done == [1, 2, 3, 4] and len(errors) == 1
    finally:
        handoff.stop()
    assert not handoff.put(5)


def test_a_reload_asked_for_while_stopped_runs_at_the_next_start():
    reloads = []
    worker = FrameWorker(lambda items: None, lambda job: None, lambda: reloads.append(1), lambda exc, job: None)
    worker.start()
    worker.stop()
    worker.request_reload()  # e.g. `checkpoint` changed on an inactive lifecycle node
    worker.start()
    try:
        assert wait_for(lambda: reloads == [1])
    finally:
        worker.stop()
