import dataclasses
import threading
import time

import pytest

from lib import engine
from lib.arms import ARMS, SYSTEM_PLAIN, SYSTEM_RETRIEVAL, build_prompt, compare, run_arm
from lib.errors import ConfigError
from lib.providers import Delta, Done, Started
from lib.records import GenParams, Source
from lib.settings import ModelSpec


def test_the_grid():
    assert {k: (a.role, a.retrieval, a.context) for k, a in ARMS.items()} == {
        "baseline": ("base", False, "none"), "rag": ("base", True, "retrieved"),
        "finetuned": ("finetuned", False, "none"), "hybrid": ("finetuned", True, "retrieved"),
        "longcontext": ("base", False, "all")}


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
        assert r.usage.context_tokens == (0 if ARMS[r.arm].context == "none" else r.usage.context_tokens) >= 0
        assert r.total_ms >= r.ttft_ms >= 0
    assert by["rag"].usage.context_tokens > 50 and by["baseline"].usage.context_tokens == 0
    # the long-context arm read the whole knowledge base: far more context than three sources
    assert by["longcontext"].usage.context_tokens > 10 * by["rag"].usage.context_tokens
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


class _Reports:
    """A provider that counts with tiktoken (like OpenAICompatible) and reports a fixed prompt total."""

    def __init__(self, kind, prompt_tokens, count=None):
        self.spec = ModelSpec(kind, "gpt-4o-mini")
        self.kind = kind
        self.prompt_tokens = prompt_tokens
        self.count = count

    def count_tokens(self, text):
        from lib.tokens import count_openai

        return self.count(text) if self.count else count_openai(text, "gpt-4o-mini")

    def stream(self, messages, params):
        yield Started()
        yield Delta("Forty-five days [1].")
        yield Done("stop", self.prompt_tokens, 5)


SRC = [Source("refund_policy.md", 0, 0.8, "Refunds are accepted within 45 days of delivery. " * 20)]


@pytest.mark.parametrize("reported", [40, 200, 1000])
def test_token_parts_never_negative_and_sum_to_the_reported_total(reported):
    """A server whose tokenizer differs from ours (fewer or more tokens than we count): the parts are scaled."""
    u = run_arm(ARMS["rag"], _Reports("openai", reported), "How long?", SRC, GenParams()).usage
    assert u.prompt_tokens == reported and sum(u.parts.values()) == reported
    assert min(u.parts.values()) >= 0 and u.parts_estimated
    assert u.counted_prompt_tokens > 200 and u.context_tokens > u.system_tokens  # proportions kept


def test_token_parts_are_exact_when_the_totals_agree():
    from lib.tokens import count_chat

    ours = count_chat(build_prompt("How long?", SRC).messages(), "gpt-4o-mini")
    u = run_arm(ARMS["rag"], _Reports("openai", ours), "How long?", SRC, GenParams()).usage
    assert not u.parts_estimated and u.counted_prompt_tokens is None
    assert u.overhead_tokens == ours - u.system_tokens - u.context_tokens - u.question_tokens > 0


def test_local_model_template_is_what_remains_and_parts_scale_only_if_they_overshoot():
    u = run_arm(ARMS["rag"], _Reports("local", 600, count=lambda t: len(t.split())), "How long?", SRC,
                GenParams()).usage
    assert not u.parts_estimated and u.overhead_tokens == 600 - u.system_tokens - u.context_tokens - u.question_tokens
    u = run_arm(ARMS["rag"], _Reports("local", 100, count=lambda t: len(t.split())), "How long?", SRC,
                GenParams()).usage
    assert u.parts_estimated and sum(u.parts.values()) == 100 and min(u.parts.values()) >= 0


def test_apportion_sums_exactly():
    from lib.arms import apportion

    assert sorted(apportion(10, [1, 1, 1])) == [3, 3, 4]
    assert apportion(7, [0, 0, 0]) == [0, 0, 7] and apportion(0, [5, 5]) == [0, 0]
    assert sum(apportion(673, [40, 820, 12, 24])) == 673


# ---------------------------------------------------------------- the long-context arm (issue 22)

def test_long_context_prompt_holds_every_document_in_a_stable_order_with_its_name():
    from lib.arms import SYSTEM_LONG_CONTEXT, build_prompt_all

    docs = (Source("a.md", 0, 1.0, "Alpha text."), Source("b.md", 0, 1.0, "Beta text."))
    p = build_prompt_all("What?", docs)
    assert p.system == SYSTEM_LONG_CONTEXT and "Cite the document" in p.system
    assert p.context.index("[1] a.md\nAlpha text.") < p.context.index("[2] b.md\nBeta text.")
    assert p.question == "Question: What?"


