#!/usr/bin/env python3
"""The seed's naive design, rebuilt as a baseline for ``make bench`` (section ``seed``).

    python scripts/baseline_seed.py LIBRARY --base-url http://127.0.0.1:8765 \\
        [--concurrency 7] [--json-out result.json] [--db ledger.db]

What objlib replaced: one asyncio process with the google-genai async client (``client.aio``),
no durable queue. It works through the library in batches of 150 files; within a batch:

- ``Semaphore(N)`` around the remote work of one file: ``files.upload`` (a fresh random id),
  then wait until the raw file is ACTIVE (``files.get`` until it is, 1 s apart), then
  ``importFile`` into the store;
- the import operation is polled *outside* that semaphore, at most 20 operations at once
  (``Semaphore(20)`` held for a file's whole poll loop, waits included), waiting 5 s before
  the first ``operations.get`` and doubling the wait after each (at most 60 s), 6 polls in all;
- the next batch starts when every file of this one has its result.

Every file gets an *intent* row in a SQLite ledger before its upload and a *result* row
(indexed / failed / lost, with the error) when it ends. Like the SDK by default, no call is
retried: an API error fails the file (recorded, never retried in this run). "lost" is a file
whose operation never reported done within its polls, or whose raw file never turned ACTIVE:
its fate is unknown. Only the store's creation is retried (setup, not measured).

Eligible files are what objlib would take: not hidden, ``.txt`` or ``.md``, not empty, UTF-8
without NUL bytes. The JSON result: files, indexed, failed, lost, the wall time, the span
(first intent to last result), files/s (indexed / span), and the API calls made while
processing (read from the emulator's ``/_emulator/stats`` when it answers, else counted here;
store setup excluded), per file.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import json
import os
import sqlite3
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from google import genai
from google.genai import errors, types

BATCH_FILES = 150
POLL_CONCURRENCY = 20
EXTENSIONS = (".txt", ".md")
SETUP_ENDPOINTS = ("stores.create", "stores.list", "stores.get")


@dataclass(frozen=True)
class Waits:
    """The seed's waits (seconds); a test shortens them."""

    active_poll_s: float = 1.0
    active_timeout_s: float = 60.0
    poll_first_s: float = 5.0
    poll_max_s: float = 60.0
    polls: int = 6


# ---------------------------------------------------------------------------- the library


