#!/usr/bin/env python3
"""``make chaos``: a faulty API and workers killed at random, then proof that nothing was lost
and nothing was doubled.

    python scripts/chaos.py [--files 1000] [--workers 7] [--seed 1] [--until 0.9]
                            [--chaos-s 240] [--max-kills 0] [--poll-timeout-s 10]
                            [--max-attempts N] [--settle-s 600] [--keep] [--json-out PATH]

1. A sample library of ``--files`` files (``make_sample_library.py``: bad inputs included,
   which the scan skips) is scanned and enqueued against the emulator (in this process,
   ``realistic`` profile) with faults: rate_limit 0.05, unavailable 0.05, create_failed 0.05,
   never_done 0.01, index_failed 0.01.
2. Chaos: a consumer (``-k thread`` or ``-k process`` at random, recommended flags) runs for a
   random 1.5-5 s, then one of: SIGKILL of one worker process (process mode; huey restarts
   it, its task is lost), SIGKILL of the whole process group, SIGINT (graceful) or SIGTERM
   (immediate) to the group. A stopped consumer is restarted at once. This repeats until
   ``--until`` of the files are indexed or failed (or ``--chaos-s`` passes, or
   ``--max-kills`` kills happened).
3. The end, as a user would do it: ``objlib enqueue``, a consumer until every row is indexed
   or failed and every removal is done, ``objlib reconcile --fix`` (and workers again for
   whatever it re-enqueued), then a dry ``objlib reconcile`` that must find no drift. The
   faults are lifted while reconcile runs (it does not retry a 429/503; see ``reconcile``).
4. Checks against the emulator's real document list: every eligible file is indexed or failed
   with a class and a message (index_failed is the only failure these faults should cause),
   none is in flight, exactly one document per indexed file (the one its row records, and
   ACTIVE), no document without an indexed row (orphans), no second document for a file
   version (duplicates), no removal left open.

The seed drives the library, the emulator's faults and jitter, and the kill schedule, so a
failure can be replayed with the same ``--seed`` (thread timing still varies). Prints the
counts and the kills; exits 1 if any check fails. Every process it starts is stopped (process
groups), on Ctrl+C too.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

from objlib.emulator import Emulator
from scripts import benchlib as bl
from scripts.make_sample_library import make_library
from tests.support.processes import Child, Children, group_members
from tests.support.store import compare, documents
from tests.support.waits import wait_while_progressing

HERE = Path(__file__).resolve().parent

FAULTS = {"rate_limit": 0.05, "unavailable": 0.05, "create_failed": 0.05, "never_done": 0.01,
          "index_failed": 0.01}
ACTIONS = ("sigkill-worker", "sigkill-group", "sigint", "sigterm")
EXPECTED_FAILURES = {"index_failed"}
IN_FLIGHT = ("pending", "queued", "uploading", "importing")
TRANSIENT_CODES = ("429 RESOURCE_EXHAUSTED", "503 UNAVAILABLE")


class Chaos:
    def __init__(self, *, work: Path, files: int, workers: int, seed: int, until: float,
                 chaos_s: float, max_kills: int, poll_timeout_s: float, settle_s: float,
                 episode_s: tuple[float, float] = (1.5, 5.0), faults: dict | None = None,
                 max_attempts: int | None = None, out=sys.stdout):
        self.work, self.files, self.workers, self.seed = work, files, workers, seed
        self.until, self.chaos_s, self.max_kills = until, chaos_s, max_kills
        self.settle_s, self.episode_s = settle_s, episode_s
        self.poll_timeout_s, self.max_attempts = poll_timeout_s, max_attempts
        self.faults = FAULTS if faults is None else faults
        self.rng = random.Random(f"chaos:{seed}")
        self.out = out
        self.started = time.monotonic()
        self.done_kills: collections.Counter = collections.Counter()
        self.consumer_kinds: collections.Counter = collections.Counter()
        self.consumers = 0
        self.enqueue_retries = 0

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f} s] {message}", file=self.out, flush=True)

    # ------------------------------------------------------------------ the run

    def run(self) -> dict:
        make_library(self.work / "library", self.files, self.seed)
        self.emu = Emulator(profile="realistic", faults=self.faults, seed=self.seed)
        with Children() as children, self.emu:
            self.children = children
            env = {"OBJLIB_POLL_TIMEOUT_S": str(self.poll_timeout_s),
                   "OBJLIB_BACKOFF_BASE_S": "0.2"}
            if self.max_attempts:
                env["OBJLIB_MAX_ATTEMPTS"] = str(self.max_attempts)
            self.app = bl.Run(self.work / "home", self.emu.base_url, env)
            self.app.cli("scan", str(self.work / "library"))
            self.enqueue()
            eligible = self.app.eligible()
            self.say(f"{self.files} files, {eligible} eligible, enqueued; faults "
                     + ", ".join(f"{k}={v}" for k, v in self.faults.items()))
            self.chaos()
            reconcile = self.finish()
            stats = self.emu.stats()
        return self.verify(stats, eligible, reconcile)

    def progress(self) -> str:
        states = self.app.states()
        return (f"indexed {states.get('indexed', 0)}, failed {states.get('failed', 0)}, "
                f"in flight {sum(states.get(s, 0) for s in IN_FLIGHT)}")

    def start_consumer(self, kind: str) -> Child:
        self.consumers += 1
        self.consumer_kinds[kind] += 1
        return self.app.consumer(self.children, self.work / f"consumer-{self.consumers}.log",
                                 workers=self.workers, kind=kind)

    def done_fraction(self) -> float:
        states = self.app.states()
        eligible = sum(n for state, n in states.items() if state not in ("skipped", "deleted"))
        return (states.get("indexed", 0) + states.get("failed", 0)) / max(1, eligible)

    def chaos(self) -> None:
        """Kill/stop and restart until ``until`` of the files are done, ``chaos_s`` passed or
        ``max_kills`` (0: no cap) happened."""
        consumer = None
        deadline = time.monotonic() + self.chaos_s
        while (time.monotonic() < deadline and self.done_fraction() < self.until
               and not (self.max_kills and sum(self.done_kills.values()) >= self.max_kills)):
            if consumer is None or not consumer.alive():
                consumer = self.start_consumer(self.rng.choice(("thread", "process")))
            time.sleep(self.rng.uniform(*self.episode_s))
            kind = consumer.argv[consumer.argv.index("-k") + 1]
            workers = [p for p in group_members(consumer.pid) if p != consumer.pid]
            choices = ACTIONS if kind == "process" and workers else ACTIONS[1:]
            action = self.rng.choice(choices)
            self.done_kills[action] += 1
            if action == "sigkill-worker":
                victim = self.rng.choice(sorted(workers))
                os.kill(victim, signal.SIGKILL)
                self.say(f"SIGKILL worker process {victim} of consumer #{self.consumers} "
                         f"({kind}); {self.progress()}")
                continue
            sig = {"sigkill-group": signal.SIGKILL, "sigint": signal.SIGINT,
                   "sigterm": signal.SIGTERM}[action]
            stopped = time.monotonic()
            code = consumer.stop(sig, timeout_s=70.0)
            self.say(f"{action} consumer #{self.consumers} ({kind}): exit {code} after "
                     f"{time.monotonic() - stopped:.1f} s; {self.progress()}")
        if consumer is not None and consumer.alive():
            consumer.stop(signal.SIGINT, 70.0)
        self.say(f"chaos over: {sum(self.done_kills.values())} kills/stops "
                 f"({dict(self.done_kills)}); {self.progress()}")

    def settled(self) -> bool:
        open_removals = self.app.query("SELECT count(*) FROM removals WHERE removed_at IS NULL")
        return self.app.settled() and open_removals[0][0] == 0

    def activity(self) -> tuple:
        """What changes while the work goes on: the rows' states and the calls the emulator
        has answered (a slow machine drains slower, a stuck one not at all)."""
        return tuple(sorted(self.app.states().items())), self.emu.stats()["total_requests"]

    def drain(self, why: str) -> None:
        """A consumer (threads) until every row is done and every removal closed."""
        consumer = self.start_consumer("thread")
        try:
            wait_while_progressing(self.settled, self.activity, self.settle_s,
                                   what=f"every row settled ({why})")
        finally:
            consumer.stop(signal.SIGINT, 70.0)
        self.say(f"settled ({why}): {self.progress()}")

    def enqueue(self) -> None:
        """``objlib enqueue``, run again (as a user would) if the faults still make it fail
        on a 429/503 (it waits some out itself). The re-runs are counted."""
        for attempt in range(1, 11):
            try:
                self.app.cli("enqueue")
                return
            except RuntimeError as exc:
                if attempt == 10 or not any(code in str(exc) for code in TRANSIENT_CODES):
                    raise
                self.enqueue_retries += 1
                self.say(f"objlib enqueue failed, again: {str(exc).strip().splitlines()[-1]}")

    def finish(self) -> dict:
        self.enqueue()
        self.drain("after objlib enqueue")
        fixes = []
        for _ in range(3):
            report = self.reconcile("--fix")
            fixes.append({"counts": report["counts"], "fixed": report["fixed"]})
            self.say(f"objlib reconcile --fix: drift {report['drift']} "
                     f"{_nonzero(report['counts'])}")
            if not report["drift"]:
                break
            self.drain("after reconcile --fix")
        final = self.reconcile()
        self.say(f"objlib reconcile (dry run): drift {final['drift']} {_nonzero(final['counts'])}")
        return {"fix_runs": fixes, "final": final["counts"], "final_drift": final["drift"]}

    def reconcile(self, *flags: str) -> dict:
        """``objlib reconcile [--fix] --json`` with the faults lifted for its duration: it
        lists the whole store and stops at the first 429/503 (it does not retry), which with
        10 % faulty calls and a page per 20 documents would almost never get through."""
        self.emu.configure(faults={kind: 0.0 for kind in self.faults})
        try:
            return json.loads(self.app.cli("reconcile", *flags, "--json"))
        finally:
            self.emu.configure(faults=self.faults)

    # ------------------------------------------------------------------ the checks

    def verify(self, stats: dict, eligible: int, reconcile: dict) -> dict:
        app = self.app
        store = app.query("SELECT value FROM meta WHERE key='store'")[0][0]
        docs = documents(stats, store)
        rows = {r["id"]: r for r in app.query("SELECT * FROM files")}
        states = collections.Counter(r["state"] for r in rows.values())
        mismatch = compare(rows.values(), docs.values())
        duplicates, orphans = mismatch.duplicates, mismatch.orphans
        missing, wrong = mismatch.missing, mismatch.wrong
        failed = [r for r in rows.values() if r["state"] == "failed"]
        failed_by_class = collections.Counter(r["error_class"] for r in failed)
        no_reason = [r["path"] for r in failed if not (r["error_class"] and r["error_message"])]
        unexpected = [f"{r['path']}: {r['error_class']}: {r['error_message']}" for r in failed
                      if r["error_class"] not in EXPECTED_FAILURES]
        reasons = collections.Counter(f"{r['error_class']}: {r['error_message']}" for r in failed)
        open_removals = app.query("SELECT count(*) FROM removals WHERE removed_at IS NULL")[0][0]
        in_flight = sum(states.get(s, 0) for s in IN_FLIGHT)
        counts = {
            "files": self.files, "eligible": eligible, "indexed": states.get("indexed", 0),
            "failed": len(failed), "failed_by_class": dict(failed_by_class),
            "failed_reasons": dict(reasons.most_common()),
            "skipped": states.get("skipped", 0), "in_flight": in_flight,
            "documents": len(docs), "orphans": len(orphans), "duplicates": len(duplicates),
            "missing_documents": len(missing), "wrong_documents": len(wrong),
            "open_removals": open_removals, "queue_depth": list(app.queue_depth()),
        }
        problems = []
        if counts["indexed"] + counts["failed"] != eligible:
            problems.append(f"{eligible} eligible, but {counts['indexed']} indexed + "
                            f"{counts['failed']} failed")
        for what, items in (("in flight", in_flight), ("orphan documents", orphans),
                            ("duplicated file versions", duplicates),
                            ("indexed rows without a document", missing),
                            ("indexed rows whose document is another or not ACTIVE", wrong),
                            ("failed rows without a reason", no_reason),
                            ("unexpected failures", unexpected),
                            ("open removals", open_removals)):
            if items:
                detail = items if isinstance(items, int) else \
                    f"{len(items)}, e.g. {list(items)[:3]}"
                problems.append(f"{what}: {detail}")
        if len(docs) != counts["indexed"]:
            problems.append(f"{len(docs)} documents in the store for {counts['indexed']} "
                            "indexed files")
        if reconcile["final_drift"]:
            problems.append(f"reconcile still finds drift: {_nonzero(reconcile['final'])}")
        return {
            "seed": self.seed, "workers": self.workers, "counts": counts,
            "machine": bl.machine(),
            "kills": dict(self.done_kills), "kills_total": sum(self.done_kills.values()),
            "consumers_started": dict(self.consumer_kinds),
            "faults_injected": stats["faults"], "api_requests": stats["total_requests"],
            "reconcile": reconcile, "enqueue_retries": self.enqueue_retries,
            "elapsed_s": round(time.monotonic() - self.started, 1),
            "problems": problems, "ok": not problems,
        }


def _nonzero(counts: dict) -> dict:
    return {k: v for k, v in counts.items() if v}


def render(result: dict) -> str:
    c = result["counts"]
    m = result["machine"]
    lines = [
        f"chaos, seed {result['seed']}: {c['files']} files ({c['eligible']} eligible), "
        f"-w {result['workers']}, {result['elapsed_s']:.0f} s; {m['cores']} cores; "
        f"code {m['commit']}" + (" (objlib files uncommitted)" if m["uncommitted"] else ""),
        f"  kills/stops       {result['kills_total']}: " + ", ".join(
            f"{k} {v}" for k, v in sorted(result["kills"].items())),
        "  consumers started " + ", ".join(f"{k} {v}" for k, v in
                                          sorted(result["consumers_started"].items())),
        "  faults injected   " + ", ".join(f"{k} {v}" for k, v in
                                          sorted(result["faults_injected"].items())),
        f"  indexed           {c['indexed']}",
        f"  failed            {c['failed']} {c['failed_by_class']}",
        *(f"    {n:4d} x {reason[:100]}" for reason, n in list(c["failed_reasons"].items())[:6]),
        f"  skipped           {c['skipped']} (not eligible)",
        f"  in flight         {c['in_flight']}",
        f"  documents         {c['documents']} (one per indexed file: "
        f"{'yes' if c['documents'] == c['indexed'] and not c['missing_documents'] else 'NO'})",
        f"  orphans           {c['orphans']}",
        f"  duplicates        {c['duplicates']}",
        f"  open removals     {c['open_removals']}; queue (waiting, scheduled) "
        f"{tuple(c['queue_depth'])}",
        f"  enqueue re-runs   {result['enqueue_retries']} (after a 429/503 it gave up on)",
        "  reconcile --fix   " + "; ".join(
            f"found {_nonzero(f['counts']) or 'nothing'}" for f in result["reconcile"]["fix_runs"]),
    ]
    lines.append("OK: nothing lost, nothing doubled" if result["ok"] else
                 "FAILED:\n" + "\n".join(f"  - {p}" for p in result["problems"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--until", type=float, default=0.9,
                        help="kill and restart until this fraction of the files is done (0.9)")
    parser.add_argument("--chaos-s", type=float, default=240.0,
                        help="the chaos phase ends after this many seconds at most (240)")
    parser.add_argument("--max-kills", type=int, default=0,
                        help="stop the chaos after this many kills/stops (0: no cap)")
    parser.add_argument("--poll-timeout-s", type=float, default=10.0,
                        help="OBJLIB_POLL_TIMEOUT_S: never-done imports are decided after it")
    parser.add_argument("--max-attempts", type=int,
                        help="OBJLIB_MAX_ATTEMPTS (default: objlib's own, 8)")
    parser.add_argument("--settle-s", type=float, default=600.0,
                        help="the final settling fails after this long with no progress "
                        "(no row changed state, no call reached the emulator)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--json-out", default="bench-results/chaos.json")
    args = parser.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="objlib-chaos-") if args.keep else None
    with tempfile.TemporaryDirectory(prefix="objlib-chaos-") as name:
        work = Path(tmp or name)
        result = Chaos(work=work, files=args.files, workers=args.workers, seed=args.seed,
                       until=args.until, chaos_s=args.chaos_s, max_kills=args.max_kills,
                       poll_timeout_s=args.poll_timeout_s, settle_s=args.settle_s,
                       max_attempts=args.max_attempts).run()
    print(render(result))
    if tmp:
        print(f"work folder kept: {tmp}")
    out = Path(args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
