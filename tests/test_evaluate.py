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
    assert len(qs) >= 20 and all(q.keywords for q in qs)


def test_eval_cli_on_a_hosted_model(sample_kb_dir, openai_server, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-eval")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("WORKBENCH_FT_MODEL", "ft:gpt-4o-mini-2024-07-18:acme::x")
    openai_server.reply_fn = lambda body: ("45 days [1].\nReason: policy." if "Sources:" in
                                           body["messages"][-1]["content"] else "I am not sure.")
    assert main(["eval", "--limit", "1", "--arms", "baseline,rag", "--data-dir", str(sample_kb_dir), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    summary = lines[-1]["summary"]
    assert summary["rag"]["accuracy"] == 1.0 and summary["rag"]["cites"] == 1.0 and summary["rag"]["house_style"] == 1
    assert summary["baseline"]["accuracy"] == 0.0
    assert {x["arm"] for x in lines[:-1]} == {"baseline", "rag"}
