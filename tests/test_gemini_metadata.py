"""Custom metadata, display names and raw file ids within the API's limits."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from objlib.gemini.metadata import (
    MAX_ENTRIES,
    PRIORITY,
    build_custom_metadata,
    display_name,
    raw_file_id,
)


def keys(entries):
    return [e["key"] for e in entries]


def test_each_value_type_maps_to_its_wire_field():
    entries = build_custom_metadata({
        "course": "  Logic 101 ", "year": 2024, "week": 2.5, "topic": ["a", " b ", ""],
        "series": ("x",), "episode": True, "quality": False, "date": dt.date(2020, 5, 17),
    })

    assert entries == [
        {"key": "course", "string_value": "Logic 101"},
        {"key": "year", "numeric_value": 2024.0},
        {"key": "week", "numeric_value": 2.5},
        {"key": "topic", "string_list_value": {"values": ["a", "b"]}},
        {"key": "series", "string_list_value": {"values": ["x"]}},
        {"key": "date", "string_value": "2020-05-17"},
        {"key": "episode", "string_value": "true"},
        {"key": "quality", "string_value": "false"},
    ]


def test_empty_and_missing_values_are_skipped():
    entries = build_custom_metadata({
        "course": "   ", "year": None, "topic": [], "series": ["", None],
        "week": float("nan"), "lesson": float("inf"), "path": "a.txt",
    })

    assert entries == [{"key": "path", "string_value": "a.txt"}]


def test_unsupported_value_types_are_refused():
    with pytest.raises(TypeError, match="'course'.*dict"):
        build_custom_metadata({"course": {"a": 1}})


def test_priority_keys_come_first_then_unknown_keys_alphabetically():
    values = {"zeta": "z", "alpha": "a", "year": 1999, "objlib_file_id": 7, "path": "p"}

    assert keys(build_custom_metadata(values)) == ["objlib_file_id", "path", "year", "alpha",
                                                   "zeta"]


def test_at_most_20_entries_keep_the_priority_keys():
    values = {key: "v" for key in PRIORITY}
    values.update({f"extra{i:02d}": "v" for i in range(10)})

    entries = build_custom_metadata(values)

    assert len(entries) == MAX_ENTRIES == 20
    assert keys(entries) == list(PRIORITY) + [f"extra{i:02d}" for i in range(20 - len(PRIORITY))]


def test_skipped_values_do_not_use_up_the_20_slots():
    values = {key: None for key in PRIORITY}
    values.update({f"extra{i:02d}": "v" for i in range(25)})

    assert keys(build_custom_metadata(values)) == [f"extra{i:02d}" for i in range(20)]


def test_long_strings_are_clipped_to_256_utf8_bytes_without_splitting_a_character():
    entries = build_custom_metadata({"topic": "★" * 200, "path": "p" * 1000})
    by_key = {e["key"]: e for e in entries}

    assert by_key["path"]["string_value"] == "p" * 256
    star = by_key["topic"]["string_value"]
    assert star == "★" * 85 and len(star.encode()) == 255


def test_list_items_are_clipped_too():
    entries = build_custom_metadata({"topic": ["t" * 300]})

    assert entries[0]["string_list_value"]["values"] == ["t" * 256]


def test_display_name_is_stripped_and_free_of_control_characters():
    name = "  \tLesson 01\n notes\x00\x07.txt  "

    assert display_name(name) == "Lesson 01 notes.txt"


def test_display_name_drops_lone_surrogates_from_undecodable_file_names():
    name = b"caf\xe9.txt".decode("utf-8", "surrogateescape")

    assert display_name(name) == "caf.txt"
    display_name(name).encode("utf-8")  # no codec error


def test_display_name_keeps_non_ascii_text():
    assert display_name("Ἀριστοτέλης — Λόγος.md") == "Ἀριστοτέλης — Λόγος.md"


def test_display_name_is_at_most_512_characters_and_never_ends_in_a_space():
    name = display_name("a" * 511 + " " + "b" * 100)

    assert name == "a" * 511
    assert len(display_name("x" * 2000)) == 512


def test_an_empty_display_name_falls_back():
    assert display_name(" \n ") == "untitled"
    assert display_name("", fallback="doc") == "doc"


def test_raw_file_id_is_a_short_lowercase_id_from_the_content_hash():
    digest = hashlib.sha256(b"hello").hexdigest()

    file_id = raw_file_id(digest.upper())

    assert file_id == "objlib-" + digest[:20]
    assert len(file_id) + 1 + 12 <= 40  # its documents' ids (raw id, "-", 12) fit in 40
    assert set(file_id) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


@pytest.mark.parametrize("bad", ["", "xyz", "abc123", "g" * 64, "/etc/passwd"])
def test_raw_file_id_refuses_anything_but_a_hex_digest(bad):
    with pytest.raises(ValueError):
        raw_file_id(bad)
