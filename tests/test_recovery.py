"""Crash recovery's decisions (``objlib.recovery``), every case, as pure functions: the rows,
the live tasks, ``now`` and the process check are given, so nothing waits on a clock or a
consumer (the end-to-end proofs with killed consumers are in test_queue_e2e and test_chaos)."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest

from objlib.catalog import lifecycle as lc
from objlib.recovery import (
    QUEUED_GRACE_S,
    LiveTasks,
    is_stuck,
    owner_alive,
    pid_exists,
    plan,
    process_owner,
)

NOW = 1_000_000.0
HOST = "worker-host"
LIVING, DEAD = f"{HOST}:100", f"{HOST}:200"


def alive(owner: str | None) -> bool:
    """The process check of a host where pid 100 runs and pid 200 is gone."""
    return owner_alive(owner, host=HOST, exists=lambda pid: pid == 100)


def row(file_id: int = 1, state: str = lc.UPLOADING, *, version: int = 1,
        task_id: str | None = "task-1", lease_until: float | None = NOW + 60,
        lease_owner: str | None = LIVING, changed_at: float = NOW - 1) -> lc.FileRow:
    fields = {f.name: None for f in dataclasses.fields(lc.FileRow)}
    fields.update(id=file_id, path=f"note {file_id}.txt", state=state, version=version,
                  metadata={}, polls=0, attempts=0, rate_limited=0, task_id=task_id,
                  lease_until=lease_until, lease_owner=lease_owner, state_changed_at=changed_at)
    return lc.FileRow(**fields)


def task(name: str, task_id: str, *args, then=None):
    """What huey's Task offers recovery: id, name, args and the chained successor."""
    return SimpleNamespace(id=task_id, name=f"objlib.tasks.{name}", args=args, on_complete=then)


# ---------------------------------------------------------------------------- owners


def test_the_process_owner_is_host_and_pid():
    assert process_owner("h", 42) == "h:42"
    assert process_owner() == f"{socket.gethostname()}:{os.getpid()}"


@pytest.mark.parametrize("owner, expected", [
    (None, False),             # nobody holds it
    ("", False),
    (LIVING, True),            # its process exists
    (DEAD, False),             # its process is gone: recovered at once, not after the lease
    ("other-host:200", True),  # another host cannot be checked: the lease decides
    (f"{HOST}:not-a-pid", True),
])
def test_an_owner_is_alive_only_if_its_process_exists_on_this_host(owner, expected):
    assert alive(owner) is expected


def test_the_real_process_check_sees_this_process_and_not_a_finished_one():
    assert owner_alive(process_owner())
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    assert pid_exists(os.getpid()) and not pid_exists(finished.pid)


# ---------------------------------------------------------------------------- stuck rows


def test_a_row_whose_task_is_in_the_queue_is_not_stuck_whatever_its_lease():
    live = LiveTasks(task_ids={"task-1"})
    assert not is_stuck(row(lease_until=None), live, NOW, alive=alive)
    assert not is_stuck(row(lease_owner=DEAD), live, NOW, alive=alive)


@pytest.mark.parametrize("held_by", ["uploads", "polls"])
def test_a_row_followed_by_a_live_upload_or_poll_of_its_version_is_not_stuck(held_by):
    live = LiveTasks(**{held_by: {(1, 1)}})
    assert not is_stuck(row(task_id="another", lease_until=None), live, NOW, alive=alive)
    # a task for the previous version does not hold the new one
    assert is_stuck(row(version=2, task_id="another", lease_until=None), live, NOW, alive=alive)


def test_a_queued_row_waits_out_the_grace_between_dequeue_and_claim():
    def queued(age_s):
        return row(state=lc.QUEUED, lease_until=None, lease_owner=None, changed_at=NOW - age_s)

    assert not is_stuck(queued(QUEUED_GRACE_S), LiveTasks(), NOW, alive=alive)
    assert is_stuck(queued(QUEUED_GRACE_S + 0.01), LiveTasks(), NOW, alive=alive)


@pytest.mark.parametrize("state", [lc.UPLOADING, lc.IMPORTING])
@pytest.mark.parametrize("lease_until, owner, stuck", [
    (NOW + 60, LIVING, False),  # a living worker holds it
    (NOW + 60, DEAD, True),     # its worker died: at once
    (NOW + 60, None, False),    # held, by nobody we could check: the lease decides
    (NOW, LIVING, True),        # the lease ran out (expiry is exclusive)
    (NOW - 1, LIVING, True),
    (None, None, True),         # never leased, no task
])
def test_a_row_in_flight_without_a_task_is_stuck_once_its_lease_or_owner_is_gone(
        state, lease_until, owner, stuck):
    r = row(state=state, lease_until=lease_until, lease_owner=owner)
    assert is_stuck(r, LiveTasks(), NOW, alive=alive) is stuck


# ---------------------------------------------------------------------------- the plan


def test_stuck_imports_get_a_new_poll_and_stuck_uploads_a_new_task():
    rows = [row(1, lc.IMPORTING, lease_owner=DEAD), row(2, lc.UPLOADING, lease_owner=DEAD),
            row(3, lc.QUEUED, lease_until=None, changed_at=NOW - 60),
            row(4, lc.UPLOADING)]  # alive
    todo = plan(rows, [], [], LiveTasks(), NOW, alive=alive)
    assert [r.id for r in todo.polls] == [1]
    assert [r.id for r in todo.uploads] == [2, 3]


@pytest.mark.parametrize("state", [lc.PENDING, lc.INDEXED, lc.FAILED, lc.SKIPPED, lc.DELETED])
def test_rows_not_in_flight_are_never_recovered(state):
    todo = plan([row(state=state, lease_until=None)], [], [], LiveTasks(), NOW, alive=alive)
    assert not todo.polls and not todo.uploads


def test_open_removals_without_a_live_task_are_sent_again():
    removals = [lc.Removal(id=i, document=f"doc-{i}", file_id=None, reason="deleted", attempts=0)
                for i in (7, 8)]
    todo = plan([], removals, [], LiveTasks(removals={8}), NOW, alive=alive)
    assert todo.removals == [7]


def test_a_superseded_import_is_settled_only_when_no_task_follows_it():
    def entry(entry_id, file_id):
        return lc.Superseded(id=entry_id, file_id=file_id, version=1, operation=None,
                             content_hash=None, requested_at=NOW - 60)

    entries = [entry(1, 10), entry(2, 20), entry(3, 30), entry(4, 40)]
    live = LiveTasks(settles={1}, polls={(20, 1)}, uploads={(30, 1)})
    # 1: its settle task is live; 2 and 3: the version's chained poll settles it
    assert plan([], [], entries, live, NOW, alive=alive).settles == [4]


def test_nothing_to_do_plans_nothing():
    todo = plan([row()], [], [], LiveTasks(), NOW, alive=alive)
    assert todo == type(todo)()


# ---------------------------------------------------------------------------- live tasks


def test_live_tasks_are_read_through_their_chains():
    live = LiveTasks()
    # an upload with its chained poll (whose arguments come from the upload's return value)
    live.add(task("upload_and_import", "u1", 1, 3, then=task("poll_import", "p1")))
    live.add(task("poll_import", "p2", 2, 1))
    live.add(task("remove_document", "r1", 9))
    live.add(task("settle_superseded", "s1", 4))
    assert live.task_ids == {"u1", "p1", "p2", "r1", "s1"}
    assert live.uploads == {(1, 3)} and live.polls == {(2, 1)}
    assert live.removals == {9} and live.settles == {4}
