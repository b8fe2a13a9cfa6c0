"""Evaluate page helpers in lib: generated and checked question sets, training overlap, exports, charts."""

from __future__ import annotations

import csv
import io
import json

import pytest

from lib import charts, engine, evalrun, evalsets
from lib.evaluate import summarise
from lib.providers import make_provider
from lib.records import Graded, Question, Source
from lib.settings import ModelSpec
from tests.conftest import ROOT


def _chunk(doc, n, text):
    return Source(doc, n, 1.0, text)


def test_generate_from_chunks_against_the_test_server(settings, openai_server):
    def reply(body):
        prompt = body["messages"][-1]["content"]
        if "refund" in prompt:
            return ('Here you go:\n```json\n[{"question": "How long is the refund window?", '
                    '"reference": "30 days from delivery"}, {"question": "", "reference": "x"}]\n```')
        if "parrot" in prompt:
            return '[{"question": "What is the parrot called?", "answer": "Juniper"}]'
        return "Sorry, I cannot help with that."

    openai_server.reply_fn = reply
    s = settings.with_overrides(openai_api_key="sk-test-gen", openai_base_url=openai_server.base_url, max_retries=0)
    seen = []
    rows, problems = evalsets.generate_from_chunks(
        [_chunk("refunds.md", 0, "Our refund window is 30 days from delivery."),
         _chunk("notes.md", 3, "The office parrot is called Juniper."),
         _chunk("misc.md", 1, "Nothing much here.")],
        make_provider(ModelSpec("openai", "gpt-4o-mini"), s), per_chunk=2, on_progress=lambda i, n: seen.append((i, n)))
    assert [(r["question"], r["reference"], r["source"]) for r in rows] == [
        ("How long is the refund window?", "30 days from delivery", "refunds.md"),
        ("What is the parrot called?", "Juniper", "notes.md")]
    assert all(r["answerable"] for r in rows) and len({r["id"] for r in rows}) == 2
    assert problems == ["misc.md chunk 1: the model's reply was not the JSON asked for"]
    assert seen == [(1, 3), (2, 3), (3, 3)]
    prompt = openai_server.requests_to("/chat/completions", "POST")[0]["json"]["messages"][-1]["content"]
    assert "2 question(s)" in prompt and "refunds.md" in prompt
    # generated rows are a valid question set
    assert [q.question for q in evalrun.questions_from_rows(rows)][0] == "How long is the refund window?"


def test_generation_failure_is_a_problem_not_a_crash(settings, openai_server):
    s = settings.with_overrides(openai_api_key="sk-test-gen", openai_base_url=openai_server.base_url, max_retries=0)
    rows, problems = evalsets.generate_from_chunks([_chunk("a.md", 0, "text")],
                                                   make_provider(ModelSpec("openai", "missing-model"), s))
    assert rows == [] and len(problems) == 1 and problems[0].startswith("a.md chunk 0: the model could not answer")


def test_training_questions_keep_the_question_without_its_sources(tmp_path):
    f = tmp_path / "train.jsonl"
    f.write_text("\n".join(json.dumps({"messages": m}) for m in [
        [{"role": "system", "content": "s"}, {"role": "user", "content": "Question: How long is the refund window?"},
         {"role": "assistant", "content": "30 days."}],
        [{"role": "user", "content": "Sources:\n[1] (from a.md)\nlots of text\n\nQuestion: Who signs expenses?"},
         {"role": "assistant", "content": "A manager [1]."}],
        [{"role": "user", "content": "What colour is the logo?"}],
    ]) + "\nnot json\n")
    assert evalsets.training_questions(f) == ["How long is the refund window?", "Who signs expenses?",
                                              "What colour is the logo?"]


def test_overlap_flags_exact_and_near_copies_only():
    training = ["How long is the refund window?", "Who approves travel expenses over $500?",
                "What colour is the company logo?"]
    qs = [Question("a", "how long is the refund window", ()),  # exact once normalised
          Question("b", "Who approves the travel expenses above $500?", ()),  # near
          Question("c", "When was the company founded?", ())]  # unrelated
    flagged = evalsets.overlap_with_training(qs, training)
    assert [(f[0], f[1], f[2]) for f in flagged] == [("a", training[0], "exact"), ("b", training[1], "near")]
    assert flagged[0][3] == 1.0 and evalsets.NEAR_COPY_RATIO <= flagged[1][3] < 1.0
    assert evalsets.overlap_with_training([{"id": "d", "question": training[2]}], training)[0][2] == "exact"


def test_the_shipped_adapter_is_checked_against_its_training_file(settings):
    ws = engine.workspace_for(settings)
    active = ws.active_model()
    assert active is not None and active.id == "shipped"
    found = evalsets.training_questions_for(active.spec, ws.models(), ROOT)
    assert found is not None and found[0] == active.name and len(found[1]) >= 100
    assert not any(q.startswith("Sources:") for q in found[1])
    trained = evalsets.overlap_with_training([Question("t", found[1][0], ())], found[1])
    assert trained[0][2] == "exact"
    # the sample set was kept apart from the training data (training/build_dataset.py checks the same)
    assert evalsets.overlap_with_training(evalrun.load_set(ws, "sample"), found[1]) == []
    # a hosted model's training file is an upload id, not a file here: nothing to check against
    assert evalsets.training_questions_for(ModelSpec("openai", "ft:x"), ws.models()) is None


