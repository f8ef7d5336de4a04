"""The control lane: the calls that follow an upload run beside the workers, and a step
handed to it keeps huey's semantics (same task on a wait, its chain after success)."""

import threading

import pytest
from huey.exceptions import RetryTask

from objlib import lane as lane_module
from objlib import tasks
from objlib.errors import CatalogError
from objlib.lane import Lane
from objlib.throttle import Deferred


def test_the_lane_takes_work_only_while_a_thread_is_free():
    lane = Lane(threads=2)
    release = threading.Event()
    started = [lane.try_submit(release.wait) for _ in range(2)]
    # Given both threads busy, a third piece of work is refused (the caller does it itself)
    assert all(started) and lane.busy == 2
    assert lane.try_submit(lambda: None) is None
    # When they finish, the lane is idle and takes work again
    release.set()
    assert lane.wait_idle(5)
    assert lane.busy == 0
    assert lane.try_submit(lambda: None).result(5) is None


def test_a_forked_or_new_process_gets_a_lane_of_the_configured_size(monkeypatch):
    monkeypatch.setattr(lane_module, "_lane", None)
    monkeypatch.setattr(lane_module, "_threads", lane_module.THREADS)
    lane_module.configure(3)  # workers
    assert lane_module.lane().threads == 3 * lane_module.PER_WORKER
    assert lane_module.lane() is lane_module.lane()


def _upload_task(settings):
    return tasks.queue_for(settings).upload_task(1, 1)


def _scheduled(settings):
    return tasks.queue_for(settings).scheduled()


def test_a_wait_in_the_lane_reschedules_the_same_task_with_its_chain(settings):
    task = _upload_task(settings)
    # When the rest of the step, on the lane, must wait 30 s
    def rest():
        raise Deferred(30.0, "rate limit: slot reserved")

    assert tasks._hand_off(tasks.queue_for(settings), task, rest, then=lambda *a: None)
    assert task.on_complete is None  # huey must not chain the poll now
    assert lane_module.lane().wait_idle(5)
    # Then the same task (id, chain) is in the schedule, ahead of new work
    [again] = _scheduled(settings)
    assert again.id == task.id and again.args == (1, 1)
    assert again.on_complete is not None and again.on_complete.name.endswith("poll_import")
    assert again.priority >= 10
    assert task.id not in {t.id for t in tasks.queue_for(settings).running_here()}


def test_a_database_the_lane_cannot_use_reschedules_instead_of_failing(settings):
    task = _upload_task(settings)

    def rest():
        raise CatalogError("library.db is read-only")

    assert tasks._hand_off(tasks.queue_for(settings), task, rest, then=lambda *a: None)
    assert lane_module.lane().wait_idle(5)
    [again] = _scheduled(settings)
    assert again.id == task.id


def test_a_finished_step_hands_its_value_and_chain_to_then(settings):
    task = _upload_task(settings)
    seen = []
    inside = threading.Event()

    def rest():
        # while it runs, the task counts as running in this process (recovery leaves it)
        assert task.id in {t.id for t in tasks.queue_for(settings).running_here()}
        inside.set()
        return "value"

    assert tasks._hand_off(tasks.queue_for(settings), task, rest,
                           then=lambda value, successor: seen.append((value, successor.name)))
    assert lane_module.lane().wait_idle(5) and inside.is_set()
    [(value, successor)] = seen
    assert value == "value" and successor.endswith("poll_import")
    assert _scheduled(settings) == []


def test_a_full_lane_leaves_the_step_to_the_worker(settings, monkeypatch):
    monkeypatch.setattr(lane_module, "_lane", (__import__("os").getpid(), Lane(threads=1)))
    release = threading.Event()
    lane_module.lane().try_submit(release.wait)
    task = _upload_task(settings)
    try:
        assert not tasks._hand_off(tasks.queue_for(settings), task, lambda: None,
                                   then=lambda *a: None)
        assert task.on_complete is not None  # huey chains the poll as before
        assert task.id not in {t.id for t in tasks.queue_for(settings).running_here()}
    finally:
        release.set()


class _Clock:
    """The lane's sleep, recorded instead of slept (time is a parameter)."""

    def __init__(self):
        self.waits: list[float] = []

    def __call__(self, delay_s: float) -> None:
        self.waits.append(delay_s)