def library_files(root: Path) -> list[Path]:
    """The files objlib would find eligible, sorted: not hidden, a text extension, not
    empty, UTF-8 without NUL bytes."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or path.suffix.lower() not in EXTENSIONS:
                continue
            data = path.read_bytes()
            if data and b"\0" not in data and _utf8(data):
                out.append(path)
    return out


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# ---------------------------------------------------------------------------- the ledger


class Ledger:
    """Intent and result rows in SQLite, one commit per write (the seed's durability)."""

    def __init__(self, path: Path):
        self.conn = sqlite3.connect(path)
        self.conn.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, "
                          "state TEXT NOT NULL, raw_file TEXT, operation TEXT, error TEXT, "
                          "intent_at REAL NOT NULL, result_at REAL)")
        self.conn.commit()

    def intent(self, path: str) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO files (path, state, intent_at) "
                              "VALUES (?, 'intent', ?)", (path, time.time()))

    def step(self, path: str, **columns: str) -> None:
        sets = ", ".join(f"{name} = ?" for name in columns)
        with self.conn:
            self.conn.execute(f"UPDATE files SET {sets} WHERE path = ?",
                              (*columns.values(), path))

    def result(self, path: str, state: str, error: str | None = None) -> None:
        with self.conn:
            self.conn.execute("UPDATE files SET state = ?, error = ?, result_at = ? "
                              "WHERE path = ?", (state, error, time.time(), path))

    def counts(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT state, count(*) FROM files GROUP BY state"))

    def span_s(self) -> float:
        first, last = self.conn.execute("SELECT min(intent_at), max(result_at) FROM files"
                                        ).fetchone()
        return (last - first) if first is not None and last is not None else 0.0

    def errors(self) -> dict[str, int]:
        """Error texts cut to their status (``429 RESOURCE_EXHAUSTED``) -> files."""
        rows = self.conn.execute("SELECT error FROM files WHERE error IS NOT NULL")
        return dict(collections.Counter(e.split(".")[0][:60] for (e,) in rows))


# ---------------------------------------------------------------------------- one file


class Lost(Exception):
    """The file's fate is unknown: not ACTIVE in time, or its operation never said done."""


@dataclass
class Seed:
    client: genai.Client
    store: str
    ledger: Ledger
    root: Path
    concurrency: int
    waits: Waits = field(default_factory=Waits)
    calls: collections.Counter = field(default_factory=collections.Counter)

    def __post_init__(self):
        self.work = asyncio.Semaphore(self.concurrency)
        self.polls = asyncio.Semaphore(POLL_CONCURRENCY)

    async def call(self, name: str, coroutine):
        self.calls[name] += 1
        return await coroutine

    async def one_file(self, path: Path) -> None:
        rel = path.relative_to(self.root).as_posix()
        self.ledger.intent(rel)
        try:
            async with self.work:
                raw = await self.upload(path, rel)
                self.ledger.step(rel, raw_file=raw.name)
                await self.wait_active(raw)
                op = await self.call("import_file", self.client.aio.file_search_stores
                                     .import_file(file_search_store_name=self.store,
                                                  file_name=raw.name))
                self.ledger.step(rel, operation=op.name)
            async with self.polls:
                op = await self.poll(op)
        except Lost as exc:
            self.ledger.result(rel, "lost", str(exc))
        except errors.APIError as exc:
            self.ledger.result(rel, "failed", str(exc))
        except Exception as exc:  # noqa: BLE001 - transport errors and timeouts fail the file too
            self.ledger.result(rel, "failed", f"{type(exc).__name__}: {exc}")
        else:
            if op.error:
                self.ledger.result(rel, "failed", json.dumps(op.error))
            else:
                self.ledger.result(rel, "indexed")

    async def upload(self, path: Path, rel: str) -> types.File:
        data = path.read_bytes()
        return await self.call("upload", self.client.aio.files.upload(
            file=io.BytesIO(data),
            config={"display_name": rel, "mime_type": "text/plain"}))

    async def wait_active(self, raw: types.File) -> None:
        deadline = time.monotonic() + self.waits.active_timeout_s
        while _state(raw) != "ACTIVE":
            if _state(raw) == "FAILED":
                raise RuntimeError(f"{raw.name} FAILED")
            raw = await self.call("files.get", self.client.aio.files.get(name=raw.name))
            if _state(raw) == "ACTIVE":
                return
            if time.monotonic() > deadline:
                raise Lost(f"{raw.name} not ACTIVE after {self.waits.active_timeout_s:g} s")
            await asyncio.sleep(self.waits.active_poll_s)

    async def poll(self, op):
        wait_s = self.waits.poll_first_s
        for _ in range(self.waits.polls):
            await asyncio.sleep(wait_s)
            op = await self.call("operations.get", self.client.aio.operations.get(op))
            if op.done is True:
                return op
            wait_s = min(wait_s * 2, self.waits.poll_max_s)
        raise Lost(f"{op.name} not done after {self.waits.polls} polls")


def _state(raw: types.File) -> str:
    state = raw.state
    return getattr(state, "value", state) or ""


# ---------------------------------------------------------------------------- the run


def emulator_calls(base_url: str) -> dict[str, int] | None:
    """The emulator's request counts by endpoint; None if this is not the emulator."""
    try:
        with urllib.request.urlopen(base_url.rstrip("/") + "/_emulator/stats",
                                    timeout=10) as resp:
            return dict(json.loads(resp.read())["requests"])
    except (OSError, ValueError, KeyError):
        return None


async def make_store(client: genai.Client, display_name: str, attempts: int = 10) -> str:
    for attempt in range(attempts):
        try:
            store = await client.aio.file_search_stores.create(
                config={"display_name": display_name})
            return store.name
        except errors.APIError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(1.0)
    raise AssertionError("unreachable")


async def run(root: Path, *, base_url: str, concurrency: int, db_path: Path,
              api_key: str = "emulator", waits: Waits = Waits(),
              batch_files: int = BATCH_FILES) -> dict:
    """Index every eligible file of ``root``; the result as a dict."""
    started = time.monotonic()
    files = library_files(root)
    client = genai.Client(api_key=api_key, http_options=types.HttpOptions(
        base_url=base_url, timeout=120_000))
    ledger = Ledger(db_path)
    try:
        store = await make_store(client, "baseline-seed")
        before = emulator_calls(base_url)
        seed = Seed(client, store, ledger, root, concurrency, waits)
        for i in range(0, len(files), batch_files):
            await asyncio.gather(*(seed.one_file(p) for p in files[i:i + batch_files]))
        after = emulator_calls(base_url)
    finally:
        await client.aio.aclose()
    wall_s = time.monotonic() - started
    return summary(files=len(files), counts=ledger.counts(), span_s=ledger.span_s(),
                   wall_s=wall_s, sdk_calls=dict(seed.calls), before=before, after=after,
                   errors=ledger.errors(), concurrency=concurrency, batch_files=batch_files)


def summary(*, files: int, counts: dict, span_s: float, wall_s: float, sdk_calls: dict,
            before: dict | None, after: dict | None, errors: dict, concurrency: int,
            batch_files: int) -> dict:
    if before is not None and after is not None:
        by_endpoint = {k: after[k] - before.get(k, 0) for k in after
                       if k not in SETUP_ENDPOINTS and after[k] - before.get(k, 0)}
        source = "emulator"
    else:
        by_endpoint, source = sdk_calls, "counted (an upload counted once)"
    calls = sum(by_endpoint.values())
    indexed = counts.get("indexed", 0)
    return {
        "design": "seed", "concurrency": concurrency, "batch_files": batch_files,
        "poll_concurrency": POLL_CONCURRENCY,
        "files": files, "indexed": indexed, "failed": counts.get("failed", 0),
        "lost": counts.get("lost", 0) + counts.get("intent", 0),
        "indexed_fraction": round(indexed / files, 4) if files else None,
        "wall_s": round(wall_s, 3), "span_s": round(span_s, 3),
        "files_per_s": round(indexed / span_s, 3) if span_s else None,
        "api_calls": calls, "api_calls_source": source,
        "calls_per_file": round(calls / files, 3) if files else None,
        "calls_by_endpoint": dict(sorted(by_endpoint.items())),
        "sdk_calls": dict(sorted(sdk_calls.items())),
        "errors": errors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("library", type=Path)
    parser.add_argument("--base-url", required=True, help="the API (the emulator's URL)")
    parser.add_argument("--concurrency", "-n", type=int, default=7, help="N (7)")
    parser.add_argument("--db", type=Path, help="the SQLite ledger (default: a new temp file)")
    parser.add_argument("--json-out", type=Path, help="write the result here too")
    parser.add_argument("--poll-first-wait", type=float, default=Waits.poll_first_s,
                        help="seconds before an operation's first poll (5)")
    parser.add_argument("--active-poll-wait", type=float, default=Waits.active_poll_s,
                        help="seconds between files.get while a raw file is PROCESSING (1)")
    args = parser.parse_args(argv)
    if not args.library.is_dir():
        parser.error(f"{args.library} is not a folder")
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    db_path = args.db
    if db_path is None:
        import tempfile

        db_path = Path(tempfile.mkdtemp(prefix="baseline-seed-")) / "ledger.db"
    waits = Waits(active_poll_s=args.active_poll_wait, poll_first_s=args.poll_first_wait)
    api_key = os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY") or "emulator"
    result = asyncio.run(run(args.library, base_url=args.base_url,
                             concurrency=args.concurrency, db_path=db_path, api_key=api_key,
                             waits=waits))
    result["ledger"] = str(db_path)
    text = json.dumps(result, indent=2)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
