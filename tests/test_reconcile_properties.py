"""Properties of ``reconcile.find_drift`` (hypothesis): over any catalogue (rows in every
state, current and replaced documents, open removals) and any store listing (documents of
this catalogue, of another, of none; active, pending, failed; named by a row or not), the
decisions keep reconcile's safety rules:

- a document a live row records as current is never in a kind that deletes it, unless it
  is STATE_FAILED or stuck in STATE_PENDING (its row is reset first);
- a document this catalogue neither names nor made (metadata) is only ever ``foreign``;
- the replaced document kept until its successor is indexed (and not being removed: the
  lifecycle machine proves it never is), one being removed (for less
  than ``removal_after_s``) and one made by an import still in flight are not drift;
- each listed document lands in at most one kind, and the answer does not depend on the
  order of the listing;
- ``missing`` is exactly the indexed rows whose document is not listed, indexed before the
  listing began.

The profiles (``ci``, ``deep``) are in ``tests/conftest.py``.
"""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from objlib import reconcile as rc
from objlib.catalog import lifecycle as lc
from objlib.gemini.client import Document

OURS, OTHER = "cat-ours", "cat-other"
NOW, LISTED_AT = 100_000.0, 99_990.0
PENDING_AFTER_S, REMOVAL_AFTER_S = 1800.0, 3600.0
NAMES = [f"fileSearchStores/s/documents/d{i}" for i in range(8)]
DELETING = ("orphans", "duplicates", "stale", "failed", "stuck_pending")


def row(id: int, state: str, version: int, document, previous_document, indexed_at):
    blank = {f.name: None for f in dataclasses.fields(lc.FileRow)}
    blank.update(id=id, path=f"f{id}.txt", state=state, version=version, metadata={},
                 document=document, previous_document=previous_document,
                 indexed_at=indexed_at, polls=0, attempts=0, rate_limited=0,
                 state_changed_at=0.0)
    return lc.FileRow(**blank)


@st.composite
def worlds(draw):
    names = iter(draw(st.permutations(NAMES)))  # a document is current for one row at most
    rows = []
    for file_id in range(1, draw(st.integers(0, 4)) + 1):
        state = draw(st.sampled_from(lc.STATES))
        document = next(names) if draw(st.booleans()) or state == lc.INDEXED else None
        previous = next(names) if draw(st.booleans()) else None
        rows.append(row(file_id, state, draw(st.integers(1, 3)),
                        None if state == lc.SKIPPED else document, previous,
                        draw(st.sampled_from([LISTED_AT - 5, LISTED_AT + 5]))))
    removals = [rc.OpenRemoval(i, name, draw(st.sampled_from([None, 1, 2, 9])),
                               draw(st.sampled_from([NOW - 60, NOW - 2 * REMOVAL_AFTER_S])))
                for i, name in enumerate(draw(st.lists(st.sampled_from(NAMES), unique=True,
                                                       max_size=3)))]
    docs = []
    for name in draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=8)):
        meta = {}
        owner = draw(st.sampled_from([OURS, OURS, OTHER, None]))
        if owner:
            meta["objlib_catalog"] = owner
        if draw(st.booleans()):
            meta["objlib_file_id"] = str(draw(st.integers(1, 5)))
            meta["objlib_version"] = str(draw(st.integers(1, 3)))
        docs.append(Document(name, "raw", draw(st.sampled_from(
            ["STATE_ACTIVE", "STATE_ACTIVE", "STATE_PENDING", "STATE_FAILED"])), meta,
            draw(st.sampled_from([NOW - 60, NOW - 2 * PENDING_AFTER_S]))))
    return rows, removals, docs


def drift(rows, removals, docs):
    return rc.find_drift(docs, rows, removals, listed_at=LISTED_AT, now=NOW,
                         pending_after_s=PENDING_AFTER_S, removal_after_s=REMOVAL_AFTER_S,
                         catalog_id=OURS)


def kinds_of(found, name: str) -> list[str]:
    return [kind for kind, findings in found.items() for f in findings
            if f.document == name and kind not in ("missing", "stuck_rows")]


@given(worlds(), st.randoms())
def test_find_drift_keeps_reconciles_safety_rules(world, rnd):
    rows, removals, docs = world
    found = drift(rows, removals, docs)
    current = {r.document for r in rows if r.document and r.state != lc.DELETED}
    previous = {r.previous_document for r in rows if r.previous_document}
    named = current | previous | {rm.document for rm in removals} | {
        r.document for r in rows if r.document}
    rows_by_id = {r.id: r for r in rows}
    for doc in docs:
        kinds = kinds_of(found, doc.name)
        assert len(kinds) <= 1, f"{doc.name} is in {kinds}"
        kind = kinds[0] if kinds else None
        stuck = doc.state == "STATE_PENDING" and NOW - doc.create_time > PENDING_AFTER_S
        if doc.name in current and kind in DELETING:
            assert doc.state == "STATE_FAILED" or stuck, f"current {doc.name} judged {kind}"
        if doc.name not in named and doc.custom_metadata.get("objlib_catalog") != OURS:
            assert kind == "foreign", f"{doc.name} of {doc.custom_metadata} judged {kind}"
        if kind == "foreign":
            assert doc.name not in named and doc.custom_metadata.get("objlib_catalog") != OURS
        healthy = doc.state == "STATE_ACTIVE" or (doc.state == "STATE_PENDING" and not stuck)
        removing = {rm.document for rm in removals}
        if healthy and doc.name in previous and doc.name not in removing:
            assert kind is None, f"the replaced {doc.name}, kept for its successor, is {kind}"
        fresh_removal = any(rm.document == doc.name and NOW - rm.requested_at
                            <= REMOVAL_AFTER_S for rm in removals)
        if healthy and fresh_removal and doc.name not in current:
            assert kind is None, f"{doc.name}, being removed, judged {kind}"
        owner_row = rows_by_id.get(rc._meta_int(doc, "objlib_file_id"))
        if healthy and doc.name not in named and owner_row is not None \
                and owner_row.state in lc.IN_FLIGHT \
                and rc._meta_int(doc, "objlib_version") == owner_row.version \
                and doc.custom_metadata.get("objlib_catalog") == OURS:
            assert kind is None, f"{doc.name}, made by the import in flight, judged {kind}"
    listed = {d.name for d in docs}
    assert {f.file_id for f in found["missing"]} == {
        r.id for r in rows if r.state == lc.INDEXED and r.document not in listed
        and r.indexed_at < LISTED_AT}
    # the order of the listing does not matter
    shuffled = list(docs)
    rnd.shuffle(shuffled)
    again = drift(rows, removals, shuffled)
    assert {k: sorted(map(repr, v)) for k, v in again.items()} == {
        k: sorted(map(repr, v)) for k, v in found.items()}
