"""``make bench`` section ``seed``: objlib and the design it replaced, side by side.

On one generated library (exactly ``--baseline-files`` eligible files), one emulator profile
(``field`` by default: the latencies users see) and one concurrency N (``--workers``), each
condition runs both, each against its own fresh emulator with the same seed:

- the seed's design: ``scripts/baseline_seed.py LIBRARY --base-url URL -n N`` (asyncio,
  ``Semaphore(N)``, batches of 150, no retries); its JSON result;
- objlib: ``objlib scan``, ``huey_consumer -w N`` with the recommended flags, ``objlib
  enqueue``, until every row is indexed or failed (``bench.pipeline_run``), with objlib's
  shipped settings (its waits are *not* scaled to the profile: this is what users run).

Conditions: ``clean``, and ``faulty`` (the emulator's ``--fault rate_limit=0.05 --fault
unavailable=0.05``). Figures per side: files/s (indexed / first start to last result: the
baseline's first intent row to its last result row, objlib's first ``queued_at`` to its last
``indexed_at``), % of the eligible files indexed, API calls per eligible file (every request
the emulator counted, upload chunks and rejected calls included, store setup excluded),
huey task executions per file (objlib, from the consumer's log), and the ratio of objlib's
files/s to the baseline's. With several runs (``--baseline-runs``) each figure is the median,
and the ratio is the median of the runs' own ratios (each run puts both sides on the machine
minutes apart, so a load that changes between runs moves both sides of a run, not its ratio).
"""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

from scripts import baseline_seed
from scripts import benchlib as bl
from scripts.make_sample_library import make_library
from tests.support.processes import PYTHON, Child, Children, EmulatorProcess

FAULTS = {"rate_limit": 0.05, "unavailable": 0.05}
CONDITIONS = {"clean": {}, "faulty": FAULTS}
# issue 14's targets, defined on the field profile (450 files, N = 7)
TARGETS = {"ratio_clean": 1.15, "ratio_faulty": 2.0, "indexed_fraction": 1.0,
           "calls_per_file": 4.3, "tasks_per_file": 2.2}
DOCUMENT_SUFFIXES = frozenset({".pdf", ".docx", ".html", ".epub"})
FIGURES = ("files_per_s", "indexed_fraction", "calls_per_file", "tasks_per_file")


def library(path: Path, files: int, seed: int) -> int:
    """A generated library with exactly ``files`` eligible files (the generator's bad inputs
    come on top); how many it has."""
    make_library(path, files, seed)
    _text_only(path)
    eligible = len(baseline_seed.library_files(path))
    if eligible < files:
        shutil.rmtree(path)
        make_library(path, files + (files - eligible), seed)
        _text_only(path)
    return len(baseline_seed.library_files(path))


def _text_only(path: Path) -> None:
    """The seed's design sends .txt and .md only: the generator's PDF, DOCX, HTML and EPUB
    files go, so that both sides are given the same files."""
    for document in [p for p in path.rglob("*") if p.suffix.lower() in DOCUMENT_SUFFIXES]:
        document.unlink()


def baseline_run(work: Path, library_path: Path, *, profile: str, faults: dict, workers: int,
                 seed: int, timeout_s: float) -> dict:
    """``baseline_seed.py`` against a fresh emulator; its JSON result."""
    work.mkdir(parents=True, exist_ok=True)
    out = work / "result.json"
    with Children() as children:
        emu = children.add(EmulatorProcess(work / "emulator.log", profile=profile,
                                              faults=faults, seed=seed))
        child = children.add(Child(
            [PYTHON, str(bl.HERE / "baseline_seed.py"), str(library_path),
             "--base-url", emu.base_url, "--concurrency", str(workers),
             "--db", str(work / "ledger.db"), "--json-out", str(out)],
            log_path=work / "baseline.log"))
        code = child.wait(timeout_s)
        if code != 0:
            raise RuntimeError(f"baseline_seed.py ended with {code} (timeout {timeout_s:.0f} s):"
                               f" see {work / 'baseline.log'}")
        emu.stop()
    return json.loads(out.read_text())


def baseline_figures(result: dict) -> dict:
    return {"files": result["files"], "indexed": result["indexed"],
            "failed": result["failed"], "lost": result["lost"],
            "files_per_s": result["files_per_s"],
            "indexed_fraction": result["indexed_fraction"],
            "calls_per_file": result["calls_per_file"], "tasks_per_file": None,
            "calls_by_endpoint": result["calls_by_endpoint"], "errors": result["errors"]}


def objlib_figures(run: dict) -> dict:
    files = run["eligible"]
    return {"files": files, "indexed": run["indexed"], "failed": run["failed"],
            "lost": files - run["indexed"] - run["failed"],
            "files_per_s": run["files_per_s"],
            "indexed_fraction": round(run["indexed"] / files, 4),
            "calls_per_file": round(run["api_calls"] / files, 3),
            "tasks_per_file": round(run["tasks"] / files, 3),
            "calls_by_endpoint": {k: round(v * run["indexed"] / files, 3)
                                  for k, v in run["calls_per_file"].items()},
            "executions": run["workers_time"]["executions"],
            "load_average": run["load_average"]}


def _median(runs: list[dict], side: str, figure: str):
    values = [r[side][figure] for r in runs if r[side][figure] is not None]
    return round(statistics.median(values), 4) if values else None


