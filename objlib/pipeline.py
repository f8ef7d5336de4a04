"""The steps a worker runs for one file version, resumable from the last completed one.

``upload_and_import`` claims the row, uploads the raw file under a content-derived id and,
when the upload's answer says ACTIVE (text files are, at once), imports it into the store with
its metadata in the same run; a raw file still PROCESSING is waited for by re-scheduling, never
sleeping. ``poll_import`` follows the import operation to the end: its first look comes when
the import is expected to be done (``objlib.pace``), overdue imports are settled together by
one store listing, and at the deadline the document itself decides. ``remove_document`` takes
an obsolete document out of the store.

These functions know nothing about huey: when a step must wait they raise
``throttle.Deferred(delay_s)`` and ``tasks.py`` turns that into ``RetryTask(delay=...)``.
Every remote id is written to the catalogue the moment it is known (DESIGN invariant 1).
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from objlib import pace, retry
from objlib.catalog import Catalog
from objlib.catalog import lifecycle as lc
from objlib.errors import ConfigError, StoreLost
from objlib.gemini import metadata as gm
from objlib.gemini.client import GeminiClient, upload_cost
from objlib.gemini.errors import GeminiError, Gone, Permanent, RateLimited, Transient, Unavailable
from objlib.log import get_logger
from objlib.recovery import process_owner
from objlib.scan import filetypes
from objlib.scan.source import Refused, Source, SourceChanged, open_source
from objlib.settings import Settings
from objlib.store import LOST_KEY, mark_store_lost, store_lost_message
from objlib.throttle import CONTINUE_AHEAD_S, RESERVE_AHEAD_S, Deferred, Throttle

log = get_logger("objlib.worker")

MAX_RATE_LIMITED = 50  # 429s one version may meet before it is failed
PAUSE_WINDOW_S = 3600.0  # a paused row's backoff grows with its pauses in this window
_MAX_DOUBLINGS = 16    # backoff exponent bound (backoff_max_s caps the delay long before)
_GRACE_S = 30.0        # lease slack beyond a re-schedule delay (scheduler and queue lag)
_holder = threading.local()  # which task is calling (for the rate limiter's reservations)


@dataclass
class Context:
    """What a step needs; built once per worker process, shared by its threads."""

    settings: Settings
    catalog: Catalog
    gemini: GeminiClient  # (or anything with its methods)
    throttle: Throttle
    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)
    # raw files seen ACTIVE: name -> (when, RawFile); see _recently_active
    seen_active: dict = field(default_factory=dict, repr=False)
    seen_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def store(self) -> str:
        meta: dict[str, str] = {key: value for key, value in self.catalog.query(
            "SELECT key, value FROM meta WHERE key IN (?, ?)", ("store", LOST_KEY))}
        if not meta.get("store"):
            raise Permanent("no store recorded in the catalogue; run `objlib enqueue` first")
        if meta.get(LOST_KEY):
            raise StoreLost(store_lost_message(meta["store"]))
        return meta["store"]

    def backoff_s(self, attempt: int) -> float:
        """A re-schedule's delay (``retry.backoff_s``: exponential, capped, jittered)."""
        s = self.settings
        return retry.backoff_s(attempt, s.backoff_base_s, s.backoff_max_s, self.rng)


def build_context(settings: Settings) -> Context:
    """The per-process context: catalogue, throttle and a Gemini client whose every request
    passes through the shared rate limiter and feeds the circuit breaker."""
    from objlib.catalog import open_catalog
    from objlib.gemini.client import GeminiClient

    throttle = Throttle.from_settings(settings)

    def on_request(call: str, cost: int) -> None:
        prepaid = getattr(_holder, "prepaid", 0)
        if prepaid >= cost:  # the step reserved its requests up front
            _holder.prepaid = prepaid - cost
            return
        throttle.acquire(getattr(_holder, "id", None) or process_owner(), cost,
                         ahead_s=getattr(_holder, "ahead_s", None))

    def on_response(call: str, status: int | None) -> None:
        throttle.record(status)

    gemini = GeminiClient.from_env(settings, on_request=on_request, on_response=on_response)
    return Context(settings=settings, catalog=open_catalog(settings), gemini=gemini,
                   throttle=throttle)


