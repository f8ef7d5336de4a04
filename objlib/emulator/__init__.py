"""A local Gemini File Search emulator, faithful at the HTTP level: the real google-genai SDK
talks to it through ``GOOGLE_GEMINI_BASE_URL`` (or ``HttpOptions(base_url=...)``).

Split as moto splits a fake service: ``state`` (in-memory model, domain errors), ``behaviour``
(latency, faults, quota, statistics), ``handlers`` (one function per action), ``routes`` (the
table) and ``server`` (the threaded HTTP server and ``Emulator``). Searching a store:
``extract`` (a document's text), ``search`` (chunks in an SQLite FTS5 index, bm25),
``filter`` (``metadataFilter``), ``generation`` (reading a generateContent request) and
``grounding`` (the answer and its grounding metadata).

    with Emulator(profile="instant", faults={"rate_limit": 0.1}, seed=1) as emu:
        client = GeminiClient(api_key="emulator", base_url=emu.base_url)  # or, for objlib's
        # processes: GOOGLE_GEMINI_BASE_URL=<emu.base_url> in their environment

What it does as the real service does, and the source of each behaviour ([wire] = the SDK
capture in ``shared/reference/gemini-wire-spec.md``; [doc] = ai.google.dev; [issue] = a public
report of the real API's answer; [unknown] = not documented nor seen: the stricter answer):

- An upload answers ``ACTIVE`` at once, ``createTime == updateTime`` [wire: the one real File
  sample; PROCESSING is documented for video only]. ``--latency activate=S`` (0 in every
  profile) makes it PROCESSING for S seconds; importFile then answers 400 FAILED_PRECONDITION
  [unknown].
- The project's File Search storage is limited: ``storage_limit_bytes`` (default 1,000,000,000,
  the free tier [doc: file-search "Rate limits": Free 1 GB, Tier 1 10 GB, Tier 2 100 GB,
  Tier 3 1 TB]; a document counts 3 x its size [doc: "about 3x the input"]; FAILED documents
  count nothing [unknown]). An import or store upload past it answers
  ``429 RESOURCE_EXHAUSTED "Corpus has reached the storage limit of N bytes."`` with no
  details [issue: googleapis/python-genai#1774]. The emulator refuses the document that would
  cross the limit, not only once it is reached [unknown: stricter].
- A 429 says how long to wait only in its body: a quota's (``--rpm``) with a
  ``google.rpc.RetryInfo`` of the seconds until a call leaves the window [issue:
  googleapis/python-genai#1875 "53s", dcdpr/jp#1061], the scattered one (``--fault
  rate_limit``, "Resource has been exhausted (e.g. check quota).") with a bare body, no
  details [issue: google/generative-ai-docs#236, google-gemini/gemini-cli#2020]; neither with
  a ``Retry-After`` header [issue: dcdpr/jp#1061 reports none; unknown: stricter]. See
  ``behaviour.py``.
- An unknown JSON field is ``400 INVALID_ARGUMENT "Invalid JSON payload received. Unknown name
  "x" at 'path': Cannot find field."`` with a ``google.rpc.BadRequest`` of ``fieldViolations``
  [issue: decolua/9router#1876, danny-avila/LibreChat#11761]; both proto and camelCase names
  are known [wire]. See ``schema.py``.
- The API key: with ``api_keys``, any other key is ``400 INVALID_ARGUMENT "API key not valid"``
  with ErrorInfo ``API_KEY_INVALID`` [issue: public reports]; no key at all is 403 [unknown].
- What File Search cannot index is refused on importFile and uploadToFileSearchStore with
  400 INVALID_ARGUMENT [message: unknown]: a type not in the published list of application
  and text types (``objlib.supported_types``: PNG and other images,
  ``application/octet-stream``, audio, video, ``application/epub+zip``, an unlisted
  ``text/x-...``) [doc: file-search "Supported file types"; "Audio and video formats are not
  currently supported"; images need a multimodal embedding model the emulator does not
  offer], an empty
  document [unknown: stricter], one over 100,000,000 bytes [doc: 100 MB per document; decimal
  is the stricter reading]. files.upload refuses an empty file and an announced size over
  2 GB [doc: 2 GB per file; empty: unknown, stricter]; it takes any type [doc: the Files API
  holds media].
- Zero counters, zero sizes, empty strings and empty lists are left out of every answer, as
  proto3 JSON does [issue 13: seen on the real service]; the SDK then reads None.
- Upload chunks may be POST (the SDK) or PUT [issue 13: LiteLLM's ingest]; ``v1``,
  ``v1beta`` and ``v1alpha`` are served alike [wire; issue 13: a third-party CLI uses v1alpha].
- Ids: a store is ``{display name lowercased, non-alphanumerics dropped}-{12 random}``
  (``sam-basic`` -> ``sambasic-...``) [issue 13: seen on the real service; issue
  python-genai#1774 shows such ids]; importFile's document is ``{raw file id}-{12 random}``
  [wire: real Document sample]; uploadToFileSearchStore gives the document and its
  operation one id, ``{slug of the display name}-{12 random}`` [issue 13: seen on the real
  service].
- ``state_dir``: stores, raw files, documents, operations and unfinished resumable uploads
  survive a restart (``persist.py``), as they do on the real service (raw files expire after
  48 h [doc]); so do the documents' text and chunks (``DIR/search.db``).
- ``generateContent`` / ``streamGenerateContent?alt=sse`` with the ``fileSearch`` tool search
  the ACTIVE documents of the named stores (a deleted or replaced document's chunks go with
  it) and answer in the real shape: ``groundingMetadata.groundingChunks[].retrievedContext``
  (``title``, ``text``, ``fileSearchStore``, ``customMetadata``) and ``groundingSupports``
  [doc: the SDKs' GroundingMetadata types; parsed by the SDK's types in the tests]. The
  retrieval is **lexical** (FTS5 bm25 over words, not embeddings) and the answer extractive,
  saying it is the emulator's: see ``search.py`` and ``grounding.py``. Chunking follows
  ``whiteSpaceConfig`` (words; defaults [unknown]); ``metadataFilter`` is AIP-160's
  comparisons with AND/OR/NOT and parentheses (``filter.py``); what a request may hold, and
  every refusal with its source, is in ``generation.py``. In short: a request without the
  ``fileSearch`` tool is answered 200 without grounding, as the real model answers without
  tools (the emulator's text says it has no model) [doc]; a store that does not exist is
  404 NOT_FOUND, as ``fileSearchStores.get`` answers [unknown: stricter]; a filter that does
  not parse is 400 INVALID_ARGUMENT [unknown: the wording]; any other tool is 400 [emulator
  limit]; an unknown model is the real 404 [issue]; no contents, the real 400 [issue].
"""

from objlib.emulator.behaviour import FAULT_KINDS, LATENCY_STEPS, PROFILES, Profile, parse_knobs
from objlib.emulator.server import Emulator
from objlib.emulator.state import ApiError, State

__all__ = ["Emulator", "PROFILES", "Profile", "LATENCY_STEPS", "FAULT_KINDS", "parse_knobs",
           "ApiError", "State"]
