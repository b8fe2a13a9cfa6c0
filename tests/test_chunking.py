import re

import pytest

from lib.chunking import MAX_CHUNK_TOKENS, chunk_text, validate


def words(text):
    return [m.span() for m in re.finditer(r"\S+", text)]


def test_short_text_is_one_chunk():
    chunks = chunk_text("one two three", words, size=16, overlap=0)
    assert [c.text for c in chunks] == ["one two three"]
    assert chunks[0].tokens == 3 and chunks[0].start_char == 0


def test_chunks_respect_size_and_overlap_and_cover_everything():
    text = " ".join(f"w{i}" for i in range(1000))
    chunks = chunk_text(text, words, size=100, overlap=20)
    assert all(c.tokens <= 100 for c in chunks)
    assert chunks[0].text.startswith("w0 ") and chunks[-1].text.endswith("w999")
    for a, b in zip(chunks, chunks[1:]):
        assert b.start_char < a.end_char  # they overlap
        shared = len(set(a.text.split()) & set(b.text.split()))
        assert shared == 20
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_prefers_paragraph_then_sentence_breaks():
    para = " ".join(["alpha"] * 70) + ".\n\n" + " ".join(["beta"] * 70)
    chunks = chunk_text(para, words, size=100, overlap=0)
    assert chunks[0].text.endswith("alpha.")
    assert chunks[1].text.startswith("beta")
    sentence = " ".join(["gamma"] * 75) + ". " + " ".join(["delta"] * 60)
    assert chunk_text(sentence, words, size=100, overlap=0)[0].text.endswith("gamma.")


def test_identical_chunks_hash_the_same():
    a = chunk_text("same words here", words, 16, 0)[0]
    b = chunk_text("same words here", words, 16, 0)[0]
    assert a.sha256 == b.sha256


@pytest.mark.parametrize(("size", "overlap"), [(8, 0), (MAX_CHUNK_TOKENS + 1, 0), (100, 51), (100, -1)])
def test_out_of_range_settings_are_refused(size, overlap):
    with pytest.raises(ValueError, match="out of range"):
        validate(size, overlap)


def test_real_tokenizer_chunks_fit_the_embedding_window(embedder):
    text = ("The Trailhead e-bike carries a 612 Wh battery and weighs 23.4 kg. " * 60).strip()
    chunks = chunk_text(text, embedder.spans, size=200, overlap=40)
    assert len(chunks) > 3
    for c in chunks:
        assert c.tokens <= 200
        # re-tokenising the chunk's text gives the same count: it never starts or ends mid-word
        assert embedder.count_tokens(c.text) == c.tokens
        assert c.text == text[c.start_char:c.end_char]


def test_a_run_without_word_breaks_is_split_to_the_chunk_size(embedder):
    from lib.chunking import MAX_PIECE_CHARS

    text = "Intro paragraph.\n\n" + "a" * 200_000 + "\n\nOutro."
    chunks = chunk_text(text, embedder.spans, 200, 40)
    assert len(chunks) > 60
    assert max(c.tokens for c in chunks) <= 200
    assert max(len(c.text) for c in chunks) <= 200 * MAX_PIECE_CHARS
    assert chunks[0].text.startswith("Intro") and chunks[-1].text.endswith("Outro.")
    # nothing is lost: the chunks cover the text end to end
    assert chunks[0].start_char == 0 and chunks[-1].end_char == len(text)
    for a, b in zip(chunks, chunks[1:]):
        assert b.start_char <= a.end_char