class _Step:
    """Binds the log context of one step and measures it; the task id is the rate-limit
    holder for the requests made inside."""

    def __init__(self, ctx: Context, step: str, row: lc.FileRow | None, holder: str, *,
                 continuing: bool = True, prepaid: int = 0):
        self.ctx, self.step, self.row, self.holder = ctx, step, row, holder
        self.prepaid = prepaid  # slots an earlier part of the step booked and left unspent
        # a step that finishes a file already started may book the rate limit further ahead
        self.ahead_s = CONTINUE_AHEAD_S if continuing else RESERVE_AHEAD_S

    def prepay(self, requests: int) -> None:
        """Reserve the requests this step expects in one go (raises Deferred if it must
        wait); the calls inside then draw on them instead of queueing one by one."""
        self.ctx.throttle.acquire(self.holder, requests, ahead_s=self.ahead_s)
        _holder.prepaid = requests

    def need(self, requests: int) -> None:
        """Make sure the next ``requests`` are paid for before anything is written about
        them (raises Deferred if the rate limit says later)."""
        missing = requests - _holder.prepaid
        if missing > 0:
            self.ctx.throttle.acquire(self.holder, missing, ahead_s=self.ahead_s)
            _holder.prepaid += missing

    def __enter__(self):
        _holder.id, _holder.prepaid, _holder.ahead_s = self.holder, self.prepaid, self.ahead_s
        self.started = time.monotonic()
        row = self.row
        self.log = log.bind(step=self.step, file_id=row and row.id, path=row and row.path,
                            version=row and row.version, attempt=row and row.attempts + 1)
        return self

    def about(self, row: lc.FileRow) -> _Step:
        """The same step logging about another row (the overdue sweep settles several)."""
        other = copy.copy(self)
        other.log = self.log.bind(file_id=row.id, path=row.path, version=row.version,
                                  attempt=row.attempts + 1)
        return other

    def done(self, event: str, **kw) -> None:
        self.log.info(event, duration_s=round(time.monotonic() - self.started, 4), **kw)

    def __exit__(self, *exc):
        _holder.id, _holder.prepaid, _holder.ahead_s = None, 0, None
        return False


# ------------------------------------------------------------------------- upload_and_import


@dataclass
class ImportReady:
    """An upload step that stopped at its import: the raw file is ACTIVE and the importFile
    is still to send (``start_import``), with ``prepaid`` rate-limit slots booked for it."""

    row: lc.FileRow
    raw_file: str
    prepaid: int = 0


def upload_and_import(ctx: Context, file_id: int, version: int, task_id: str) -> bool:
    """Returns True when the import was started (the poll task should follow)."""
    ready = upload(ctx, file_id, version, task_id)
    if isinstance(ready, ImportReady):
        return start_import(ctx, ready, task_id)
    return ready


def upload(ctx: Context, file_id: int, version: int, task_id: str) -> ImportReady | bool:
    """The first half of ``upload_and_import``: claim the row and make sure its raw file is
    uploaded and ACTIVE. Returns an ``ImportReady`` when the importFile is what remains,
    True when an earlier run's import was found (the poll should follow), False when the
    step stopped (stale task, failed row, row moved on). Raises Deferred to wait."""
    s, cat = ctx.settings, ctx.catalog
    row = lc.claim(cat, file_id, version, task_id, ctx.clock(), s.lease_s, process_owner())
    if row is None:
        log.info("stale task skipped", step="upload", file_id=file_id, version=version)
        return False
    with _Step(ctx, "upload", row, task_id, continuing=row.remote_file is not None) as step:
        ctx.store  # noqa: B018 — a store known to be gone: wait before any request
        try:
            step.prepay(_expected_requests(ctx, row))
            raw = _ensure_raw_file(ctx, row, task_id, step)
            if raw is None:
                return False
            if row.import_requested_at is not None:
                # an earlier run sent importFile and died before keeping the answer: the
                # document it may have created decides, so no second document is made
                document = _find_document(ctx, row)
                if document is not None:
                    now = ctx.clock()
                    lc.record_operation(cat, file_id, version, task_id, None, now,
                                        now + s.poll_timeout_s, s.lease_s, document=document)
                    step.done("import found after a restart", document=document)
                    return True
            return ImportReady(row, raw.name, prepaid=_holder.prepaid)
        except Deferred as d:
            _hold_deferred(ctx, row, d, step)
            raise
        except GeminiError as err:
            _retry_or_fail(ctx, row, err, step)
            return False


