#!/usr/bin/env python3
"""Benchmark `objlib reconcile` on a large store.

    python scripts/bench_reconcile.py [--documents 5000] [--drift 50] [--profile instant]
                                      [--json-out bench-results/reconcile.json]

Starts the emulator in this process, plants ``--documents`` ACTIVE documents straight into
its state and the matching catalogue rows (driven to ``indexed`` through the lifecycle, as
the workers would), then measures, with the emulator's own request counters:

1. a dry run on a clean store, in process (``reconcile()``);
2. the same as a user runs it: ``objlib reconcile --json`` as a child process (wall time
   includes the interpreter's start-up);
3. ``--drift`` of each document kind planted (orphans, duplicates, stale versions, failed
   documents, and as many indexed rows whose document vanished), then ``reconcile --fix``
   in process, and a dry run after it (which must find nothing but the re-enqueued rows'
   pending work).

Prints a table and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from objlib import log, tasks
from objlib.catalog import lifecycle as lc
from objlib.catalog import open_catalog
from objlib.emulator import Emulator
from objlib.enqueue import ensure_store
from objlib.gemini import metadata as gm
from objlib.settings import Settings


def fake_hash(i: int) -> str:
    return f"{i:064x}"


def plant_store(emu: Emulator, settings: Settings, count: int) -> tuple[str, list[lc.FileRow]]:
    """``count`` indexed rows, each with its one ACTIVE document."""
    catalog = open_catalog(settings)
    store = ensure_store(settings, catalog)
    now = time.time()
    lc.record_new_many(catalog, [
        lc.NewFile(f"Bench/file {i:05d}.txt", 1000, 0, fake_hash(i), {}, "none")
        for i in range(count)], now)
    for row in map(lc.FileRow.from_row, catalog.query("SELECT * FROM files ORDER BY id")):
        meta = gm.build_custom_metadata({"objlib_file_id": row.id, "objlib_version": row.version,
                                         "path": row.path, "content_hash": row.content_hash})
        doc = emu.state.add_document(store, gm.raw_file_id(row.content_hash),
                                     custom_metadata=meta).name
        task = f"bench-{row.id}"
        assert lc.mark_queued(catalog, row.id, row.version, task, now)
        assert lc.claim(catalog, row.id, row.version, task, now, 300, "bench:0")
        assert lc.record_operation(catalog, row.id, row.version, task, None, now, now + 900, 300,
                                   document=doc)
        assert lc.mark_indexed(catalog, row.id, row.version, doc, now)
    rows = [lc.FileRow.from_row(r) for r in catalog.query("SELECT * FROM files ORDER BY id")]
    catalog.close()
    return store, rows


def plant_drift(emu: Emulator, store: str, rows: list[lc.FileRow], n: int) -> dict[str, int]:
    """``n`` of each document kind, on distinct rows."""
    def add(row, version, state="STATE_ACTIVE"):
        meta = gm.build_custom_metadata({"objlib_file_id": row.id, "objlib_version": version})
        emu.state.add_document(store, gm.raw_file_id(row.content_hash), custom_metadata=meta,
                               state=state)

    for i in range(n):
        emu.state.add_document(store, gm.raw_file_id(fake_hash(10**9 + i)))   # orphan
        add(rows[i], rows[i].version)                                          # duplicate
        add(rows[n + i], rows[n + i].version - 1)                              # stale
        add(rows[2 * n + i], rows[2 * n + i].version, "STATE_FAILED")          # failed
        emu.state.delete_document(rows[3 * n + i].document, force=True)        # missing
    return {"orphans": n, "duplicates": n, "stale": n, "failed": n, "missing": n}


def measured(emu: Emulator, fn):
    emu.behaviour.reset()
    started = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - started
    stats = emu.stats()
    return result, elapsed, stats["total_requests"], stats["requests"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=5000)
    parser.add_argument("--drift", type=int, default=50, help="documents of each drift kind")
    parser.add_argument("--profile", default="instant", choices=["instant", "realistic"])
    parser.add_argument("--json-out", default="bench-results/reconcile.json")
    args = parser.parse_args(argv)
    log.configure(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="objlib-bench-reconcile-") as tmp, \
            Emulator(profile=args.profile, seed=1) as emu:
        os.environ.update(OBJLIB_HOME=tmp, GOOGLE_GEMINI_BASE_URL=emu.base_url)
        settings = Settings.load(tmp)
        started = time.perf_counter()
        store, rows = plant_store(emu, settings, args.documents)
        plant_s = time.perf_counter() - started

        clean, clean_s, clean_calls, clean_by = measured(emu, lambda: tasks.reconcile(settings))
        assert clean.drift == 0, clean.counts

        def cli():
            out = subprocess.run([sys.executable, "-m", "objlib", "reconcile", "--json"],
                                 check=True, capture_output=True, text=True)
            return json.loads(out.stdout)

        cli_out, cli_s, cli_calls, _ = measured(emu, cli)
        assert cli_out["drift"] == 0

        planted = plant_drift(emu, store, rows, args.drift)
        fixed, fix_s, fix_calls, fix_by = measured(
            emu, lambda: tasks.reconcile(settings, fix=True))
        assert {k: fixed.counts[k] for k in planted} == planted, fixed.counts
        assert not fixed.errors, fixed.errors
        after = tasks.reconcile(settings)
        remaining = {k: v for k, v in after.counts.items() if v}

    figures = {
        "documents": args.documents, "profile": args.profile, "plant_s": round(plant_s, 2),
        "dry_run": {"seconds": round(clean_s, 3), "remote_calls": clean_calls,
                    "calls": clean_by},
        "cli_dry_run": {"seconds": round(cli_s, 3), "remote_calls": cli_calls},
        "fix": {"planted": planted, "seconds": round(fix_s, 3), "remote_calls": fix_calls,
                "calls": fix_by, "fixed": dict(fixed.fixed), "documents": fixed.documents},
        "after_fix": remaining,
    }
    print(f"reconcile of {args.documents} documents ({args.profile} emulator profile)")
    print(f"  dry run, in process     {clean_s:7.2f} s  {clean_calls:5d} remote calls  {clean_by}")
    print(f"  objlib reconcile --json {cli_s:7.2f} s  {cli_calls:5d} remote calls (child process)")
    print(f"  --fix, {args.drift} of each kind {fix_s:7.2f} s  {fix_calls:5d} remote calls  "
          f"{fix_by}")
    print(f"  after the fix: {remaining or 'no drift'} (missing rows re-enqueued for the workers)")
    out = Path(args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"figures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
