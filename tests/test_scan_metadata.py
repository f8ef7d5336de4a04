"""Path -> metadata: each built-in convention, Year/Q folders, user patterns from
config.toml, and the quality grades."""

from __future__ import annotations

import sqlite3

import pytest

from objlib.errors import ConfigError
from objlib.scan import compile_patterns, parse_path, scan_library
from objlib.settings import Settings

BUILTIN = compile_patterns()


@pytest.mark.parametrize("path, values, quality", [
    ("Courses/Logic/Logic - Lesson 12 - Concept Formation.txt",
     {"category": "Courses", "course": "Logic", "lesson": 12, "topic": "Concept Formation",
      "title": "Logic - Lesson 12 - Concept Formation"}, "complete"),
    ("Courses/Logic/Logic - Year 2 - Q3 - Week 4 - Induction.txt",
     {"category": "Courses", "course": "Logic", "year": 2, "quarter": 3, "week": 4,
      "topic": "Induction", "title": "Logic - Year 2 - Q3 - Week 4 - Induction"}, "complete"),
    ("Courses/Logic/Year2/Q3/Logic - Week 4 - Induction.txt",
     {"category": "Courses", "course": "Logic", "year": 2, "quarter": 3, "week": 4,
      "topic": "Induction", "title": "Logic - Week 4 - Induction"}, "complete"),
    ("MOTM/MOTM_2023-05-14_Free_Will.md",
     {"category": "MOTM", "topic": "Free Will", "date": "2023-05-14",
      "title": "MOTM_2023-05-14_Free_Will"}, "complete"),
    ("Podcasts/Series Name/Episode 12 [abc123] Title Words.txt",
     {"category": "Podcasts", "series": "Series Name", "episode": 12, "episode_id": "abc123",
      "title": "Title Words"}, "complete"),
    ("Books/Some Book.txt", {"category": "Books", "title": "Some Book"}, "minimal"),
    ("loose note.md", {"title": "loose note"}, "none"),
])
def test_each_convention_gives_its_fields(path, values, quality):
    assert parse_path(path, BUILTIN) == (values, quality)


@pytest.mark.parametrize("path, missing", [
    ("Courses/Logic/Logic - Week 4 - Induction.txt", {"year", "quarter"}),  # no Year/Q folders
    ("Podcasts/Episode 12 [abc123] Title.txt", {"series"}),  # no series folder
    ("Podcasts/Series/Episode 12 [abc123].txt", set()),  # no title: the file name stands in
    ("MOTM/MOTM_2023-02-30_Nonsense.md", {"date"}),  # no such day
])
def test_a_match_with_missing_or_invalid_fields_is_partial(path, missing):
    values, quality = parse_path(path, BUILTIN)
    assert quality == "partial"
    assert not missing & set(values)
    assert values["title"]


def test_year_and_quarter_folders_fill_in_any_match():
    values, quality = parse_path("Courses/Logic/Year 1/Q2/Logic - Lesson 3 - Terms.txt", BUILTIN)
    assert (values["year"], values["quarter"], values["lesson"], quality) == (1, 2, 3, "complete")


def test_a_course_name_may_contain_the_separator():
    values, _ = parse_path("Courses/A - B/A - B - Lesson 3 - T.txt", BUILTIN)
    assert (values["course"], values["topic"]) == ("A - B", "T")


def test_a_user_pattern_from_config_is_tried_first(home, tmp_path):
    pattern = r"^Lectures/(?P<course>[^/]+)/(?P<lesson>[0-9]+)\. (?P<topic>.+)$"
    (home / "config.toml").write_text(f"metadata_patterns = ['{pattern}']\n")
    lib = tmp_path / "library"
    (lib / "Lectures" / "Ethics").mkdir(parents=True)
    (lib / "Lectures" / "Ethics" / "03. Egoism.txt").write_text("text\n")
    settings = Settings.load(home)

    scan_library(settings, lib)

    with sqlite3.connect(settings.library_db) as conn:
        meta, quality = conn.execute("SELECT metadata_json, metadata_quality FROM files").fetchone()
    conn.close()
    assert (meta, quality) == ('{"category": "Lectures", "course": "Ethics", "lesson": 3, '
                               '"topic": "Egoism", "title": "03. Egoism"}', "complete")


def test_a_user_pattern_that_misses_a_group_is_partial():
    patterns = compile_patterns((r"(?P<course>[A-Z]+)-(?P<lesson>\d+)?-?(?P<topic>\w+)$",))
    assert parse_path("X/LOGIC--intro.txt", patterns).quality == "partial"
    assert parse_path("X/LOGIC-4-intro.txt", patterns).quality == "complete"


@pytest.mark.parametrize("pattern, message", [
    ("(?P<course>[", "not a valid regex"),
    ("(?P<speaker>.+)", "unknown: speaker"),
    ("no groups at all", "named groups must be"),
])
def test_a_bad_user_pattern_is_a_config_error(pattern, message):
    with pytest.raises(ConfigError, match=message):
        compile_patterns((pattern,))


def test_new_patterns_refresh_metadata_without_reading_files(home, tmp_path, monkeypatch):
    from objlib.scan import scanner

    lib = tmp_path / "library"
    (lib / "Talks").mkdir(parents=True)
    (lib / "Talks" / "Smith on Rights.txt").write_text("text\n")
    scan_library(Settings.load(home), lib)
    (home / "config.toml").write_text(
        "metadata_patterns = ['^Talks/(?P<course>\\w+) on (?P<topic>.+)$']\n")
    monkeypatch.setattr(scanner, "read_content", lambda *a: pytest.fail("file read again"))

    summary = scan_library(Settings.load(home), lib)

    assert summary.touched == 1
    with sqlite3.connect(Settings.load(home).library_db) as conn:
        quality, version = conn.execute("SELECT metadata_quality, version FROM files").fetchone()
    conn.close()
    assert (quality, version) == ("complete", 1)


def test_user_patterns_win_over_the_built_in_ones():
    mine = r"(?P<series>[^/]+) - Lesson (?P<episode>[0-9]+) - (?P<title>.+)$"
    patterns = compile_patterns((mine,))
    values, quality = parse_path("Courses/Logic/Logic - Lesson 3 - Terms.txt", patterns)
    assert (values.get("series"), values.get("episode"), "lesson" in values, quality) == (
        "Logic", 3, False, "complete")
