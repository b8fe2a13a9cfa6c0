"""The hosted path, with the real openai client against an OpenAI-compatible server on 127.0.0.1."""

import openai
import pytest

from lib import engine
from lib.arms import ARMS, run_arm
from lib.errors import ConfigError, explain
from lib.providers import OpenAICompatible, openai_client
from lib.records import GenParams
from lib.settings import ModelSpec


@pytest.fixture
def hosted(settings, openai_server):
    openai_server.reply = None
    return settings.with_overrides(openai_api_key="sk-test-local-key", openai_base_url=openai_server.base_url,
                                   base=ModelSpec("openai", "gpt-4o-mini"), max_retries=0, request_timeout_s=5.0)


def _arm(settings, model, arm="baseline", params=GenParams()):
    provider = OpenAICompatible(ModelSpec("openai", model), openai_client(settings))
    return run_arm(ARMS[arm], provider, "How long is the refund window?", None, params)


def test_streams_with_provider_usage_and_price(hosted, openai_server):
    openai_server.reply = "The refund window is 45 days [1]."
    r = _arm(hosted, "gpt-4o-mini")
    assert r.error is None
    assert r.answer == "The refund window is 45 days [1]."
    assert r.usage_source == "provider"
    last = openai_server.requests[-1]
    assert last["json"]["stream"] is True and last["json"]["stream_options"] == {"include_usage": True}
    assert r.usage.completion_tokens == 7
    assert r.usage.prompt_tokens > 0
    assert r.cost_usd > 0 and "genai-prices" in r.cost_note
    assert r.ttft_ms is not None and r.total_ms >= r.ttft_ms


def test_max_tokens_is_passed_and_truncation_reported(hosted, openai_server):
    openai_server.reply = "one two three four five six seven eight"
    r = _arm(hosted, "gpt-4o-mini", params=GenParams(max_tokens=3))
    assert r.finish_reason == "length" and r.usage.completion_tokens == 3
    assert openai_server.requests[-1]["json"]["max_tokens"] == 3


def test_reasoning_models_get_max_completion_tokens(hosted, openai_server):
    _arm(hosted, "o3-mini", params=GenParams(max_tokens=9))
    body = openai_server.requests[-1]["json"]
    assert body["max_completion_tokens"] == 9 and "temperature" not in body and "max_tokens" not in body


@pytest.mark.parametrize(("model", "key", "fragment"), [
    ("gpt-4o-mini", "sk-invalid", "API key was rejected"),
    ("missing-model", None, "was not found"),
    ("rate-limited", None, "Rate limit"),
    ("server-error", None, "server had an error"),
])
def test_errors_are_explained_in_that_arm(hosted, model, key, fragment):
    s = hosted.with_overrides(openai_api_key=key) if key else hosted
    r = _arm(s, model)
    assert r.error and fragment in r.error
    assert "sk-invalid" not in r.error


def test_timeout_is_explained(hosted, openai_server):
    openai_server.slow_seconds = 3
    r = _arm(hosted.with_overrides(request_timeout_s=0.5), "slow-model")
    assert "did not answer in time" in r.error


def test_unreachable_base_url(settings):
    s = settings.with_overrides(openai_api_key="sk-x", openai_base_url="http://127.0.0.1:9/v1", max_retries=0)
    r = _arm(s, "gpt-4o-mini")
    assert "Could not connect" in r.error


def test_azure_route(settings, openai_server):
    openai_server.reply = "Azure says 45 days."
    s = settings.with_overrides(azure_endpoint=openai_server.base_url.removesuffix("/v1"),
                                azure_api_key="azure-key-123456", base=ModelSpec("azure", "my-gpt4o-mini"),
                                max_retries=0)
    c = engine.ask(s, "How long?", ["baseline"], None)
    r = c.results[0]
    assert r.error is None and r.answer == "Azure says 45 days."
    assert "/openai/deployments/my-gpt4o-mini/" in openai_server.requests[-1]["path"]


def test_no_key_says_how_to_fix():
    from lib.settings import Settings

    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        openai_client(Settings())


def test_explain_covers_config_and_unknown_errors():
    assert explain(ConfigError("do X")) == "do X"
    assert explain(RuntimeError("boom")) == "RuntimeError: boom"
    assert "Model file not found" in explain(FileNotFoundError(2, "No such file", "/m.gguf"))
    assert issubclass(openai.RateLimitError, openai.APIStatusError)


def test_stop_filter_cuts_at_the_stop_string_across_pieces():
    from lib.providers import StopFilter

    f = StopFilter(("\nQuestion:",))
    out = "".join(f.feed(p) for p in ["The answer is 45 days.", "\nQues", "tion: what else?"])
    assert f.stopped and out == "The answer is 45 days."
    g = StopFilter(("\nQuestion:",))
    assert "".join(g.feed(p) for p in ["no stop ", "here\n"]) + g.flush() == "no stop here\n"


def test_stop_sequences_are_sent_to_hosted_models(hosted, openai_server):
    _arm(hosted, "gpt-4o-mini")
    assert openai_server.requests[-1]["json"]["stop"] == ["\nQuestion:"]
