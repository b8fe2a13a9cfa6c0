import pytest

from lib import pricing, tokens
from lib.records import Usage
from lib.settings import ModelSpec


@pytest.mark.parametrize(("model", "encoding"), [
    ("gpt-4o-mini", "o200k_base"),
    ("gpt-4.1-mini-2025-04-14", "o200k_base"),
    ("ft:gpt-4.1-mini-2025-04-14:acme::B1x2", "o200k_base"),  # tiktoken itself says cl100k_base: wrong
    ("ft:gpt-4o-mini-2024-07-18:acme:faq:abc", "o200k_base"),
    ("gpt-5-mini", "o200k_base"),
    ("o3-mini", "o200k_base"),
    ("gpt-4-turbo", "cl100k_base"),
    ("gpt-3.5-turbo", "cl100k_base"),
    ("llama3.1:8b", None),
])
def test_encoding_by_family(model, encoding):
    assert tokens.encoding_name(model) == encoding


def test_offline_encodings_match_known_counts():
    # "hello world" is 2 tokens in both encodings; o200k splits this phrase differently from cl100k
    assert tokens.count_openai("hello world", "gpt-4o") == 2
    assert tokens.count_openai("hello world", "gpt-4") == 2
    enc = tokens.encoding("o200k_base")
    assert enc.decode(enc.encode("Refund window: 45 days.")) == "Refund window: 45 days."
    assert enc.n_vocab > 199_000 and tokens.encoding("cl100k_base").n_vocab > 100_000


def test_chat_overhead_follows_the_cookbook():
    messages = [{"role": "system", "content": "hi"}, {"role": "user", "content": "hello world"}]
    parts = sum(tokens.count_openai(v, "gpt-4o") for m in messages for v in m.values())
    assert tokens.count_chat(messages, "gpt-4o") == parts + 2 * 3 + 3


def test_unknown_family_is_a_rough_estimate():
    assert not tokens.is_exact("mistral-small")
    assert tokens.rough_count("one two three four") == 5


def test_prices_from_the_library_and_for_fine_tuned_models():
    base, note = pricing.price_tokens("gpt-4o-mini", 1_000_000, 1_000_000)
    assert base == pytest.approx(0.15 + 0.60)
    assert "genai-prices" in note
    ft, _ = pricing.price_tokens("ft:gpt-4o-mini-2024-07-18:acme::x1", 1_000_000, 1_000_000)
    assert ft == pytest.approx(0.30 + 1.20)  # fine-tuned models cost their own price
    ft41, note = pricing.price_tokens("ft:gpt-4.1-mini-2025-04-14:acme::x1", 1_000_000, 1_000_000)
    assert ft41 == pytest.approx(0.80 + 3.20)
    assert "checked" in note
    nano, _ = pricing.price_tokens("ft:gpt-4.1-nano-2025-04-14:acme::x1", 1_000_000, 0)
    assert nano == pytest.approx(0.20)


def test_cached_input_is_cheaper():
    full, _ = pricing.price_tokens("gpt-4.1-mini", 1_000_000, 0)
    cached, _ = pricing.price_tokens("gpt-4.1-mini", 1_000_000, 0, cached_tokens=1_000_000)
    assert cached < full


def test_unknown_model_has_no_made_up_price():
    usd, note = pricing.price_tokens("my-private-model", 100, 100)
    assert usd is None and "no price known" in note


def test_local_models_are_free_and_say_so():
    usd, note = pricing.cost_for(ModelSpec("local", "x"), Usage(10, 10, 1, 1, 1, 7))
    assert usd == 0.0 and "local" in note


def test_training_prices_come_from_the_dated_file():
    assert pricing.training_price_per_mtok("gpt-4.1-mini-2025-04-14") == 5.0
    assert pricing.training_price_per_mtok("gpt-4.1-2025-04-14") == 25.0
    assert pricing.training_price_per_mtok("unknown") is None
    assert pricing.extra_prices()["checked"]