def start_import(ctx: Context, ready: ImportReady, task_id: str) -> bool:
    """The second half: send importFile for an uploaded, ACTIVE raw file and keep its
    operation. Any thread may run it (the upload's worker, or a control-lane thread while
    that worker uploads the next file): the row stays leased by this process meanwhile.
    True when the import was started (the poll should follow). Safe to run again with the
    same ``ready`` after it raised a ``resend`` Deferred (its prepaid slots are spent once)."""
    s, cat = ctx.settings, ctx.catalog
    row, file_id, version = ready.row, ready.row.id, ready.row.version
    prepaid, ready.prepaid = ready.prepaid, 0
    # the step from its start, not this import again: the raw file is gone (upload it
    # again), or the import went unanswered (it may have made a document: look for it)
    start_over = False
    with _Step(ctx, "upload", row, task_id, prepaid=prepaid) as step:
        try:
            now = ctx.clock()
            deadline = now + s.poll_timeout_s
            step.need(1)  # the import's slot first: a deferral must not look like a crash
            if not lc.record_import_requested(cat, file_id, version, task_id, now):
                # the row moved on during the upload (file deleted or changed, row reset):
                # an import now would make a document that no row ever records
                step.done("row moved on before the import; nothing imported")
                return False
            try:
                operation = ctx.gemini.import_file(ctx.store, ready.raw_file,
                                                   _custom_metadata(row, cat.id))
            except GeminiError as err:
                if err.code is not None:  # answered with an error: no document was made
                    lc.clear_import_requested(cat, file_id, version, task_id)
                else:
                    start_over = True
                if err.code == 404 or isinstance(err, Gone):
                    check_store(ctx)  # raises StoreLost if the store is gone
                    # the store is there: the raw file is not (expired or deleted; the
                    # Files API answers a missing raw file 403, see gemini.errors._GONE)
                    lc.record_remote_file(cat, file_id, version, task_id, None)
                    start_over = True
                    raise Transient(f"{err} (the raw file is gone; uploading it again)") \
                        from err
                raise
            if not lc.record_operation(cat, file_id, version, task_id, operation, ctx.clock(),
                                       deadline, s.lease_s):
                # the row moved on while importFile was answered: the superseded import
                # keeps the operation, and the chained poll removes its document
                lc.record_superseded_operation(cat, file_id, version, operation)
                step.done("row moved on during the import", operation=operation)
                return True
            step.done("import started", operation=operation, remote_file=ready.raw_file)
            return True
        except Deferred as d:
            _hold_deferred(ctx, row, d, step)
            raise
        except GeminiError as err:
            _retry_or_fail(ctx, row, err, step, resend=not start_over)
            return False


# Raw files this process saw ACTIVE (upload answer or files.get), so that a step re-run soon
# after (its importFile on the lane met a 429 or a 503, say) sends the import without asking
# files.get first. Safe to be stale: an import of a raw file that is gone answers 403 (or 404), and
# the row uploads it again (``start_import``).
SEEN_ACTIVE_S = 600.0
_SEEN_ACTIVE_MAX = 10_000


def _remember_active(ctx: Context, raw, now: float) -> None:
    with ctx.seen_lock:
        if len(ctx.seen_active) >= _SEEN_ACTIVE_MAX:
            ctx.seen_active.pop(next(iter(ctx.seen_active)))
        ctx.seen_active[raw.name] = (now, raw)


