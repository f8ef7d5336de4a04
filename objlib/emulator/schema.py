"""The request bodies the emulated methods accept, field by field, so that an unknown field is
refused as the real service refuses it.

Google's proto3 JSON parser accepts a field by its proto name (``custom_metadata``) or its
lowerCamelCase JSON name (``customMetadata``) and rejects any other name with

    400 INVALID_ARGUMENT
    Invalid JSON payload received. Unknown name "x" at 'a.b[0]': Cannot find field.

with one ``google.rpc.BadRequest`` detail holding a ``fieldViolations`` entry per unknown name:
``field`` is the path of the message that holds it (proto names, ``[i]`` for list items) and
``description`` the same sentence. An unknown name at the top level has no ``at '...'`` part and
no ``field``. (Shape as seen in public reports of the real API, e.g. decolua/9router#1876,
danny-avila/LibreChat#11761.) Several unknown names: one sentence each, joined by a newline.

A schema is a dict ``{camelCaseName: sub-schema}``; the sub-schema is ``None`` for a scalar
(or a message whose inside is not checked), a dict for a message and a one-element list for a
repeated message.
"""

from __future__ import annotations

import functools
import re

from objlib.emulator.state import ApiError

BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"

CUSTOM_METADATA = [{"key": None, "stringValue": None, "numericValue": None,
                    "stringListValue": {"values": None}}]
CHUNKING_CONFIG = {"whiteSpaceConfig": {"maxTokensPerChunk": None, "maxOverlapTokens": None}}
FILE = {"name": None, "displayName": None, "mimeType": None, "sizeBytes": None,
        "createTime": None, "updateTime": None, "expirationTime": None, "sha256Hash": None,
        "uri": None, "downloadUri": None, "state": None, "source": None, "error": None,
        "videoMetadata": None}

CREATE_FILE = {"file": FILE}
CREATE_STORE = {"name": None, "displayName": None, "createTime": None, "updateTime": None,
                "activeDocumentsCount": None, "pendingDocumentsCount": None,
                "failedDocumentsCount": None, "sizeBytes": None, "embeddingModel": None}
IMPORT_FILE = {"fileName": None, "customMetadata": CUSTOM_METADATA,
               "chunkingConfig": CHUNKING_CONFIG}
UPLOAD_TO_STORE = {"displayName": None, "customMetadata": CUSTOM_METADATA,
                   "chunkingConfig": CHUNKING_CONFIG, "mimeType": None}
# generateContent: the tools' insides are checked for fileSearch only (the one it serves)
FILE_SEARCH = {"fileSearchStoreNames": None, "metadataFilter": None, "topK": None}
TOOL = {"fileSearch": FILE_SEARCH, "functionDeclarations": None, "googleSearch": None,
        "googleSearchRetrieval": None, "codeExecution": None, "urlContext": None,
        "googleMaps": None, "computerUse": None, "mcpServers": None}
GENERATE_CONTENT = {"contents": None, "tools": [TOOL], "toolConfig": None,
                    "safetySettings": None, "systemInstruction": None,
                    "generationConfig": None, "cachedContent": None}


@functools.lru_cache(maxsize=1024)  # the schemas' names: a regex substitution each was a
def proto_name(camel: str) -> str:  # fifth of the emulator's CPU on an importFile
    return re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower()


_SPELLINGS: dict[int, tuple[dict, dict]] = {}


def _spellings(schema: dict) -> dict:
    """``{name or proto name: sub-schema}`` of a (module-level, never changed) schema."""
    kept = _SPELLINGS.get(id(schema))
    if kept is None or kept[0] is not schema:
        kept = _SPELLINGS[id(schema)] = (schema, {
            spelling: sub for camel, sub in schema.items()
            for spelling in (camel, proto_name(camel))})
    return kept[1]


def check(body: dict, schema: dict) -> dict:
    """``body`` unchanged if every name in it is known to ``schema``; else the real 400."""
    unknown = list(_unknown(body, schema, ""))
    if unknown:
        raise unknown_fields(unknown)
    return body


def _unknown(value, schema, path: str):
    """(name, path of the message holding it) for every unknown name, in body order."""
    if isinstance(schema, list):
        if isinstance(value, list):
            for i, item in enumerate(value):
                yield from _unknown(item, schema[0], f"{path}[{i}]")
        return
    if not isinstance(schema, dict) or not isinstance(value, dict):
        return
    known = _spellings(schema)
    for name, item in value.items():
        if name not in known:
            yield name, path
        else:
            child = proto_name(name) if name in schema else name
            yield from _unknown(item, known[name], f"{path}.{child}" if path else child)


def unknown_fields(unknown: list[tuple[str, str]]) -> ApiError:
    sentences = [(f'Invalid JSON payload received. Unknown name "{name}"'
                  + (f" at '{path}'" if path else "") + ": Cannot find field.", path)
                 for name, path in unknown]
    violations = [{"field": path, "description": text} if path else {"description": text}
                  for text, path in sentences]
    return ApiError(400, "INVALID_ARGUMENT", "\n".join(text for text, _ in sentences),
                    details=[{"@type": BAD_REQUEST_TYPE, "fieldViolations": violations}])
