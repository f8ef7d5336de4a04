"""`objlib status --watch` in a real terminal (tmux): the live view shows the bars and the
health panel, Ctrl+C leaves with exit 0 and a clean screen (view erased, cursor shown), and
``--until-done`` leaves by itself."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from objlib.catalog import open_catalog
from objlib.scan import scan_library
from tests.support.disk import write_library
from tests.support.waits import wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    """One shell in a detached 120x40 tmux session, on a server of its own."""

    def __init__(self, name: str, env: dict):
        self.socket = f"objlib-test-{os.getpid()}-{name}"
        env_args = [f"{k}={v}" for k, v in env.items()]
        self.tmux("new-session", "-d", "-s", name, "-x", "120", "-y", "40",
                  "env", *env_args, "bash", "--norc", "--noprofile")
        self.target = name

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True,
                              capture_output=True, text=True).stdout

    def type(self, command: str) -> None:
        self.tmux("send-keys", "-t", self.target, command, "Enter")

    def ctrl_c(self) -> None:
        self.tmux("send-keys", "-t", self.target, "C-c")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.target)

    def cursor_visible(self) -> bool:
        flag = self.tmux("display-message", "-p", "-t", self.target, "#{cursor_flag}")
        return flag.strip() == "1"

    def wait_for_screen(self, text: str, timeout_s: float = 20.0) -> str:
        return wait_for(lambda: self.screen() if text in self.screen() else None,
                        timeout_s=timeout_s, what=f"{text!r} on the screen")

    def wait_for_exit(self, timeout_s: float = 20.0) -> str:
        """The screen once the command typed with ``; echo exited with $?`` has ended."""
        return wait_for(lambda: self.screen() if re.search(r"exited with \d", self.screen())
                        else None, timeout_s=timeout_s, what="the command to end")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.fixture
def terminal(home, request):
    env = {"OBJLIB_HOME": str(home), "PS1": "$ ", "TERM": "xterm-256color",
           "PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}
    tmux = Tmux(request.node.name[:40].replace("[", "-").replace("]", ""), env)
    yield tmux
    tmux.close()


@pytest.fixture
def scanned(settings, library):
    write_library(library, 12)
    scan_library(settings, library)
    return settings


STATUS = f"{shlex.quote(sys.executable)} -m objlib status"


def test_watch_shows_bars_and_health_and_ctrl_c_leaves_a_clean_terminal(terminal, scanned):
    terminal.type(f"{STATUS} --watch --interval 0.2; echo exited with $?")

    live = terminal.wait_for_screen("health")

    for text in ("objlib status", "indexed", "0 / 12 eligible", "pending", "━", "oldest",
                 "breaker", "closed", "0 waiting, 0 scheduled", "reconcile", "Ctrl+C"):
        assert text in live, text
    assert not terminal.cursor_visible()  # the live view hides it while it runs

    terminal.ctrl_c()
    after = terminal.wait_for_exit()

    assert "exited with 0" in after
    assert "Traceback" not in after and "KeyboardInterrupt" not in after
    assert "health" not in after and "━" not in after  # the live view was erased
    assert terminal.cursor_visible()


def test_watch_until_done_leaves_by_itself_when_nothing_is_left(terminal, scanned):
    catalog = open_catalog(scanned)
    with catalog.write() as conn:  # every row indexed, as if the workers had finished
        conn.execute("UPDATE files SET state='indexed'")
    catalog.close()

    terminal.type(f"{STATUS} --watch --until-done --interval 0.2; echo exited with $?")
    after = terminal.wait_for_exit()

    assert "exited with 0" in after and "Traceback" not in after
    assert terminal.cursor_visible()