def _recently_active(ctx: Context, name: str | None, now: float):
    """The raw file ``name`` as this context saw it ACTIVE within ``SEEN_ACTIVE_S`` (and not
    within an hour of expiring), else None."""
    if not name:
        return None
    with ctx.seen_lock:
        seen = ctx.seen_active.get(name)
    if seen is None:
        return None
    at, raw = seen
    expires_at = getattr(raw, "expires_at", None)
    if now - at > SEEN_ACTIVE_S or (expires_at is not None and expires_at < now + 3600):
        return None
    return raw


def _expected_requests(ctx: Context, row: lc.FileRow) -> int:
    """What an upload step sends before it can stop: resuming with the raw file known, a
    files.get and the importFile; otherwise the upload (start + 8 MiB chunks, no files.get
    before it) and the importFile, as the answer of a text upload says ACTIVE. (An upload
    answered PROCESSING leaves its import slot unused; one answered 409 pays its files.get
    as it goes.)"""
    if row.remote_file:
        return 1 if _recently_active(ctx, row.remote_file, ctx.clock()) else 2
    return upload_cost(row.size or 0) + 1


def _ensure_raw_file(ctx: Context, row: lc.FileRow, task_id: str, step: _Step):
    """The raw file, uploaded if needed and ACTIVE; None if the row was failed."""
    cat = ctx.catalog
    raw = _recently_active(ctx, row.remote_file, ctx.clock())
    if raw is not None:
        return raw
    if row.remote_file:
        try:
            raw = ctx.gemini.get_file(row.remote_file)
        except Gone:
            raw = None  # expired (48 h) or deleted: upload again
    if raw is None:
        raw = _upload_checked(ctx, row, task_id, step)
        if raw is None:
            return None
    if raw.state == "ACTIVE":
        _remember_active(ctx, raw, ctx.clock())
        return raw
    if raw.state == "FAILED":
        ctx.gemini.delete_file(raw.name)
        lc.record_remote_file(cat, row.id, row.version, task_id, None)
        raise Transient("the raw file failed processing on the server")
    waited = ctx.clock() - (row.upload_started_at or ctx.clock())
    if waited > ctx.settings.activate_timeout_s:
        raise Transient(f"the raw file is still {raw.state} after {waited:.0f} s")
    raise Deferred(min(ctx.settings.activate_first_delay_s + waited / 2, 30.0),
                   f"raw file {raw.state}")


def _upload_checked(ctx: Context, row: lc.FileRow, task_id: str, step: _Step):
    """Upload the file if it is still the regular file, within the size limit and with the
    content the scan saw, streaming it from the descriptor that was checked (see
    ``objlib.scan.source``); None (the row failed with the reason) otherwise. Bytes that
    stopped matching during the upload leave no raw file behind."""
    try:
        with _open_checked(ctx, row) as source:
            reader = source.reader()
            raw = ctx.gemini.upload_file(
                reader, file_id=gm.raw_file_id(_hash(row)),
                display_name=gm.display_name(Path(row.path).name),
                mime_type=_mime_type(row.path))
            if reader.sent_anything and not reader.matches(_hash(row)):
                ctx.gemini.delete_file(raw.name)
                raise Refused("changed", f"{row.path} changed while it was uploaded (the raw "
                              "file was deleted); run `objlib scan` to pick up the new version")
    except SourceChanged as exc:  # it shrank mid-upload: the SDK never finalized it
        return _refused(ctx, row, step, Refused("changed", f"{row.path} changed while it "
                                                f"was uploaded: {exc}; run `objlib scan`"))
    except Refused as refusal:
        return _refused(ctx, row, step, refusal)
    lc.record_remote_file(ctx.catalog, row.id, row.version, task_id, raw.name)
    step.log.info("uploaded", remote_file=raw.name, size=source.size, state=raw.state,
                  sent=reader.sent_anything)
    return raw


def _open_checked(ctx: Context, row: lc.FileRow) -> Source:
    """The row's file, open and checked against the scan (raises ``Refused``)."""
    return open_source(ctx.catalog.get_meta("library_root") or ".", row.path, size=row.size,
                       content_hash=_hash(row), max_bytes=ctx.settings.max_file_bytes)


