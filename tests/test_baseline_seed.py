"""The bench's baseline, ``scripts/baseline_seed.py`` (the seed's naive design), against the
instant emulator: it indexes what objlib would, counts its calls from the emulator, and tells
files that failed or were lost from indexed ones. Fast, so the harness cannot rot unseen."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from objlib.emulator import PROFILES
from scripts import baseline_seed
from tests.support.disk import write_library

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _with_ineligible_files(library: Path, count: int) -> None:
    write_library(library, count)
    (library / ".hidden.txt").write_text("hidden", encoding="utf-8")
    (library / "empty.txt").write_bytes(b"")
    (library / "paper.pdf").write_bytes(b"%PDF-1.4\n")
    (library / "latin1.txt").write_bytes("déjà vu".encode("latin-1"))


def test_the_baseline_indexes_every_eligible_file_and_counts_its_calls(emulator, library,
                                                                      tmp_path):
    """Given 10 text files and four objlib would skip, when the script runs as a command,
    then its JSON says 10 indexed at 4 emulator-counted calls a file, and so do the ledger
    and the store."""
    _with_ineligible_files(library, 10)
    out, ledger = tmp_path / "result.json", tmp_path / "ledger.db"
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "baseline_seed.py"), str(library),
         "--base-url", emulator.base_url, "--concurrency", "3", "--poll-first-wait", "0.02",
         "--db", str(ledger), "--json-out", str(out)],
        capture_output=True, text=True, timeout=60, env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert (result["files"], result["indexed"], result["failed"], result["lost"]) == (10, 10, 0, 0)
    assert result["indexed_fraction"] == 1.0 and result["files_per_s"] > 0
    assert result["api_calls_source"] == "emulator"
    assert result["calls_by_endpoint"] == {"operations.get": 10, "stores.importFile": 10,
                                           "upload.chunk": 10, "upload.start": 10}
    assert result["api_calls"] == 40 and result["calls_per_file"] == 4.0
    rows = sqlite3.connect(ledger).execute("SELECT state, count(*) FROM files GROUP BY state")
    assert dict(rows.fetchall()) == {"indexed": 10}
    docs = list(emulator.state.documents.values())
    assert len(docs) == 10


def test_operations_that_never_finish_are_lost_and_failed_imports_failed(emulator, library,
                                                                         tmp_path):
    """Given indexing that never reports done, the files are lost (not indexed); given
    indexing that fails, they are failed with the operation's error."""
    write_library(library, 4)
    waits = baseline_seed.Waits(poll_first_s=0.01, poll_max_s=0.02, polls=2)
    emulator.configure(faults={"never_done": 1.0})
    lost = asyncio.run(baseline_seed.run(library, base_url=emulator.base_url, concurrency=2,
                                         db_path=tmp_path / "a.db", waits=waits))
    assert (lost["indexed"], lost["lost"], lost["files_per_s"]) == (0, 4, 0.0)
    assert lost["calls_by_endpoint"]["operations.get"] == 8  # two polls each
    emulator.configure(faults={"never_done": 0.0, "index_failed": 1.0})
    failed = asyncio.run(baseline_seed.run(library, base_url=emulator.base_url, concurrency=2,
                                           db_path=tmp_path / "b.db", waits=waits))
    assert (failed["indexed"], failed["failed"], failed["lost"]) == (0, 4, 0)


def test_the_field_profile_is_the_field_figures_unscaled():
    field, realistic = PROFILES["field"].latency_s, PROFILES["realistic"].latency_s
    assert dict(field) == {"upload": 1.0, "activate": 0.0, "import": 0.5, "index": 3.0,
                           "call": 0.25}
    assert realistic["upload"] == 0.1  # realistic stays the field scaled down 10x
