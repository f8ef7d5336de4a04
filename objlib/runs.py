"""Runs of ``objlib upload``: which files one foreground run took on, and how far they got.

A run is recorded when its enqueue is done: one ``runs`` row and one ``run_files`` row per
file it must see through, in the order the queue takes them (``position``: files already in
flight first, then the newly enqueued ones in enqueue order), at the version it took them on.
Its progress is read from the catalogue, never kept in the runner's memory, so any process
(``objlib status``, a second terminal) sees the same figures, and a run survives its runner.

A file of a run is *settled* when it is indexed or failed at that version, or when it left
the run: a newer version was scanned, the file was deleted or skipped, or something handed it
back to ``pending`` (the next run takes those). A run is done when every file is settled.

    files = work_to_do(catalog)              # before the enqueue: what the run must see through
    run_id = start(catalog, files, now=...)  # after it
    progress(catalog, run_id, batch_size)    # -> Progress (counts, current batch, in flight)
    finish(catalog, run_id, outcome, now=...)
    latest_run(catalog)                      # -> dict for `objlib status`

Times are epoch seconds, passed in where they matter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from objlib.catalog import Catalog
from objlib.catalog.lifecycle import (
    FAILED,
    IMPORTING,
    IN_FLIGHT,
    INDEXED,
    PENDING,
    QUEUED,
    UPLOADING,
)
from objlib.recovery import owner_alive

RUNNING, DONE, INTERRUPTED, ABORTED, ABANDONED = (
    "running", "done", "interrupted", "aborted", "abandoned")
OUTCOMES = (RUNNING, DONE, INTERRUPTED, ABORTED)  # ABANDONED is only ever inferred

# the step a file in flight is at, as the user should read it
STEP_UPLOADING, STEP_ACTIVATING, STEP_IMPORTING, STEP_INDEXING = (
    "uploading", "waiting ACTIVE", "importing", "indexing")
STEPS = (STEP_UPLOADING, STEP_ACTIVATING, STEP_IMPORTING, STEP_INDEXING)
RATE_LIMITED_CLASS = "rate_limited"  # the errors table's class for a 429
# which files in flight are shown first: those a worker is most likely busy with right now
_BUSY_FIRST = (STEP_UPLOADING, STEP_IMPORTING, STEP_ACTIVATING, STEP_INDEXING)


def step_of(state: str, remote_file: str | None, import_requested_at: float | None) -> str:
    """A row in flight, in words: uploading (no raw file yet), waiting ACTIVE (uploaded, not
    imported), importing (importFile sent), indexing (the import operation runs)."""
    if state == IMPORTING:
        return STEP_INDEXING
    if import_requested_at is not None and state != PENDING:  # (a retried row may keep
        return STEP_IMPORTING                                   # it: its upload comes first)
    return STEP_ACTIVATING if remote_file else STEP_UPLOADING


# ---------------------------------------------------------------------------- recording


def work_to_do(catalog: Catalog) -> list[tuple[int, int]]:
    """(file id, version) of every row that needs work, in the order the queue takes them:
    rows already in flight (enqueued earlier) first, then pending rows in id order, which
    is the order ``enqueue.enqueue`` enqueues them in."""
    states = (PENDING, *IN_FLIGHT)
    rows = catalog.query(
        f"SELECT id, version FROM files WHERE state IN ({','.join('?' * len(states))}) "
        "ORDER BY state = ?, CASE WHEN state = ? THEN NULL ELSE queued_at END, id",
        (*states, PENDING, PENDING))
    return [(r["id"], r["version"]) for r in rows]


def start(catalog: Catalog, files: list[tuple[int, int]], *, now: float, owner: str | None = None,
          store: str | None = None, concurrency: int | None = None,
          batch_size: int | None = None) -> int:
    """Record a run of ``files`` (in that order) started ``now``; returns its id. ``owner``
    is the runner's host:pid, so a run whose runner died can be told from a live one."""
    with catalog.write() as conn:
        run_id = conn.execute(
            "INSERT INTO runs(started_at, outcome, owner, store, concurrency, batch_size, total) "
            "VALUES(?, ?, ?, ?, ?, ?, ?)",
            (now, RUNNING, owner, store, concurrency, batch_size, len(files))).lastrowid
        assert run_id is not None, "an INSERT sets lastrowid"
        conn.executemany("INSERT INTO run_files(run_id, position, file_id, version) "
                         "VALUES(?, ?, ?, ?)",
                         [(run_id, i, fid, version) for i, (fid, version) in enumerate(files)])
    return run_id