def _hash(row: lc.FileRow | lc.Superseded) -> str:
    """The content hash the scan recorded: every version a worker handles was hashed."""
    assert row.content_hash is not None, f"file {row.id} version {row.version} has no hash"
    return row.content_hash


def _refused(ctx: Context, row: lc.FileRow, step: _Step, refusal: Refused) -> None:
    lc.mark_failed(ctx.catalog, row.id, row.version, refusal.error_class, str(refusal),
                   ctx.clock())
    step.log.warning("failed", error_class=refusal.error_class, error=str(refusal))
    return None


def _mime_type(path: str) -> str:
    """The type the scan checked the content against (``objlib.scan.filetypes``)."""
    return filetypes.mime_type(path)


def _custom_metadata(row: lc.FileRow, catalog_id: str | None) -> list[dict]:
    values = dict(row.metadata)
    values.update(objlib_catalog=catalog_id, objlib_file_id=row.id,
                  objlib_version=row.version, path=row.path, content_hash=row.content_hash,
                  quality=row.metadata_quality)
    return gm.build_custom_metadata(values)


def check_store(ctx: Context) -> None:
    """After a 404 that may mean the store itself is gone: ask for the store. Gone: the
    catalogue records it as lost (status and reconcile say so) and StoreLost is raised, so
    workers wait instead of failing every file."""
    store = ctx.store
    try:
        ctx.gemini.get_store(store)
    except Gone as err:
        mark_store_lost(ctx.catalog, store, ctx.clock())
        raise StoreLost(store_lost_message(store)) from err


def _hold_deferred(ctx: Context, row: lc.FileRow, deferred: Deferred, step: _Step) -> None:
    """A step the throttle put off: the row stays leased until the deferral is over (plus a
    grace), so recovery does not take it for a crash."""
    lc.hold(ctx.catalog, row.id, row.version, ctx.clock() + deferred.delay_s + _GRACE_S)
    step.log.info("deferred", reason=deferred.reason, delay_s=round(deferred.delay_s, 3))


def _retry_or_fail(ctx: Context, row: lc.FileRow, err: GeminiError, step: _Step, *,
                   resend: bool = True) -> None:
    """Classified errors. Pauses first: while the service is away (unavailable) the step
    re-schedules with backoff (raising Deferred), and a refused key is raised on for the task
    to wait out; neither spends the file's attempts nor fails it, however long it lasts. 429
    and transient errors re-schedule with backoff until their bound; anything else fails the
    row with its class and message at once — a full store (``store_full``, a 429 that is no
    request to slow down) among them: no retry can succeed until a human frees space.
    The Deferred raised is a ``resend`` one (the same step may be run again as it is, once
    its delay is over) unless ``resend`` is False (the step must start from its beginning)."""
    cat, now = ctx.catalog, ctx.clock()
    message = str(err)
    if isinstance(err, (Unavailable, ConfigError)):
        pauses = lc.record_pause(cat, row.id, row.version, err.kind, message, now,
                                 PAUSE_WINDOW_S)
        if isinstance(err, ConfigError):  # the task logs it and comes back (tasks.py)
            lc.hold(cat, row.id, row.version, now + ctx.settings.operator_wait_s + _GRACE_S)
            raise err
        if pauses is None:
            return  # the row moved on meanwhile: nothing to wait for
        delay = err.retry_after_s or ctx.backoff_s(min(pauses, _MAX_DOUBLINGS))
        lc.hold(cat, row.id, row.version, now + delay + _GRACE_S)
        step.log.warning("service unavailable; paused", error=message,
                         delay_s=round(delay, 2), pauses=pauses)
        raise Deferred(delay, "service unavailable", resend=resend)
    if isinstance(err, RateLimited):
        count = lc.record_attempt(cat, row.id, row.version, err.kind, message, now,
                                  rate_limited=True)
        if count is not None and count <= MAX_RATE_LIMITED:
            delay = err.retry_after_s or ctx.backoff_s(min(count, 6))
            lc.hold(cat, row.id, row.version, now + delay + _GRACE_S)
            step.log.warning("rate limited", delay_s=round(delay, 2), rate_limited=count)
            raise Deferred(delay, "429 from the API", resend=resend)
    elif err.kind == "transient":
        attempts = lc.record_attempt(cat, row.id, row.version, err.kind, message, now)
        if attempts is not None and attempts < ctx.settings.max_attempts:
            delay = ctx.backoff_s(attempts)
            lc.hold(cat, row.id, row.version, now + delay + _GRACE_S)
            step.log.warning("transient error", error=message, delay_s=round(delay, 2),
                             attempts=attempts)
            raise Deferred(delay, "transient error", resend=resend)
    lc.mark_failed(cat, row.id, row.version, err.kind, message, now)
    step.log.error("failed", error_class=err.kind, error=message)


