#!/usr/bin/env python3
"""`make demo`: the whole pipeline, end to end, on the bundled emulator.

    python scripts/demo.py [--files 300] [--workers 7] [--timeout-s 300] [--home data/demo]

1. wipes ``--home`` (default ``./data/demo``) and generates a sample library in it, the bad
   inputs included (they end up ``skipped``, with a reason);
2. starts the Gemini emulator (``realistic`` latencies) on a free port;
3. runs ``objlib scan``, ``objlib enqueue`` and ``huey_consumer objlib.tasks.huey -w 7``;
4. shows ``objlib status --watch --until-done`` (plain lines when stdout is not a terminal);
5. prints the final ``objlib status``, ``objlib failures`` and the skipped files.

Every process it starts runs in its own process group and is stopped at the end, also on
Ctrl+C or an error. Exit status: 0 when every eligible file is indexed; 1 when any is left
pending, in flight or failed (or the run timed out); 130 on Ctrl+C. The real Gemini key is
never used: the child processes get no GEMINI_API_KEY and talk to the emulator only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_sample_library import make_library  # noqa: E402

from objlib.settings import Settings  # noqa: E402
from objlib.status import duration, snapshot  # noqa: E402

PYTHON = sys.executable
OBJLIB = [PYTHON, "-m", "objlib"]
CONSUMER_FLAGS = ["-k", "thread", "-m", "1", "-t", "60"]  # as in workers/Procfile, with -w
SEED = 7


def say(text: str) -> None:
    print(f"\n\033[1m{text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the emulator exited ({proc.returncode}) before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the emulator is not listening on port {port} after {timeout_s:.0f} s")


class Processes:
    """Background processes, each in its own process group, all stopped by ``stop_all``."""

    def __init__(self):
        self.started: list[tuple[str, subprocess.Popen, object]] = []

    def start(self, name: str, argv: list[str], env: dict, log_path: Path) -> subprocess.Popen:
        log = open(log_path, "ab")
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.started.append((name, proc, log))
        return proc

    def dead(self) -> list[str]:
        return [f"{name} (exit {p.returncode})" for name, p, _ in self.started
                if p.poll() is not None]

    def stop_all(self) -> None:
        """Newest first (the consumer, then the emulator): SIGINT, then SIGKILL after 20 s."""
        for name, proc, log in reversed(self.started):
            _signal_group(proc, signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop on SIGINT in 20 s; killing it", flush=True)
                _signal_group(proc, signal.SIGKILL)
                proc.wait(10)
            log.close()
        self.started.clear()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass


def run_step(argv: list[str], env: dict) -> None:
    """A foreground command, shown as a user would type it; a failure stops the demo."""
    shown = ["objlib", *argv[3:]] if argv[:3] == OBJLIB else argv
    print(f"$ {' '.join(shown)}", flush=True)
    subprocess.run(argv, env=env, check=True)


def watch(env: dict, procs: Processes, timeout_s: float) -> str | None:
    """`objlib status --watch --until-done` until it ends by itself; None when it did,
    otherwise why it was interrupted (a background process died, the deadline passed)."""
    interval = "1" if sys.stdout.isatty() else "2"
    argv = [*OBJLIB, "status", "--watch", "--until-done", "--interval", interval]
    print(f"$ objlib status --watch --until-done --interval {interval}", flush=True)
    watcher = subprocess.Popen(argv, env=env)
    deadline = time.monotonic() + timeout_s
    why = None
    try:
        while watcher.poll() is None and why is None:
            time.sleep(0.2)
            if procs.dead():
                why = f"stopped early: {', '.join(procs.dead())}"
            elif time.monotonic() > deadline:
                why = f"not done after {timeout_s:.0f} s"
    finally:  # on Ctrl+C too: let the watch erase its view before anything else is printed
        if watcher.poll() is None:
            watcher.send_signal(signal.SIGINT)  # it leaves the terminal clean on SIGINT
        watcher.wait(10)
    return why


def verdict(settings: Settings, elapsed_s: float) -> int:
    snap = snapshot(settings)
    files = snap.files
    print(f"\ndemo: {files['indexed']} of {snap.eligible} eligible files indexed in "
          f"{duration(elapsed_s)}; {files['failed']} failed, {snap.remaining} left undone; "
          f"{files['skipped']} skipped (the sample's bad inputs)", flush=True)
    return 0 if files["indexed"] == snap.eligible else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--workers", type=int, default=7)
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument("--home", type=Path, default=ROOT / "data" / "demo")
    args = parser.parse_args(argv)

    home = args.home.absolute()
    shutil.rmtree(home, ignore_errors=True)
    library = home / "library"
    (home / "logs").mkdir(parents=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env.update(OBJLIB_HOME=str(home), GOOGLE_GEMINI_BASE_URL=f"http://127.0.0.1:{port}")
    started = time.monotonic()
    procs = Processes()
    try:
        say(f"1. a sample library of {args.files} files (bad inputs included) in {library}")
        make_library(library, args.files, SEED)
        say(f"2. the Gemini emulator (realistic latencies) on 127.0.0.1:{port}")
        emulator = procs.start("emulator", [*OBJLIB, "emulator", "--profile", "realistic",
                                            "--port", str(port), "--seed", str(SEED)],
                               env, home / "logs" / "emulator.log")
        wait_listening(port, emulator)
        say("3. catalogue the library, queue the work, start the workers")
        run_step([*OBJLIB, "scan", str(library)], env)
        run_step([*OBJLIB, "enqueue"], env)
        flags = ["-w", str(args.workers), *CONSUMER_FLAGS]
        print(f"$ huey_consumer objlib.tasks.huey {' '.join(flags)}   "
              f"# logs: {home / 'logs' / 'consumer.log'}", flush=True)
        procs.start("consumer", [PYTHON, "-m", "huey.bin.huey_consumer", "objlib.tasks.huey",
                                 *flags], env, home / "logs" / "consumer.log")
        say("4. watch the pipeline until nothing is pending or in flight")
        interrupted = watch(env, procs, args.timeout_s)
        if interrupted:
            print(f"demo: {interrupted}; see {home / 'logs'}", flush=True)
        say("5. where it ended")
        run_step([*OBJLIB, "status"], env)
        run_step([*OBJLIB, "failures"], env)
        run_step([*OBJLIB, "failures", "--skipped"], env)
        return verdict(Settings.load(home), time.monotonic() - started)
    except KeyboardInterrupt:
        print("\ndemo: interrupted", flush=True)
        return 130
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        print(f"demo: {exc}; logs in {home / 'logs'}", file=sys.stderr, flush=True)
        return 1
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
