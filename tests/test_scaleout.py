"""Scale-out parts for real: a Chroma server (`chroma run`) and an OpenAI-compatible model server (the test
server stands in for vLLM / llama.cpp server / Ollama, with a LoRA model name for the fine-tuned role)."""

from __future__ import annotations

import pytest

from lib import engine, evalrun
from lib.settings import load_settings
from lib.store import list_knowledge_bases
from tests.conftest import SAMPLE_DOCS
from tests.test_workspace import chroma_server  # noqa: F401 - the fixture that starts `chroma run`

LORA = "quillmere-lora"  # what vLLM serves with --enable-lora --lora-modules quillmere-lora=/path/to/adapter
BASE = "Qwen/Qwen2.5-0.5B-Instruct"


@pytest.fixture
def deployed(tmp_path, openai_server, chroma_server):  # noqa: F811
    """The README's tested configuration, read the way the app and the CLI read it: environment variables."""
    env = {"OPENAI_BASE_URL": openai_server.base_url, "OPENAI_API_KEY": "sk-model-server",
           "WORKBENCH_BASE_MODEL": BASE, "WORKBENCH_FT_MODEL": LORA, "WORKBENCH_CHROMA_HOST": chroma_server,
           "WORKBENCH_WORKSPACE": "team-2", "WORKBENCH_DATA_DIR": str(tmp_path / "data")}
    settings = load_settings(env=env, secrets_file=None)
    engine.create_workspace(settings, "team-2")
    return settings


def _reply(body):
    prompt = body["messages"][-1]["content"]
    return "45 days [1]." if "Sources:" in prompt else "Thirty days."


def test_ingest_compare_and_evaluate_against_a_chroma_server_and_a_model_server(deployed, openai_server, embedder):
    s = deployed
    assert (s.chroma_host, s.workspace, s.base.name, s.finetuned.name) == (s.chroma_host, "team-2", BASE, LORA)
    assert s.finetuned.provider == "openai" and s.base.provider == "openai"
    openai_server.reply_fn = _reply
    kb = engine.open_kb(s, "sample", embedder=embedder)
    results = engine.ingest_paths(kb, [SAMPLE_DOCS])
    assert [r for r in results if r.status == "error"] == [] and sum(r.status == "ingested" for r in results) >= 10
    # the knowledge base is on the server, in this workspace only
    assert list_knowledge_bases(engine.client_for(s)) == ["sample"]
    assert list_knowledge_bases(engine.client_for(s.with_overrides(workspace="default"))) == []
    import chromadb

    from lib.store import workspace_database

    host, port = s.chroma_host.split(":")
    remote = chromadb.HttpClient(host=host, port=int(port), database=workspace_database("team-2"))
    assert [c.name for c in remote.list_collections()] == ["sample"]

    comparison = engine.ask(s, "How long is the refund window?", ["baseline", "rag", "finetuned", "hybrid"], kb)
    assert [r.error for r in comparison.results] == [None] * 4
    assert comparison.sources and comparison.sources[0].document
    sent = {r["json"]["model"] for r in openai_server.requests_to("/chat/completions")}
    assert sent == {BASE, LORA}
    by_model = {}
    for r in openai_server.requests_to("/chat/completions"):
        by_model.setdefault(r["json"]["model"], []).append(r["json"]["messages"][-1]["content"])
    assert len(by_model[LORA]) == 2 and len(by_model[BASE]) == 2  # fine-tuned and hybrid went to the LoRA name

    ws = engine.workspace_for(s)
    run_id, _, _ = evalrun.start(s, ws, kb, "sample", ["rag", "hybrid"], "on-the-server", limit=3)
    progress = evalrun.resume(s, ws, kb, run_id)
    assert progress.done == progress.total == 6
    record, summary, _ = evalrun.summary(ws, "on-the-server")
    assert record.status == "finished" and record.spec.models["finetuned"] == LORA
    assert summary["rag"]["n"] == 3 and summary["hybrid"]["n"] == 3
    assert engine.workspace_for(s.with_overrides(workspace="default")).runs() == []
