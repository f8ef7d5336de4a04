"""The objlib command line: thin commands that parse options, call one function, render."""

from __future__ import annotations

import functools
import os

import click

from objlib import __version__
from objlib.errors import ObjlibError
from objlib.settings import Settings


def _fail_cleanly(fn):
    """Turn ObjlibError into a clear message and exit code 1, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ObjlibError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


EXIT_INTERRUPTED = 130  # Ctrl+C before the work was done (128 + SIGINT, as shells report it)


def _echo_json(data) -> None:
    import json

    click.echo(json.dumps(data, indent=2))


def settings_of(ctx: click.Context) -> Settings:
    settings = ctx.find_object(Settings)
    assert settings is not None, "the group callback sets ctx.obj"
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="objlib")
@click.option("--home", type=click.Path(file_okay=False), envvar="OBJLIB_HOME",
              help="Folder for the catalogue and the queue (default ./data, or $OBJLIB_HOME).")
@click.option("--log-json", is_flag=True, default=None,
              help="Log JSON lines instead of console text (also OBJLIB_LOG_JSON=1).")
@click.pass_context
@_fail_cleanly
def cli(ctx: click.Context, home: str | None, log_json: bool | None) -> None:
    """Mirror a local document library into a Gemini File Search store.

    \b
    Example:
        objlib scan ~/library && objlib enqueue && huey_consumer objlib.tasks.huey -w 7

    Every command exits 0 on success, 1 when it stops with a message (no catalogue, a
    refused key, a database it cannot use, ...) and 2 on bad usage; each command's --help
    lists its own exit codes.
    """
    from objlib import log

    settings = Settings.load(home, log_json=log_json)
    log.configure_lazily(json=settings.log_json)  # applied by the first event: none, no cost
    ctx.obj = settings


@cli.command()
@click.option("--limit", type=click.IntRange(min=1), help="Enqueue at most N pending files.")
@click.option("--dry-run", is_flag=True, help="Show what would be enqueued; change nothing.")
@click.option("--retry-failed", is_flag=True, help="Put failed files back in the queue first.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (counts).")
@click.pass_context
@_fail_cleanly
def enqueue(ctx, limit, dry_run, retry_failed, as_json):
    """Turn every file that needs work into a queued task (twice is harmless).

    Also resumes files whose task was lost with a killed worker, and schedules the removal
    of documents of deleted or replaced files.

    \b
    Example:
        objlib enqueue --limit 100 && huey_consumer objlib.tasks.huey -w 7

    \b
    Exit codes:
      0    enqueued (or, with --dry-run, counted) what needs work
      1    stopped with a message: no catalogue, a key or store problem, a database that
           cannot be used (running it again is harmless)
      2    bad usage: an unknown option, or options that do not go together
    """
    from objlib.enqueue import enqueue as run_enqueue

    s = run_enqueue(settings_of(ctx), limit=limit, dry_run=dry_run, retry_failed=retry_failed)
    if as_json:
        _echo_json(s.to_json())
        return
    verb = "would enqueue" if s.dry_run else "enqueued"
    click.echo(f"store: {s.store or '(created on the first real run)'}")
    click.echo(f"{verb} {len(s.enqueued)} file(s)"
               + (f", {s.remaining} left for a later run (--limit)" if s.remaining else ""))
    for path in s.enqueued[:10] if s.dry_run else []:
        click.echo(f"  {path}")
    click.echo(f"resumed {len(s.recovered.requeued)} stuck upload(s), "
               f"{len(s.recovered.polls)} lost poll(s); {s.recovered.removals} removal(s) sent")
    if s.retried_failed:
        verb = "would retry" if s.dry_run else "retrying"
        click.echo(f"{verb} {s.retried_failed} failed file(s)")


@cli.command()
@click.option("-w", "--workers", default=7, show_default=True, type=click.IntRange(min=1),
              help="Concurrent tasks (worker threads or processes).")
@click.option("-k", "--worker-type", default="thread", show_default=True,
              type=click.Choice(["thread", "process"]))
@click.option("--no-periodic", is_flag=True, help="Leave periodic recovery to another consumer.")
@click.pass_context
@_fail_cleanly
def worker(ctx, workers, worker_type, no_periodic):
    """Run huey_consumer for objlib's queue with the recommended flags.

    Ctrl+C (SIGINT) lets in-flight tasks finish for up to 60 s; whatever is cut off is
    resumed later from the catalogue.

    \b
    Example:
        objlib worker -w 7

    \b
    Exit codes (huey_consumer's, which this command becomes):
      0    stopped by SIGINT/SIGTERM after the in-flight tasks
      1    refused to start: no catalogue in the home, a home it cannot write, a queue it
           cannot use (one line on stderr says which and what to do)
      2    bad usage: an unknown option, or options that do not go together
    """
    import sys

    argv = [sys.executable, "-m", "huey.bin.huey_consumer", "objlib.tasks.huey",
            "-w", str(workers), "-k", worker_type, "-m", "0.5", "-t", "60"]
    if no_periodic:
        argv.append("-n")
    # the consumer serves the home this command was given (--home or OBJLIB_HOME)
    os.execve(sys.executable, argv, {**os.environ, "OBJLIB_HOME": str(settings_of(ctx).home)})


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--profile", default="instant", show_default=True,
              type=click.Choice(["instant", "realistic", "field"]), help="Latency profile.")
@click.option("--latency", multiple=True, metavar="STEP=SECONDS",
              help="Override a step: upload, activate, import, index, call (repeatable).")
@click.option("--fault", multiple=True, metavar="KIND=RATE", help="Inject a fault with "
              "probability RATE: rate_limit, unavailable, create_failed, never_done, index_failed.")
@click.option("--rpm", type=click.IntRange(min=0), help="Calls allowed per sliding minute.")
@click.option("--seed", type=int, help="Seed for ids, jitter and faults (reproducible runs).")
@click.option("--api-key", "api_keys", multiple=True, metavar="KEY",
              help="Accept only this key (repeatable); others get the real 400 API_KEY_INVALID.")
@click.option("--storage-limit-bytes", type=click.IntRange(min=0), default=1_000_000_000,
              show_default=True, metavar="N", help="The project's File Search storage (the "
              "free tier's 1 GB); a document is counted 3 x its size; an import past it gets "
              "the real 429 'Corpus has reached the storage limit'. 0 = no limit.")
@click.option("--state-dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Keep stores, files, documents and operations in DIR across restarts.")
@_fail_cleanly
def emulator(host, port, profile, latency, fault, rpm, seed, api_keys, storage_limit_bytes,
             state_dir):
    """Serve a local Gemini File Search emulator until Ctrl+C.

    Uploads are ACTIVE at once, as on the real service (--latency activate=S makes them
    PROCESSING for S seconds).

    \b
    Example:
        objlib emulator --profile realistic --fault rate_limit=0.05 --rpm 600 --seed 7
        objlib emulator --state-dir ~/.objlib-emulator --storage-limit-bytes 10000000000

    \b
    Exit codes:
      0    stopped by Ctrl+C
      1    cannot listen on the address, or cannot use --state-dir
      2    bad usage: an unknown option, or options that do not go together
    """
    from objlib.emulator import FAULT_KINDS, LATENCY_STEPS, Emulator, parse_knobs

    try:
        emu = Emulator(host=host, port=port, profile=profile, rpm=rpm, seed=seed,
                       api_keys=api_keys or None, storage_limit_bytes=storage_limit_bytes,
                       state_dir=state_dir,
                       latency=parse_knobs(latency, LATENCY_STEPS, "--latency"),
                       faults=parse_knobs(fault, FAULT_KINDS, "--fault"))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot use --state-dir {state_dir}: {exc}") from exc
    try:
        emu.start()
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from exc
    click.echo(f"Gemini emulator ({profile}) on {emu.base_url}; Ctrl+C to stop. "
               "Point objlib at it:")
    click.echo(f"export GOOGLE_GEMINI_BASE_URL={emu.base_url}")
    emu.serve_forever()


@cli.command()
@click.argument("library_dir", type=click.Path())
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@click.option("--allow-mass-delete", is_flag=True,
              help="Accept any number of deleted files this time (the deletion guard is off).")
@click.option("--max-delete", type=click.IntRange(min=0), metavar="N",
              help="Accept up to N deleted files this time (default: the settings' "
                   "max_delete and max_delete_percent).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.pass_context
@_fail_cleanly
def scan(ctx, library_dir, dry_run, allow_mass_delete, max_delete, as_json):
    """Walk LIBRARY_DIR and bring the catalogue up to date: new, changed, deleted files.

    Unchanged files (same size and mtime) are not read again; files that cannot be uploaded
    are recorded as skipped, with the reason. A scan that finds the library empty, or that
    would mark more than max_delete files (or max_delete_percent of the catalogue) deleted,
    records nothing and exits 1: a drive that is not mounted is not a deleted library.

    \b
    Example:
        objlib scan ~/library --dry-run && objlib scan ~/library --json

    \b
    Exit codes:
      0    the catalogue is up to date (with --dry-run: nothing written; "refused" in the
           JSON says whether the real scan would be refused)
      1    refused by the deletion guard (nothing recorded), or stopped with a message: a
           library folder that cannot be read, another library's catalogue, a bad setting
      2    bad usage: an unknown option, or options that do not go together
    """
    from rich.console import Console

    from objlib.scan import scan_library
    from objlib.views.scan import hashing_progress, summary_table

    if allow_mass_delete and max_delete is not None:
        raise click.UsageError("--allow-mass-delete accepts any number; it does not go with "
                               "--max-delete")
    with hashing_progress() as progress:
        summary = scan_library(settings_of(ctx), library_dir, dry_run=dry_run, progress=progress,
                               max_delete=max_delete, allow_mass_delete=allow_mass_delete)
    if as_json:
        _echo_json(summary.to_json())
    else:
        Console().print(summary_table(summary))


@cli.command()
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object (shape: docs/status.md).")
@click.option("--watch", is_flag=True, help="A live view, refreshed until Ctrl+C.")
@click.option("--until-done", is_flag=True,
              help="With --watch: stop once nothing is pending or in flight.")
@click.option("--interval", "interval_s", default=1.0, show_default=True,
              type=click.FloatRange(min=0.1), help="Seconds between two --watch refreshes.")
@click.pass_context
@_fail_cleanly
def status(ctx, as_json, watch, until_done, interval_s):
    """Where the pipeline stands: files per state (and how long the oldest has waited),
    queue depth, progress, throughput, ETA, and health (breaker, rate, errors, reconcile).

    \b
    Example:
        objlib status --watch --until-done && objlib status --json

    \b
    Exit codes:
      0    the snapshot was shown; with --watch --until-done: all done, no file failed
      1    with --watch --until-done: done, but some files failed (objlib failures);
           otherwise no catalogue, or a database that cannot be read
      2    bad usage: an unknown option, or options that do not go together
      130  with --watch --until-done: Ctrl+C before the work was done
    """
    from objlib import status as st

    if watch and as_json:
        raise click.UsageError("--json prints one snapshot; it does not go with --watch")
    if until_done and not watch:
        raise click.UsageError("--until-done goes with --watch")
    if as_json:  # no Rich: a script's status is a new process, and Rich costs ~60 ms of it
        _echo_json(st.to_json(st.snapshot(settings_of(ctx))))
        return
    from rich.console import Console

    from objlib.views import status as view

    if watch:
        last = view.watch(settings_of(ctx), interval_s=interval_s, until_done=until_done)
        if until_done:
            ctx.exit(EXIT_INTERRUPTED if not last.done else 1 if last.files["failed"] else 0)
    else:
        Console().print(view.render(st.snapshot(settings_of(ctx))))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--class", "error_class", metavar="CLASS",
              help="Only failures of this error class (transient, permanent, changed, ...).")
@click.option("--skipped", is_flag=True, help="List skipped files and their reasons instead.")
@click.pass_context
@_fail_cleanly
def failures(ctx, as_json, error_class, skipped):
    """Every failed file with its error class, message and attempts, counted per class
    with the fix for each; or, with --skipped, every skipped file and why.

    \b
    Example:
        objlib failures --class transient && objlib enqueue --retry-failed

    \b
    Exit codes:
      0    the report was shown (whether or not any file failed)
      1    no catalogue, or a database that cannot be read
      2    bad usage: an unknown option, or options that do not go together
    """
    import json
    import time

    from rich.console import Console

    from objlib import failures as fl
    from objlib.views.failures import failures_view, skipped_view

    if skipped and error_class:
        raise click.UsageError("--class filters failures; it does not go with --skipped")
    report = (fl.skipped_report(settings_of(ctx)) if skipped
              else fl.failures_report(settings_of(ctx), error_class))
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    elif skipped:
        Console().print(skipped_view(report))
    else:
        Console().print(failures_view(report, now=time.time()))


@cli.command()
@click.option("--fix", is_flag=True, help="Repair the drift found (default: report only).")
@click.option("--include-foreign", is_flag=True,
              help="With --fix: also delete documents this catalogue did not make.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.pass_context
@_fail_cleanly
def reconcile(ctx, fix, include_foreign, as_json):
    """Compare the store's real document list with the catalogue: missing, orphaned,
    duplicated, stale, failed and stuck documents, rows whose task was lost, and a store
    that is gone. Exit code 0 when nothing is left to repair, 1 otherwise.

    A dry run unless --fix. Only this catalogue's documents are deleted (another
    catalogue's are reported as foreign), and never one it records as current. A lost store
    is created anew by --fix, and every file is sent again.

    \b
    Example:
        objlib reconcile && objlib reconcile --fix --json > reconcile.json

    \b
    Exit codes (a dry run is the check: scripts can test it):
      0    nothing left to repair: no drift (or --fix repaired all of it)
      1    drift found and left (a dry run), not all of it repaired, the store gone, or
           stopped with a message (a key or store problem, a database that cannot be used)
      2    bad usage: an unknown option, or options that do not go together
    """
    import json

    from rich.console import Console

    from objlib.tasks import reconcile as run_reconcile
    from objlib.views.reconcile import render

    if include_foreign and not fix:
        raise click.UsageError("--include-foreign goes with --fix")
    report = run_reconcile(settings_of(ctx), fix=fix, include_foreign=include_foreign)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        Console().print(render(report))
    ctx.exit(0 if report.clean else 1)


@cli.command()
@click.argument("question")
@click.option("--filter", "filters", multiple=True, metavar="EXPR",
              help='Metadata filter, repeatable (joined with AND): AIP-160 as is '
                   '(course = "OPAR" AND year >= 1991) or key=value / key>=N for the '
                   "metadata objlib writes.")
@click.option("--top-k", type=click.IntRange(1, 100), metavar="N",
              help="Passages to retrieve (default: the service's).")
@click.option("--model", default="gemini-2.5-flash", show_default=True,
              help="A model that supports File Search.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: answer, citations (path, document, metadata, "
                   "text, a PDF's page), the filter sent.")
@click.pass_context
@_fail_cleanly
def search(ctx, question, filters, top_k, model, as_json):
    """Ask the indexed library QUESTION; print the answer, then numbered citations: the
    local file each passage came from (with the page, for a PDF), its metadata and the
    passage.

    \b
    Example:
        objlib search "What is objectivity?" --filter course=OPAR --filter "year>=1991"
    """
    import json

    from rich.console import Console

    from objlib.search import search as run_search
    from objlib.views.search import render

    result = run_search(settings_of(ctx), question, filters, top_k=top_k, model=model)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    else:
        Console().print(render(result))


@cli.command()
@click.option("--serve", "port", type=click.IntRange(0, 65535), metavar="PORT",
              help="Serve /metrics on PORT until Ctrl+C or SIGTERM (0: any free port), a fresh "
                   "snapshot per scrape, instead of printing once.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="With --serve: the address to listen on.")
@click.pass_context
@_fail_cleanly
def metrics(ctx, port, host):
    """The status snapshot as OpenMetrics text, for Prometheus or any scraper: files per
    state, queue depth, throughput, ETA, errors by class, breaker state, requests and 429s
    in the last minute (the names: docs/operations.md).

    \b
    Example:
        objlib metrics | grep objlib_files
        objlib metrics --serve 9464    # scrape http://127.0.0.1:9464/metrics

    \b
    Exit codes:
      0    printed; with --serve: stopped by Ctrl+C or SIGTERM
      1    no catalogue, a database that cannot be read, or a port that cannot be taken
      2    bad usage: an unknown option, or options that do not go together
    """
    from objlib import metrics as m
    from objlib.status import snapshot

    if port is None:
        if ctx.get_parameter_source("host") is not click.core.ParameterSource.DEFAULT:
            raise click.UsageError("--host goes with --serve")
        click.echo(m.exposition(snapshot(settings_of(ctx))), nl=False)
        return
    try:
        m.serve_until_stopped(settings_of(ctx), port, host, lambda url: click.echo(
            f"serving metrics on {url}; Ctrl+C to stop"))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from exc


@cli.command()
@click.option("-s", "--store", metavar="NAME", help="Store display name for this run "
              "(default: store_name from the settings).")
@click.option("-b", "--batch-size", default=150, show_default=True, type=click.IntRange(min=1),
              help="Files per logical batch in the progress view (in enqueue order).")
@click.option("-n", "--concurrency", default=7, show_default=True, type=click.IntRange(min=1),
              help="Worker threads in this process.")
@click.option("--dry-run", is_flag=True,
              help="Count what would be uploaded and list the first 20; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the run, the "
              "library after it) instead of the summary; the progress goes to stderr.")
@click.pass_context
@_fail_cleanly
def upload(ctx, store, batch_size, concurrency, dry_run, as_json):
    """Do the whole job in the foreground: enqueue what needs work, run the workers in this
    process with live progress, stop them, print a summary.

    Ctrl+C stops after the steps in flight; twice, at once. Either way, running it again
    continues where it stopped. Consumers already running share the work.

    \b
    Example:
        objlib scan ~/library && objlib upload --dry-run && objlib upload -n 7

    \b
    Exit codes:
      0    every file of the run indexed (with --dry-run: the plan was shown)
      1    some files failed (objlib failures), or stopped with a message before the run
           (no catalogue, a key or store problem)
      2    bad usage: an unknown option, or options that do not go together
      130  interrupted (Ctrl+C): running it again continues where it stopped
    """
    import dataclasses

    from rich.console import Console

    from objlib import foreground
    from objlib.views import upload as view

    settings = settings_of(ctx)
    if store:
        settings = dataclasses.replace(settings, store_name=store)
    console = Console(stderr=as_json)
    if dry_run:
        plan = foreground.plan(settings)
        if as_json:
            _echo_json(dataclasses.asdict(plan))
        else:
            console.print(view.plan_view(plan))
        return
    result = foreground.upload(settings, concurrency=concurrency, batch_size=batch_size,
                               view=view.progress_view(console))
    if as_json:
        _echo_json(result.to_json())
    else:
        console.print(view.summary_panel(result))
    foreground.exit_now(result)
    ctx.exit(result.exit_code)
