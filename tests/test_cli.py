import json
import re
import subprocess
import sys

import pytest

from lib.__main__ import main
from tests.conftest import ROOT, SAMPLE_DOCS

KEYS = {"arm", "model", "answer", "sources", "usage", "usage_source", "cost_usd", "ttft_ms", "total_ms", "error"}


def _lines(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_ingest_is_idempotent_and_per_file(tmp_path, capsys):
    data = tmp_path / "d"
    assert main(["ingest", str(SAMPLE_DOCS), "--data-dir", str(data), "--json"]) == 0
    first = _lines(capsys)
    ingested = [r for r in first if r["status"] == "ingested"]
    assert len(ingested) >= 10 and all(r["chunks"] > 0 and r["tokens"] > 0 and r["error"] is None for r in ingested)
    assert {"file", "status", "chunks", "tokens", "error"} <= set(first[0])
    assert main(["ingest", str(SAMPLE_DOCS), "--data-dir", str(data), "--json"]) == 0
    assert {r["status"] for r in _lines(capsys) if r["status"] != "skipped"} == {"unchanged"}


def test_bad_files_fail_alone(tmp_path, capsys):
    (tmp_path / "good.md").write_text("The office cat is called Pixel.")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 nonsense")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 4)
    data = tmp_path / "d"
    code = main(["ingest", str(tmp_path / "good.md"), str(tmp_path / "empty.txt"), str(tmp_path / "broken.pdf"),
                 str(tmp_path / "binary.txt"), "--data-dir", str(data), "--json"])
    assert code == 1
    by = {r["file"]: r for r in _lines(capsys)}
    assert by["good.md"]["status"] == "ingested"
    for bad in ("empty.txt", "broken.pdf", "binary.txt"):
        assert by[bad]["status"] == "error" and by[bad]["error"] and by[bad]["chunks"] == 0
    assert main(["list", "--data-dir", str(data), "--json"]) == 0
    assert [r["document"] for r in _lines(capsys)] == ["good.md"]


def test_list_and_remove(tmp_path, capsys):
    doc = tmp_path / "a.md"
    doc.write_text("Alpha.")
    data = str(tmp_path / "d")
    main(["ingest", str(doc), "--data-dir", data])
    capsys.readouterr()
    assert main(["remove", "a.md", "--data-dir", data, "--json"]) == 0
    assert _lines(capsys) == [{"document": "a.md", "removed_chunks": 1}]
    assert main(["remove", "a.md", "--data-dir", data]) == 1
    assert "no document named a.md" in capsys.readouterr().out
    assert main(["kbs", "--data-dir", data, "--json"]) == 0
    assert {"collection": "default"} in _lines(capsys)


def test_asking_an_unknown_collection_says_how(tmp_path, capsys):
    assert main(["ask", "q?", "--collection", "nothing-here", "--data-dir", str(tmp_path), "--json"]) == 2
    assert "No knowledge base" in _lines(capsys)[0]["error"]


def test_ask_hosted_json_lines(sample_kb_dir, openai_server, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-cli")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("WORKBENCH_BASE_MODEL", "gpt-4o-mini")
    monkeypatch.setenv("WORKBENCH_FT_MODEL", "ft:gpt-4o-mini-2024-07-18:acme::abc123")
    openai_server.reply = "45 days [1]"
    code = main(["ask", "How long is the refund window?", "--arms", "baseline,rag,finetuned,hybrid",
                 "--data-dir", str(sample_kb_dir), "--top-k", "2", "--json"])
    out = _lines(capsys)
    assert code == 0
    assert [r["arm"] for r in out] == ["baseline", "rag", "finetuned", "hybrid"]
    for r in out:
        assert KEYS <= set(r) and r["error"] is None and r["usage_source"] == "provider"
        assert {"prompt_tokens", "completion_tokens", "context_tokens"} <= set(r["usage"])
    by = {r["arm"]: r for r in out}
    assert len(by["rag"]["sources"]) == 2 and by["baseline"]["sources"] == []
    assert by["rag"]["usage"]["context_tokens"] > 0 and by["baseline"]["usage"]["context_tokens"] == 0
    # the fine-tuned model is priced as a fine-tuned model: twice the base price of gpt-4o-mini
    ratio = by["finetuned"]["cost_usd"] / by["baseline"]["cost_usd"]
    assert ratio == pytest.approx(2.0, rel=0.01)
    from lib.workspace import Workspace

    ws = Workspace(sample_kb_dir, "default")
    saved, bad = ws.comparisons("default")
    assert bad == 0 and saved[-1].question == "How long is the refund window?"
    assert [r.arm for r in saved[-1].results] == [r["arm"] for r in out]
    # one serialised shape: what the CLI printed is what the workspace stored
    assert saved[-1].to_dict()["results"][1] == out[1]
    ws.clear_history("default")


@pytest.mark.slow
def test_local_model_end_to_end(tmp_path):
    """The real local model (llama.cpp) answers, and the RAG answer cites a retrieved source."""
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
    run = lambda *a: subprocess.run([sys.executable, "-m", "lib", *a, "--data-dir", str(tmp_path / "d"), "--json"],
                                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    ingest = run("ingest", str(SAMPLE_DOCS))
    assert ingest.returncode == 0, ingest.stderr
    ask = run("ask", "How long is the refund window?", "--arms", "baseline,rag", "--max-tokens", "80", "--top-k", "4")
    assert ask.returncode == 0, ask.stderr
    by = {r["arm"]: r for r in map(json.loads, ask.stdout.splitlines())}
    for r in by.values():
        assert r["error"] is None and r["answer"].strip()
        assert r["usage_source"] == "provider" and r["cost_usd"] == 0
        assert r["usage"]["completion_tokens"] > 0
    rag = by["rag"]
    assert rag["sources"] and rag["usage"]["context_tokens"] > 0
    assert any(src["document"] == "refund_policy.md" for src in rag["sources"])
    # Grounded in a retrieved source: the refund policy's 45 days. The 135M base model seldom
    # writes [n] markers (the fine-tuned adapter is trained to); any marker it writes must be valid.
    assert "45" in rag["answer"], rag["answer"]
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", rag["answer"])}
    assert cited <= set(range(1, len(rag["sources"]) + 1)), rag["answer"]


def test_grade_prints_one_json_line_per_answer(tmp_path, capsys):
    rows = [
        {"question": "How long is the refund window?", "reference": "30 days", "answer": "Thirty days [1]."},
        {"question": "Default?", "reference": "50", "answer": "100 by default, or sometimes 50."},
        {"question": "Does it grant patent rights?", "reference": "No, it does not grant patent rights.",
         "answer": "Yes, it grants patent rights."},
        {"question": "How long is the refund window?", "reference": "30 days", "keywords": ["30"],
         "answer": "I do not know."},
        {"question": "What is the CEO's shoe size?", "reference": "", "answerable": False, "answer": "Size 44."},
        {"question": "What is the CEO's shoe size?", "reference": "", "answerable": False,
         "answer": "The documents do not mention it."},
    ]
    f = tmp_path / "answers.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["grade", str(f), "--json", "--no-embedder"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["correct"] for o in out] == [True, False, False, False, False, True]
    assert [o["refused"] for o in out] == [False, False, False, True, False, True]
    for o in out:
        assert set(o) >= {"correct", "score", "refused", "reason"} and 0 <= o["score"] <= 1 and o["reason"]
    assert "conflicting" in out[1]["reason"] and "fabrication" in out[4]["reason"]


def test_grade_checks_citations_against_the_answers_claim_when_given_sources(tmp_path, capsys):
    sources = ["Refunds are accepted within 45 days of delivery. E-bikes: 21 days.", "The warranty lasts two years."]
    q = "How long is the refund window?"
    rows = [{"question": q, "reference": "45 days", "answer": "45 days [1].", "sources": sources},
            {"question": q, "reference": "45 days", "answer": "45 days [2].", "sources": sources},
            {"question": q, "reference": "45 days", "answer": "21 days [1].", "sources": sources},
            {"question": q, "reference": "45 days", "answer": "45 days [3].", "sources": sources},
            {"question": q, "reference": "45 days", "answer": "45 days.", "sources": sources},
            {"question": q, "reference": "45 days", "answer": "45 days [1]."},
            {"question": q, "reference": "45 days", "answer": "45 days [1].", "sources": "not a list"}]
    f = tmp_path / "answers.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["grade", str(f), "--json", "--no-embedder"]) == 1  # the last line is bad
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o.get("citations") for o in out[:6]] == ["correct", "wrong", "wrong", "wrong", "none", None]
    assert [o["correct"] for o in out[:6]] == [True, True, False, True, True, True]
    for o in out[:6]:  # the contract's fields are all there, as before
        assert set(o) >= {"correct", "score", "refused", "reason", "citations"}
    assert out[6]["line"] == 7 and "sources" in out[6]["error"]


def test_grade_reports_bad_lines_and_goes_on(tmp_path, capsys):
    f = tmp_path / "answers.jsonl"
    f.write_text('{"question": "q", "reference": "45 days", "answer": "45 days"}\nnot json\n{"question": "q"}\n')
    assert main(["grade", str(f), "--json", "--no-embedder"]) == 1
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert out[0]["correct"] is True
    assert out[1]["line"] == 2 and "not valid JSON" in out[1]["error"]
    assert out[2]["line"] == 3 and "answer" in out[2]["error"]
    assert main(["grade", str(tmp_path / "missing.jsonl"), "--json"]) == 2
    assert "does not exist" in capsys.readouterr().out


def test_eval_json_carries_failure_modes_and_ask_runs_the_long_context_arm(openai_server, sample_kb_dir, monkeypatch,
                                                                           capsys):
    """Issue 22's contract: per-answer `failure_mode` (null when correct), per-arm `failure_modes`; `ask --arms
    longcontext --json` gives an arm object `longcontext`, and one that does not fit says so without asking."""
    from lib.__main__ import main

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-failures")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    openai_server.reply_fn = lambda body: "I do not know." if "Documents:" in body["messages"][-1]["content"] \
        else "45 days [1]."
    common = ["--data-dir", str(sample_kb_dir), "--json"]
    assert main(["eval", "--limit", "3", "--arms", "rag,longcontext", "--run-name", "modes", *common]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    answers = [x for x in lines if "failure_mode" in x]
    assert len(answers) == 6 and {a["arm"] for a in answers} == {"rag", "longcontext"}
    for a in answers:
        assert (a["failure_mode"] is None) == a["correct"]
    # the long-context arm declined answerable questions whose source was in its prompt: not extracted
    assert {a["failure_mode"] for a in answers if a["arm"] == "longcontext"} == {"not_extracted"}
    summary = next(x for x in lines if "summary" in x)["summary"]
    assert summary["longcontext"]["failure_modes"] == {"not_extracted": 3}
    assert sum(summary["rag"]["failure_modes"].values()) == 3 - summary["rag"]["correct"]

    assert main(["ask", "How long is the refund window?", "--arms", "longcontext", *common]) == 0
    [arm] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert arm["arm"] == "longcontext" and arm["error"] is None
    asked = len(openai_server.requests)
    monkeypatch.setenv("WORKBENCH_CONTEXT_WINDOWS", "gpt-4.1-mini=2000")
    assert main(["ask", "How long is the refund window?", "--arms", "longcontext", *common]) == 1  # an arm failed
    [arm] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert arm["arm"] == "longcontext" and "does not fit" in arm["error"] and "the window is 2,000 tokens" in arm["error"]
    assert arm["usage"]["completion_tokens"] == 0 and arm["usage"]["prompt_tokens"] > 2000
    assert len(openai_server.requests) == asked  # not sent
