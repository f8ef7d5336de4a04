"""The real google-genai SDK, and plain HTTP, pointed at an in-process emulator."""

from __future__ import annotations

import http.client
import io
import json

from google import genai
from google.genai import types

from objlib.emulator import Emulator

# custom metadata of every value type the API knows
META = [{"key": "author", "string_value": "Ayn Rand"},
        {"key": "year", "numeric_value": 1957},
        {"key": "tags", "string_list_value": {"values": ["ethics", "novel"]}}]


def make_client(emu: Emulator, api_version: str = "v1beta") -> genai.Client:
    return genai.Client(api_key="test-key", http_options=types.HttpOptions(
        base_url=emu.base_url, api_version=api_version, timeout=30_000))


def upload(client, file_id: str | None = None, data: bytes = b"Socrates is mortal.\n", **config):
    """A raw file upload (``files/<file_id>`` when given), text/plain."""
    if file_id:
        config["name"] = f"files/{file_id}"
    return client.files.upload(file=io.BytesIO(data), config={"mime_type": "text/plain", **config})


def raw(emu: Emulator, method: str, path: str, body: bytes = b"", headers=None):
    """One plain HTTP request: (status, headers, parsed JSON body or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    return resp.status, resp.headers, json.loads(payload) if payload else None
