"""`make demo` (scripts/demo.py), small: the whole pipeline on the emulator ends with every
eligible file indexed, exit 0, and no process it started left running; its last search
cites the sample PDF book with the page of the passage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scripts.make_sample_library import DOCUMENTS, PDF_PASSAGE, PDF_PASSAGE_PAGE

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "demo.py"

pytestmark = pytest.mark.slow


def processes_with_home(home: Path) -> list[int]:
    """Pids of live processes whose environment has OBJLIB_HOME=home."""
    wanted = f"OBJLIB_HOME={home}".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if wanted in environ.read_bytes().split(b"\0"):
                pids.append(int(environ.parent.name))
        except OSError:
            continue
    return pids


def test_demo_indexes_every_eligible_file_and_stops_what_it_started(tmp_path):
    home = tmp_path / "demo"

    result = subprocess.run([sys.executable, str(SCRIPT), "--files", "40", "--home", str(home),
                             "--timeout-s", "120"], capture_output=True, text=True, timeout=240)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for text in ("$ objlib scan", "$ objlib enqueue", "$ huey_consumer objlib.tasks.huey -w 7",
                 "$ objlib status --watch --until-done", "no failed files", "skipped file(s)"):
        assert text in out, text
    assert "indexed 27/27 (100.0%)" in out  # a plain status line: stdout is not a terminal
    assert "demo: 27 of 27 eligible files indexed" in out and "0 failed" in out
    assert "application/pdf 2" in out and "text/html 2" in out  # the sample's real documents
    assert "demo: 0 files skipped for their type although File Search indexes it" in out
    assert "$ objlib search" in out and "Citations" in out and "[1] Courses/" in out
    last_search = out.rsplit("$ objlib search", 1)[1].split("\n", 1)[1]  # after its command
    assert f"[1] {DOCUMENTS['pdf']}, page {PDF_PASSAGE_PAGE}" in last_search
    assert PDF_PASSAGE in " ".join(last_search.split())  # the PDF's passage, cited
    assert processes_with_home(home) == []
