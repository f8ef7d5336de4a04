"""Path -> metadata: what a file's place in the library says about it, and how much.

A path is matched, without its extension and with ``/`` separators, against regexes with
named groups: first the user's (``metadata_patterns`` in ``OBJLIB_HOME/config.toml``), then
the built-in ones for the library's own conventions; the first that matches wins (``re.search``,
so a pattern may look at folders as well as the file name).

    Courses/Foo/Foo - Lesson 3 - Topic.txt                    course, lesson, topic
    Courses/Foo/Foo - Year 2 - Q3 - Week 4 - Topic.txt        course, year, quarter, week, topic
    Courses/Foo/Year2/Q3/Foo - Week 4 - Topic.txt             (year and quarter from the folders)
    MOTM/MOTM_2023-05-14_Topic.md                             date, topic
    Podcasts/Series Name/Episode 12 [abc123] Title.txt        series (the folder), episode,
                                                              episode_id, title

Keys (``KEYS``, in this order): category, course, lesson, year, quarter, week, topic, series,
date, episode, episode_id, title. lesson/year/quarter/week/episode are ints; date is
``YYYY-MM-DD`` (a real calendar date); the others are strings with surrounding white space
removed and runs of it folded; in a value with no space, underscores stand for spaces
(``MOTM_2023-05-14_Free_Will`` -> topic "Free Will"); episode_id is kept as it is.

- ``category`` is the top-level folder (Courses, Books, MOTM, Podcasts, ...) of any file
  inside a folder; a pattern with a ``category`` group overrides it.
- ``year``/``quarter`` come from ``Year{N}/Q{N}/`` folders when the matching pattern did
  not give them.
- ``title`` is always there: the pattern's, or else the file name without its extension
  (white space folded, underscores kept).

Quality grade (``metadata_quality``):

- **complete**: a pattern matched, and every field it stands for has a valid value. A
  built-in pattern stands for the fields of its convention (listed above; year and quarter
  may come from the folders); a user pattern stands for its named groups.
- **partial**: a pattern matched, but some of its fields are missing or invalid, e.g. a
  ``Foo - Week 4 - Topic`` file outside ``Year{N}/Q{N}/`` folders, an episode with no
  series folder or no title, ``MOTM_2023-02-30_...`` (no such date).
- **minimal**: no pattern matched; only the category (top-level folder) and the title from
  the file name are known — e.g. ``Books/Some Book.txt``.
- **none**: no pattern matched and the file sits at the library root: only the file name.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from objlib.errors import ConfigError

KEYS = ("category", "course", "lesson", "year", "quarter", "week", "topic", "series", "date",
        "episode", "episode_id", "title")
INT_KEYS = frozenset({"lesson", "year", "quarter", "week", "episode"})
VERBATIM_KEYS = frozenset({"episode_id"})

COMPLETE, PARTIAL, MINIMAL, NONE = "complete", "partial", "minimal", "none"
QUALITIES = (COMPLETE, PARTIAL, MINIMAL, NONE)


@dataclass(frozen=True)
class Pattern:
    """A named-group regex and the fields it stands for (what 'complete' requires)."""

    name: str
    regex: re.Pattern
    fields: tuple[str, ...]


class PathMetadata(NamedTuple):
    values: dict
    quality: str


_COURSE_WEEK = ("course", "year", "quarter", "week", "topic")
_EPISODE = ("series", "episode", "episode_id", "title")

BUILTIN_PATTERNS: tuple[Pattern, ...] = (
    Pattern("course-year-quarter-week", re.compile(
        r"(?:^|/)(?P<course>[^/]+?) - Year (?P<year>[0-9]+) - Q(?P<quarter>[0-9]+)"
        r" - Week (?P<week>[0-9]+) - (?P<topic>[^/]+)$"), _COURSE_WEEK),
    # year and quarter from Year{N}/Q{N}/ folders (partial without them)
    Pattern("course-week", re.compile(
        r"(?:^|/)(?P<course>[^/]+?) - Week (?P<week>[0-9]+) - (?P<topic>[^/]+)$"), _COURSE_WEEK),
    Pattern("course-lesson", re.compile(
        r"(?:^|/)(?P<course>[^/]+?) - Lesson (?P<lesson>[0-9]+) - (?P<topic>[^/]+)$"),
        ("course", "lesson", "topic")),
    Pattern("motm", re.compile(
        r"(?:^|/)MOTM_(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})_(?P<topic>[^/]+)$"), ("date", "topic")),
    # the series is the file's folder, below the top-level category folder
    Pattern("series-episode", re.compile(
        r"^[^/]+/(?:.*/)?(?P<series>[^/]+)/Episode (?P<episode>[0-9]+)"
        r" \[(?P<episode_id>[^\]/]+)\] *(?P<title>[^/]*)$"), _EPISODE),
    Pattern("episode", re.compile(
        r"(?:^|/)Episode (?P<episode>[0-9]+) \[(?P<episode_id>[^\]/]+)\] *(?P<title>[^/]*)$"),
        _EPISODE),
)

_YEAR_QUARTER_FOLDERS = re.compile(r"(?:^|/)Year ?(?P<year>[0-9]+)/Q(?P<quarter>[0-9]+)/")


@functools.lru_cache(maxsize=16)
def compile_patterns(user_patterns: tuple[str, ...] = ()) -> tuple[Pattern, ...]:
    """The user's patterns (validated) followed by the built-in ones.

    A user pattern that does not compile, has no named group, or names a group that is not
    one of ``KEYS`` is a ConfigError: a silently useless pattern would be worse.
    """
    compiled = []
    for i, text in enumerate(user_patterns, 1):
        try:
            regex = re.compile(text)
        except re.error as exc:
            raise ConfigError(f"metadata_patterns[{i}] {text!r} is not a valid regex: "
                              f"{exc}") from exc
        groups = tuple(regex.groupindex)
        unknown = sorted(set(groups) - set(KEYS))
        if not groups or unknown:
            raise ConfigError(
                f"metadata_patterns[{i}] {text!r}: named groups must be some of "
                f"{', '.join(KEYS)}" + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
        compiled.append(Pattern(f"user-{i}", regex, groups))
    return (*compiled, *BUILTIN_PATTERNS)


# a path of every convention (and of none): what the parser makes of them is part of the
# fingerprint, so a change to the parser that changes their metadata changes it too
_PROBES = ("Courses/Logic/Logic - Lesson 3 - Induction.txt",
           "Courses/Logic/Year2/Q3/Logic - Week 4 - Induction.txt",
           "Courses/Logic/Logic - Week 4 - Induction.txt",
           "Courses/Logic/Logic - Year 2 - Q3 - Week 4 - Free_Will.txt",
           "MOTM/MOTM_2023-05-14_Free_Will.md", "MOTM/MOTM_2023-02-30_No_Such_Day.md",
           "Podcasts/Reason Radio/Episode 12 [abc123] A  Title.txt",
           "Episode 3 [x_1] Alone.txt", "Books/Some   Book.txt", "loose_note.md")


def fingerprint(patterns: Sequence[Pattern]) -> str:
    """What the metadata of a path depends on besides the path: the patterns (the user's and
    the built-in ones) and what the parser makes of them. A re-scan that finds the
    fingerprint its catalogue recorded keeps the metadata of files whose size and mtime did
    not change instead of parsing every path again (``objlib.scan.scanner``)."""
    import hashlib  # the scan hashes content anyway; this module alone does not need it

    described = [[p.name, p.regex.pattern, p.regex.flags, list(p.fields)] for p in patterns]
    parsed = [parse_path(path, patterns) for path in _PROBES]
    text = json.dumps([described, parsed, _YEAR_QUARTER_FOLDERS.pattern], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_path(path: str, patterns: Sequence[Pattern] = BUILTIN_PATTERNS) -> PathMetadata:
    """Metadata and its quality grade for a relative POSIX path.

    >>> parse_path("Courses/Logic/Year2/Q3/Logic - Week 4 - Induction.txt")
    ... # doctest: +NORMALIZE_WHITESPACE
    PathMetadata(values={'category': 'Courses', 'course': 'Logic', 'year': 2, 'quarter': 3,
                 'week': 4, 'topic': 'Induction', 'title': 'Logic - Week 4 - Induction'},
                 quality='complete')
    """
    folder, _, name = path.rpartition("/")
    stem = posixpath.splitext(name)[0]
    subject = f"{folder}/{stem}" if folder else stem
    found: dict = {}
    matched = None
    for pattern in patterns:
        match = pattern.regex.search(subject)
        if match:
            matched = pattern
            found = _clean(match.groupdict())
            break
    if matched is not None and ("year" not in found or "quarter" not in found):
        folders = _YEAR_QUARTER_FOLDERS.search(subject)
        if folders:
            for key, value in _clean(folders.groupdict()).items():
                found.setdefault(key, value)
    if matched is not None:
        quality = COMPLETE if all(key in found for key in matched.fields) else PARTIAL
    else:
        quality = MINIMAL if folder else NONE
    if folder and "category" not in found:
        found["category"] = _value("category", folder.split("/", 1)[0])
    if "title" not in found:
        found["title"] = " ".join(stem.split()) or stem
    values = {key: found[key] for key in KEYS if found.get(key) not in (None, "")}
    return PathMetadata(values, quality)


def _clean(groups: dict) -> dict:
    """Typed, tidy values; a value that is empty or invalid for its key is left out."""
    out = {}
    for key, raw in groups.items():
        if raw is None:
            continue
        value = _value(key, raw)
        if value is not None and value != "":
            out[key] = value
    return out


def _value(key: str, raw: str):
    if key in INT_KEYS:
        return int(raw) if raw.strip().isdecimal() else None
    if key == "date":
        try:
            return dt.date.fromisoformat(raw.strip()).isoformat()
        except ValueError:
            return None
    if key in VERBATIM_KEYS:
        return raw.strip()
    text = " ".join(raw.split())
    if " " not in text and "_" in text:
        text = " ".join(text.replace("_", " ").split())
    return text
