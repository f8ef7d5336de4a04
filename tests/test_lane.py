"""The control lane: the calls that follow an upload run beside the workers, and a step
handed to it keeps huey's semantics (same task on a wait, its chain after success)."""

import threading

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
