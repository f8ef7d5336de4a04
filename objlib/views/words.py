"""The small formatters every view shares: durations, ages, clock times."""

from __future__ import annotations

from datetime import datetime


def duration(seconds: float | None) -> str:
    """``45s``, ``3m 12s``, ``2h 05m``; ``-`` for unknown."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def ago(at: float | None, now: float) -> str:
    return "never" if at is None else f"{duration(max(0.0, now - at))} ago"


def clock(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%H:%M:%S")

