"""`objlib failures`: every failed file with its error and what to do about it, and (with
``--skipped``) every skipped file with its reason — each list grouped by cause.

    report = failures_report(settings, error_class="transient")
    failures_view(report, now=time.time())     # the Rich view: objlib.views.failures
    skipped_report(settings).to_json()

A failure is final: the row stays ``failed`` until a human acts. The hint for each class says
how: most classes only need ``objlib enqueue --retry-failed``; a file that changed, vanished or
stopped being an uploadable file under the worker needs ``objlib scan`` first, so the catalogue
learns its new content (or that it is gone, or why it is skipped) before anything is retried.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

from objlib.catalog.lifecycle import FAILED, SKIPPED
from objlib.catalog.read import existing_catalog, read_transaction
from objlib.scan.scanner import ROOT_KEY
from objlib.settings import Settings

RETRY = "objlib enqueue --retry-failed"

# error class -> what to do before RETRY ({root}: the library folder); default: RETRY alone
_BEFORE_RETRY = {
    "changed": "the file changed while it was uploaded: `objlib scan {root}` first",
    "vanished": "the file is gone: `objlib scan {root}` first (it becomes deleted)",
    "unreadable": "make the file readable, then `objlib scan {root}`",
    "ineligible": ("the path is no longer a file objlib uploads (not a regular file, over "
                   "max_file_bytes, or a symlink out of the library): `objlib scan {root}` "
                   "records it as skipped with the reason"),
    "permanent": "the API refused it: read the message and fix the file or the settings",
    "config": "fix the configuration (GEMINI_API_KEY, the store) first",
    "store_full": ("the project's File Search storage is full: delete documents or stores you "
                   "no longer need, or raise the project's tier (Free 1 GB, Tier 1 10 GB, "
                   "Tier 2 100 GB, Tier 3 1 TB; a document takes about 3x its size)"),
}


@dataclass(frozen=True)
class Failure:
    path: str
    error_class: str
    message: str | None
    attempts: int
    rate_limited: int
    failed_at: float | None
    version: int


@dataclass(frozen=True)
class Skip:
    path: str
    reason: str


@dataclass(frozen=True)
class FailuresReport:
    library_root: str | None
    failures: list[Failure]  # newest first, after the --class filter
    by_class: dict[str, int]  # every failed row, most frequent class first

    def hint(self, error_class: str) -> str:
        """What to run to fix the failures of one class."""
        before = _BEFORE_RETRY.get(error_class)
        if before is None:
            return RETRY
        return f"{before.format(root=self.library_root or 'LIBRARY')}, then `{RETRY}`"

    def to_json(self) -> dict:
        return {"failed": [asdict(f) for f in self.failures], "by_class": self.by_class,
                "hints": {c: self.hint(c) for c in self.by_class}}


@dataclass(frozen=True)
class SkippedReport:
    skipped: list[Skip]  # by path
    by_reason: dict[str, int]  # grouped by reason_group, most frequent first

    def to_json(self) -> dict:
        return {"skipped": [asdict(s) for s in self.skipped], "by_reason": self.by_reason}


def failures_report(settings: Settings, error_class: str | None = None) -> FailuresReport:
    """Failed rows (optionally of one class) and the counts per class of all of them."""
    rows, root = _read(settings, "SELECT path, COALESCE(error_class, 'unknown'), error_message, "
                       "attempts, rate_limited, failed_at, version FROM files WHERE state=? "
                       "ORDER BY failed_at DESC, path", FAILED)
    failures = [Failure(*r) for r in rows]
    return FailuresReport(library_root=root,
                          failures=[f for f in failures if error_class in (None, f.error_class)],
                          by_class=_counts(f.error_class for f in failures))


def skipped_report(settings: Settings) -> SkippedReport:
    """Skipped rows with their reasons, and the counts per reason group."""
    rows, _ = _read(settings, "SELECT path, COALESCE(skip_reason, 'unknown') FROM files "
                    "WHERE state=? ORDER BY path", SKIPPED)
    skipped = [Skip(*r) for r in rows]
    return SkippedReport(skipped=skipped, by_reason=_counts(reason_group(s.reason)
                                                            for s in skipped))


def _read(settings: Settings, sql: str, state: str):
    catalog = existing_catalog(settings)
    try:
        with read_transaction(catalog) as cat:
            return [tuple(r) for r in cat.query(sql, (state,))], cat.get_meta(ROOT_KEY)
    finally:
        catalog.close()


def reason_group(reason: str) -> str:
    """Skip reasons carrying a per-file figure ("too large: 123 bytes > 100 MB") are grouped
    by what comes before the colon; the others are their own group."""
    head, sep, tail = reason.partition(":")
    return head if sep and any(c.isdigit() for c in tail) else reason


def _counts(keys) -> dict[str, int]:
    return dict(sorted(Counter(keys).items(), key=lambda kv: (-kv[1], kv[0])))
