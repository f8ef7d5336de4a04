"""Files on disk for the tests: a small library, and a path nothing can write."""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest


def write_library(root: Path, count: int, *, size: int = 2000, prefix: str = "Notes") -> list[Path]:
    """``count`` small, distinct, valid text files under ``root/prefix``."""
    folder = root / prefix
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        p = folder / f"note {i:04d}.txt"
        line = f"Note {i}: the quick brown fox jumps over the lazy dog. "
        p.write_text((line * (size // len(line) + 1))[:size], encoding="utf-8")
        paths.append(p)
    return paths


@contextmanager
def read_only(path):
    """``path`` cannot be written, even by root (the tests run as root, where chmod does not
    stop writes; the immutable attribute does)."""
    if os.geteuid() == 0:
        if not shutil.which("chattr") or subprocess.run(
                ["chattr", "+i", str(path)], capture_output=True).returncode:
            pytest.skip("running as root without `chattr +i`: cannot make a file read-only")
        undo = ["chattr", "-i", str(path)]
    else:
        mode = path.stat().st_mode
        path.chmod(mode & ~0o222)
        undo = None
    try:
        yield
    finally:
        if undo:
            subprocess.run(undo, check=True)
        else:
            path.chmod(mode)
