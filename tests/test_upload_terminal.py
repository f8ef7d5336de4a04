"""``objlib upload`` on a real terminal (tmux): given a run long enough to watch, the screen
shows the three tiers of progress — the whole run (bar, count, percentage, ETA), the current
batch, one line per file in flight with its step — with the breaker and the request rate;
and Ctrl+C typed on that terminal stops the run, resumable, with a summary."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from objlib.scan import scan_library
from tests.support.disk import write_library
from tests.support.waits import wait_for

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]


class Terminal:
    """A 140x45 tmux window on a private tmux server, running one command."""

    def __init__(self, tmp_path, command: str):
        self.socket = f"objlib-test-{os.getpid()}-{tmp_path.name}"
        script = tmp_path / "terminal.sh"
        # a detached window starts 80 columns wide and is resized a moment later: wait for
        # the size, and let the program ask the terminal (not a stale $COLUMNS)
        script.write_text('while [ "$(stty size)" != "45 140" ]; do sleep 0.05; done\n'
                          f"unset COLUMNS LINES\n{command}\necho \"exit=$?\"\nsleep 120\n")
        self.tmux("new-session", "-d", "-s", "t", "-x", "140", "-y", "45", f"bash {script}")

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True,
                              capture_output=True, text=True).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def type(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.fixture
def terminal(tmp_path):
    opened: list[Terminal] = []

    def open_(command: str) -> Terminal:
        opened.append(Terminal(tmp_path, command))
        return opened[-1]

    yield open_
    for t in opened:
        t.close()


RUN_TIER = re.compile(r"^run\s+[━╸╺]{40}\s+\d+/200\s+\d+%\s+ETA\s+\S+\s+\d+ indexed · \d+ failed",
                      re.M)
BATCH_TIER = re.compile(r"^batch \d/4\s+[━╸╺]{40}\s+\d+/50\s+\d+%", re.M)
FILE_TIER = re.compile(r"^(uploading|waiting ACTIVE|importing|indexing)\s+Notes/note \d{4}\.txt",
                       re.M)


def test_a_terminal_shows_three_tiers_and_ctrl_c_stops_the_run(settings, library, emulator,
                                                               terminal):
    # Given 200 files and an API slow enough to watch the run for a few seconds
    emulator.configure(latency={"upload": 0.05, "index": 0.5})
    write_library(library, 200)
    scan_library(settings, library)
    env = f"OBJLIB_HOME={settings.home} GOOGLE_GEMINI_BASE_URL={emulator.base_url}"
    term = terminal(f"{env} {sys.executable} -m objlib upload -b 50")

    # When it runs, then every tier is on the screen at the same time
    def all_tiers():
        screen = term.screen()
        found = all(p.search(screen) for p in (RUN_TIER, BATCH_TIER, FILE_TIER))
        return screen if found else None
    screen = wait_for(all_tiers, 30, 0.1, "the three tiers of progress")
    # the store of this catalogue's own, by its display name
    assert re.search(r"objlib upload · run 1 · store objlib-[0-9a-f]{12} · 7 workers", screen)
    assert re.search(r"breaker closed · \d+ requests in the last 60 s", screen)
    assert re.search(r"in flight \d+.*· queued \d+", screen)
    assert "Ctrl+C: stop after the steps in flight (resumable)" in screen

    # When Ctrl+C is typed, then the run stops, says so and what is left, and exits 130
    term.type("C-c")
    screen = wait_for(lambda: next((s for s in [term.screen()] if "exit=" in s), None), 45,
                      0.2, "the run to stop")
    assert "exit=130" in screen, screen
    assert "objlib upload · run 1 · interrupted" in screen
    assert re.search(r"not finished +\d+ +resumable: run `objlib upload` again", screen)
    assert "━" not in screen  # the live view was cleared; only the summary remains
