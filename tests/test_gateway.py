"""The one gateway: every hosted call site goes through lib/gateway.py (an AST scan of lib/, views/ and app.py),
nothing hosted escapes the caps (each path, with the caps already reached, sends nothing), OpenAI fine-tuning is
reserved at its estimated cost and settled when the job reports, and a configured key never reaches an endpoint
it was not configured with (a second OpenAI-compatible server on 127.0.0.1 logs every request's headers)."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from lib import engine, evalrun, evalsets, gateway
from lib.errors import CapReached
from lib.gateway import Ledger
from lib.settings import ModelSpec, WorkshopConfig, load_settings, typed_credentials
from tests.conftest import ROOT

# ---------------------------------------------------------------- the call sites

CLIENT_FACTORIES = {"openai_client", "make_provider", "OpenAICompatible", "OpenAI", "AzureOpenAI", "AsyncOpenAI",
                    "AsyncAzureOpenAI"}
RAW_API = re.compile(r"\.(chat\.completions|completions|embeddings|files|fine_tuning\.jobs|fine_tuning|responses|"
                     r"batches|uploads|models|images|audio|moderations)\.\w+$")
GATEWAY_FILES = {"lib/gateway.py", "lib/providers.py"}  # the gateway, and the client factory only it calls


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return f"{_dotted(node.func)}()"
    if isinstance(node, ast.Subscript):
        return f"{_dotted(node.value)}[]"
    return "?"


def hosted_call_sites(source: str) -> list[tuple[int, str]]:
    """(line, call) of every call in `source` that makes a hosted client or provider, or calls the hosted API."""
    sites = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        dotted = _dotted(node.func)
        name = dotted.rsplit(".", 1)[-1]
        if name in ("get", "items", "keys", "values"):  # a mapping (a run's `spec.models`), not an API resource
            continue
        if name in CLIENT_FACTORIES or RAW_API.search(dotted) or dotted.startswith("PROVIDERS[]"):
            sites.append((node.lineno, dotted))
    return sites


def _sources() -> Iterator[tuple[str, str]]:
    for path in sorted([*(ROOT / "lib").rglob("*.py"), *(ROOT / "views").glob("*.py"), ROOT / "app.py"]):
        yield str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")


def test_the_scan_finds_hosted_calls():
    """The scanner itself: it sees each kind of hosted call (so the test below can fail)."""
    sample = ("c = openai_client(s)\np = make_provider(spec, s)\nc.chat.completions.create(model='x')\n"
              "self.client.files.create(file=f)\nclient.fine_tuning.jobs.cancel('j')\nc.embeddings.create(input=[])\n"
              "PROVIDERS['openai'](spec, s)\nopenai.OpenAI(api_key='k')\nok = gateway.provider(s, spec)\n")
    assert [line for line, _ in hosted_call_sites(sample)] == [1, 2, 3, 4, 5, 6, 7, 8]


def test_every_hosted_call_site_goes_through_the_gateway():
    outside = {f"{name}:{line} {call}" for name, text in _sources() if name not in GATEWAY_FILES
               for line, call in hosted_call_sites(text)}
    assert outside == set(), "hosted calls that go around lib/gateway.py"
    inside = [call for name, text in _sources() if name == "lib/gateway.py" for _, call in hosted_call_sites(text)]
    assert len(inside) >= 8  # the gateway is where they are: streams, uploads, jobs, embeddings


# ---------------------------------------------------------------- nothing escapes the caps

@pytest.fixture
def capped_out(settings, openai_server):
    """Hosted settings with the total cap already reached (0)."""
    s = settings.with_overrides(openai_api_key="sk-test-gateway-key", openai_base_url=openai_server.base_url,
                                base=ModelSpec("openai", "gpt-4o-mini"), max_retries=0, request_timeout_s=5.0)
    return dataclasses.replace(s, workshop=WorkshopConfig(cap_total_usd=0.0))


def _chunks(n: int = 3) -> list[Any]:
    from types import SimpleNamespace

    return [SimpleNamespace(document="refunds.md", chunk=i, text=f"The refund window is {40 + i} days.")
            for i in range(n)]


def _examples(n: int = 10) -> list[dict[str, Any]]:
    return [{"messages": [{"role": "user", "content": f"Question {i}: how long is the refund window?"},
                          {"role": "assistant", "content": f"45 days.\nReason: policy {i}."}]} for i in range(n)]


def test_with_the_cap_reached_no_hosted_path_reaches_the_provider(capped_out, openai_server):
    ok, message = engine.connection_test(capped_out, "base")
    assert not ok and "Spend cap reached" in message
    rows, problems = evalsets.generate_from_chunks(_chunks(), gateway.provider(capped_out, capped_out.base))
    assert rows == [] and len(problems) == 1 and "Spend cap reached" in problems[0]  # stops at the first refusal
    from lib import finetune

    with pytest.raises(CapReached):
        finetune.generate_pairs(_chunks(), gateway.provider(capped_out, capped_out.base))
    with pytest.raises(CapReached, match="fine-tuning job"):
        gateway.fine_tuning(capped_out).start(None, _examples(), "gpt-4.1-mini-2025-04-14")
    with pytest.raises(CapReached):
        gateway.embeddings(capped_out).create("text-embedding-3-small", ["the refund window"])
    r = engine.ask(capped_out, "How long is the refund window?", ["baseline"]).results[0]
    assert "Spend cap reached" in (r.error or "")
    # an evaluation run with the LLM judge: answers and judge refused alike
    from lib.workspace import Workspace

    ws = Workspace(capped_out.data_dir)
    run_id, _, _ = evalrun.start(capped_out, ws, None, "sample", ["baseline"], limit=2, judge=True)
    evalrun.resume(capped_out, ws, None, run_id)
    assert openai_server.requests == []  # not one request of any kind left the app
    assert Ledger(capped_out.data_dir).spent() == 0


def test_the_judge_is_capped(settings, openai_server, fake_provider):
    """The LLM judge's requests are reserved and settled like answers (a local arm answers, the judge is hosted)."""
    s = settings.with_overrides(openai_api_key="sk-test-judge-key", openai_base_url=openai_server.base_url,
                                base=ModelSpec("openai", "gpt-4o-mini"), finetuned=ModelSpec("fake", "tuned"),
                                max_retries=0)
    s = dataclasses.replace(s, workshop=WorkshopConfig(cap_total_usd=1.0))
    openai_server.reply = '{"correct": true, "reason": "same"}'
    from lib.workspace import Workspace

    ws = Workspace(s.data_dir)
    run_id, _, _ = evalrun.start(s, ws, None, "sample", ["finetuned"], limit=2, judge=True)
    evalrun.resume(s, ws, None, run_id)
    judged = openai_server.requests_to("/chat/completions")
    assert len(judged) == 2 and all("REFERENCE" in json.dumps(r["json"]) for r in judged)
    settled, reserved = Ledger(s.data_dir).totals()
    assert settled > 0 and reserved == 0


