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


def settings_of(ctx: click.Context) -> Settings:
    return ctx.find_object(Settings)


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
    """
    from objlib import log

    settings = Settings.load(home, log_json=log_json)
    # worker processes and the queue module read the same home from the environment
    os.environ["OBJLIB_HOME"] = str(settings.home)
    log.configure(json=settings.log_json)
    ctx.obj = settings
