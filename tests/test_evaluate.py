import json

import pytest

from lib import evaluate
from lib.__main__ import main
from tests.conftest import SAMPLE_DOCS


@pytest.mark.parametrize(("answer", "keywords", "ok"), [
    ("The window is 45 days.", ["45"], True),
    ("It is 145 days.", ["45"], False),
    ("About 12 minutes", ["12"], True),
    ("Kept for 120 days", ["12"], False),
    ("Costs $1,250 per year", ["1250"], True),
    ("Battery: 612 Wh", ["612", "wh"], True),
    ("Battery: 612", ["612", "Wh"], False),
    ("RMA numbers start with RQ-", ["RQ-"], True),
    ("", ["45"], False),
])
def test_keyword_grading(answer, keywords, ok):
    assert evaluate.is_correct(answer, keywords) is ok


def test_house_style():
    assert evaluate.follows_house_style("45 days [1].\nReason: the refund policy says so.")
    assert not evaluate.follows_house_style("45 days.")
    assert not evaluate.follows_house_style("45 days.\nBecause.\nReason: x")


def test_questions_file_loads():
    qs = evaluate.load_questions(SAMPLE_DOCS / "questions.jsonl")
    answerable = [q for q in qs if q.answerable]
    assert len(answerable) >= 20 and all(q.keywords and q.answer and q.source for q in answerable)
    assert len(qs) - len(answerable) >= 5  # questions the documents do not answer, for fabrication


def test_eval_cli_on_a_hosted_model(sample_kb_dir, openai_server, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-eval")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("WORKBENCH_FT_MODEL", "ft:gpt-4o-mini-2024-07-18:acme::x")
    def reply(body):
        prompt = body["messages"][-1]["content"]
        if "Sources:" not in prompt:
            return "I am not sure."
        blocks = prompt.split("\n\n[")
        n = next(i for i, b in enumerate(blocks, 1) if "45 days" in b)  # cite the source that says it
        return f"45 days [{n}].\nReason: policy."

    openai_server.reply_fn = reply
    assert main(["eval", "--limit", "1", "--arms", "baseline,rag", "--data-dir", str(sample_kb_dir), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    summary = lines[-1]["summary"]
    assert summary["rag"]["accuracy"] == 1.0 and summary["rag"]["cites"] == 1.0 and summary["rag"]["house_style"] == 1
    assert summary["baseline"]["accuracy"] == 0.0 and summary["baseline"]["refusal_rate"] == 1.0
    assert summary["rag"]["citation_accuracy"] == 1.0 and summary["rag"]["retrieval_hit_rate"] == 1.0
    assert {x["arm"] for x in lines[:-1]} == {"baseline", "rag"}


def test_summary_has_intervals_fabrication_and_latency_percentiles():
    from lib.records import ArmResult, Source

    src = (Source("refund_policy.md", 0, 0.9, "Refunds within 45 days of delivery."),)

    def result(answer: str, ms: float) -> ArmResult:
        return ArmResult("rag", "RAG", "m", "local", answer, src, None, "provider", 0.0, "", 1.0, ms / 2, ms, 0.0,
                         "stop", None)

    ok = evaluate.Question("q1", "How long?", ("45",), "45 days", "refund_policy.md")
    unanswerable = evaluate.Question("u1", "Revenue?", (), "", "", answerable=False)
    graded = [evaluate.grade_result(ok, result("45 days [1].", 100)), evaluate.grade_result(ok, result("I don't know.", 300)),
              evaluate.grade_result(unanswerable, result("About 3 million [1].", 200))]
    s = evaluate.summarise(graded)["rag"]
    assert s["answerable"] == 2 and s["correct"] == 1 and s["accuracy"] == 0.5
    assert 0 < s["accuracy_ci95"][0] < 0.5 < s["accuracy_ci95"][1] < 1
    assert s["refusal_rate"] == 0.5 and s["fabrication_rate"] == 1.0
    assert s["citation_accuracy"] == 1.0 and s["retrieval_hit_rate"] == 1.0
    assert s["median_total_ms"] == 200 and 280 < s["p95_total_ms"] <= 300
    assert "±" in evaluate.noise_sentence(30)
