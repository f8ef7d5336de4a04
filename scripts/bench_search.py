#!/usr/bin/env python3
"""How long does one search take in the emulator on a 5,000-document store?

    python scripts/bench_search.py [--documents 5000] [--runs 21] [--seed 1]

Builds a store of ``--documents`` documents in an in-process emulator: the sample library's
pseudo-transcripts (``make_sample_library``: 5-100 KB, log-uniform, from a vocabulary of
~130 words), custom metadata as objlib writes it (course, year, lesson), chunked with the
default 200 words / 20 overlap. The documents go in through the emulator's state (the same
code importFile runs), not over HTTP, so building takes seconds. Then times, with the real
SDK over HTTP (``models.generate_content`` with the ``fileSearch`` tool, default topK 10),
warm (one search first):

- ``common``: questions of 4 words of the vocabulary. Every chunk holds several of them, so
  bm25 ranks nearly every chunk: the worst case for a full-text index;
- ``rare``: a phrase planted in one document;
- ``filtered``: ``common`` questions with ``course = "..." AND year >= N``;
- ``state.search`` in-process for the ``common`` questions: the index alone, without HTTP
  and the SDK.

Prints medians (and min/max) in milliseconds, and the build's figures.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

from google import genai
from google.genai import types

from objlib.emulator import Emulator
from objlib.emulator.filter import parse  # noqa: E402
from scripts.make_sample_library import WORDS, _Text, _transcript_bytes

COURSES = ["OPAR", "Logic", "Ethics", "Epistemology", "Art", "Economics", "Rights", "Writing"]
PLANTED = "the zymurgical quokka sings at dawn"
MODEL = "gemini-2.5-flash"


def build(emu: Emulator, documents: int, seed: int) -> dict:
    rng = random.Random(seed)
    text = _Text(rng)
    state = emu.state
    store = state.create_store("bench").name
    started, total_bytes = time.monotonic(), 0
    for i in range(documents):
        body = text.body(_transcript_bytes(rng))
        if i == documents // 2:
            body += f"\n\nIn the end {PLANTED}.\n"
        data = body.encode()
        total_bytes += len(data)
        raw = f"doc-{i:05d}"
        state.add_file(raw, data=data)
        state.import_file(store, raw, [
            {"key": "course", "stringValue": COURSES[i % len(COURSES)]},
            {"key": "year", "numericValue": 1980 + i % 45},
            {"key": "lesson", "numericValue": i % 30}])
    state.index.index_pending()  # the chunks are made before the first search: count them in
    chunks = state.index.conn.execute("SELECT count(*) FROM chunk_text").fetchone()[0]
    return {"store": store, "documents": documents, "chunks": chunks,
            "megabytes": round(total_bytes / 1e6, 1),
            "build_s": round(time.monotonic() - started, 1)}


def timed(call, questions: list[str]) -> dict:
    call(questions[0])  # warm: the SDK builds its types on first use
    times = []
    for q in questions:
        started = time.perf_counter()
        call(q)
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1),
            "max_ms": round(max(times), 1), "runs": len(times)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json-out", help="also write the figures to this file")
    args = parser.parse_args(argv)
    results = run(args.documents, args.runs, args.seed)
    print(json.dumps(results, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def run(documents: int, runs: int, seed: int) -> dict:
    rng = random.Random(seed + 1)
    common = [" ".join(rng.sample(WORDS, 4)) + "?" for _ in range(runs)]
    with Emulator(profile="instant", seed=seed, storage_limit_bytes=None) as emu:
        built = build(emu, documents, seed)
        store = built["store"]
        client = genai.Client(api_key="bench", http_options=types.HttpOptions(
            base_url=emu.base_url, api_version="v1beta"))

        def search(question: str, flt: str | None = None):
            tool = types.Tool(file_search=types.FileSearch(file_search_store_names=[store],
                                                           metadata_filter=flt))
            response = client.models.generate_content(
                model=MODEL, contents=question, config=types.GenerateContentConfig(tools=[tool]))
            chunks = response.candidates[0].grounding_metadata.grounding_chunks
            assert chunks, f"nothing found for {question!r}"
            return chunks

        top = search(PLANTED)[0].retrieved_context
        assert PLANTED in top.text, "the planted phrase is not the top chunk"
        flt = 'course = "OPAR" AND year >= 2000'
        results = {
            **built,
            "common": timed(search, common),
            "rare": timed(search, [PLANTED] * runs),
            "filtered": timed(lambda q: search(q, flt), common),
            "index_only": timed(lambda q: emu.state.search([store], q, None, 10), common),
            "filtered_index_only": timed(
                lambda q: emu.state.search([store], q, parse(flt), 10), common),
        }
    return results


if __name__ == "__main__":
    sys.exit(main())