def _lane_with_clock(monkeypatch) -> _Clock:
    clock = _Clock()
    monkeypatch.setattr(lane_module, "_lane", (__import__("os").getpid(),
                                                Lane(threads=4, sleep=clock)))
    return clock


def _pending(settings):
    return tasks.queue_for(settings).pending()


def test_a_short_wait_to_send_again_is_waited_out_on_the_lane(settings, monkeypatch):
    # Given a step on the lane whose request met a 429 (a backoff of 0.8 s), then succeeds
    clock = _lane_with_clock(monkeypatch)
    task = _upload_task(settings)
    answers = [Deferred(0.8, "429 from the API", resend=True), "started"]
    seen = []

    def rest():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    # When it is handed to the lane
    assert tasks._hand_off(tasks.queue_for(settings), task, rest,
                           then=lambda value, successor: seen.append((value, successor)))
    assert lane_module.lane().wait_idle(5)
    # Then the lane thread waited the 0.8 s and ran the step again itself: nothing went back
    # to the queue, and the step's chain followed its success
    assert clock.waits == [0.8]
    assert seen and seen[0][0] == "started" and seen[0][1].name.endswith("poll_import")
    assert _scheduled(settings) == [] and _pending(settings) == []


def test_a_wait_beyond_the_lanes_budget_goes_to_the_schedule(settings, monkeypatch):
    clock = _lane_with_clock(monkeypatch)
    task = _upload_task(settings)
    wait_s = lane_module.WAIT_MAX_S  # the longest a lane thread waits at once

    def rest():
        raise Deferred(wait_s, "service unavailable", resend=True)

    assert tasks._hand_off(tasks.queue_for(settings), task, rest, then=lambda *a: None)
    assert lane_module.lane().wait_idle(5)
    # the lane waited while its budget lasted, then handed the same task to the schedule
    assert clock.waits == [wait_s] * int(lane_module.WAIT_BUDGET_S // wait_s)
    [again] = _scheduled(settings)
    assert again.id == task.id and again.on_complete is not None


def test_a_wait_for_the_services_progress_is_never_waited_out_on_the_lane(settings,
                                                                           monkeypatch):
    clock = _lane_with_clock(monkeypatch)
    task = _upload_task(settings)

    def rest():  # an import still running: no request to send again, a thread must not wait
        raise Deferred(0.5, "operation not done")

    assert tasks._hand_off(tasks.queue_for(settings), task, rest, then=lambda *a: None)
    assert lane_module.lane().wait_idle(5)
    assert clock.waits == []
    [again] = _scheduled(settings)
    assert again.id == task.id


def test_a_workers_short_wait_is_timed_by_the_lane_and_the_task_queued_when_due(settings,
                                                                              monkeypatch):
    # Given an upload on a worker that met a 503 (a pause of 1.2 s)
    clock = _lane_with_clock(monkeypatch)
    q = tasks.queue_for(settings)
    task = _upload_task(settings)

    def upload(_q, *args, task=None):
        raise Deferred(1.2, "service unavailable", resend=True)

    # When the worker's task raises it
    assert tasks._rescheduling(q, upload)(1, 1, task=task) is None
    assert task.on_complete is None  # huey must not chain the poll of a step not done
    assert lane_module.lane().wait_idle(5)
    # Then a lane thread timed the 1.2 s and queued the same task (with its chain) when it
    # was over: it runs then, ahead of new work, not at a scheduler tick after it
    assert clock.waits == [1.2]
    [again] = _pending(settings)
    assert again.id == task.id and again.eta is None and again.priority >= 10
    assert again.on_complete is not None and again.on_complete.name.endswith("poll_import")
    assert _scheduled(settings) == []


def test_a_workers_long_wait_goes_to_the_schedule(settings, monkeypatch):
    clock = _lane_with_clock(monkeypatch)
    q = tasks.queue_for(settings)
    task = _upload_task(settings)

    def upload(_q, *args, task=None):
        raise Deferred(lane_module.WAIT_MAX_S + 1, "429 from the API", resend=True)

    with pytest.raises(RetryTask):
        tasks._rescheduling(q, upload)(1, 1, task=task)
    assert clock.waits == [] and task.on_complete is not None
