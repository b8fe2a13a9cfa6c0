import numpy as np

from lib.embeddings import MiniLMEmbedder


def test_unit_vectors_in_input_order(embedder):
    texts = ["a much longer sentence about bicycles and batteries and warranties", "hi", "bicycle battery"]
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    one_by_one = np.stack([embedder.embed([t])[0] for t in texts])
    assert np.allclose(vectors, one_by_one, atol=1e-4)  # per-batch padding does not change results


def test_batches_group_by_length_within_the_token_budget():
    emb = MiniLMEmbedder.__new__(MiniLMEmbedder)  # batching needs no model
    emb.batch_size, emb.token_budget = 3, 100
    lengths = [50, 10, 10, 30, 10, 10, 60]
    batches = emb.batches(lengths)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # every text exactly once
    for b in batches:
        assert len(b) <= 3 and len(b) * max(lengths[i] for i in b) <= 100 or len(b) == 1
    assert [[lengths[i] for i in b] for b in batches] == [[10, 10, 10], [10, 30], [50], [60]]


def test_similar_texts_score_higher(embedder):
    q, near, far = embedder.embed(["How long do refunds take?", "Refunds are paid within 5 days.",
                                   "The office has a cat named Pixel."])
    assert q @ near > q @ far + 0.1


def test_long_input_is_truncated_to_the_window_not_an_error(embedder):
    assert embedder.embed(["word " * 1000]).shape == (1, 384)


def test_chroma_protocol(embedder):
    out = embedder(["x", "y"])
    assert len(out) == 2 and len(out[0]) == 384
    assert MiniLMEmbedder.name() == "workbench-minilm-l6-v2-int8"
    assert MiniLMEmbedder.build_from_config(embedder.get_config()).batch_size == embedder.batch_size
    assert embedder.embed([]).shape == (0, 384)


def test_openai_embedder_against_local_server(openai_server, settings):
    from lib.engine import embedder_for

    s = settings.with_overrides(openai_api_key="sk-test-local", openai_base_url=openai_server.base_url,
                                embedder="openai:text-embedding-3-small")
    emb = embedder_for(s)
    vectors = emb.embed(["one", "two", "one"])
    assert vectors.shape == (3, openai_server.embedding_dim)
    assert np.allclose(vectors[0], vectors[2]) and not np.allclose(vectors[0], vectors[1])
