"""classify(): every row of the table in objlib/gemini/errors.py, from real SDK and httpx2
exceptions (built the way the SDK builds them: from an HTTP response)."""

from __future__ import annotations

import json
import socket
from urllib.parse import quote, quote_plus

import httpx2
import pytest
from google.genai import errors as genai_errors

from objlib.errors import ConfigError, ObjlibError
from objlib.gemini.errors import (
    BadApiKey,
    GeminiError,
    Gone,
    MissingApiKey,
    Permanent,
    RateLimited,
    Transient,
    Unavailable,
    classify,
    register_secret,
    scrub,
)

URL = "https://generativelanguage.googleapis.com/v1beta/files/x"


def sdk_error(code: int, status: str | None = None, message: str = "boom", *, details=None,
              headers=None, text: str | None = None) -> genai_errors.APIError:
    """The exception the SDK raises for this HTTP answer (through its own raise_for_response)."""
    request = httpx2.Request("GET", URL)
    if text is not None:
        response = httpx2.Response(code, text=text, headers=headers, request=request)
    else:
        error = {"code": code, "message": message, "status": status}
        if details is not None:
            error["details"] = details
        response = httpx2.Response(code, json={"error": error}, headers=headers, request=request)
    with pytest.raises(genai_errors.APIError) as caught:
        genai_errors.APIError.raise_for_response(response)
    return caught.value


@pytest.mark.parametrize("code, status, message, call, kind", [
    (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted", "import_file", RateLimited),
    (429, "RESOURCE_EXHAUSTED", "quota", "delete_file", RateLimited),
    (408, "DEADLINE_EXCEEDED", "slow", "get_file", Transient),
    (500, "INTERNAL", "oops", "import_file", Transient),
    (502, "UNAVAILABLE", "bad gateway", "get_file", Unavailable),
    (503, "UNAVAILABLE", "try later", "upload_file", Unavailable),
    (504, "DEADLINE_EXCEEDED", "slow", "get_operation", Unavailable),
    (503, "UNAVAILABLE", "Failed to count tokens", "import_file", Transient),  # the content's
    (400, "INVALID_ARGUMENT", "Failed to create file.", "upload_file", Transient),
    (400, "INVALID_ARGUMENT", "Failed to create file.", "import_file", Transient),
    (400, "INVALID_ARGUMENT", "Request contains an invalid argument.", "import_file", Permanent),
    (400, "FAILED_PRECONDITION", "store not empty", "delete_store", Permanent),
    (409, "ALREADY_EXISTS", "exists", "upload_file", Permanent),
    (403, "PERMISSION_DENIED", "denied", "import_file", Permanent),
    (403, "PERMISSION_DENIED", "You do not have permission to access the File objlib-1 or it "
     "may not exist.", "import_file", Gone),  # its raw file deleted or expired meanwhile
    (404, "NOT_FOUND", "no such store", "import_file", Permanent),
    (403, "PERMISSION_DENIED", "You do not have permission to access the File x or it may "
     "not exist.", "delete_file", Gone),
    (404, "NOT_FOUND", "gone", "delete_file", Gone),
    (403, "PERMISSION_DENIED", "expired", "get_file", Gone),
    (404, "NOT_FOUND", "gone", "get_file", Gone),
    (403, "PERMISSION_DENIED", "denied", "delete_document", Gone),
    (404, "NOT_FOUND", "gone", "delete_document", Gone),
    (404, "NOT_FOUND", "gone", "delete_store", Gone),
    (404, "NOT_FOUND", "gone", "get_document", Gone),
    (403, "PERMISSION_DENIED", "denied", "get_document", Permanent),
    (404, "NOT_FOUND", "gone", "get_store", Gone),
])
def test_api_errors_are_classified_by_status_message_and_call(code, status, message, call, kind):
    err = classify(sdk_error(code, status, message), call=call)

    assert type(err) is kind
    assert (err.code, err.status, err.call) == (code, status, call)
    assert err.kind == kind.kind


def test_message_names_status_call_and_api_message():
    err = classify(sdk_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted "
                             "(e.g. check quota)."), call="import_file")

    assert str(err) == ("429 RESOURCE_EXHAUSTED on import_file: Resource has been exhausted "
                        "(e.g. check quota).")
    assert err.message == str(err)


def test_a_non_json_502_page_is_transient_with_the_reason_phrase():
    err = classify(sdk_error(502, text="<html><body>Bad gateway</body></html>"), call="get_file")

    assert isinstance(err, Transient)
    assert err.code == 502 and err.status == "Bad Gateway"
    assert str(err).startswith("502 Bad Gateway on get_file: <html>")


def test_a_long_error_body_is_clipped():
    err = classify(sdk_error(500, "INTERNAL", "x" * 5000), call="get_file")

    assert len(str(err)) < 500 and str(err).endswith("...")


def test_a_204_the_sdk_refuses_is_transient():
    # the SDK raises a bare APIError for any status that is neither 200 nor 4xx/5xx
    err = classify(sdk_error(204, text=""), call="delete_file")

    assert isinstance(err, Transient) and err.code == 204