# ------------------------------------------------------------------------- poll_import


def poll_import(ctx: Context, file_id: int, version: int, task_id: str) -> list[int]:
    """Follow the import operation. Returns the ids of removals to schedule once indexed."""
    s, cat = ctx.settings, ctx.catalog
    row = lc.get(cat, file_id)
    if row is None or row.version != version or row.state != lc.IMPORTING:
        superseded = lc.superseded_of(cat, file_id, version)
        return settle_superseded(ctx, superseded.id, task_id) if superseded else []
    with _Step(ctx, "poll", row, task_id) as step:
        ctx.store  # noqa: B018 — a store known to be gone: wait before any request
        now = ctx.clock()
        owner = process_owner()
        if row.lease_owner != owner or (row.lease_until or 0.0) < now + _GRACE_S:
            # the row is leased to this living process while it looks; a lease this process
            # already holds for longer (the import's, the last look's) is left as it is: a
            # write transaction a file saved, with the same guarantee (docs/architecture.md)
            lc.hold(cat, file_id, version, now + _GRACE_S, owner=owner)
        waited = now - (row.import_started_at or now)
        expected = pace.expected_s(cat, s)
        try:
            if row.operation and row.polls == 0 and waited < expected / 2:
                # a poll that came early (not at the time upload_and_import set for it): an
                # import is rarely done that fast, so wait instead of spending a request
                raise Deferred(expected - waited, "operation just started")
            document = row.document
            if row.operation:
                op = ctx.gemini.get_operation(row.operation)
                if row.polls == 0:
                    pace.learn(cat, s, done=op.done, waited_s=waited)
                if op.done:
                    return _finish(ctx, row, op.error, op.document, step)
                document = op.document or document
                overdue_s = pace.overdue_after_s(expected)
                if waited >= overdue_s:  # settles this row too, if its document says so
                    removals = _sweep_overdue(ctx, now - overdue_s, step)
                    current = lc.get(cat, file_id)
                    if current is None or current.state != lc.IMPORTING:
                        return removals
            final = now >= (row.poll_deadline or 0)
            if final or not row.operation:
                verdict = _decide_from_document(ctx, row, document, step, final=final)
                if verdict is not None:
                    return verdict
        except Deferred as d:
            lc.hold(cat, file_id, version, ctx.clock() + d.delay_s + _GRACE_S)
            raise
        except GeminiError as err:
            if err.code == 404:
                check_store(ctx)  # the operation went with its store: wait, fail nothing
            _retry_or_fail(ctx, row, err, step)
            return []
        delay = min(s.poll_max_delay_s, max(s.poll_first_delay_s, waited / 4))
        lc.record_look(cat, file_id, version, now + delay + _GRACE_S)
        raise Deferred(delay, "operation not done")


def first_look_s(ctx: Context) -> float:
    """Seconds from now (an import just started) to its first poll (``objlib.pace``)."""
    return pace.expected_s(ctx.catalog, ctx.settings)