def test_openai_fine_tuning_is_reserved_then_settled_at_the_trained_tokens(settings, openai_server):
    from lib.pricing import training_price_per_mtok
    from lib.workspace import Workspace

    s = settings.with_overrides(openai_api_key="sk-test-ft-key", openai_base_url=openai_server.base_url, max_retries=0)
    s = dataclasses.replace(s, workshop=WorkshopConfig(cap_total_usd=5.0))
    ws = Workspace(s.data_dir)
    api = gateway.fine_tuning(s)
    estimate = __import__("lib.finetune", fromlist=["x"]).estimate_training_cost(_examples(), "gpt-4.1-mini-2025-04-14")
    job = api.start(ws, _examples(), "gpt-4.1-mini-2025-04-14", suffix="gw")
    assert Ledger(s.data_dir).totals() == (0.0, pytest.approx(estimate["usd"]))  # reserved before it runs
    for _ in range(6):
        api.refresh(ws, ws.job(job.id))
        if ws.job(job.id).finished:
            break
    done = openai_server.jobs[job.id]
    assert ws.job(job.id).status == "succeeded" and done["trained_tokens"]
    settled, reserved = Ledger(s.data_dir).totals()
    assert reserved == 0 and settled == pytest.approx(done["trained_tokens"] * training_price_per_mtok(
        "gpt-4.1-mini-2025-04-14") / 1e6)
    api.refresh_all(ws)  # settling twice changes nothing
    assert Ledger(s.data_dir).totals()[0] == pytest.approx(settled)
    # a job that does not fit is refused before the upload
    tight = dataclasses.replace(s, workshop=WorkshopConfig(cap_total_usd=settled + estimate["usd"] / 2))
    uploads = len(openai_server.requests_to("/files", "POST"))
    with pytest.raises(CapReached, match="has spent"):
        gateway.fine_tuning(tight).start(ws, _examples(), "gpt-4.1-mini-2025-04-14")
    assert len(openai_server.requests_to("/files", "POST")) == uploads


def test_hosted_embeddings_are_settled_at_the_reported_usage(settings, openai_server):
    s = settings.with_overrides(openai_api_key="sk-test-emb-key", openai_base_url=openai_server.base_url)
    s = dataclasses.replace(s, workshop=WorkshopConfig(cap_total_usd=1.0))
    vectors = gateway.embeddings(s).create("text-embedding-3-small", ["the refund window", "is 45 days"])
    assert len(vectors) == 2
    settled, reserved = Ledger(s.data_dir).totals()
    assert settled > 0 and reserved == 0


# ---------------------------------------------------------------- keys stay with their endpoint

@pytest.fixture
def logging_server() -> Iterator[Any]:
    """A second OpenAI-compatible server: somebody's own, typed into the app. It logs every request's headers."""
    from tests.openai_server import FakeOpenAIServer

    server = FakeOpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()


HOST_KEY = "sk-host-secret-0123456789abcdef"


