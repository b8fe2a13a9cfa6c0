"""Hosted arms: a total deadline that covers retries and says which limit was hit; truncated, empty or
non-stream answers are flagged, never a silent success (issue 9, items 8, 9 and 13)."""

import time

import pytest

from lib.arms import ARMS, run_arm
from lib.providers import OpenAICompatible, openai_client
from lib.records import GenParams
from lib.settings import ModelSpec


@pytest.fixture
def hosted(settings, openai_server):
    openai_server.reply = "The refund window is 45 days from delivery, as the policy says [1]."
    return settings.with_overrides(openai_api_key="sk-test-faults", openai_base_url=openai_server.base_url,
                                   max_retries=2)


def _arm(settings, model, deadline=3.0, read_timeout=2.0, retries=2):
    provider = OpenAICompatible(ModelSpec("openai", model), openai_client(settings), deadline, read_timeout, retries)
    t0 = time.monotonic()
    result = run_arm(ARMS["baseline"], provider, "How long is the refund window?", None, GenParams(max_tokens=64))
    return result, time.monotonic() - t0


def test_a_server_that_trickles_for_ever_is_stopped_at_the_deadline(hosted, openai_server):
    openai_server.trickle_seconds = 0.4  # each wait is short, so the per-read timeout never fires
    r, took = _arm(hosted, "trickle-model", deadline=2.5, read_timeout=2.0)
    assert r.error and "2.5 s limit for one answer" in r.error and "WORKBENCH_ARM_DEADLINE" in r.error
    assert "characters" in r.error and 2.4 < took < 4.5


def test_retries_are_part_of_the_deadline(hosted, openai_server):
    openai_server.slow_seconds = 10  # "slow-model" sleeps before answering: each attempt times out
    r, took = _arm(hosted, "slow-model", deadline=3.0, read_timeout=1.0, retries=5)
    assert r.error and took < 5.0  # not 6 attempts x 1 s plus back-off
    assert "limit for one answer" in r.error or "did not answer in time" in r.error


def test_a_per_read_timeout_is_named_as_such(hosted, openai_server):
    openai_server.slow_seconds = 10
    r, _ = _arm(hosted, "slow-model", deadline=30.0, read_timeout=1.0, retries=0)
    assert r.error and "WORKBENCH_TIMEOUT" in r.error


def test_a_rate_limit_is_retried_within_the_deadline(hosted, openai_server):
    r, _ = _arm(hosted, "rate-limited", deadline=3.0, retries=2)
    assert r.error and "Rate limit" in r.error and openai_server.rate_limit_hits == 3  # 1 + 2 retries


@pytest.mark.parametrize(("model", "fragment"), [
    ("json-instead", "instead of a stream"),
    ("plain-text", "instead of a stream"),
    ("empty-200", "instead of a stream"),
])
def test_answers_that_are_not_streams_are_errors(hosted, model, fragment):
    r, _ = _arm(hosted, model)
    assert r.error and fragment in r.error and r.answer == ""


def test_a_stream_that_ends_early_is_flagged(hosted):
    r, _ = _arm(hosted, "cut-short")
    assert r.error is None and r.answer == "The refund"
    assert r.finish_reason is None and any("may be cut off" in w for w in r.warnings)
    assert r.usage_source == "estimate"


def test_a_complete_answer_has_no_warning(hosted):
    r, _ = _arm(hosted, "gpt-4o-mini")
    assert r.error is None and r.finish_reason == "stop" and r.warnings == ()


def test_a_stream_cut_mid_way_says_so_not_could_not_connect(hosted):
    r, _ = _arm(hosted, "stream-error")
    assert r.error and "Could not connect" not in r.error


def test_the_deadline_is_a_setting():
    from lib.settings import load_settings

    assert load_settings(env={}, secrets_file=None).arm_deadline_s == 120.0
    assert load_settings(env={"WORKBENCH_ARM_DEADLINE": "30"}, secrets_file=None).arm_deadline_s == 30.0


# ---------------------------------------------------------------- issue 18: one arm's fault is that arm's alone

def test_a_retry_after_past_the_deadline_fails_at_once_naming_it(hosted, openai_server):
    r, took = _arm(hosted, "retry-later", deadline=30.0, read_timeout=5.0, retries=3)
    assert r.error and "Retry-After" in r.error and "3600" in r.error
    assert "30 s limit for one answer" in r.error and "WORKBENCH_ARM_DEADLINE" in r.error
    assert took < 3.0  # not a sleep until the deadline, nor a read timeout


@pytest.mark.parametrize(("usage", "why"), [
    ({"prompt_tokens": -5, "completion_tokens": 7}, "negative"),
    ({"prompt_tokens": 40, "completion_tokens": 10 ** 12}, "more than the 64 max tokens"),
    ({"prompt_tokens": 10 ** 12, "completion_tokens": 7}, "more than the prompt sent could make"),
    ({"prompt_tokens": "lots", "completion_tokens": 7}, "not a whole number"),
])
def test_impossible_usage_is_counted_instead_and_fails_no_other_arm(hosted, openai_server, fake_provider, usage, why):
    """A server reporting negative, absurd or unreadable usage: that arm's tokens are counted here and marked
    estimated (no $2,000,000 answer), with a note saying why; the other arms are untouched."""
    from lib.arms import compare
    from lib.providers import make_provider

    openai_server.bad_usage = usage
    providers = {"base": OpenAICompatible(ModelSpec("openai", "bad-usage"), openai_client(hosted), 10.0, 5.0, 0),
                 "finetuned": make_provider(ModelSpec("fake", "tuned-model"), hosted)}
    c = compare("How long is the refund window?", ["baseline", "finetuned"], None, providers, GenParams(max_tokens=64))
    hosted_arm, other = c.results
    assert hosted_arm.error is None and "45 days" in hosted_arm.answer
    assert hosted_arm.usage_source == "estimate" and 0 < hosted_arm.usage.completion_tokens <= 64
    assert hosted_arm.cost_usd is None or hosted_arm.cost_usd < 0.01  # (a model without a price: unknown)
    assert any("cannot be right" in w and why in w for w in hosted_arm.warnings), hosted_arm.warnings
    assert other.error is None and other.usage_source == "provider" and not other.warnings
    from lib.providers import Done

    [done] = [e for e in providers["base"].stream([{"role": "user", "content": "How long?"}], GenParams(max_tokens=64))
              if isinstance(e, Done)]
    assert done.prompt_tokens is None and why in done.untrusted  # nothing downstream (caps, prices) sees it
