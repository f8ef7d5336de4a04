"""Reading a ``generateContent`` request: the model, the question and the ``fileSearch`` tool,
each refused as the real API refuses it (``ApiError``), or as strictly where that is unknown.

- The model must be one that File Search supports [doc: file-search "Supported models":
  Gemini 2.5 Pro / Flash / Flash-Lite and Gemini 3 models; their ``-preview-...`` variants and
  the ``-latest`` aliases are taken too]; any other is ``404 NOT_FOUND "models/X is not found
  for API version v1beta, or is not supported for generateContent. Call ListModels ..."``
  (``StreamGenerateContent`` for the stream) [issue: openclaw/openclaw#14036,
  ChatGPTNextWeb/NextChat#4699] [unknown: a model that exists without File Search support
  may answer otherwise].
- ``contents`` empty or missing: ``400 INVALID_ARGUMENT "* GenerateContentRequest.contents:
  contents is not specified"`` [issue: langchain-ai/langchain-google#1393]. The question is the
  text of the last user turn.
- No ``fileSearch`` tool: answered (200) without grounding, as the real model answers without
  retrieving anything; the emulator, having no model, says so in its text [doc: a model
  answers without tools]. Any other tool (Google Search, code execution, functions, ...)
  is 400 INVALID_ARGUMENT [emulator limit: it serves File Search only].
- ``fileSearchStoreNames`` missing or empty: 400 [issue: livekit/agents#4428 met a 400];
  more than 5 stores: 400 [issue: googleapis/python-genai#2074]; a name that is not
  ``fileSearchStores/{id}``: 400 [unknown]; a store that does not exist: 404 NOT_FOUND, as
  ``fileSearchStores.get`` answers [unknown: stricter]. Two ``fileSearch`` tools: 400
  [unknown: stricter].
- ``metadataFilter`` that does not parse (``filter.py``): 400 INVALID_ARGUMENT [unknown: the
  wording].
- ``topK``: absent or 0 is ``DEFAULT_TOP_K`` (10) [unknown; the semantic-retrieval API that
  File Search grew from documents 10]; negative, not a whole number or over ``MAX_TOP_K``
  (100, that API's maximum): 400 [unknown: stricter].
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from objlib.emulator import filter as metadata_filter
from objlib.emulator.search import DEFAULT_TOP_K, MAX_TOP_K
from objlib.emulator.state import ApiError, invalid

MAX_STORES = 5
FILE_SEARCH_MODELS = re.compile(
    r"^(?:gemini-2\.5-(?:pro|flash|flash-lite)|gemini-3(?:\.\d+)?-(?:pro|flash|flash-lite)"
    r"|gemini-(?:pro|flash|flash-lite)-latest)(?:-[a-z0-9.-]+)?$")
_STORE = re.compile(r"^fileSearchStores/[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class FileSearchTool:
    stores: list[str]
    metadata_filter: object   # a filter.parse tree, or None
    top_k: int


def check_model(model: str, version: str = "v1beta", method: str = "generateContent") -> None:
    if not FILE_SEARCH_MODELS.match(model):
        raise ApiError(404, "NOT_FOUND",
                       f"models/{model} is not found for API version {version}, or is not "
                       f"supported for {method}. Call ListModels to see the list of "
                       "available models and their supported methods.")


def question(contents) -> str:
    """The text of the last user turn."""
    if not contents:
        raise invalid("* GenerateContentRequest.contents: contents is not specified")
    if not isinstance(contents, list) or not all(isinstance(c, dict) for c in contents):
        raise invalid("contents must be a list of Content objects.")
    turns = [c for c in contents if c.get("role", "user") == "user"] or contents
    parts = turns[-1].get("parts") or []
    return " ".join(p["text"] for p in parts if isinstance(p, dict)
                    and isinstance(p.get("text"), str)).strip()


def file_search_tool(tools) -> FileSearchTool | None:
    """The request's fileSearch tool, checked; None when it has none."""
    tools = tools or []
    searches = [t for t in tools if _either(t, "fileSearch", "file_search") is not None]
    others = [t for t in tools if t not in searches]
    if others:
        names = sorted({k for t in others for k in t}) or ["an empty tool"]
        raise invalid(f"The objlib emulator serves the fileSearch tool only, not "
                      f"{', '.join(names)}.")
    if not searches:
        return None
    if len(searches) > 1:
        raise invalid("Only one fileSearch tool may be given.")
    tool = _either(searches[0], "fileSearch", "file_search")
    stores = _either(tool, "fileSearchStoreNames", "file_search_store_names")
    if not stores or not isinstance(stores, list):
        raise invalid("fileSearch.fileSearchStoreNames is required: name at least one "
                      "FileSearchStore.")
    if len(stores) > MAX_STORES:
        raise invalid(f"fileSearch.fileSearchStoreNames names {len(stores)} stores; at most "
                      f"{MAX_STORES} may be searched at once.")
    for name in stores:
        if not isinstance(name, str) or not _STORE.match(name):
            raise invalid(f"Invalid FileSearchStore name {name!r}: expected "
                          "fileSearchStores/{id}.")
    return FileSearchTool(list(dict.fromkeys(stores)),
                          _filter(_either(tool, "metadataFilter", "metadata_filter")),
                          _top_k(_either(tool, "topK", "top_k")))


def _filter(text):
    if text is not None and not isinstance(text, str):
        raise invalid("fileSearch.metadataFilter must be a string.")
    try:
        return metadata_filter.parse(text)
    except metadata_filter.FilterError as exc:
        raise invalid(f"Invalid metadata filter {text!r}: {exc}.") from None


def _top_k(value) -> int:
    if value in (None, 0):
        return DEFAULT_TOP_K
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not float(value).is_integer() or not 0 < value <= MAX_TOP_K:
        raise invalid(f"fileSearch.topK must be a whole number from 1 to {MAX_TOP_K}; "
                      f"got {value!r}.")
    return int(value)


def _either(data, camel: str, snake: str):
    if not isinstance(data, dict):
        return None
    return data[camel] if camel in data else data.get(snake)
