import numpy as np
import pytest

from lib import engine
from lib.chunking import chunk_text
from lib.documents import load_bytes
from lib.errors import ConfigError
from lib.store import KnowledgeBase, check_name, delete_knowledge_base, list_knowledge_bases


def _doc(name, text):
    return load_bytes(name, text.encode())


def test_add_list_preview_query_remove(settings, embedder):
    kb = engine.open_kb(settings, "kb1", embedder=embedder)
    text = ("Refunds are accepted within 45 days of delivery. " * 30) + "\n\nShipping takes 3 days."
    doc = _doc("refunds.md", text)
    chunks = chunk_text(doc.text, embedder.spans, 64, 8)
    added = kb.add_document(doc, chunks)
    assert added.status == "ingested" and added.chunks == len(chunks) > 1
    [info] = kb.documents()
    assert (info.name, info.chunks, info.tokens) == ("refunds.md", len(chunks), sum(c.tokens for c in chunks))
    preview = kb.chunks_of("refunds.md")
    assert [p.chunk for p in preview] == list(range(len(chunks)))
    hits = kb.query("how many days for a refund?", k=2)
    assert hits and hits[0].document == "refunds.md" and 0 < hits[0].score <= 1
    assert hits == sorted(hits, key=lambda h: -h.score)
    assert kb.query("refund", k=5, min_score=0.99) == []
    assert kb.remove_document("refunds.md") == len(chunks)
    assert kb.documents() == [] and kb.count() == 0


def test_same_content_twice_adds_nothing_and_new_version_replaces(settings, embedder):
    kb = engine.open_kb(settings, "kb2", embedder=embedder)
    doc = _doc("a.md", "Alpha facts. The answer is 42.")
    chunks = chunk_text(doc.text, embedder.spans)
    assert kb.add_document(doc, chunks).status == "ingested"
    assert kb.add_document(doc, chunks).status == "unchanged"  # the same name with the same content
    v2 = _doc("a.md", "Alpha facts. The answer is 43.")
    assert kb.add_document(v2, chunk_text(v2.text, embedder.spans)).status == "replaced"
    [info] = kb.documents()
    assert info.sha256 == v2.sha256 and kb.count() == 1


def test_same_content_under_another_name_is_stored_under_that_name_too(settings, embedder):
    """Issue 9 item 5: a copy under a new name is findable by that name; a new version of a name whose
    content another document already has replaces that name's old text (never `unchanged`)."""
    kb = engine.open_kb(settings, "kb5", embedder=embedder)
    a, b = _doc("a.md", "Alpha facts. The answer is 42."), _doc("b.md", "Beta facts. The colour is teal.")
    for d in (a, b):
        assert kb.add_document(d, chunk_text(d.text, embedder.spans)).status == "ingested"
    copy = _doc("copy-of-a.md", a.text)
    assert kb.add_document(copy, chunk_text(copy.text, embedder.spans)).status == "ingested"
    assert kb.find(name="copy-of-a.md").sha256 == a.sha256
    assert [s.text for s in kb.chunks_of("copy-of-a.md")] == [s.text for s in kb.chunks_of("a.md")]
    b2 = _doc("b.md", a.text)  # b.md's new version has a.md's content
    assert kb.add_document(b2, chunk_text(b2.text, embedder.spans)).status == "replaced"
    assert [s.text for s in kb.chunks_of("b.md")] == ["Alpha facts. The answer is 42."]
    assert sorted(d.name for d in kb.documents()) == ["a.md", "b.md", "copy-of-a.md"] and kb.count() == 3
    # the engine's flow says the same
    results = engine.ingest_upload(kb, "b.md", b"Alpha facts. The answer is 42.")
    assert results.status == "unchanged"
    assert engine.ingest_upload(kb, "c.md", b"Alpha facts. The answer is 42.").status == "ingested"


def test_failed_add_leaves_nothing_behind(settings, embedder, monkeypatch):
    kb = engine.open_kb(settings, "kb3", embedder=embedder)
    old = _doc("keep.md", "Keep me, I was here first.")
    kb.add_document(old, chunk_text(old.text, embedder.spans))
    doc = _doc("big.md", "word " * 2000)
    chunks = chunk_text(doc.text, embedder.spans, 32, 0)
    monkeypatch.setattr(kb.client, "get_max_batch_size", lambda: 5)  # force several writes
    real_add = kb.collection.add
    calls = {"n": 0}

    def flaky_add(**kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real_add(**kw)

    monkeypatch.setattr(kb.collection, "add", flaky_add)
    with pytest.raises(OSError):
        kb.add_document(doc, chunks, embedder.embed([c.text for c in chunks]))
    assert [d.name for d in kb.documents()] == ["keep.md"]
    assert kb.count() == 1


def test_collections_are_named_and_remember_their_embedder(settings, embedder):
    client = engine.client_for(settings)
    engine.open_kb(settings, "first", embedder=embedder)
    engine.open_kb(settings, "second", embedder=embedder)
    assert {"first", "second"} <= set(list_knowledge_bases(client))

    class OtherEmbedder:
        model_id = "other"

        @staticmethod
        def name():
            return "other-embedder"

        def __call__(self, input):
            return [np.zeros(3)] * len(input)

    with pytest.raises(ConfigError, match="was built with the embedder"):
        KnowledgeBase(client, "first", OtherEmbedder())
    delete_knowledge_base(client, "second")
    assert "second" not in list_knowledge_bases(client)
    with pytest.raises(ConfigError, match="No knowledge base"):
        engine.open_kb(settings, "never-made", embedder=embedder, create=False)


@pytest.mark.parametrize("bad", ["", "a", "has space", "-dash", "x" * 80, "ünï"])
def test_bad_names_are_refused(bad):
    with pytest.raises(ConfigError, match="not a valid knowledge base name"):
        check_name(bad)


def test_store_persists_across_clients(settings, embedder, tmp_path):
    from lib.store import open_client

    kb = engine.open_kb(settings, "persist", embedder=embedder)
    doc = _doc("p.md", "Persistent fact: the office cat is called Pixel.")
    kb.add_document(doc, chunk_text(doc.text, embedder.spans))
    fresh = KnowledgeBase(open_client(settings.data_dir), "persist", embedder, create=False)
    assert [d.name for d in fresh.documents()] == ["p.md"]
