"""Workspaces: isolation, concurrent writers, damaged databases, migration from the first
release's files, per-workspace knowledge bases, embedder identity."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest

from lib import engine
from lib.db import MIGRATIONS, SCHEMA_VERSION
from lib.errors import ConfigError
from lib.finetune import FineTunedModel, shipped_model
from lib.history import rows
from lib.records import ArmResult, Comparison, GenParams, RetrievalParams, Source, Usage
from lib.store import list_knowledge_bases
from lib.workspace import Workspace, WorkspaceError, check_workspace_name, list_workspaces
from tests.conftest import ROOT


def _comparison(cid: str, question: str = "q?", collection: str = "default") -> Comparison:
    src = Source("a.md", 0, 0.9, "text")
    result = ArmResult("rag", "RAG", "m", "fake", "answer [1]", (src,), Usage(10, 2, 3, 4, 2, 1), "provider",
                       0.001, "price", 5.0, 20.0, 40.0, 0.0, "stop", None)
    return Comparison(cid, question, 1.0, collection, RetrievalParams(), GenParams(), (src,), 5.0, (result,))


def _model(mid: str, name: str = "mine") -> FineTunedModel:
    return FineTunedModel(id=mid, name=name, provider="openai", model=f"ft:gpt-4.1-mini:x::{mid}",
                          base_model="gpt-4.1-mini", created_at=1.0)


def test_names_are_checked_with_a_clear_rule():
    assert check_workspace_name("team-2") == "team-2"
    for bad in ("", "Alice", "a b", "-x", "x" * 33, "../etc", "ünï"):
        with pytest.raises(WorkspaceError, match="lower-case letters"):
            check_workspace_name(bad)


def test_schema_is_migrated_once_and_recorded(tmp_path):
    ws = Workspace(tmp_path, "default")
    assert ws.schema_version == SCHEMA_VERSION
    Workspace(tmp_path, "default")  # reopening applies nothing twice
    with sqlite3.connect(ws.db_path) as con:
        assert con.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_two_workspaces_in_one_data_folder_are_isolated(fake_settings, embedder):
    from lib.chunking import chunk_text
    from lib.documents import load_bytes

    alice_settings = replace(fake_settings, workspace="alice", finetuned=None)
    bob_settings = replace(fake_settings, workspace="bob", finetuned=None)
    alice, bob = engine.create_workspace(alice_settings, "alice"), engine.create_workspace(bob_settings, "bob")
    # documents: the same knowledge base name, different contents
    for s, text in ((alice_settings, "Alice's parrot is called Juniper."), (bob_settings, "Bob's cat is Pixel.")):
        kb = engine.open_kb(s, "default", embedder=embedder)
        doc = load_bytes("notes.md", text.encode())
        kb.add_document(doc, chunk_text(doc.text, embedder.spans))
    assert engine.open_kb(alice_settings, embedder=embedder).query("pet?", 5)[0].text.startswith("Alice")
    assert [s.text for s in engine.open_kb(bob_settings, embedder=embedder).query("pet?", 5)] == ["Bob's cat is Pixel."]
    assert engine.open_kb(replace(fake_settings, workspace="default"), embedder=embedder).count() == 0
    # history
    alice.add_comparison(_comparison("c1", "alice asks"))
    assert [c.question for c in alice.comparisons("default")[0]] == ["alice asks"]
    assert bob.comparisons("default") == ([], 0)
    # registry and active model
    alice.add_model(_model("m-alice"))
    assert engine.resolve_finetuned(alice_settings, alice).finetuned.name == "ft:gpt-4.1-mini:x::m-alice"
    shipped = shipped_model()
    assert bob.active_model() == shipped and [m.id for m in bob.models()] == [m.id for m in [shipped] if m]
    assert engine.resolve_finetuned(bob_settings, bob).finetuned == (shipped.spec if shipped else None)
    # an explicit setting (WORKBENCH_FT_MODEL) still wins over the workspace
    explicit = replace(alice_settings, finetuned=bob_settings.base)
    assert engine.resolve_finetuned(explicit, alice).finetuned == bob_settings.base
    # deleting a workspace deletes its knowledge bases and records, and nothing of the others'
    assert list_workspaces(fake_settings.data_dir) == ["alice", "bob", "default"]
    engine.delete_workspace(fake_settings, "bob")
    assert list_workspaces(fake_settings.data_dir) == ["alice", "default"]
    assert list_knowledge_bases(engine.client_for(alice_settings)) == ["default"]
    with pytest.raises(ConfigError, match="No workspace named 'bob'"):
        engine.workspace_for(bob_settings, create=False)
    with pytest.raises(ConfigError, match="cannot be deleted"):
        engine.delete_workspace(fake_settings, "default")


WRITER = textwrap.dedent("""
    import sys, threading
    sys.path.insert(0, {root!r})
    from tests.test_workspace import _comparison, _model
    from lib.workspace import Workspace

    data, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    failed = []
    def work(t):
        try:
            ws = Workspace(data, "default")
            for i in range(n):
                ws.add_comparison(_comparison(f"{{tag}}-{{t}}-{{i}}"))
                ws.add_model(_model(f"{{tag}}-{{t}}-{{i}}"))
        except BaseException as exc:  # a thread's error would otherwise vanish, and the process exit 0
            failed.append(f"thread {{t}}: {{type(exc).__name__}}: {{exc}}")
    threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    sys.exit("; ".join(failed) if failed else 0)