def finish(catalog: Catalog, run_id: int, outcome: str, *, now: float) -> dict:
    """Close the run with ``outcome`` (done, interrupted, aborted) and keep its figures as they
    are now. A run already closed is left as it was. Returns the run as ``get_run`` does."""
    if outcome not in OUTCOMES[1:]:
        raise ValueError(f"not a final outcome: {outcome!r}")
    figures = counts(catalog, run_id)
    with catalog.write() as conn:
        conn.execute(
            "UPDATE runs SET finished_at=?, outcome=?, indexed=?, failed=?, left_over=?, "
            "retried=?, rate_limited=? WHERE id=? AND finished_at IS NULL",
            (now, outcome, figures["indexed"], figures["failed"], figures["left_over"],
             figures["retried"], figures["rate_limited"], run_id))
    run = get_run(catalog, run_id, now=now)
    assert run is not None, f"run {run_id} was recorded by start()"
    return run


# ---------------------------------------------------------------------------- progress


@dataclass(frozen=True)
class InFlight:
    position: int
    file_id: int
    path: str
    step: str


@dataclass(frozen=True)
class Progress:
    """Where one run stands. ``batch`` is the current logical batch of ``batch_size`` files in
    enqueue order: the first one with a file not settled (the last one once all are)."""

    run_id: int
    total: int
    indexed: int
    failed: int
    queued: int
    active: int  # uploading or importing
    batch_size: int
    batch_index: int  # 0-based
    batch_total: int
    batch_settled: int
    in_flight: list[InFlight] = field(default_factory=list)  # the first ones (_BUSY_FIRST)
    steps: dict[str, int] = field(default_factory=dict)  # in flight, by step (all of them)

    @property
    def settled(self) -> int:
        return self.total - self.queued - self.active

    @property
    def left_over(self) -> int:
        """Files that left the run without being indexed or failed by it."""
        return self.settled - self.indexed - self.failed

    @property
    def batches(self) -> int:
        return max(1, -(-self.total // self.batch_size))

    @property
    def done(self) -> bool:
        return self.settled >= self.total


_CURRENT = "f.version = rf.version"  # the file is still at the version the run took on


def progress(catalog: Catalog, run_id: int, batch_size: int = 150,
             in_flight_limit: int = 10) -> Progress:
    """The run's figures, read in one pass over its files (plus its first files in flight)."""
    per_batch = catalog.query(
        f"SELECT rf.position / ? AS batch, COUNT(*) AS files, "
        f"COALESCE(SUM({_CURRENT} AND f.state = ?), 0) AS indexed, "
        f"COALESCE(SUM({_CURRENT} AND f.state = ?), 0) AS failed, "
        f"COALESCE(SUM({_CURRENT} AND f.state = ?), 0) AS queued, "
        f"COALESCE(SUM({_CURRENT} AND f.state IN (?, ?)), 0) AS active "
        "FROM run_files rf LEFT JOIN files f ON f.id = rf.file_id WHERE rf.run_id = ? "
        "GROUP BY batch ORDER BY batch",
        (batch_size, INDEXED, FAILED, QUEUED, UPLOADING, IMPORTING, run_id))
    totals = {k: sum(r[k] for r in per_batch) for k in ("files", "indexed", "failed", "queued",
                                                          "active")}
    current = next((r for r in per_batch if r["queued"] + r["active"]), None) or \
        (per_batch[-1] if per_batch else None)
    rows = catalog.query(
        "SELECT rf.position, f.id, f.path, f.state, f.remote_file, f.import_requested_at "
        "FROM run_files rf JOIN files f ON f.id = rf.file_id "
        f"WHERE rf.run_id = ? AND {_CURRENT} AND f.state IN (?, ?) ORDER BY rf.position",
        (run_id, UPLOADING, IMPORTING))
    flying = sorted((InFlight(r["position"], r["id"], r["path"],
                              step_of(r["state"], r["remote_file"], r["import_requested_at"]))
                     for r in rows), key=lambda f: (_BUSY_FIRST.index(f.step), f.position))
    steps = {s: 0 for s in STEPS}
    for f in flying:
        steps[f.step] += 1
    return Progress(
        run_id=run_id, total=totals["files"], indexed=totals["indexed"],
        failed=totals["failed"], queued=totals["queued"], active=totals["active"],
        batch_size=batch_size, batch_index=current["batch"] if current else 0,
        batch_total=current["files"] if current else 0,
        batch_settled=(current["files"] - current["queued"] - current["active"]) if current else 0,
        in_flight=flying[:in_flight_limit], steps=steps)


def counts(catalog: Catalog, run_id: int) -> dict:
    """The run's final figures: indexed, failed, left_over (settled otherwise), open, and the
    errors its files met since it started: ``retried`` (retried after a transient error) and
    ``rate_limited`` (429s). A failed file's last error, written when it failed, is not a retry."""
    p = progress(catalog, run_id, in_flight_limit=0)
    started = catalog.query("SELECT started_at FROM runs WHERE id=?", (run_id,))
    errors = {RATE_LIMITED_CLASS: 0, "other": 0}
    if started:
        for row in catalog.query(
                "SELECT CASE WHEN e.error_class = ? THEN ? ELSE 'other' END AS kind, COUNT(*) "
                "FROM errors e JOIN run_files rf ON rf.file_id = e.file_id "
                "AND rf.version = e.version AND rf.run_id = ? "
                "JOIN files f ON f.id = e.file_id "
                "WHERE e.at >= ? AND NOT (f.state = ? AND f.version = e.version "
                "AND e.at = f.failed_at) GROUP BY kind",
                (RATE_LIMITED_CLASS, RATE_LIMITED_CLASS, run_id, started[0][0], FAILED)):
            errors[row[0]] = row[1]
    return {"total": p.total, "indexed": p.indexed, "failed": p.failed, "left_over": p.left_over,
            "open": p.queued + p.active, "retried": errors["other"],
            "rate_limited": errors[RATE_LIMITED_CLASS]}


# ---------------------------------------------------------------------------- reading runs


def get_run(catalog: Catalog, run_id: int, *, now: float | None = None) -> dict | None:
    """One run as a dict: its record, and for a run still open its live figures. A run whose
    runner died without closing it reads as ``abandoned``."""
    rows = catalog.query("SELECT * FROM runs WHERE id=?", (run_id,))
    if not rows:
        return None
    now = time.time() if now is None else now
    run = dict(rows[0])
    if run["outcome"] == RUNNING:
        run.update({k: v for k, v in counts(catalog, run_id).items() if k != "total"})
        if not owner_alive(run["owner"]):
            run["outcome"] = ABANDONED
    else:
        run["open"] = run["total"] - sum(run[k] or 0 for k in ("indexed", "failed", "left_over"))
    end = run["finished_at"] or now
    run["duration_s"] = round(max(0.0, end - run["started_at"]), 3)
    run["percent"] = round(100.0 * (run["indexed"] or 0) / run["total"], 2) if run["total"] \
        else 100.0
    run["files_per_s"] = round((run["indexed"] or 0) / run["duration_s"], 3) \
        if run["duration_s"] else None
    return run


def latest_run(catalog: Catalog, *, now: float | None = None) -> dict | None:
    """The most recent run (see ``get_run``), None if there was none. For ``objlib status``:
    keys id, started_at, finished_at, outcome (running, done, interrupted, aborted,
    abandoned), total, indexed, failed, left_over, open, retried, rate_limited, duration_s,
    percent, files_per_s, store, concurrency, batch_size, owner."""
    rows = catalog.query("SELECT id FROM runs ORDER BY id DESC LIMIT 1")
    return get_run(catalog, rows[0][0], now=now) if rows else None