def condition(args, tmp: Path, name: str, pipeline_run, log) -> dict:
    """Every run of one condition, and the medians."""
    runs = []
    for i in range(args.baseline_runs):
        work, seed = tmp / f"seed-{name}-{i}", args.seed + i
        eligible = library(work / "library", args.baseline_files, seed)
        log(f"seed ({name}, {args.baseline_profile}) run {i + 1}/{args.baseline_runs}: "
            f"{eligible} files, N = {args.workers}")
        sides = {}
        # alternate who goes first, so a drifting machine load does not favour one side
        for side in (("baseline", "objlib") if i % 2 == 0 else ("objlib", "baseline")):
            if side == "baseline":
                sides[side] = baseline_figures(baseline_run(
                    work / "baseline", work / "library", profile=args.baseline_profile,
                    faults=CONDITIONS[name], workers=args.workers, seed=seed,
                    timeout_s=args.timeout))
            else:
                sides[side] = objlib_figures(pipeline_run(
                    work / "objlib", profile=args.baseline_profile, files=eligible,
                    workers=args.workers, seed=seed, timeout_s=args.timeout,
                    faults=CONDITIONS[name], library=work / "library", env={}))
            log(f"  {side}: {sides[side]['files_per_s']} files/s, "
                f"{sides[side]['indexed']}/{sides[side]['files']} indexed")
        runs.append(sides)
    median = {side: {f: _median(runs, side, f) for f in FIGURES}
              for side in ("baseline", "objlib")}
    # the ratio is taken within each run (both sides on the same machine minutes apart,
    # the order alternating), then the median of those: a machine that is busier in one
    # run than in another moves both sides of that run, not the ratio
    for sides in runs:
        base, ours = sides["baseline"]["files_per_s"], sides["objlib"]["files_per_s"]
        sides["ratio"] = round(ours / base, 3) if base and ours else None
    ratios = [r["ratio"] for r in runs if r["ratio"] is not None]
    median["ratio"] = round(statistics.median(ratios), 3) if ratios else None
    return {"faults": CONDITIONS[name], "runs": runs, "median": median}


def bench(args, tmp: Path, pipeline_run, log) -> dict:
    return {"profile": args.baseline_profile, "files": args.baseline_files,
            "workers": args.workers, "n_runs": args.baseline_runs,
            **{name: condition(args, tmp, name, pipeline_run, log) for name in CONDITIONS}}


def _checks(section: dict, name: str) -> dict[str, tuple[object, str, bool]]:
    """figure -> (value, target text, met) for one condition (the field profile only)."""
    md = section[name]["median"]
    ours = md["objlib"]
    ratio_target = TARGETS[f"ratio_{name}"]
    checks = {"ratio": (md["ratio"], f">= {ratio_target}",
                        md["ratio"] is not None and md["ratio"] >= ratio_target),
              "indexed": (ours["indexed_fraction"], "100 %",
                          ours["indexed_fraction"] >= TARGETS["indexed_fraction"])}
    if name == "clean":
        checks["calls"] = (ours["calls_per_file"], f"<= {TARGETS['calls_per_file']}",
                           ours["calls_per_file"] <= TARGETS["calls_per_file"])
        checks["tasks"] = (ours["tasks_per_file"], f"<= {TARGETS['tasks_per_file']}",
                           ours["tasks_per_file"] <= TARGETS["tasks_per_file"])
    return checks


def verdicts(section: dict) -> list[bool]:
    if section["profile"] != "field":
        return []
    return [met for name in CONDITIONS for _, _, met in _checks(section, name).values()]


def table_lines(section: dict, ok) -> list[str]:
    """The section's rows: one line per condition and side, then the ratio."""
    lines = [f"seed: objlib vs the seed's design (scripts/baseline_seed.py), "
             f"{section['files']} files, {section['profile']} profile, N = {section['workers']}; "
             f"median of {section['n_runs']} run(s)",
             f"  {'':<24} {'files/s':>8} {'indexed':>8} {'calls/file':>11} "
             f"{'tasks/file':>11}  target"]
    field = section["profile"] == "field"
    for name in CONDITIONS:
        md = section[name]["median"]
        checks = _checks(section, name) if field else {}
        for side in ("baseline", "objlib"):
            f = md[side]
            tasks = "-" if f["tasks_per_file"] is None else f"{f['tasks_per_file']:.2f}"
            target = ""
            if side == "objlib" and checks:
                target = "; ".join(f"{k} {t} {ok(met)}" for k, (_, t, met) in checks.items()
                                   if k != "ratio")
            lines.append(f"  {name + ' ' + side:<24} {f['files_per_s'] or 0:>8.2f} "
                         f"{f['indexed_fraction']:>8.1%} {f['calls_per_file']:>11.2f} "
                         f"{tasks:>11}  {target}".rstrip())
        loads = " ".join("/".join(f"{x:g}" for x in r["objlib"].get("load_average", []))
                         for r in section[name]["runs"])
        lines.append(f"  {name + ' load, objlib runs':<24} {loads:>8}  (1-min average, "
                     "before/after each)")
        ratio = md["ratio"]
        target = f"{checks['ratio'][1]} {ok(checks['ratio'][2])}" if checks else ""
        lines.append(f"  {name + ' ratio objlib/seed':<24} "
                     f"{'n/a' if ratio is None else f'{ratio:.2f}x':>8}  {target}".rstrip())
    return lines
