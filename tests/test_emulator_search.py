"""Searching a store in the emulator with the real google-genai SDK over HTTP: a planted
phrase comes back from its document as the top chunk, filters (string and numeric) include
and exclude as AIP-160 says, only ACTIVE documents are searched (never a pending, failed,
deleted or replaced one), streaming returns the same chunks, chunking follows the request,
the answer parses into the SDK's own types field for field, and every request the real API
refuses is refused."""

from __future__ import annotations

import io

import httpx2 as httpx
import pytest
from google import genai
from google.genai import errors, types

from objlib.emulator import Emulator

MODEL = "gemini-2.5-flash"
FILLER = ("Reason is the faculty that identifies and integrates the material provided by the "
          "senses. Knowledge is a mental grasp of a fact of reality. ")
PHRASE = "the zymurgical quokka sings at dawn"


def sdk(emu) -> genai.Client:
    return genai.Client(api_key="k", http_options=types.HttpOptions(
        base_url=emu.base_url, api_version="v1beta"))


def index(client, store: str, file_id: str, text: str, metadata: list[dict] | None = None,
          chunking: dict | None = None) -> str:
    """Upload ``text`` as files/<file_id>, import it into ``store``; the document's name."""
    raw = client.files.upload(file=io.BytesIO(text.encode()),
                              config={"name": f"files/{file_id}", "mime_type": "text/plain"})
    config = {"custom_metadata": metadata or []}
    if chunking:
        config["chunking_config"] = chunking
    op = client.file_search_stores.import_file(file_search_store_name=store, file_name=raw.name,
                                               config=config)
    while not op.done:
        op = client.operations.get(op)
    return op.response.document_name if op.response else None


def ask(client, stores, question: str, *, flt: str | None = None, top_k: int | None = None,
        stream: bool = False):
    config = types.GenerateContentConfig(tools=[types.Tool(file_search=types.FileSearch(
        file_search_store_names=stores, metadata_filter=flt, top_k=top_k))])
    if stream:
        return list(client.models.generate_content_stream(model=MODEL, contents=question,
                                                          config=config))
    return client.models.generate_content(model=MODEL, contents=question, config=config)


def contexts(response) -> list:
    gm = response.candidates[0].grounding_metadata
    return [c.retrieved_context for c in (gm.grounding_chunks if gm else [])]


@pytest.fixture
def emu():
    with Emulator(profile="instant", seed=3) as emulator:
        yield emulator


@pytest.fixture
def library(emu):
    """A store of six documents: one holds PHRASE; courses, years and lessons differ."""
    client = sdk(emu)
    store = client.file_search_stores.create(config={"display_name": "lib"}).name
    docs = {}
    for i, (course, year) in enumerate([("OPAR", 1991), ("OPAR", 2005), ("Ethics", 2005),
                                        ("Ethics", 2020), ("Logic", 1976), ("Logic", 2020)]):
        text = FILLER * 3 + (f"In this lesson {PHRASE}. " if i == 2 else "") + FILLER * 3
        docs[f"doc{i}"] = index(client, store, f"doc{i}", text, [
            {"key": "course", "string_value": course}, {"key": "year", "numeric_value": year},
            {"key": "lesson", "numeric_value": i}])
    return client, store, docs


def test_a_planted_phrase_comes_back_from_its_document_as_the_top_chunk(library):
    client, store, docs = library

    response = ask(client, [store], f"Where does {PHRASE}?")

    top = contexts(response)[0]
    assert top.title == "doc2" and PHRASE in top.text and top.file_search_store == store
    assert {(m.key, m.string_value or m.numeric_value) for m in top.custom_metadata} == \
        {("course", "Ethics"), ("year", 2005), ("lesson", 2)}
    support = response.candidates[0].grounding_metadata.grounding_supports[0]
    assert support.grounding_chunk_indices == [0] and PHRASE in support.segment.text
    answer = response.text
    assert "emulator" in answer and PHRASE in answer
    # a segment's offsets are UTF-8 byte offsets into the part (the API's unit)
    raw = answer.encode()
    assert raw[support.segment.start_index:support.segment.end_index].decode() == \
        support.segment.text