def test_retry_after_comes_from_retry_info_in_the_body():
    details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]
    err = classify(sdk_error(429, "RESOURCE_EXHAUSTED", "slow down", details=details),
                   call="import_file")

    assert err.retry_after_s == 7.0


def test_retry_after_comes_from_the_header_when_the_body_has_none():
    err = classify(sdk_error(503, "UNAVAILABLE", "later", headers={"Retry-After": "3"}),
                   call="get_file")

    assert err.retry_after_s == 3.0


def test_retry_after_is_none_when_the_api_gives_no_hint():
    assert classify(sdk_error(429, "RESOURCE_EXHAUSTED"), call="get_file").retry_after_s is None


def transport_error(listen: bool) -> httpx2.HTTPError:
    """What httpx2 raises for a port nobody listens on, or one that accepts and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        if listen:
            server.listen()
        url = f"http://127.0.0.1:{server.getsockname()[1]}/v1beta/files/x"
        with pytest.raises(httpx2.HTTPError) as caught:
            httpx2.get(url, timeout=0.2)
    return caught.value


@pytest.mark.parametrize("listen, exc_type, prefix", [
    (False, httpx2.ConnectError, "connection failed on get_file: ConnectError"),
    (True, httpx2.ReadTimeout, "timed out on get_file: ReadTimeout"),
])
def test_refused_and_timed_out_requests_are_unavailable_with_no_status(listen, exc_type, prefix):
    exc = transport_error(listen)

    err = classify(exc, call="get_file")

    assert type(exc) is exc_type
    assert type(err) is Unavailable and err.code is None and err.kind == "unavailable"
    assert str(err).startswith(prefix)


@pytest.mark.parametrize("exc", [
    httpx2.ConnectTimeout("connect timed out"),
    httpx2.WriteTimeout("write timed out"),
    httpx2.PoolTimeout("pool timed out"),
    httpx2.ReadError("connection reset"),
    httpx2.WriteError("broken pipe"),
    httpx2.RemoteProtocolError("server disconnected"),
])
def test_other_transport_failures_are_unavailable(exc):
    assert type(classify(exc, call="upload_file")) is Unavailable


def test_an_answer_that_cannot_be_decoded_is_transient_not_unavailable():
    # an answer came back (the service is there), it was just unreadable
    assert type(classify(httpx2.DecodingError("bad gzip"), call="get_file")) is Transient


def test_a_base_url_with_an_unsupported_scheme_is_permanent():
    with pytest.raises(httpx2.UnsupportedProtocol) as caught:
        httpx2.get("ftp://example.invalid/x")

    assert isinstance(classify(caught.value, call="get_file"), Permanent)


def test_an_upload_the_server_never_finalised_is_transient():
    # what the SDK raises after re-sending a chunk three times without an upload status
    exc = ValueError("Failed to upload file: Upload status is not finalized.")

    assert isinstance(classify(exc, call="upload_file"), Transient)


def test_anything_unexpected_is_permanent_and_named():
    err = classify(RuntimeError("client has been closed"), call="get_file")

    assert isinstance(err, Permanent)
    assert str(err) == "unexpected error on get_file: RuntimeError: client has been closed"


def test_a_gemini_error_is_passed_through():
    err = Transient("x", call="get_file")

    assert classify(err, call="other") is err


def test_all_kinds_share_one_base_under_objlib_error():
    for cls in (RateLimited, Transient, Unavailable, Permanent, Gone, MissingApiKey, BadApiKey):
        assert issubclass(cls, GeminiError) and issubclass(cls, ObjlibError)
    assert issubclass(MissingApiKey, ConfigError) and issubclass(BadApiKey, ConfigError)
    assert issubclass(Unavailable, Transient)  # `except Transient` still catches it


def test_a_registered_key_is_scrubbed_from_messages():
    key = "my-very-secret-test-key-123"
    register_secret(key)

    err = classify(sdk_error(400, "INVALID_ARGUMENT", f"API key not valid: {key}"),
                   call="get_file")

    assert key not in str(err) and key not in repr(err)
    assert "***" in str(err)


def test_keys_from_the_environment_and_key_shaped_text_are_scrubbed(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "env-secret-value-42")
    google_shaped = "AIza" + "B" * 35

    text = scrub(f"env-secret-value-42 {google_shaped} url?key=abc123&x=1 x-goog-api-key: zz9")

    assert "env-secret-value-42" not in text and google_shaped not in text
    assert "abc123" not in text and "zz9" not in text
    assert "&x=1" in text


def test_scrub_leaves_metadata_keys_in_messages_alone():
    text = "custom_metadata[0].key: must not be empty"

    assert scrub(text) == text


# --- a refused key: a configuration error, never "gone" or "permanent" ---------------------

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


def error_info(reason: str) -> list[dict]:
    return [{"@type": ERROR_INFO, "reason": reason, "domain": "googleapis.com",
             "metadata": {"service": "generativelanguage.googleapis.com"}}]


@pytest.mark.parametrize("code, status, message, reason, call", [
    # the real answer to a wrong key (public reports): 400 with ErrorInfo API_KEY_INVALID
    (400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
     "API_KEY_INVALID", "list_stores"),
    (400, "INVALID_ARGUMENT", "API Key not found. Please pass a valid API key.",
     "API_KEY_INVALID", "import_file"),
    (401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", None,
     "upload_file"),
    # 403 on get_file / delete_* means "gone", unless the body names a key reason
    (403, "PERMISSION_DENIED", "Requests to this API are blocked.", "API_KEY_SERVICE_BLOCKED",
     "get_file"),
    (403, "PERMISSION_DENIED", "Generative Language API has not been used in project 1 "
     "before or it is disabled.", "SERVICE_DISABLED", "delete_document"),
    (403, "PERMISSION_DENIED", "Requests from referer <empty> are blocked.",
     "API_KEY_HTTP_REFERRER_BLOCKED", "delete_file"),
    # no details, but the message is about the key (the emulator's answer to no key at all)
    (403, "PERMISSION_DENIED", "API key not valid. Please pass a valid API key.", None,
     "get_file"),
])
def test_a_refused_key_is_a_configuration_error(code, status, message, reason, call):
    err = classify(sdk_error(code, status, message,
                             details=error_info(reason) if reason else None), call=call)

    assert type(err) is BadApiKey and isinstance(err, ConfigError)
    assert err.kind == "bad_key" and err.code == code
    assert (reason or status) in str(err) and "GEMINI_API_KEY" in str(err)


def test_a_403_that_names_no_key_reason_on_get_file_is_still_gone():
    details = error_info("SOMETHING_ELSE")

    err = classify(sdk_error(403, "PERMISSION_DENIED", "You do not have permission to access "
                             "the File x or it may not exist.", details=details), call="get_file")

    assert type(err) is Gone


def test_a_suspended_key_named_in_the_message_is_scrubbed():
    key = "AIzaSy" + "Q" * 33
    register_secret(key)

    err = classify(sdk_error(403, "PERMISSION_DENIED", f"Permission denied: Consumer 'api_key:"
                             f"{key}' has been suspended.",
                             details=error_info("CONSUMER_SUSPENDED")),
                   call="list_stores")

    assert type(err) is BadApiKey and key not in str(err)


# --- scrub: the key in every spelling it may come back in ----------------------------------

SPLIT_KEY = "Canary-key-part-one\nCanary-key-part-two\x07Canary-key-part-3"


@pytest.fixture
def split_key():
    register_secret(SPLIT_KEY)
    return SPLIT_KEY


@pytest.mark.parametrize("spelling", [
    pytest.param(lambda k: k, id="as-is"),
    pytest.param(lambda k: repr(k), id="str-repr"),
    pytest.param(lambda k: repr(k.encode()), id="bytes-repr"),
    pytest.param(lambda k: k.encode("unicode_escape").decode(), id="python-escapes"),
    pytest.param(lambda k: json.dumps(k), id="json"),
    pytest.param(lambda k: json.dumps(k, ensure_ascii=False), id="json-unicode"),
    pytest.param(lambda k: json.dumps(repr(k.encode())), id="bytes-repr-in-json"),
    pytest.param(lambda k: json.dumps(json.dumps(k)), id="json-twice"),
    pytest.param(lambda k: quote(k, safe=""), id="url"),
    pytest.param(lambda k: quote_plus(k), id="url-plus"),
    pytest.param(lambda k: "?key=" + quote(k) + "&alt=json", id="url-query"),
])
def test_scrub_removes_a_known_key_in_every_spelling(split_key, spelling):
    text = f"Illegal header value {spelling(split_key)} on get_file"

    scrubbed = scrub(text)

    for piece in ("Canary-key-part-one", "Canary-key-part-two", "Canary-key-part-3"):
        assert piece not in scrubbed, scrubbed
    assert scrubbed.startswith("Illegal header value") and scrubbed.endswith("on get_file")


def test_scrub_removes_each_piece_of_a_key_split_at_a_control_character(split_key):
    # a message that kept only the text after the line break, or cut the key in two
    text = "header 'Canary-key-part-two' rejected; then Canary-key-part-one alone"

    assert "Canary-key-part" not in scrub(text)


def test_scrub_leaves_short_pieces_of_a_split_key_alone():
    register_secret("abc\nCanary-key-long-piece")

    assert scrub("abc Canary-key-long-piece") == "abc ***"


def test_the_illegal_header_error_of_a_key_with_a_newline_does_not_carry_it():
    key = "AIzaSy-canary\nSECRET-0123456789"
    register_secret(key)
    with socket.socket() as server:  # h11 refuses the header before anything is sent
        server.bind(("127.0.0.1", 0))
        server.listen()
        with pytest.raises(httpx2.LocalProtocolError) as caught:
            httpx2.get(f"http://127.0.0.1:{server.getsockname()[1]}/x",
                       headers={"x-goog-api-key": key}, timeout=1)

    err = classify(caught.value, call="get_file")

    assert "Illegal header value" in str(err)
    for text in (str(err), repr(err), json.dumps(str(err))):
        assert "canary" not in text and "SECRET-0123456789" not in text
