"""Searching from the tests: the in-process pipeline that indexes a small library without
consumer processes, and ``objlib search`` through the CLI."""

from __future__ import annotations

import json
import time

from click.testing import CliRunner

from objlib import pipeline
from objlib.catalog import lifecycle as lc
from objlib.cli import cli
from objlib.enqueue import ensure_store
from tests.support.catalogue import queued


def sync(settings) -> None:
    """What consumers do, in-process: every pending file uploaded, imported and followed to
    indexed; then every open removal sent (replaced and deleted files' documents)."""
    ctx = pipeline.build_context(settings)
    try:
        ensure_store(settings, ctx.catalog, ctx.gemini)
        for (file_id,) in ctx.catalog.query("SELECT id FROM files WHERE state='pending'"):
            row = queued(ctx, file_id, f"task-{file_id}-{time.monotonic_ns()}")
            assert pipeline.upload_and_import(ctx, row.id, row.version, row.task_id)
            clock = ctx.clock
            ctx.clock = lambda clock=clock: clock() + 60  # past the first look's expected time
            try:
                pipeline.poll_import(ctx, row.id, row.version, row.task_id)
            finally:
                ctx.clock = clock
            assert lc.get(ctx.catalog, file_id).state == "indexed"
        for removal in lc.open_removals(ctx.catalog):
            pipeline.remove_document(ctx, removal.id, "remover")
    finally:
        ctx.gemini.close()
        ctx.catalog.close()


def run(*args: str):
    return CliRunner().invoke(cli, ["search", *args], catch_exceptions=False)


def cited(*args: str) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)