def test_edited_rows_are_checked_like_uploads():
    good, bad = evalsets.check_rows([
        {"question": "How long?", "reference": "30 days", "keywords": "30; days", "source": "", "answerable": True},
        {"question": "", "reference": "", "keywords": "", "source": "", "answerable": True},  # an empty new row
        {"question": "Revenue?", "reference": "", "keywords": "", "source": "", "answerable": False},
        {"question": "No reference?", "reference": "", "keywords": None, "source": None, "answerable": True},
    ])
    assert [r["question"] for r in good] == ["How long?", "Revenue?"] and good[0]["keywords"] == ["30", "days"]
    assert [(b["line"], b["error"]) for b in bad] == [(4, "an answerable question needs a 'reference' (or 'keywords')")]
    assert evalsets.editor_rows(good)[0]["keywords"] == "30; days"
    assert [r["id"] for r in good] == ["q001", "q003"]  # numbered by row when the table gives none
    kept, _ = evalsets.check_rows([{"id": "q002", "question": "A?", "reference": "a"},
                                   {"id": "", "question": "B?", "reference": "b"}])  # row 2 would be q002 too
    assert [r["id"] for r in kept] == ["q002", "q001"]


def _graded():
    q1 = Question("q01", "How long?", ("30",), "30 days", "a.md")
    q2 = Question("q02", "Revenue?", (), "", "", answerable=False)
    return [
        Graded(q1, "rag", "30 days [1]", True, True, False, None, 120.0, score=1.0, reason="30 days matches",
               citation_ok=True, retrieval_hit=True, cost_usd=0.0001, prompt_tokens=50, completion_tokens=5),
        Graded(q1, "finetuned", "I do not know.", False, False, False, None, 80.0, refused=True, reason="refused",
               cost_usd=0.0002, prompt_tokens=20, completion_tokens=4),
        Graded(q2, "rag", "I do not know.", True, False, False, None, 100.0, score=1.0, refused=True,
               reason="correctly refused", cost_usd=0.0001, prompt_tokens=40, completion_tokens=4),
        Graded(q2, "finetuned", "", False, False, False, "TimeoutError: slow", None, reason="error"),
    ]


def test_export_rows_one_per_question_and_arm_with_grade_fields():
    graded = _graded()
    rows = evalrun.export_rows(graded)
    assert len(rows) == 4 and list(rows[0]) == list(evalrun.EXPORT_COLUMNS)
    assert rows[1]["refused"] is True and rows[1]["correct"] is False and rows[3]["error"].startswith("Timeout")
    parsed = list(csv.DictReader(io.StringIO(evalrun.export_csv(graded))))
    assert [(r["question_id"], r["arm"], r["correct"]) for r in parsed] == [
        ("q01", "rag", "True"), ("q01", "finetuned", "False"), ("q02", "rag", "True"), ("q02", "finetuned", "False")]


def test_eval_charts_carry_the_numbers():
    graded = _graded()
    summary = summarise(graded)
    fig = charts.eval_accuracy(summary)
    bar = fig.data[0]
    assert list(bar.x) == ["RAG", "Fine-tuned"] and list(bar.y) == [100.0, 0.0]
    low, high = summary["rag"]["accuracy_ci95"]
    assert bar.error_y.arrayminus[0] == pytest.approx(100 - low * 100)
    assert bar.error_y.array[0] == pytest.approx(high * 100 - 100)
    assert bar.error_y.array[1] == pytest.approx(summary["finetuned"]["accuracy_ci95"][1] * 100)

    cost = charts.eval_accuracy_vs_cost(summary)
    assert [t.name for t in cost.data] == ["RAG", "Fine-tuned"] and cost.layout.xaxis.range[0] == 0
    assert cost.data[0].x[0] == pytest.approx(0.0001) and cost.layout.yaxis.range[0] == 0

    local = {a: {**s, "cost_per_question_usd": 0.0} for a, s in summary.items()}
    zero = charts.eval_accuracy_vs_cost(local)
    assert tuple(zero.layout.xaxis.range) == (0, 1) and "no per-token charge" in zero.layout.annotations[0].text
    assert zero.data[0].text[0] == "RAG" and zero.data[0].textposition == "middle right"  # named beside it
    unknown = charts.eval_accuracy_vs_cost({**summary, "rag": {**summary["rag"], "cost_per_question_usd": None}})
    assert "no price known for RAG" in unknown.layout.title.text and len(unknown.data) == 1

    lat = charts.eval_latency(graded)
    assert [(t.type, t.name, list(t.y)) for t in lat.data] == [("box", "RAG", [0.12, 0.1]),
                                                               ("box", "Fine-tuned", [0.08])]  # seconds
    assert lat.layout.yaxis.ticksuffix == " s"

    grid = charts.eval_grid(graded)
    cells = {t.name: [(y, x, tuple(c)) for x, y, c in zip(t.x, t.y, t.customdata)] for t in grid.data}
    assert cells == {"pass": [("q01", "RAG", ("q01", "rag")), ("q02", "RAG", ("q02", "rag"))],
                     "refused": [("q01", "Fine-tuned", ("q01", "finetuned"))],
                     "error": [("q02", "Fine-tuned", ("q02", "finetuned"))]}
    assert [t.marker.color for t in grid.data] == [charts.GRID_COLORS[k] for k in ("pass", "refused", "error")]
    assert list(grid.data[1].text) == ["refused"] and list(grid.layout.yaxis.categoryarray) == ["q01", "q02"]
