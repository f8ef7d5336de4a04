"""Filters, as pure functions: the emulator's AIP-160 ``metadataFilter`` (what it matches and
what it refuses), the emulator's chunking, and ``objlib search --filter``'s shorthand (quoted
by the key's type)."""

from __future__ import annotations

import pytest

from objlib.emulator.filter import FilterError, parse
from objlib.emulator.search import chunking, match_query, split
from objlib.search import SearchError, build_filter, filter_expression, metadata_keys

DOC = {"course": "OPAR", "year": 1991, "lesson": 3.0, "topic": "Free Will",
       "tags": ["a", "b"]}


@pytest.mark.parametrize("text, expected", [
    ('course = "OPAR"', True),
    ("course = 'OPAR'", True),
    ("course = OPAR", True),                     # a bare word is a string (AIP-160)
    ('course != "OPAR"', False),
    ('course = "opar"', False),                  # case matters
    ("year = 1991", True),
    ("year >= 1991 AND year <= 1991", True),
    ("year > 1991", False),
    ("year < 2000.5", True),
    ("lesson = 3", True),                        # 3.0 and 3 are the same number
    ("year = -1991", False),
    ("year >= 1e3", True),
    ('topic = "Free Will"', True),
    ('topic = "Free \\"Will\\""', False),
    ('year = "1991"', False),                    # a string never matches a numericValue
    ("course = 1991", False),                    # a number never matches a stringValue
    ('missing = "x"', False),                    # a key the document lacks never matches...
    ('missing != "x"', False),
    ('NOT missing = "x"', True),                 # ...and NOT of it does
    ('tags = "a"', False),                       # string lists are not comparable
    ('course = "OPAR" AND year >= 2000', False),
    ('course = "OPAR" OR year >= 2000', True),
    ('NOT course = "OPAR"', False),
    ('NOT (course = "X" OR year < 1900)', True),
    # OR binds tighter than AND (AIP-160): a AND (b OR c)
    ('course = "X" AND year = 1991 OR lesson = 3', False),
    ('(course = "X" AND year = 1991) OR lesson = 3', True),
    ('year=1991 AND(lesson=3)', True),
])
def test_a_filter_matches_as_aip160_and_the_file_search_reference_say(text, expected):
    assert parse(text).matches(DOC) is expected


@pytest.mark.parametrize("text, position", [
    ("year >", 6),                    # no value
    ("year", 4),                      # a lone word: AIP-160's global restriction
    ('course : "OPAR"', 7),           # the has operator
    ('course = "OPAR" year = 1', 16), # implicit AND by juxtaposition
    ('(course = "OPAR"', 16),         # unbalanced
    ('course = "OPAR")', 15),
    ('course = "OPAR', 9),            # unterminated string
    ('course < "OPAR"', 9),           # < compares numbers only
    ("year >= 1991 and lesson = 3", 13),  # lower-case keywords are not operators
    ("AND year = 1", 0),
    ("year == 1", 6),
    ("fn(year) = 1", 2),
])
def test_a_filter_that_does_not_parse_says_where(text, position):
    with pytest.raises(FilterError) as caught:
        parse(text)
    assert caught.value.position == position, str(caught.value)


def test_an_empty_filter_is_no_filter():
    assert parse(None) is None and parse("  ") is None


def test_chunks_hold_at_most_max_words_and_repeat_the_overlap():
    text = " ".join(f"w{i}" for i in range(100))
    chunks = split(text, 30, 5)
    assert [len(c.split()) for c in chunks] == [30, 30, 30, 25]
    assert chunks[0].split()[-5:] == chunks[1].split()[:5]
    assert chunks[-1].split()[-1] == "w99"
    assert split("", 30, 5) == [] and split("one two", 30, 5) == ["one two"]


@pytest.mark.parametrize("config, expected", [
    (None, (200, 20)),
    ({"whiteSpaceConfig": {"maxTokensPerChunk": 50}}, (50, 20)),
    ({"white_space_config": {"max_tokens_per_chunk": 21, "max_overlap_tokens": 0}}, (21, 0)),
    ({"whiteSpaceConfig": {"maxTokensPerChunk": 512, "maxOverlapTokens": 511}}, (512, 511)),
    ({"whiteSpaceConfig": {"maxTokensPerChunk": "64"}}, (64, 20)),  # proto3: int as string
])
def test_chunking_config_and_its_defaults(config, expected):
    assert chunking(config) == expected


@pytest.mark.parametrize("white", [{"maxTokensPerChunk": 20}, {"maxTokensPerChunk": 513},
                                   {"maxTokensPerChunk": 50, "maxOverlapTokens": 50},
                                   {"maxTokensPerChunk": 50, "maxOverlapTokens": -1},
                                   {"maxTokensPerChunk": "fifty"}])
def test_chunking_config_out_of_range_is_refused(white):
    with pytest.raises(ValueError):
        chunking({"whiteSpaceConfig": white})


def test_a_question_becomes_an_fts_query_of_its_quoted_words_but_the_commonest():
    assert match_query('What is "objectivity" AND NOT x*?') == '"objectivity" OR "x"'
    assert match_query("What is it?") == '"what" OR "is" OR "it"'  # nothing else is left
    assert match_query("?!") is None
    assert match_query("Reason and reality", "AND") == '"reason" AND "reality"'


# ----------------------------------------------------------------- objlib's --filter shorthand


@pytest.fixture
def keys(settings):
    return metadata_keys(settings)


@pytest.mark.parametrize("expr, sent", [
    ("course=OPAR", 'course = "OPAR"'),
    ("course:OPAR", 'course = "OPAR"'),           # the original tool's spelling
    ("course != OPAR", 'course != "OPAR"'),
    ("topic=Free Will", 'topic = "Free Will"'),
    ('topic=say "hi"', 'topic=say "hi"'),          # quotes inside: AIP-160, as it is
    ("year>=1991", "year >= 1991"),
    ("lesson=3", "lesson = 3"),
    ("objlib_version>1", "objlib_version > 1"),
    ('course = "OPAR" AND year >= 1991', 'course = "OPAR" AND year >= 1991'),  # AIP-160
    ('course = "OPAR"', 'course = "OPAR"'),
    ("author=Graves", "author=Graves"),            # not objlib's key: as it is
])
def test_a_filter_is_aip160_as_is_or_a_shorthand_quoted_by_the_keys_type(keys, expr, sent):
    assert filter_expression(expr, keys) == sent


@pytest.mark.parametrize("expr, says", [
    ("year>=nineteen", "year is a number"),
    ("course>=OPAR", "course is text"),
    ("  ", "--filter is empty"),
])
def test_a_shorthand_that_cannot_be_right_is_refused_with_its_fix(keys, expr, says):
    with pytest.raises(SearchError, match=says):
        filter_expression(expr, keys)


def test_several_filters_are_joined_with_and(keys):
    assert build_filter(["course=OPAR", "year>=1991 OR lesson=2"], keys) == \
        '(course = "OPAR") AND (year>=1991 OR lesson=2)'
    assert build_filter([], keys) is None


def test_the_users_metadata_patterns_add_their_keys(settings):
    import dataclasses

    custom = dataclasses.replace(settings, metadata_patterns=(r"(?P<speaker>\w+) - talk",))
    assert filter_expression("speaker=Ann", metadata_keys(custom)) == 'speaker = "Ann"'
