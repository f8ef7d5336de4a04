"""Crash recovery's decisions, as pure functions: who owns a row, whether that owner is alive,
which in-flight rows are stuck, and what to do with each.

huey delivers at most once: a worker killed mid-task loses it, and a ``.then()`` successor
is lost if the worker dies before it is enqueued. So the catalogue decides what is live: a
row in flight is alive if the task that owns it is still in the queue or the schedule, or if
a living worker holds its lease. Everything else is stuck and is handed to a new task.

Nothing here reads a clock, a database or the queue: the rows, the live tasks, ``now`` and
the process check come in as arguments, so every case is a unit test that runs in
milliseconds. The side effects (reading the rows and huey's tables, re-queueing, sending the
tasks) are the thin ``objlib.tasks.recover`` around ``plan``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from objlib.catalog import lifecycle as lc

QUEUED_GRACE_S = 5.0  # a queued row's task may be between dequeue and claim this long


def process_owner(host: str | None = None, pid: int | None = None) -> str:
    """``host:pid`` of this process (or of the given one): who holds a lease or runs a run."""
    import socket  # here, not at import: `objlib status` (a new process) rarely needs it

    return f"{host or socket.gethostname()}:{os.getpid() if pid is None else pid}"


def pid_exists(pid: int) -> bool:
    """Whether a process with this id exists on this host (``kill(pid, 0)``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user
    return True


def owner_alive(owner: str | None, *, host: str | None = None,
                exists: Callable[[int], bool] = pid_exists) -> bool:
    """A lease owner (``host:pid``) is alive if it names a process that exists on this host;
    one on another host cannot be checked, so it is trusted until its lease expires."""
    if not owner:
        return False
    import socket

    owner_host, _, pid = owner.rpartition(":")
    if owner_host != (host or socket.gethostname()):
        return True  # cannot tell: trust the lease's expiry
    try:
        return exists(int(pid))
    except ValueError:
        return True  # not a pid we can check: trust the lease


@dataclass
class LiveTasks:
    """What the queue holds right now (and what this process is running), by what each task
    is for."""

    task_ids: set[str] = field(default_factory=set)
    uploads: set[tuple[int, int]] = field(default_factory=set)
    polls: set[tuple[int, int]] = field(default_factory=set)
    removals: set[int] = field(default_factory=set)
    settles: set[int] = field(default_factory=set)
    waiting: int = 0
    scheduled: int = 0

    def add(self, task) -> None:
        """One task (anything with ``id``, ``name``, ``args`` and ``on_complete``) and its
        chained successors."""
        while task is not None:
            self.task_ids.add(task.id)
            name = task.name.rsplit(".", 1)[-1]
            if name == "upload_and_import":
                self.uploads.add(tuple(task.args[:2]))
            elif name == "poll_import" and task.args:
                self.polls.add(tuple(task.args[:2]))
            elif name == "remove_document":
                self.removals.add(task.args[0])
            elif name == "settle_superseded":
                self.settles.add(task.args[0])
            task = task.on_complete


def is_stuck(row: lc.FileRow, live: LiveTasks, now: float, *,
             alive: Callable[[str | None], bool] = owner_alive) -> bool:
    """An in-flight row nobody works on: no live task owns it, and it is not queued within
    the grace, nor leased to a living owner."""
    key = (row.id, row.version)
    if row.task_id in live.task_ids or key in live.uploads or key in live.polls:
        return False
    if row.state == lc.QUEUED:
        return now - row.state_changed_at > QUEUED_GRACE_S
    leased = row.lease_until is not None and row.lease_until > now
    if not leased:
        return True
    return row.lease_owner is not None and not alive(row.lease_owner)


@dataclass
class Plan:
    """What recovery does: each stuck row, open removal and unfollowed superseded import."""

    polls: list[lc.FileRow] = field(default_factory=list)    # importing: a new poll follows
    uploads: list[lc.FileRow] = field(default_factory=list)  # queued/uploading: a new task
    removals: list[int] = field(default_factory=list)        # removal ids to send again
    settles: list[int] = field(default_factory=list)         # superseded ids to settle


def plan(rows: Iterable[lc.FileRow], removals: Iterable[lc.Removal],
         superseded: Iterable[lc.Superseded], live: LiveTasks, now: float, *,
         alive: Callable[[str | None], bool] = owner_alive) -> Plan:
    """Decide, from the catalogue's in-flight rows, open removals and open superseded
    imports, and the tasks that are live, what must be handed to a new task."""
    todo = Plan()
    for row in rows:
        if row.state not in lc.IN_FLIGHT or not is_stuck(row, live, now, alive=alive):
            continue
        (todo.polls if row.state == lc.IMPORTING else todo.uploads).append(row)
    todo.removals = [r.id for r in removals if r.id not in live.removals]
    followed = live.polls | live.uploads  # an upload task's chained poll settles its entry
    todo.settles = [e.id for e in superseded
                    if e.id not in live.settles and (e.file_id, e.version) not in followed]
    return todo


@dataclass
class RecoverSummary:
    requeued: list[str] = field(default_factory=list)
    polls: list[str] = field(default_factory=list)
    removals: int = 0
    superseded: int = 0  # imports of replaced versions whose document is still to be found
