"""The deletion guard: a scan records nothing when it would take much of the catalogue for
deleted.

A drive that is not mounted leaves its mount point behind as an empty folder. To a scan that is
a library whose every file was deleted, and to the workers after it, a store of documents to
remove. So, like rsync's and rclone's ``--max-delete``, the scan counts the rows it would mark
deleted right after listing the library, before it writes anything, and is refused when the
catalogue has live rows and

- the library root listed no entries at all, or
- more than ``max_delete`` files would be marked deleted, or
- more than ``max_delete_percent`` of the live rows would, and more than ``PERCENT_FLOOR`` files
  (deleting 2 of 5 files is an ordinary tidy-up, not a mass deletion).

Rows below a folder that could not be listed are not counted: the scan leaves them alone anyway.
A user who really deleted the files confirms it for one scan: ``--allow-mass-delete`` (no limit)
or ``--max-delete N`` (up to N files, an empty root included). A dry run is never refused; it
says that the real scan would be.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from objlib.errors import MassDeleteRefused
from objlib.settings import Settings

PERCENT_FLOOR = 10


@dataclass(frozen=True)
class DeleteLimit:
    """How many files one scan may mark deleted without asking (None: no bound of that kind)."""

    max_files: int | None
    max_percent: float | None = None
    empty_root_ok: bool = True

    @classmethod
    def of(cls, settings: Settings, *, max_delete: int | None = None,
           allow_mass_delete: bool = False) -> DeleteLimit:
        """The settings' standing limit, or the user's confirmation for this scan."""
        if allow_mass_delete:
            return cls(None)
        if max_delete is not None:
            return cls(max_delete)
        return cls(settings.max_delete, settings.max_delete_percent, empty_root_ok=False)

    def __str__(self) -> str:
        parts = [f"{self.max_files} files"] if self.max_files is not None else []
        parts += [f"{self.max_percent:g} %"] if self.max_percent is not None else []
        return " or ".join(parts) or "none"


def refusal(limit: DeleteLimit, *, live: int, to_delete: int, root_empty: bool) -> str | None:
    """What is wrong with marking ``to_delete`` of ``live`` catalogued files deleted (None:
    nothing, the scan may go ahead)."""
    if to_delete == 0:
        return None
    if root_empty and not limit.empty_root_ok:
        return (f"the library folder has no files, so {to_delete} of {live} catalogued files "
                f"would be marked deleted")
    over_count = limit.max_files is not None and to_delete > limit.max_files
    over_share = (limit.max_percent is not None and to_delete > PERCENT_FLOOR
                  and to_delete * 100 > limit.max_percent * live)
    if over_count or over_share:
        return (f"{to_delete} of {live} catalogued files would be marked deleted "
                f"(limit: {limit})")
    return None


def confirm_hint(root: str, to_delete: int) -> str:
    """The commands that accept the deletions, for the message."""
    scan = f"objlib scan {shlex.quote(root)}"
    return f"{scan} --allow-mass-delete (or --max-delete {to_delete})"


def refused(reason: str, root: str, *, live: int, to_delete: int) -> MassDeleteRefused:
    return MassDeleteRefused(
        f"scan refused: {reason}. Is the library's drive mounted? If you really deleted them: "
        f"{confirm_hint(root, to_delete)}. Nothing was recorded.",
        to_delete=to_delete, live=live)
