#!/usr/bin/env python3
"""Where a file's CPU goes on the ``instant`` profile: the per-file budget behind the
``overhead`` section of ``scripts/bench.py``.

    python scripts/bench_overhead.py [--files 500] [--workers 7] [--calls 200] [--json]

Two measurements, each against a real emulator (``python -m objlib emulator --profile
instant``, a child process whose CPU is read from /proc):

calls     one thread, one call after another, on real sample texts: the client's CPU per
          call (``time.thread_time``: the SDK, httpx, our wrapper) and the emulator's CPU per
          call (its process, for the same calls). No contention: this is the floor a call
          costs on each side.
pipeline  the real pipeline in this process: ``objlib enqueue``'s code, then huey's
          ``Consumer`` with N worker threads and the control lane (``tasks.start_consumer``,
          what ``objlib upload`` runs), until every file is indexed. Every thread's CPU is
          split by component with exclusive timers (``time.thread_time`` around the SDK
          calls, the catalogue's transactions and reads, ``throttle.db``, ``queue.db``, log
          lines); what is left is huey's loop, the lane, our glue and thread switching.

The components overlap nothing (a timer inside another is subtracted from it), so they add up
to the process's CPU per file. ``queue.db`` covers huey's storage calls (enqueue, dequeue, the
schedule), ``catalogue`` every ``Catalog.write``/``query`` (the lifecycle's transitions, the
pace, the store), ``logging`` every line written or dropped (structlog and stdlib).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from scripts.make_sample_library import make_library  # noqa: E402
from tests.support.processes import Children, EmulatorProcess  # noqa: E402
from tests.support.waits import wait_for  # noqa: E402

# ---------------------------------------------------------------------------- exclusive timers


class Budget:
    """CPU seconds per component, exclusive: a timer running inside another is subtracted
    from the outer one. Thread-safe; each thread keeps its own stack."""

    def __init__(self):
        self.totals: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    @contextlib.contextmanager
    def timer(self, name: str):
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        stack.append(0.0)  # time spent in timers nested inside this one
        started = time.thread_time()
        try:
            yield
        finally:
            spent = time.thread_time() - started
            inner = stack.pop()
            if stack:
                stack[-1] += spent
            with self._lock:
                self.totals[name] = self.totals.get(name, 0.0) + spent - inner
                self.counts[name] = self.counts.get(name, 0) + 1

    def wrap(self, owner, attr: str, name: str) -> None:
        """Time every call of ``owner.attr`` (a function or a context manager factory)."""
        original = getattr(owner, attr)
        budget = self

        if attr in ("write",):  # a context manager: time the whole block
            @functools.wraps(original)
            @contextlib.contextmanager
            def timed_cm(*args, **kwargs):
                with budget.timer(name), original(*args, **kwargs) as value:
                    yield value
            setattr(owner, attr, timed_cm)
            return

        @functools.wraps(original)
        def timed(*args, **kwargs):
            with budget.timer(name):
                return original(*args, **kwargs)
        setattr(owner, attr, timed)


def instrument(budget: Budget) -> None:
    """Timers around the components of a file's path through the pipeline."""
    import logging

    import structlog
    from huey.storage import SqliteStorage

    from objlib.catalog.db import Catalog
    from objlib.gemini.client import GeminiClient
    from objlib.throttle import Throttle

    budget.wrap(GeminiClient, "_call", "SDK call (client side)")
    for attr in ("acquire", "record"):
        budget.wrap(Throttle, attr, "throttle.db")
    for attr in ("write", "query"):
        budget.wrap(Catalog, attr, "catalogue")
    for attr in ("enqueue", "dequeue", "add_to_schedule", "read_schedule", "queue_size",
                 "schedule_size", "put_data", "pop_data", "peek_data"):
        if hasattr(SqliteStorage, attr):
            budget.wrap(SqliteStorage, attr, "queue.db")
    budget.wrap(logging.Logger, "handle", "logging")
    budget.wrap(structlog.stdlib.BoundLogger, "_proxy_to_logger", "logging")
    import objlib.log as objlog
    budget.wrap(objlog._LazyLogger, "__getattr__", "logging")


# ---------------------------------------------------------------------------- measurements


def _cpu_of(pid: int) -> float:
    from tests.support.processes import _CLK_TCK
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def measure_calls(work: Path, texts: list[bytes]) -> dict:
    """Each call type ``len(texts)`` times in one thread: client and emulator CPU per call."""
    from objlib.gemini import metadata as gm
    from objlib.gemini.client import GeminiClient

    out = {}
    with Children() as children:
        emu = children.add(EmulatorProcess(work / "calls-emulator.log", profile="instant",
                                           seed=1))
        client = GeminiClient(api_key="bench-key", base_url=emu.base_url)
        store = client.ensure_store("overhead-budget").name
        metadata = gm.build_custom_metadata({
            "objlib_catalog": "0123456789ab", "objlib_file_id": 1, "objlib_version": 1,
            "path": "Courses/OPAR - Lesson 3 - Values.txt", "content_hash": "f" * 64,
            "quality": "complete", "category": "Courses", "course": "OPAR", "lesson": 3})
        n = len(texts)

        def phase(name: str, call) -> list:
            emu_before, before = _cpu_of(emu.pid), time.thread_time()
            results = [call(i) for i in range(n)]
            out[name] = {"client_ms": round((time.thread_time() - before) / n * 1000, 3),
                         "emulator_ms": round((_cpu_of(emu.pid) - emu_before) / n * 1000, 3)}
            return results

        raws = phase("upload (start + bytes)", lambda i: client.upload_file(
            texts[i], file_id="objlib-" + hashlib.sha256(texts[i]).hexdigest()[:20],
            display_name=f"file {i}.txt"))
        operations = phase("importFile", lambda i: client.import_file(store, raws[i].name,
                                                                      metadata))
        phase("operations.get", lambda i: client.get_operation(operations[i]))
        phase("files.get", lambda i: client.get_file(raws[i].name))
        client.close()
        emu.stop(signal.SIGINT, 10)
    return out