def _sweep_overdue(ctx: Context, started_before: float, step: _Step) -> list[int]:
    """Every import started before ``started_before`` and still not done, settled by one
    listing of the store, at most once per ``pace.SWEEP_EVERY_S`` across all workers: a row
    whose document is ACTIVE is indexed, FAILED is failed (its document removed), PENDING
    keeps the document's name. Returns the ids of removals to schedule."""
    cat = ctx.catalog
    overdue = {(r.id, r.version): r for r in lc.overdue_imports(cat, started_before)}
    if not overdue or not pace.claim_sweep(cat, ctx.clock()):
        return []
    found = {}
    for doc in ctx.gemini.list_documents(ctx.store, transient_retries=3):
        meta = doc.custom_metadata
        file_id, version = _meta_int(meta, "objlib_file_id"), _meta_int(meta, "objlib_version")
        row = None if file_id is None or version is None else overdue.get((file_id, version))
        if row is not None and meta.get("objlib_catalog") == cat.id and \
                doc.display_name == gm.raw_file_id(_hash(row)):
            found[(row.id, row.version)] = doc
    removals: list[int] = []
    for key, doc in found.items():
        row, about = overdue[key], step.about(overdue[key])
        if doc.state == "STATE_ACTIVE":
            removals += _finish(ctx, row, None, doc.name, about)
        elif doc.state == "STATE_FAILED":
            removals += _finish(ctx, row, {"message": "document is STATE_FAILED"}, doc.name,
                                about)
        else:
            lc.record_document(cat, row.id, row.version, doc.name)
    step.log.info("overdue imports swept", overdue=len(overdue), documents_found=len(found))
    return removals


def _finish(ctx: Context, row: lc.FileRow, error: dict | None, document: str | None,
            step: _Step) -> list[int]:
    cat, now = ctx.catalog, ctx.clock()
    if error:
        message = f"indexing failed: {error.get('message') or error}"
        document = document or _find_document(ctx, row)
        if document:
            lc.record_document(cat, row.id, row.version, document)
        lc.mark_failed(cat, row.id, row.version, "index_failed", message, now)
        if document:  # a failed document is useless in the store
            lc.schedule_removal(cat, document, row.id, "index failed", now)
        step.log.error("failed", error_class="index_failed", error=message)
        return _removals_of(ctx, row.id)
    if not document:
        document = _find_document(ctx, row)
        if document is None:
            raise Transient("the operation finished but its document was not found")
    if lc.mark_indexed(cat, row.id, row.version, document, now):
        step.done("indexed", document=document)
    return _removals_of(ctx, row.id)


def _decide_from_document(ctx: Context, row: lc.FileRow, document: str | None, step: _Step,
                          *, final: bool) -> list[int] | None:
    """The document's own state decides when the operation cannot: at the deadline (field
    lessons: large files were ACTIVE while their operation never finished), or when only the
    document is known. None: still pending, keep polling."""
    document = document or (_find_document(ctx, row) if final else None)
    if document is None:
        if not final:
            return None
        lc.mark_failed(ctx.catalog, row.id, row.version, "timeout",
                       f"import did not finish within {ctx.settings.poll_timeout_s:.0f} s and "
                       "no document was found", ctx.clock())
        step.log.error("failed", error_class="timeout")
        return []
    doc = ctx.gemini.get_document(document)
    if doc.state == "STATE_ACTIVE":
        return _finish(ctx, row, None, document, step)
    if doc.state == "STATE_FAILED":
        return _finish(ctx, row, {"message": "document is STATE_FAILED"}, document, step)
    lc.record_document(ctx.catalog, row.id, row.version, document)
    if not final:
        return None
    lc.mark_failed(ctx.catalog, row.id, row.version, "timeout",
                   f"document still {doc.state} after {ctx.settings.poll_timeout_s:.0f} s",
                   ctx.clock())
    step.log.error("failed", error_class="timeout", document_state=doc.state)
    return []