def test_a_filter_excludes_the_planted_document(library):
    client, store, _ = library

    kept = ask(client, [store], f"{PHRASE} reason knowledge", flt='course != "Ethics"')
    only = ask(client, [store], f"{PHRASE} reason", flt='course = "Ethics" AND NOT lesson = 3')

    assert contexts(kept) and all(PHRASE not in c.text for c in contexts(kept))
    assert "doc2" not in {c.title for c in contexts(kept)}
    assert {c.title for c in contexts(only)} == {"doc2"}


@pytest.mark.parametrize("flt, titles", [
    ("year >= 2005", {"doc1", "doc2", "doc3", "doc5"}),
    ("year < 2000", {"doc0", "doc4"}),
    ("year = 2005", {"doc1", "doc2"}),
    ("year > 1980 AND year <= 2005", {"doc0", "doc1", "doc2"}),
    ("year = 2020 OR lesson < 1", {"doc0", "doc3", "doc5"}),
])
def test_a_numeric_comparison_on_year_selects_the_documents(library, flt, titles):
    client, store, _ = library
    response = ask(client, [store], "reason knowledge reality", flt=flt, top_k=50)
    assert {c.title for c in contexts(response)} == titles


def test_a_deleted_documents_text_is_never_returned(library):
    client, store, docs = library
    client.file_search_stores.documents.delete(name=docs["doc2"], config={"force": True})

    response = ask(client, [store], PHRASE, top_k=50)

    assert "doc2" not in {c.title for c in contexts(response)}
    assert all(PHRASE not in c.text for c in contexts(response))


def test_a_replaced_documents_old_text_is_gone_once_the_new_one_is_in(library):
    client, store, docs = library
    new = index(client, store, "doc2-v2", FILLER + "now the quokka is silent. " + FILLER)
    client.file_search_stores.documents.delete(name=docs["doc2"], config={"force": True})

    old = ask(client, [store], "zymurgical sings dawn", top_k=50)
    current = ask(client, [store], "quokka silent")

    assert all("zymurgical" not in c.text for c in contexts(old))
    assert contexts(current)[0].title == "doc2-v2" and new.endswith(new.rsplit("/", 1)[1])


def test_only_active_documents_are_searched(emu):
    client = sdk(emu)
    store = client.file_search_stores.create(config={"display_name": "s"}).name
    emu.configure(latency={"index": 3600})
    raw = client.files.upload(file=io.BytesIO(PHRASE.encode()),
                              config={"name": "files/pending", "mime_type": "text/plain"})
    client.file_search_stores.import_file(file_search_store_name=store, file_name=raw.name)
    emu.configure(latency={"index": 0}, faults={"index_failed": 1.0})
    index(client, store, "failed", PHRASE)

    assert contexts(ask(client, [store], PHRASE)) == []   # pending and failed: not searched
    emu.state.advance(3601)
    assert [c.title for c in contexts(ask(client, [store], PHRASE))] == ["pending"]