def measure_pipeline(work: Path, files: int, workers: int, seed: int) -> dict:
    """The pipeline in this process (as ``objlib upload`` runs it), every thread timed."""
    from objlib import log, tasks
    from objlib.catalog import open_catalog
    from objlib.enqueue import enqueue
    from objlib.scan import scan_library
    from objlib.settings import Settings

    library = work / "library"
    make_library(library, files, seed)
    budget = Budget()
    with Children() as children:
        emu = children.add(EmulatorProcess(work / "pipeline-emulator.log", profile="instant",
                                           seed=seed))
        os.environ["GOOGLE_GEMINI_BASE_URL"] = emu.base_url
        settings = Settings.load(work / "home", poll_first_delay_s=0.0,
                                 activate_first_delay_s=0.0)
        log_path = work / "pipeline.log"
        handler_stream = open(log_path, "w")  # noqa: SIM115 — closed below
        import logging
        log.configure(json=True, level=logging.INFO,
                      handlers=[logging.StreamHandler(handler_stream)], quiet_huey=False)
        scan_library(settings, library)
        catalog = open_catalog(settings)
        eligible = catalog.query("SELECT count(*) FROM files WHERE state='pending'")[0][0]
        consumer = tasks.start_consumer(settings, workers)
        time.sleep(0.5)
        instrument(budget)
        emu_before, cpu_before, wall_before = _cpu_of(emu.pid), time.process_time(), \
            time.monotonic()
        load = [round(os.getloadavg()[0], 2)]
        with budget.timer("enqueue (objlib enqueue's code)"):
            enqueue(settings)

        def settled() -> bool:
            rows = catalog.query("SELECT count(*) FROM files WHERE state IN "
                                 "('pending','queued','uploading','importing')")
            return rows[0][0] == 0
        wait_for(settled, 600, 0.05, "every file indexed")
        cpu_s, emu_s = time.process_time() - cpu_before, _cpu_of(emu.pid) - emu_before
        wall_s = time.monotonic() - wall_before
        load.append(round(os.getloadavg()[0], 2))
        indexed = catalog.query("SELECT count(*) FROM files WHERE state='indexed'")[0][0]
        consumer.ask_to_stop()
        consumer.stop(graceful=True)
        catalog.close()
        handler_stream.close()
        emu.stop(signal.SIGINT, 10)
    per_file = {k: round(v / indexed * 1000, 3) for k, v in sorted(
        budget.totals.items(), key=lambda kv: -kv[1])}
    timed = sum(budget.totals.values())
    per_file["huey loop, lane, glue, threads (the rest)"] = round(
        (cpu_s - timed) / indexed * 1000, 3)
    return {"files": eligible, "indexed": indexed, "workers": workers,
            "process_cpu_ms_per_file": round(cpu_s / indexed * 1000, 3),
            "emulator_cpu_ms_per_file": round(emu_s / indexed * 1000, 3),
            "files_per_s": round(indexed / wall_s, 1),
            "per_file_ms": per_file,
            "calls_per_file": {k: round(v / indexed, 2) for k, v in budget.counts.items()},
            "load_average": load}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--workers", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", choices=("calls", "pipeline"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="objlib-overhead-") as tmp:
        work = Path(tmp)
        if args.only in (None, "calls"):
            texts_dir = work / "texts"
            make_library(texts_dir, args.calls, args.seed + 1)
            texts = list({data: None for data in (p.read_bytes() for p in sorted(
                texts_dir.rglob("*.txt"))) if len(data) > 100})[:args.calls]
            result["calls"] = measure_calls(work, texts)
        if args.only in (None, "pipeline"):
            result["pipeline"] = measure_pipeline(work, args.files, args.workers, args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for name, figures in result.get("calls", {}).items():
        print(f"{name:28s} client {figures['client_ms']:6.2f} ms   emulator "
              f"{figures['emulator_ms']:6.2f} ms")
    if p := result.get("pipeline"):
        print(f"\npipeline: {p['indexed']} files, -w {p['workers']}, {p['files_per_s']} files/s, "
              f"load {p['load_average']}")
        print(f"  this process {p['process_cpu_ms_per_file']:.2f} ms/file, emulator "
              f"{p['emulator_cpu_ms_per_file']:.2f} ms/file")
        for name, ms in p["per_file_ms"].items():
            calls = p["calls_per_file"].get(name)
            print(f"  {name:44s} {ms:6.2f} ms" + (f"  ({calls:g} a file)" if calls else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