def _leaked(server: Any, key: str) -> list[str]:
    return [r["path"] for r in server.requests if key in json.dumps(r["headers"]) or key in json.dumps(r["query"])]


def test_the_configured_key_never_reaches_a_typed_base_url(tmp_path, openai_server, logging_server):
    configured = load_settings(env={"OPENAI_API_KEY": HOST_KEY, "OPENAI_BASE_URL": openai_server.base_url,
                                    "WORKBENCH_DATA_DIR": str(tmp_path / "data"), "WORKBENCH_BASE_MODEL":
                                    "gpt-4o-mini"}, secrets_file=None)
    assert engine.connection_test(configured)[0]  # the configured endpoint gets its key
    assert openai_server.requests[-1]["headers"]["authorization"] == f"Bearer {HOST_KEY}"
    typed = dataclasses.replace(configured, **typed_credentials("", logging_server.base_url, ""))
    assert typed.key_in_use() is None
    engine.connection_test(typed)
    engine.ask(typed, "How long is the refund window?", ["baseline"])
    evalsets.generate_from_chunks(_chunks(1), gateway.provider(typed, typed.base))
    gateway.embeddings(typed).create("text-embedding-3-small", ["x"])
    gateway.fine_tuning(typed).start(None, _examples(), "gpt-4.1-mini-2025-04-14")
    assert logging_server.requests, "the typed URL was asked (without a key)"
    assert _leaked(logging_server, HOST_KEY) == []
    assert {r["headers"].get("authorization") for r in logging_server.requests} == {"Bearer not-needed"}
    # clearing the URL does not send the key to OpenAI's own endpoint either: nothing is sent, it says why
    cleared = dataclasses.replace(configured, openai_base_url=None)
    ok, message = engine.connection_test(cleared)
    assert not ok and "only sent to the endpoint configured with it" in message and HOST_KEY not in message
    # a key typed with the URL goes there, and only there
    own = dataclasses.replace(configured, **typed_credentials("sk-participant-own-key-42", logging_server.base_url, ""))
    assert engine.connection_test(own)[0]
    assert logging_server.requests[-1]["headers"]["authorization"] == "Bearer sk-participant-own-key-42"
    assert _leaked(logging_server, HOST_KEY) == []


def test_an_azure_key_stays_with_its_endpoint(tmp_path, openai_server, logging_server):
    configured = load_settings(env={"AZURE_OPENAI_ENDPOINT": openai_server.url, "AZURE_OPENAI_API_KEY": HOST_KEY,
                                    "WORKBENCH_BASE_MODEL": "azure:my-deployment",
                                    "WORKBENCH_DATA_DIR": str(tmp_path / "data")}, secrets_file=None)
    assert engine.connection_test(configured)[0]
    typed = dataclasses.replace(configured, **typed_credentials("", "", logging_server.url))
    ok, message = engine.connection_test(typed)
    assert not ok and "No key for the Azure endpoint" in message
    assert logging_server.requests == []
    # the OpenAI key configured alongside an Azure endpoint is bound to that endpoint too
    both = load_settings(env={"AZURE_OPENAI_ENDPOINT": openai_server.url, "OPENAI_API_KEY": HOST_KEY,
                              "WORKBENCH_BASE_MODEL": "azure:dep"}, secrets_file=None)
    assert both.key_for_azure() == HOST_KEY
    assert dataclasses.replace(both, azure_endpoint=logging_server.url).key_for_azure() is None


def test_the_settings_page_sends_the_configured_key_nowhere_else(tmp_path, monkeypatch, openai_server,
                                                                 logging_server):
    """The attack of the issue, through the page: a participant types their own server's URL, applies, tests."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OPENAI_API_KEY", HOST_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("WORKBENCH_BASE_MODEL", "gpt-4o-mini")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("views/settings.py").run()
    at.text_input(key="settings_base_url").input(logging_server.base_url)
    at.button(key="settings_apply").click().run()
    at.button(key="settings_test_base").click().run()
    assert not at.exception
    assert logging_server.requests and _leaked(logging_server, HOST_KEY) == []
    shown = " ".join(str(e.value) for e in [*at.caption, *at.info, *at.markdown, *at.error, *at.success])
    assert HOST_KEY not in shown and "only sent to the endpoint configured with it" in shown.replace("\\", "")


def test_a_server_that_echoes_the_key_does_not_put_it_in_generation_warnings(settings, openai_server):
    """Evaluate's "Generate from the knowledge base" showed warnings ending in the key: not any more."""
    s = settings.with_overrides(openai_api_key=HOST_KEY, openai_base_url=openai_server.base_url, max_retries=0,
                                base=ModelSpec("openai", "echo-auth"))
    rows, problems = evalsets.generate_from_chunks(_chunks(2), gateway.provider(s, s.base))
    assert rows == [] and len(problems) == 2 and all("rejected" in p for p in problems)
    assert all(HOST_KEY not in p and HOST_KEY[3:] not in p for p in problems)