def _find_document(ctx: Context, row: lc.FileRow | lc.Superseded) -> str | None:
    """The document this version's import created, found in one pass over the store's list:
    its display name is the raw file's id and its metadata names this catalogue, row and
    version."""
    raw_id = gm.raw_file_id(_hash(row))
    file_id = row.file_id if isinstance(row, lc.Superseded) else row.id
    catalog_id = ctx.catalog.id
    for doc in ctx.gemini.list_documents(ctx.store, transient_retries=3):
        if doc.display_name == raw_id and \
                doc.custom_metadata.get("objlib_catalog") == catalog_id and \
                _meta_int(doc.custom_metadata, "objlib_file_id") == file_id and \
                _meta_int(doc.custom_metadata, "objlib_version") == row.version:
            return doc.name
    return None


def _meta_int(meta: dict, key: str) -> int | None:
    try:
        return int(meta[key])
    except (KeyError, TypeError, ValueError):
        return None


def _removals_of(ctx: Context, file_id: int) -> list[int]:
    # this file's only: every open removal made into objects at each indexed file was
    # O(n^2) over a run that replaces many versions
    return [r.id for r in lc.open_removals(ctx.catalog, file_id)]


# ------------------------------------------------------------------------- settle_superseded

UNANSWERED_IMPORT_WAIT_S = 30.0  # an import sent but not answered: its operation may still
                                 # be recorded; after this the store's list decides


def settle_superseded(ctx: Context, superseded_id: int, task_id: str) -> list[int]:
    """Find the document a superseded import made, and schedule its removal. Returns the ids
    of removals to send. Raises Deferred while the import is still running."""
    cat, s = ctx.catalog, ctx.settings
    entry = lc.get_superseded(cat, superseded_id)
    if entry is None:
        return []
    with _Step(ctx, "settle", None, task_id) as step:
        now = ctx.clock()
        waited = now - entry.requested_at
        try:
            document, outcome = None, "no document"
            if entry.operation:
                op = ctx.gemini.get_operation(entry.operation)
                if not op.done and waited < s.poll_timeout_s:
                    raise Deferred(min(s.poll_max_delay_s, max(s.poll_first_delay_s,
                                                                waited / 4)),
                                   "superseded import not done")
                document = op.document
            elif waited < UNANSWERED_IMPORT_WAIT_S:
                raise Deferred(UNANSWERED_IMPORT_WAIT_S - waited, "superseded import unanswered")
            document = document or _find_document(ctx, entry)
            if document:
                outcome = "document removed"
        except GeminiError as err:
            if isinstance(err, (RateLimited, Transient)):
                raise Deferred(ctx.backoff_s(2), f"{err.kind} error settling") from err
            # nothing more to learn here: reconcile finds a leftover (an older version's
            # document is "stale" to it)
            document, outcome = None, f"gave up: {err}"
        removal = lc.settle_superseded(cat, superseded_id, outcome, ctx.clock(),
                                       document=document)
        step.done("superseded import settled", file_id=entry.file_id, version=entry.version,
                  document=document)
        return [removal] if removal else []


# ------------------------------------------------------------------------- remove_document


def remove_document(ctx: Context, removal_id: int, task_id: str) -> None:
    cat = ctx.catalog
    removal = lc.get_removal(cat, removal_id)
    if removal is None:
        return
    with _Step(ctx, "remove", None, task_id) as step:
        try:
            existed = ctx.gemini.delete_document(removal.document)
        except Deferred:
            raise
        except GeminiError as err:
            pause = isinstance(err, (Unavailable, ConfigError))  # as in _retry_or_fail
            attempts = lc.record_removal_error(cat, removal_id, err.kind, str(err), ctx.clock(),
                                               spend_attempt=not pause)
            if isinstance(err, ConfigError):
                raise
            if pause:  # no count of its own to grow on: the longest regular backoff
                delay = err.retry_after_s or ctx.backoff_s(_MAX_DOUBLINGS)
                raise Deferred(delay, "service unavailable on delete") from err
            if err.kind in ("rate_limited", "transient") and attempts < ctx.settings.max_attempts:
                raise Deferred(ctx.backoff_s(attempts), f"{err.kind} error on delete") from err
            step.log.error("removal failed", document=removal.document, error=str(err))
            return
        lc.mark_removed(cat, removal_id, ctx.clock())
        step.done("document removed", document=removal.document, reason=removal.reason,
                  existed=existed)
