"""Services that keep every request (issue 22): the bounded `refer` queue refuses with a reason,
answers what times out, and the worker takes queued jobs and the newest frame in turn, so a storm
of requests cannot starve frames. (The storm over DDS: test/ros/test_hostile_inputs.py.)"""
import threading
import time

import pytest

from lang_seg_ros.ros.worker import FrameWorker, Job


def test_a_job_is_answered_once_the_first_answer_wins():
    answers = []
    job = Job("x", on_done=answers.append)
    assert job.finish((True, "first", None)) and not job.finish((False, "second", None))
    assert answers == [(True, "first", None)] and job.result == (True, "first", None) and job.done.is_set()


def test_queued_jobs_and_the_newest_frame_take_turns():
    order, gate = [], threading.Event()

    def on_frame(items):
        order.extend(("frame", item) for item in items)

    def on_job(job):
        gate.wait(5.0)
        order.append(("job", job.payload))
        job.finish(job.payload)

    worker = FrameWorker(on_frame, on_job, lambda: None, lambda exc, job: None)
    worker.start()
    try:
        jobs = [Job(i) for i in range(4)]
        for job in jobs:
            assert worker.submit(job)
        time.sleep(0.1)  # the worker holds job 0
        worker.offer("f1")
        gate.set()
        time.sleep(0.1)
        worker.offer("f2")
        deadline = time.monotonic() + 5.0
        while not all(j.done.is_set() for j in jobs) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
    finally:
        worker.stop()
    assert order[:3] == [("job", 0), ("frame", "f1"), ("job", 1)], order
    assert ("frame", "f2") in order and all(("job", i) in order for i in range(4))


def test_pending_refers_refuse_beyond_the_bound_and_answer_what_times_out():
    pytest.importorskip("rclpy", reason="rclpy is not installed: run scripts/setup_ros.sh")
    from lang_seg_ros.ros.services import MAX_PENDING_REFER, SERVICE_QOS, PendingRefers

    assert SERVICE_QOS.depth >= 1000 and MAX_PENDING_REFER == 32
    pending = PendingRefers(limit=2, timeout=0.0)
    futures, coroutines = [], []
    for i in range(2):
        assert pending.busy() is None
        job, future = pending.job(f"e{i}", executor=None)
        coroutines.append(pending.answer(job, future))
        coroutines[-1].send(None)  # registered, now awaiting the worker
        futures.append(future)
    assert len(pending) == 2 and pending.busy() == \
        "busy: 2 refer requests pending (at most 2); call again when one is answered"
    withdrawn = []
    time.sleep(0.01)
    pending.expire(withdrawn.append)
    assert len(withdrawn) == 2 and all(f.done() for f in futures)
    assert futures[0].result() == (False, "no answer within 0 s", None)
    for coroutine in coroutines:
        with pytest.raises(StopIteration) as stop:
            coroutine.send(None)
        assert stop.value.value == (False, "no answer within 0 s", None)
    assert len(pending) == 0 and pending.busy() is None
