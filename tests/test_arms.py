import dataclasses
import threading
import time

import pytest

from lib import engine
from lib.arms import ARMS, SYSTEM_PLAIN, SYSTEM_RETRIEVAL, build_prompt, compare, run_arm
from lib.errors import ConfigError
from lib.providers import Delta, Done, GenParams, Started
from lib.settings import ModelSpec
from lib.store import Source


def test_the_grid():
    assert {k: (a.role, a.retrieval) for k, a in ARMS.items()} == {
        "baseline": ("base", False), "rag": ("base", True),
        "finetuned": ("finetuned", False), "hybrid": ("finetuned", True)}


def test_prompt_parts_and_citations():
    srcs = [Source("a.md", 0, 0.9, "Alpha."), Source("b.md", 3, 0.8, "Beta.")]
    p = build_prompt("What?", srcs)
    assert p.system == SYSTEM_RETRIEVAL and "[1] (from a.md)\nAlpha." in p.context and "[2] (from b.md)" in p.context
    msgs = p.messages()
    assert msgs[0] == {"role": "system", "content": SYSTEM_RETRIEVAL}
    assert msgs[1]["content"].endswith("Question: What?")
    plain = build_prompt("What?", None)
    assert plain.context == "" and plain.system == SYSTEM_PLAIN
    assert "none found" in build_prompt("What?", []).context


def test_compare_is_fair_and_reports_everything(sample_kb_dir, fake_settings, embedder):
    s = fake_settings.with_overrides(data_dir=sample_kb_dir)
    kb = engine.open_kb(s, embedder=embedder, create=False)
    deltas = []
    c = engine.ask(s, "How long is the refund window?", list(ARMS), kb, GenParams(temperature=0.3, max_tokens=50),
                   top_k=3, on_delta=lambda arm, text: deltas.append(arm))
    assert [r.arm for r in c.results] == list(ARMS)
    assert len(c.sources) == 3
    by = {r.arm: r for r in c.results}
    assert by["rag"].sources == by["hybrid"].sources == c.sources
    assert by["baseline"].sources == by["finetuned"].sources == ()
    assert by["rag"].model == "base-model" and by["hybrid"].model == "tuned-model"
    for r in c.results:
        assert r.error is None and r.answer
        assert r.usage_source == "provider"
        assert r.usage.context_tokens == (0 if not ARMS[r.arm].retrieval else r.usage.context_tokens) >= 0
        assert r.total_ms >= r.ttft_ms >= 0
    assert by["rag"].usage.context_tokens > 50 and by["baseline"].usage.context_tokens == 0
    assert set(deltas) == set(ARMS)
    from tests.conftest import FakeProvider
    params = {p for _, _, p in FakeProvider.history}
    assert params == {GenParams(temperature=0.3, max_tokens=50)}  # every arm got the same settings


def test_an_arm_that_fails_does_not_stop_the_others(fake_settings, fake_provider):
    fake_provider.fail_with["tuned-model"] = TimeoutError("took too long")
    c = engine.ask(fake_settings, "q?", ["baseline", "finetuned"], None)
    by = {r.arm: r for r in c.results}
    assert by["baseline"].error is None and by["baseline"].answer
    assert "took too long" in by["finetuned"].error


def test_no_finetuned_model_configured_is_a_clear_error(settings, fake_provider):
    s = settings.with_overrides(base=ModelSpec("fake", "base-model"))
    s = dataclasses.replace(s, finetuned=None)
    c = engine.ask(s, "q?", ["baseline", "finetuned", "hybrid"], None)
    by = {r.arm: r for r in c.results}
    assert by["baseline"].error is None
    assert "No fine-tuned model is configured" in by["finetuned"].error
    assert "WORKBENCH_FT_MODEL" in by["hybrid"].error


def test_missing_usage_is_estimated_and_says_so():
    class NoUsage:
        spec = ModelSpec("openai", "gpt-4o-mini")
        kind = "openai"

        def count_tokens(self, text):
            return len(text.split())

        def stream(self, messages, params):
            yield Started()
            yield Delta("Forty-five days [1].")
            yield Done("stop", None, None)

    r = run_arm(ARMS["baseline"], NoUsage(), "How long?", None, GenParams())
    assert r.usage_source == "estimate" and r.usage.prompt_tokens > 0 and r.usage.completion_tokens == 3
    assert r.cost_usd is not None and r.cost_usd > 0


def test_arms_run_concurrently(fake_settings, fake_provider):
    barrier = threading.Barrier(2, timeout=5)

    class Waits:
        kind = "fake"

        def __init__(self, spec, settings=None):
            self.spec = spec

        def count_tokens(self, text):
            return 1

        def stream(self, messages, params):
            yield Started()
            barrier.wait()  # both arms must be in flight at once, or this times out
            yield Delta("ok")
            yield Done("stop", 1, 1)

    providers = {"base": Waits(ModelSpec("fake", "a")), "finetuned": Waits(ModelSpec("fake", "b"))}
    t0 = time.monotonic()
    c = compare("q?", ["baseline", "finetuned"], None, providers)
    assert all(r.error is None for r in c.results), [r.error for r in c.results]
    assert time.monotonic() - t0 < 5


def test_bad_requests_are_refused(fake_settings):
    with pytest.raises(ValueError, match="Ask a question"):
        engine.ask(fake_settings, "  ", ["rag"], None)
    with pytest.raises(ValueError, match="Unknown arm"):
        engine.ask(fake_settings, "q", ["rag", "magic"], None)


def test_provider_factory_errors_become_arm_errors(settings):
    s = settings.with_overrides(base=ModelSpec("local", "/no/such/model.gguf"))
    providers = engine.providers_for(s)
    assert isinstance(providers["base"], ConfigError)
    r = engine.ask(s, "q?", ["baseline"], None, providers=providers).results[0]
    assert "does not exist" in r.error