""")


def test_processes_and_threads_writing_at_once_lose_nothing(tmp_path):
    """4 processes x 3 threads x 10 comparisons and 10 model registrations, all at the same time."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(root=str(ROOT)))
    data = tmp_path / "data"
    procs = [subprocess.Popen([sys.executable, str(script), str(data), f"p{p}", "10"], stderr=subprocess.PIPE,
                              text=True) for p in range(4)]
    errors = [proc.communicate(timeout=300)[1] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), errors
    ws = Workspace(data, "default")
    comparisons, skipped = ws.comparisons()
    assert len(comparisons) == 120 and skipped == 0
    assert len({c.id for c in comparisons}) == 120
    registered = [m for m in ws.models() if not m.builtin]
    assert len(registered) == 120 and ws.active_model().id in {m.id for m in registered}


REGISTRAR = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from tests.test_workspace import _model
    from lib.workspace import Workspace

    ws = Workspace(sys.argv[1], "default")
    for i in range(int(sys.argv[3])):
        ws.add_model(_model(f"{{sys.argv[2]}}-{{i}}"))
""")


def test_model_registry_keeps_concurrent_registrations(tmp_path):
    """Issue 9 item 4: 4 processes x 15 registrations keep all 60; 8 threads x 10 keep all 80."""
    import threading

    script = tmp_path / "registrar.py"
    script.write_text(REGISTRAR.format(root=str(ROOT)))
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "p"), f"p{p}", "15"],
                              stderr=subprocess.PIPE, text=True) for p in range(4)]
    errors = [proc.communicate(timeout=300)[1] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), errors
    assert len([m for m in Workspace(tmp_path / "p", "default").models() if not m.builtin]) == 60

    def register(t):
        ws = Workspace(tmp_path / "t", "default")
        for i in range(10):
            ws.add_model(_model(f"t{t}-{i}"))

    Workspace(tmp_path / "t", "default")
    threads = [threading.Thread(target=register, args=(t,)) for t in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    registered = {m.id for m in Workspace(tmp_path / "t", "default").models() if not m.builtin}
    assert len(registered) == 80


def test_a_damaged_database_is_reported_and_preserved(tmp_path):
    ws = Workspace(tmp_path, "alice")
    ws.add_model(_model("m1"))
    damaged = b"this is not a SQLite database, but it is somebody's data" * 100
    ws.db_path.write_bytes(damaged)
    for path in ws.folder.glob("workspace.db-*"):  # WAL and shared-memory files of the good database
        path.unlink()
    with pytest.raises(WorkspaceError) as info:
        Workspace(tmp_path, "alice")
    assert str(ws.db_path) in str(info.value) and "left exactly as it is" in str(info.value)
    assert ws.db_path.read_bytes() == damaged  # never replaced by an empty database
    assert sorted(p.name for p in ws.folder.iterdir()) == ["workspace.db"]
    with pytest.raises(WorkspaceError):  # every later open says the same, and still changes nothing
        Workspace(tmp_path, "alice", create=True)
    assert ws.db_path.read_bytes() == damaged


def test_damaged_and_newer_records_are_skipped_and_counted(tmp_path):
    ws = Workspace(tmp_path, "default")
    ws.add_comparison(_comparison("good"))
    ws.add_model(_model("m1"))
    with sqlite3.connect(ws.db_path) as con:
        con.execute("INSERT INTO comparisons VALUES ('bad', 2.0, 'default', 'q', 1, '{not json')")
        newer = {**_comparison("newer").to_dict(), "version": 2}
        con.execute("INSERT INTO comparisons VALUES ('newer', 3.0, 'default', 'q', 2, ?)", (json.dumps(newer),))
        shape = {k: v for k, v in _comparison("shape").to_dict().items() if k != "retrieval"}
        con.execute("INSERT INTO comparisons VALUES ('shape', 4.0, 'default', 'q', 1, ?)", (json.dumps(shape),))
        con.execute("INSERT INTO models VALUES ('m2', 'x', 'openai', 5.0, 2, '{\"version\": 2, \"id\": \"m2\"}')")
        con.execute("INSERT INTO models VALUES ('m3', 'x', 'openai', 6.0, 1, 'garbage')")
    comparisons, skipped = ws.comparisons("default")
    assert [c.id for c in comparisons] == ["good"] and skipped == 3
    assert len(rows(comparisons)) == 1
    models, skipped = ws.models_report()
    assert [m.id for m in models if not m.builtin] == ["m1"] and skipped == 2


def test_a_newer_schema_is_refused_without_changes(tmp_path):
    ws = Workspace(tmp_path, "default")
    with sqlite3.connect(ws.db_path) as con:
        con.execute("INSERT INTO _migrations VALUES (?, 'from the future', 0)", (SCHEMA_VERSION + 1,))
    with pytest.raises(WorkspaceError, match="newer than this version"):
        Workspace(tmp_path, "default")


# A comparison line and models.json exactly as the first release (before workspaces) wrote them.
LEGACY_LINE = {
    "id": "0a1b2c3d4e5f", "question": "How long is the refund window?", "created_at": 1795000000.5,
    "collection": "default", "retrieval": {"top_k": 4, "min_score": 0.0},
    "params": {"temperature": 0.0, "max_tokens": 256, "stop": ["\nQuestion:"]}, "retrieval_ms": 12.5,
    "sources": [{"document": "refund_policy.md", "chunk": 0, "score": 0.71, "text": "Refunds within 45 days."}],
    "results": [{
        "arm": "rag", "label": "RAG", "model": "smollm2-135m-instruct", "provider": "local", "answer": "45 days [1]",
        "sources": [{"document": "refund_policy.md", "chunk": 0, "score": 0.71, "text": "Refunds within 45 days."}],
        "usage": {"prompt_tokens": 700, "completion_tokens": 5, "system_tokens": 40, "context_tokens": 640,
                  "question_tokens": 8, "overhead_tokens": 12, "cached_tokens": 0},
        "usage_source": "provider", "cost_usd": 0.0, "cost_note": "local model: no per-token price",
        "retrieval_ms": 12.5, "ttft_ms": 8000.1, "total_ms": 9400.2, "queued_ms": 0.0, "finish_reason": "stop",
        "error": None, "tokens_per_s": 3.6}],
}
LEGACY_MODELS = {"models": [{
    "id": "20261124-101010-abcdef", "name": "my-adapter", "provider": "local", "model": "smollm2-135m-instruct",
    "base_model": "SmolLM2-135M-Instruct", "lora": "/srv/data/adapters/20261124-101010-abcdef.gguf",
    "created_at": 1795000000.0, "training_file": "data/training/x/train.jsonl", "training_sha256": "ab" * 32,
    "examples": 12, "training_cost_usd": 0.0, "trained_on": [{"document": "a.md", "sha256": "cd" * 32}],
    "notes": "LoRA r=16, 60 steps, lr 0.001", "builtin": False}], "active": "20261124-101010-abcdef"}


def test_first_release_files_are_imported_once_and_kept(tmp_path):
    data = tmp_path / "data"
    (data / "history").mkdir(parents=True)
    second = {**LEGACY_LINE, "id": "ffffeeeedddd", "question": "Second?", "created_at": 1795000100.0}
    (data / "history" / "default.jsonl").write_text(
        json.dumps(LEGACY_LINE) + "\n" + json.dumps(second) + "\n" + '{"broken": \n' + '{"other": "shape"}\n')
    other = {**LEGACY_LINE, "id": "111122223333", "collection": "support-docs"}
    (data / "history" / "support-docs.jsonl").write_text(json.dumps(other) + "\n")
    (data / "models.json").write_text(json.dumps(LEGACY_MODELS))

    ws = Workspace(data, "default")
    assert ws.legacy_import["comparisons"] == 3 and ws.legacy_import["skipped_lines"] == 2
    assert ws.legacy_import["models"] == 1
    comparisons, skipped = ws.comparisons("default")
    assert [c.question for c in comparisons] == ["How long is the refund window?", "Second?"] and skipped == 0
    stored = comparisons[0].results[0].to_dict()  # every field of the first release's record reads back the same
    legacy = LEGACY_LINE["results"][0]
    assert {k: stored[k] for k in legacy if k != "usage"} == {k: v for k, v in legacy.items() if k != "usage"}
    assert {k: stored["usage"][k] for k in legacy["usage"]} == legacy["usage"]  # (later fields have defaults)
    assert rows(comparisons)[0]["context_tokens"] == 640
    assert [c.id for c in ws.comparisons("support-docs")[0]] == ["111122223333"]
    active = ws.active_model()
    assert active.id == "20261124-101010-abcdef" and active.trained_on == ({"document": "a.md", "sha256": "cd" * 32},)
    # the originals are kept, renamed, and not imported a second time
    assert sorted(p.name for p in (data / "history").iterdir()) == ["default.jsonl.imported",
                                                                    "support-docs.jsonl.imported"]
    assert json.loads((data / "models.json.imported").read_text()) == LEGACY_MODELS
    again = Workspace(data, "default")
    assert len(again.comparisons()[0]) == 3 and len([m for m in again.models() if not m.builtin]) == 1
    # other workspaces never import them
    assert Workspace(data, "alice").comparisons() == ([], 0)


def test_a_damaged_models_file_is_reported_and_left_in_place(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "models.json").write_text("{broken")
    ws = Workspace(data, "default")
    assert "could not be read" in ws.legacy_import["problems"][0]
    assert (data / "models.json").read_text() == "{broken"  # nothing silently lost
    assert [m for m in ws.models() if not m.builtin] == []


def test_a_local_job_whose_process_died_is_marked_failed(tmp_path):
    ws = Workspace(tmp_path, "default")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    ws.add_job("j1", "local", "adapter", {"steps": 5}, status="running", pid=proc.pid)
    [job] = ws.jobs()
    assert job.status == "failed" and "ended without reporting a result" in job.error
    ws.update_job("j1", status="running")  # a finished job is never reopened
    assert ws.job("j1").status == "failed"


def test_openai_embedders_differ_by_model_and_dimension(settings):
    from lib.embeddings import OpenAIEmbedder
    from lib.store import KnowledgeBase

    small, large = OpenAIEmbedder(None, "text-embedding-3-small"), OpenAIEmbedder(None, "text-embedding-3-large")
    assert small.identity() != large.identity() and "1536" in small.identity() and "3072" in large.identity()
    client = engine.client_for(settings)
    KnowledgeBase(client, "built-small", small)
    with pytest.raises(ConfigError) as info:
        KnowledgeBase(client, "built-small", large)
    assert "text-embedding-3-small" in str(info.value) and "text-embedding-3-large" in str(info.value)
    KnowledgeBase(client, "built-small", OpenAIEmbedder(None, "text-embedding-3-small"))  # the same one opens


def test_a_first_release_openai_collection_is_checked_by_model(settings):
    from lib.embeddings import OpenAIEmbedder
    from lib.store import KnowledgeBase

    client = engine.client_for(settings)
    client.create_collection("old-small", embedding_function=OpenAIEmbedder(None, "text-embedding-3-small"),
                             metadata={"embedder": "workbench-openai",
                                                    "embedder_model": "text-embedding-3-small"})
    with pytest.raises(ConfigError, match="text-embedding-3-small"):
        KnowledgeBase(client, "old-small", OpenAIEmbedder(None, "text-embedding-3-large"))
    KnowledgeBase(client, "old-small", OpenAIEmbedder(None, "text-embedding-3-small"))


def test_cli_workspaces_and_the_workspace_flag(tmp_path, capsys, monkeypatch):
    from lib.__main__ import main

    data = str(tmp_path / "d")
    lines = lambda: [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]  # noqa: E731
    assert main(["workspaces", "--data-dir", data, "--json"]) == 0
    assert lines() == [{"workspace": "default", "current": True}]
    assert main(["workspaces", "create", "alice", "--data-dir", data, "--json"]) == 0
    assert lines() == [{"workspace": "alice", "created": True}]
    assert main(["workspaces", "create", "alice", "--data-dir", data, "--json"]) == 2
    assert "already exists" in lines()[0]["error"]
    assert main(["workspaces", "create", "Not OK", "--data-dir", data, "--json"]) == 2
    assert "lower-case letters" in lines()[0]["error"]
    doc = tmp_path / "a.md"
    doc.write_text("Alpha is the first letter.")
    assert main(["ingest", str(doc), "--workspace", "alice", "--data-dir", data, "--json"]) == 0
    capsys.readouterr()
    assert main(["list", "--workspace", "alice", "--data-dir", data, "--json"]) == 0
    assert [r["document"] for r in lines()] == ["a.md"]
    assert main(["kbs", "--data-dir", data, "--json"]) == 0  # the default workspace has no knowledge base
    assert lines() == []
    assert main(["kbs", "--workspace", "alice", "--data-dir", data, "--json"]) == 0
    assert lines() == [{"collection": "default"}]
    monkeypatch.setenv("WORKBENCH_WORKSPACE", "alice")
    assert main(["list", "--data-dir", data, "--json"]) == 0
    assert [r["document"] for r in lines()] == ["a.md"]
    assert main(["workspaces", "--data-dir", data, "--json"]) == 0
    assert lines() == [{"workspace": "alice", "current": True}, {"workspace": "default", "current": False}]
    assert main(["list", "--workspace", "nobody", "--data-dir", data, "--json"]) == 2
    assert "No workspace named 'nobody'" in lines()[0]["error"]
    assert main(["jobs", "--data-dir", data, "--json"]) == 0 and lines() == []
    assert main(["workspaces", "delete", "alice", "--data-dir", data, "--json"]) == 0
    assert lines() == [{"workspace": "alice", "deleted": True}]
    monkeypatch.delenv("WORKBENCH_WORKSPACE")
    assert main(["workspaces", "--data-dir", data, "--json"]) == 0
    assert lines() == [{"workspace": "default", "current": True}]


def test_cli_jobs_follows_a_hosted_job(tmp_path, capsys, monkeypatch, openai_server):
    from lib import finetune, gateway
    from lib.__main__ import main
    from lib.settings import load_settings
    from tests.test_finetune import _many

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-jobs")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    data = tmp_path / "d"
    ws = Workspace(data, "default")
    settings = load_settings(secrets_file=None, data_dir=data)
    job = finetune.start_openai_job(gateway.fine_tuning(settings), _many(), "gpt-4.1-mini-2025-04-14", ws=ws)
    statuses = []
    for _ in range(6):
        assert main(["jobs", "--data-dir", str(data), "--json"]) == 0
        [row] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert row["id"] == job.id and row["kind"] == "openai"
        statuses.append(row["status"])
        if row["status"] == "succeeded":
            break
    assert statuses[-1] == "succeeded" and row["result"]["model"].startswith("ft:gpt-4.1-mini-2025-04-14")
    assert Workspace(data, "default").active_model().id == job.id


@pytest.mark.slow
def test_a_local_job_can_be_cancelled_from_anywhere_and_registers_nothing(tmp_path):
    import time

    from lib import finetune
    from tests.test_finetune import _many
    from tests.test_training import needs_training_deps

    needs_training_deps()
    ws = Workspace(tmp_path, "default")
    job_id = finetune.start_local_training(ws, _many(), "to-cancel", steps=500, rank=4)
    with pytest.raises(ConfigError, match="still running"):  # one local job at a time per workspace
        finetune.start_local_training(ws, _many(), "second", steps=5)
    deadline = time.time() + 120
    while time.time() < deadline and Workspace(tmp_path, "default").job(job_id).status == "starting":
        time.sleep(0.2)
    finetune.cancel_local_training(Workspace(tmp_path, "default"), job_id)  # another handle: any session
    while time.time() < deadline and not ws.job(job_id).finished:
        time.sleep(0.5)
    job = ws.job(job_id)
    assert job.status == "cancelled", (job.error, ws.job_log_tail(job_id, 2000))
    assert not ws.adapter_path(job_id).exists() and [m for m in ws.models() if not m.builtin] == []


@pytest.fixture
def chroma_server(tmp_path):
    """A real Chroma server (`chroma run`, from the chromadb package) on 127.0.0.1."""
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    chroma = ROOT / ".venv" / "bin" / "chroma"
    proc = subprocess.Popen([str(chroma), "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1)
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail("the Chroma server did not start")
                time.sleep(0.3)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_workspaces_scope_knowledge_bases_on_a_chroma_server_too(fake_settings, embedder, chroma_server):
    server = replace(fake_settings, chroma_host=chroma_server)
    alice = replace(server, workspace="alice")
    engine.create_workspace(alice, "alice")
    engine.open_kb(alice, "notes", embedder=embedder)
    engine.open_kb(server, "shared-name", embedder=embedder)
    assert list_knowledge_bases(engine.client_for(alice)) == ["notes"]
    assert list_knowledge_bases(engine.client_for(server)) == ["shared-name"]
    engine.delete_workspace(server, "alice")
    assert list_knowledge_bases(engine.client_for(replace(server, workspace="alice"))) == []
    assert list_knowledge_bases(engine.client_for(server)) == ["shared-name"]