def test_streaming_returns_the_same_chunks_and_text(library):
    client, store, _ = library

    whole = ask(client, [store], PHRASE, top_k=4)
    events = ask(client, [store], PHRASE, top_k=4, stream=True)

    assert len(events) > 1
    assert "".join(e.text or "" for e in events) == whole.text
    streamed = [c for e in events for c in contexts(e)]
    assert [(c.title, c.text) for c in streamed] == [(c.title, c.text) for c in contexts(whole)]
    assert events[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert events[-1].usage_metadata.total_token_count == whole.usage_metadata.total_token_count


def test_the_answer_parses_into_the_sdks_types_field_for_field(library, emu):
    """Every name in the answer is one the SDK knows (it drops unknown ones silently), so the
    raw JSON and the SDK's types dumped back by alias are the same."""
    client, store, _ = library
    body = {"contents": [{"parts": [{"text": PHRASE}], "role": "user"}],
            "tools": [{"fileSearch": {"fileSearchStoreNames": [store], "topK": 3}}]}
    raw = httpx.post(f"{emu.base_url}/v1beta/models/{MODEL}:generateContent", json=body,
                     headers={"x-goog-api-key": "k"}).json()

    candidate = raw["candidates"][0]
    for model, data in [(types.GroundingMetadata, candidate["groundingMetadata"]),
                        (types.Content, candidate["content"]),
                        (types.GenerateContentResponseUsageMetadata, raw["usageMetadata"])]:
        assert model.model_validate(data).model_dump(
            by_alias=True, exclude_none=True, mode="json") == data
    assert set(raw) == {"candidates", "usageMetadata", "modelVersion", "responseId"}
    assert set(candidate) == {"content", "finishReason", "groundingMetadata"}


def test_chunks_follow_the_requests_chunking_config(emu):
    client = sdk(emu)
    store = client.file_search_stores.create(config={"display_name": "c"}).name
    words = " ".join(f"word{i}" for i in range(100))
    index(client, store, "small", words, chunking={"white_space_config": {
        "max_tokens_per_chunk": 25, "max_overlap_tokens": 5}})

    found = contexts(ask(client, [store], "word0 word30 word60 word99", top_k=20))

    # words 0-24, 20-44, 40-64, 60-84, 80-99: 25 words a chunk, 5 repeated from the last
    assert sorted(c.text.split()[0] for c in found) == ["word0", "word20", "word40", "word60",
                                                        "word80"]
    assert sorted(len(c.text.split()) for c in found) == [20, 25, 25, 25, 25]
    with pytest.raises(errors.ClientError) as refused:
        index(client, store, "big", words, chunking={"white_space_config": {
            "max_tokens_per_chunk": 513}})
    assert refused.value.code == 400 and "maxTokensPerChunk" in refused.value.message


def test_a_document_uploaded_straight_to_the_store_is_searchable_with_its_chunking(emu):
    client = sdk(emu)
    store = client.file_search_stores.create(config={"display_name": "u"}).name
    words = " ".join(f"term{i}" for i in range(60)) + f" {PHRASE}"
    op = client.file_search_stores.upload_to_file_search_store(
        file=io.BytesIO(words.encode()), file_search_store_name=store,
        config={"display_name": "Straight In", "mime_type": "text/plain",
                "custom_metadata": [{"key": "year", "numeric_value": 2001}],
                "chunking_config": {"white_space_config": {"max_tokens_per_chunk": 30,
                                                           "max_overlap_tokens": 0}}})
    while not op.done:
        op = client.operations.get(op)

    found = contexts(ask(client, [store], PHRASE, flt="year = 2001"))

    assert found[0].title == "Straight In" and PHRASE in found[0].text
    assert len(found[0].text.split()) <= 30


def test_the_index_survives_a_restart_with_a_state_dir(tmp_path):
    with Emulator(seed=1, state_dir=tmp_path / "state") as first:
        client = sdk(first)
        store = client.file_search_stores.create(config={"display_name": "p"}).name
        index(client, store, "kept", FILLER + PHRASE)
        port = first.port
    with Emulator(seed=1, port=port, state_dir=tmp_path / "state") as second:
        again = sdk(second)
        assert contexts(ask(again, [store], PHRASE))[0].title == "kept"


def test_without_the_tool_the_answer_has_no_grounding(emu):
    client = sdk(emu)
    response = client.models.generate_content(model=MODEL, contents="hello")
    assert "emulator" in response.text
    assert response.candidates[0].grounding_metadata is None


@pytest.mark.parametrize("tool, model, code, says", [
    ({"fileSearch": {"fileSearchStoreNames": ["fileSearchStores/nope"]}}, MODEL, 404,
     "not found"),
    ({"fileSearch": {"fileSearchStoreNames": []}}, MODEL, 400, "fileSearchStoreNames"),
    ({"fileSearch": {"fileSearchStoreNames": [f"fileSearchStores/s{i}" for i in range(6)]}},
     MODEL, 400, "at most 5"),
    ({"fileSearch": {"fileSearchStoreNames": ["mystore"]}}, MODEL, 400, "Invalid"),
    ({"fileSearch": {"fileSearchStoreNames": ["{store}"], "metadataFilter": "year >"}}, MODEL,
     400, "Invalid metadata filter"),
    ({"fileSearch": {"fileSearchStoreNames": ["{store}"], "topK": 101}}, MODEL, 400, "topK"),
    ({"fileSearch": {"fileSearchStoreNames": ["{store}"], "top_n": 3}}, MODEL, 400,
     'Unknown name "top_n"'),
    ({"googleSearch": {}}, MODEL, 400, "fileSearch tool only"),
    ({"fileSearch": {"fileSearchStoreNames": ["{store}"]}}, "gpt-4", 404,
     "models/gpt-4 is not found"),
])
def test_what_the_real_api_refuses_is_refused(emu, tool, model, code, says):
    client = sdk(emu)  # kept: a Client closes its connections when collected
    store = client.file_search_stores.create(config={"display_name": "e"}).name
    names = tool.get("fileSearch", {}).get("fileSearchStoreNames")
    if names == ["{store}"]:
        tool["fileSearch"]["fileSearchStoreNames"] = [store]
    body = {"contents": [{"parts": [{"text": "q"}]}], "tools": [tool]}

    answer = httpx.post(f"{emu.base_url}/v1beta/models/{model}:generateContent", json=body,
                        headers={"x-goog-api-key": "k"})

    assert answer.status_code == code and says in answer.json()["error"]["message"]


def test_a_request_without_contents_is_the_real_400(emu):
    answer = httpx.post(f"{emu.base_url}/v1beta/models/{MODEL}:generateContent", json={},
                        headers={"x-goog-api-key": "k"})
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == \
        "* GenerateContentRequest.contents: contents is not specified"


def test_an_index_built_before_the_first_search_answers_as_one_built_at_each_import():
    """The emulator chunks and indexes documents only when a search (or a chunk count) needs
    them: the hits, their order and scores must be those of an index built at every import,
    through replacements and deletions of documents indexed or not yet."""
    from objlib.emulator.search import SearchIndex

    texts = {name: FILLER * (i + 1) + (PHRASE if i % 2 else "") + f" marker{i}"
             for i, name in enumerate(["a", "b", "c", "d"])}
    steps = [("add", "a"), ("add", "b"), ("search", None), ("add", "c"), ("drop", "b"),
             ("add", "a"), ("add", "d"), ("drop", "c"), ("add", "b")]
    eager, lazy = SearchIndex(), SearchIndex()
    seen = {"eager": [], "lazy": []}
    for what, name in steps:
        for label, index in (("eager", eager), ("lazy", lazy)):
            if what == "add":
                index.add_document(name, texts[name], (20, 3))
            elif what == "drop":
                index.drop_documents([name])
            else:
                seen[label].append(index.query("quokka reason", ["a", "b", "c", "d"], 10))
            if label == "eager":
                index.index_pending()
    for label, index in (("eager", eager), ("lazy", lazy)):
        seen[label].append(index.query("quokka dawn marker1", ["a", "b", "d"], 50))
        seen[label].append([index.chunk_count(n) for n in "abcd"])

    assert seen["lazy"] == seen["eager"]
    assert seen["eager"][-1][2] == 0 and all(seen["eager"][-1][i] for i in (0, 1, 3))