def test_long_context_arm_gets_the_whole_knowledge_base_and_cites_documents(fake_settings, fake_provider, tmp_path,
                                                                            embedder):
    (tmp_path / "b.md").write_text("The warranty lasts 7 years.")
    (tmp_path / "a.md").write_text("Refunds within 45 days.")
    kb = engine.open_kb(fake_settings, "small", embedder=embedder)
    engine.ingest_paths(kb, [tmp_path / "a.md", tmp_path / "b.md"])
    fake_provider.enqueue("45 days [1].")
    c = engine.ask(fake_settings, "How long for refunds?", ["longcontext"], kb, GenParams(max_tokens=32))
    [r] = c.results
    assert r.arm == "longcontext" and r.error is None and r.answer == "45 days [1]."
    assert [s.document for s in r.sources] == ["a.md", "b.md"]  # every document, by name
    _, messages, _ = fake_provider.history[-1]
    assert "Refunds within 45 days." in messages[1]["content"] and "The warranty lasts 7 years." in messages[1]["content"]
    assert r.retrieval_ms == 0.0 and c.sources == ()  # no retrieval ran


def test_long_context_arm_refuses_a_knowledge_base_that_does_not_fit_without_asking(openai_server, settings,
                                                                                     tmp_path, embedder):
    from lib import gateway
    from lib.arms import ARMS, run_arm

    s = settings.with_overrides(openai_api_key="sk-test-window", openai_base_url=openai_server.base_url,
                                base=ModelSpec("openai", "tiny-window"), context_windows=(("tiny-window", 300),))
    provider = gateway.provider(s, s.base, "base")
    docs = tuple(Source(f"d{i}.md", 0, 1.0, "Refunds are possible within 45 days of delivery. " * 20)
                 for i in range(3))
    before = len(openai_server.requests)
    r = run_arm(ARMS["longcontext"], provider, "How long?", None, GenParams(max_tokens=64), documents=docs,
                windows=s.context_windows)
    assert len(openai_server.requests) == before  # the model was not called
    assert r.error and "does not fit" in r.error and "the window is 300 tokens" in r.error
    assert f"{r.usage.prompt_tokens:,} tokens" in r.error and r.usage.completion_tokens == 0
    # a window large enough: the model is asked
    openai_server.reply_fn = lambda body: "45 days [1]."
    ok = run_arm(ARMS["longcontext"], provider, "How long?", None, GenParams(max_tokens=64), documents=docs,
                 windows=(("tiny-window", 100_000),))
    assert ok.error is None and ok.answer == "45 days [1]." and len(openai_server.requests) == before + 1


@pytest.mark.slow
def test_long_context_arm_on_the_local_model_fits_a_small_knowledge_base_and_refuses_the_sample(settings, tmp_path,
                                                                                                embedder,
                                                                                                sample_kb_dir):
    """The local model's own window (8,192 tokens for SmolLM2-135M, from its GGUF): two short documents fit and are
    answered; the 15 sample documents (about 9,200 tokens) do not, and the model is not asked."""
    (tmp_path / "a.md").write_text("The Zorblat warranty lasts 7 years from purchase.")
    (tmp_path / "b.md").write_text("Zorblat units weigh 12 kg and ship in one box.")
    kb = engine.open_kb(settings, "small", embedder=embedder)
    engine.ingest_paths(kb, [tmp_path / "a.md", tmp_path / "b.md"])
    c = engine.ask(settings, "How long is the Zorblat warranty?", ["longcontext"], kb, GenParams(max_tokens=24))
    [r] = c.results
    assert r.error is None and r.answer and r.usage.completion_tokens > 0
    assert [s.document for s in r.sources] == ["a.md", "b.md"]
    sample = dataclasses.replace(settings, data_dir=sample_kb_dir)
    big = engine.open_kb(sample, embedder=embedder, create=False)
    [r] = engine.ask(sample, "How long is the refund window?", ["longcontext"], big, GenParams(max_tokens=24)).results
    assert r.error and "does not fit" in r.error and "the window is 8,192 tokens" in r.error
    assert "GGUF" in r.error and r.usage.completion_tokens == 0 and r.usage.prompt_tokens > 8192
