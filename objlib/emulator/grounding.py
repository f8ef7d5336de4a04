"""The ``generateContent`` answer to a question asked with the ``fileSearch`` tool, shaped as
the real API shapes it [doc: GenerateContentResponse, GroundingMetadata, GroundingChunk,
RetrievedContext, GroundingSupport, Segment; checked by parsing it with the SDK's types]:

    {"candidates": [{"content": {"parts": [{"text": ...}], "role": "model"},
                     "finishReason": "STOP",
                     "groundingMetadata": {
                         "groundingChunks": [{"retrievedContext": {
                             "title": <document display name>, "text": <chunk>,
                             "fileSearchStore": "fileSearchStores/...",
                             "customMetadata": [<the document's entries>]}}, ...],
                         "groundingSupports": [{"segment": {"startIndex", "endIndex", "text"},
                                                "groundingChunkIndices": [i]}, ...]}}],
     "usageMetadata": {...}, "modelVersion": ..., "responseId": ...}

The emulator has no language model. Its answer is **extractive and deterministic**: a first
sentence saying so, then, from each of the best chunks (at most ``ANSWER_PASSAGES``), the
sentence that shares the most words with the question; each such sentence is a grounding
support of its chunk. Segment offsets are UTF-8 byte offsets into the part, as the API
documents; zero values are left out, as proto3 JSON leaves them out. Every retrieved chunk is
a grounding chunk, best first. Nothing retrieved: an answer that says so, and no
``groundingMetadata``. Token counts are estimates (4 characters a token); the retrieved chunks
count as tool-use prompt tokens [doc: file-search pricing: retrieved context is billed as
input tokens].

Streaming (``:streamGenerateContent?alt=sse``): the same text in several events (the opening
sentence, then one per passage); the last carries ``finishReason``, the whole
``groundingMetadata`` and ``usageMetadata`` [unknown: where the real stream puts them; the
last event is where Google Search grounding puts them].
"""

from __future__ import annotations

import hashlib
import math
import re

from objlib.emulator.search import Hit

ANSWER_PASSAGES = 3
MAX_SENTENCE_CHARS = 400
OPENING = ("[objlib Gemini emulator: no language model; lexical full-text search] "
           "The passages of the store that best match the question:")
NOTHING_FOUND = ("[objlib Gemini emulator: no language model; lexical full-text search] "
                 "No passage of the store matches the question.")
NO_TOOL = ("[objlib Gemini emulator: no language model] The emulator answers questions asked "
           "with the fileSearch tool only; this request had none, so nothing was retrieved.")
_SENTENCES = re.compile(r"[^.!?\n]+(?:[.!?]+|$)")
_WORDS = re.compile(r"\w+")


def tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _stem(word: str) -> str:
    return word.lower()[:6]


def best_sentence(chunk: str, question: str) -> str:
    """The sentence of ``chunk`` sharing the most words with ``question`` (the first of
    equals), at most ``MAX_SENTENCE_CHARS`` long."""
    wanted = {_stem(w) for w in _WORDS.findall(question)}
    sentences = [s.strip() for s in _SENTENCES.findall(chunk) if s.strip()] or [chunk.strip()]
    best = max(sentences, key=lambda s: len(wanted & {_stem(w) for w in _WORDS.findall(s)}))
    best = " ".join(best.split())
    return best if len(best) <= MAX_SENTENCE_CHARS else best[:MAX_SENTENCE_CHARS - 1] + "…"


def answer(question: str, results: list[tuple[Hit, object]]) -> tuple[list[str], list[dict]]:
    """The answer's pieces of text (their concatenation is the part's text) and its
    grounding supports."""
    if not results:
        return [NOTHING_FOUND], []
    pieces, supports, offset = [OPENING], [], len(OPENING.encode())
    for index, (hit, _doc) in enumerate(results[:ANSWER_PASSAGES]):
        sentence = best_sentence(hit.text, question)
        pieces.append(" " + sentence)
        start = offset + 1
        offset += len(pieces[-1].encode())
        supports.append({"segment": _proto({"startIndex": start, "endIndex": offset,
                                            "text": sentence}),
                         "groundingChunkIndices": [index]})
    return pieces, supports


def grounding_chunk(hit: Hit, document) -> dict:
    context = {"title": document.display_name, "text": hit.text,
               "fileSearchStore": document.store}
    if document.custom_metadata:
        context["customMetadata"] = [dict(entry) for entry in document.custom_metadata]
    return {"retrievedContext": context}


def response(model: str, question: str, results: list[tuple[Hit, object]] | None) -> dict:
    """The whole GenerateContentResponse; ``results`` None: the request had no fileSearch
    tool (nothing retrieved, no grounding)."""
    pieces, supports = answer(question, results) if results is not None else ([NO_TOOL], [])
    text = "".join(pieces)
    candidate = {"content": {"parts": [{"text": text}], "role": "model"},
                 "finishReason": "STOP"}
    if results:
        candidate["groundingMetadata"] = {
            "groundingChunks": [grounding_chunk(hit, doc) for hit, doc in results],
            "groundingSupports": supports}
    retrieved = sum(tokens(hit.text) for hit, _ in results or [])
    prompt = tokens(question)
    usage = _proto({"promptTokenCount": prompt + retrieved, "candidatesTokenCount": tokens(text),
                    "totalTokenCount": prompt + retrieved + tokens(text),
                    "toolUsePromptTokenCount": retrieved})
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model,
            "responseId": _response_id(model, question, text)}


def stream(model: str, question: str, results: list[tuple[Hit, object]] | None) -> list[dict]:
    """The same answer as server-sent events: one per piece of text, the last with the
    finish reason, the grounding metadata and the usage."""
    whole = response(model, question, results)
    pieces, _ = answer(question, results) if results is not None else ([NO_TOOL], [])
    events = [{"candidates": [{"content": {"parts": [{"text": piece}], "role": "model"}}],
               "modelVersion": model, "responseId": whole["responseId"]} for piece in pieces]
    last = events[-1]["candidates"][0]
    last["finishReason"] = "STOP"
    if "groundingMetadata" in whole["candidates"][0]:
        last["groundingMetadata"] = whole["candidates"][0]["groundingMetadata"]
    events[-1]["usageMetadata"] = whole["usageMetadata"]
    return events


def _response_id(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:22]


def _proto(fields: dict) -> dict:
    """Without proto3's zero values (a segment starting at 0 has no startIndex)."""
    return {k: v for k, v in fields.items() if v not in (0, None, "")}
