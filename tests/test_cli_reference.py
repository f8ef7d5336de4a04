"""docs/cli.md is every command's --help, generated from the CLI: it must be current, and every
command must carry an example."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_generator():
    spec = importlib.util.spec_from_file_location("cli_reference",
                                                  ROOT / "scripts" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_cli_reference_is_current():
    generator = load_generator()
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == generator.reference(), \
        "docs/cli.md is out of date: run `python scripts/cli_reference.py`"


def test_every_command_shows_an_example():
    from objlib.cli import cli

    for name, command in cli.commands.items():
        assert "Example" in (command.help or ""), f"`objlib {name}` has no example"
