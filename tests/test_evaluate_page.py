"""The Evaluate page through AppTest (from the router), against the OpenAI-compatible test server."""

from __future__ import annotations

import io
import json
import shutil

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from lib import engine, evalrun
from lib.settings import ModelSpec
from tests.conftest import ROOT

FT = "ft:gpt-4o-mini-2024-07-18:acme::x"


def _reply(body):
    prompt = body["messages"][-1]["content"]
    return "45 days [1]." if "Sources:" in prompt else "Thirty days."


@pytest.fixture
def hosted_app(tmp_path, monkeypatch, openai_server, sample_kb_dir):
    data = tmp_path / "data"
    shutil.copytree(sample_kb_dir, data)
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(data))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-evaluate")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["settings_overrides"] = {"base": ModelSpec("openai", "gpt-4o-mini"),
                                              "finetuned": ModelSpec("openai", FT), "max_retries": 0}
    at.run()
    at.switch_page("views/evaluate.py").run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def offline_app(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("views/evaluate.py").run()
    assert not at.exception, at.exception
    return at


def _draft_name(at):
    return next(t for t in at.text_input if str(t.key).startswith("eval_draft_name"))


def _frame(at, column):
    """The first table on the page with that column (AppTest does not keep a dataframe's key)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_sample_set_listed_and_generation_disabled_offline(offline_app):
    at = offline_app
    assert at.title[0].value == "Evaluate"
    assert at.selectbox(key="eval_set").value == "sample"
    table = _frame(at, "reference")
    assert len(table) == len(evalrun.load_set(None, "sample")) and (~table["answerable"]).sum() >= 1
    button = at.button(key="eval_generate")
    assert button.disabled and "set an API key in Settings" in button.help
    # the shipped adapter's training data is checked: the sample questions are not in it
    assert any("training data" in c.value for c in at.caption)
    assert any("No evaluation runs" in i.value for i in at.info)


def test_upload_shows_bad_rows_with_their_line_and_saves_the_rest(offline_app):
    at = offline_app
    csv = (b"question,reference,keywords,answerable\n"
           b"How long is the refund window?,30 days,30,true\n"
           b",no question here,,true\n"
           b"What was revenue in 2023?,,,false\n"
           b"How much can I spend on a hotel room in a big designated city on a work trip?,$265 per night,265,\n")
    at.file_uploader(key="eval_upload").set_value([("mine.csv", csv, "text/csv")]).run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any("Line 3" in e and "no 'question'" in e for e in errors), errors
    assert at.get("arrow_data_editor") or at.get("data_editor")
    # a question the shipped adapter was trained on is flagged
    assert any("training data" in w.value and "Quillmere" in w.value for w in at.warning)
    flagged = _frame(at, "training question")
    assert list(flagged["match"]) == ["exact"] and list(flagged["question id"]) == ["q005"]
    _draft_name(at).input("mine")
    at.button(key="eval_save").click().run()
    assert not at.exception, at.exception
    ws = engine.workspace_for(at.session_state["settings"])
    rows = ws.question_set("mine")
    assert [r["question"] for r in rows][:2] == ["How long is the refund window?", "What was revenue in 2023?"]
    assert [r["answerable"] for r in rows] == [True, False, True] and rows[0]["keywords"] == ["30"]
    assert "mine" in at.selectbox(key="eval_set").options
    assert at.selectbox(key="eval_set").value == "mine"  # the saved set is selected, and the Run tab names it
    assert any("Question set: **mine** (3 questions)" in m.value for m in at.markdown)
    at.switch_page("views/history.py").run()
    at.switch_page("views/evaluate.py").run()
    assert at.selectbox(key="eval_set").value == "mine"  # kept across pages
    # the same upload again under the same name: nothing is replaced without saying so
    at.file_uploader(key="eval_upload").set_value([("mine.csv", csv.replace(b"30 days", b"31 days"),
                                                    "text/csv")]).run()
    assert _draft_name(at).value == "mine" and at.button(key="eval_save").disabled
    at.checkbox(key="eval_replace").check().run()
    at.button(key="eval_save").click().run()
    assert ws.question_set("mine")[0]["reference"] == "31 days"


def test_a_run_completes_and_shows_per_arm_accuracy_charts_and_exports(hosted_app, openai_server):
    at = hosted_app
    openai_server.reply_fn = _reply
    assert not at.button(key="eval_generate").disabled
    at.pills(key="eval_arms").set_value(["baseline", "rag"])
    at.number_input(key="eval_limit").set_value(3)
    at.text_input(key="eval_run_name").input("page-run")
    at.button(key="eval_run").click().run()
    assert not at.exception, at.exception
    ws = engine.workspace_for(at.session_state["settings"])
    record = ws.run("page-run")
    assert record is not None
    handle = evalrun.running(ws, record.id)
    if handle is not None:
        handle.thread.join(60)
    at.run()
    assert not at.exception, at.exception
    assert ws.run("page-run").status == "finished"
    columns = at.multiselect(key="eval_columns")
    assert "cites none" in columns.options and "cites none" not in columns.value  # a compact table by default
    columns.set_value(list(columns.options)).run()  # the user picks every column
    table = _frame(at, "fabrication rate")
    assert list(table["arm"]) == ["Baseline", "RAG"]
    _, summary, _ = evalrun.summary(ws, "page-run")
    assert list(table["accuracy"]) == [summary["baseline"]["accuracy"], summary["rag"]["accuracy"]]
    assert list(table["correct"]) == [f"{summary[a]['correct']}/3" for a in ("baseline", "rag")]
    assert any("differences between arms" in c.value for c in at.caption)
    assert not any("135M" in w.value for w in at.warning)  # hosted models: no demo-model warning
    assert len(at.get("plotly_chart")) == 6  # accuracy, cost, citations, latency, failure modes, the grid
    # why answers were wrong: each (mode, arm) present is offered, and picking one lists its questions
    _, _, graded = evalrun.summary(ws, "page-run")
    wrong = {(g.failure_mode, g.arm) for g in graded if g.failure_mode}
    assert wrong and len(at.selectbox(key="eval_mode").options) == len(wrong)
    mode, arm = at.selectbox(key="eval_mode").value
    assert (mode, arm) in wrong
    listed = _frame(at, "rank in the top 20")
    assert sorted(listed["question id"]) == sorted(g.question.id for g in graded if (g.failure_mode, g.arm) == (mode, arm))
    # citations are claim-checked: the shares of answers citing a supporting source, a wrong one, none
    for column, key in (("cites supporting", "citations_correct"), ("cites wrong", "citations_wrong"),
                        ("cites none", "citations_none")):
        assert list(table[column]) == [summary["baseline"][key], summary["rag"][key]]
    assert summary["rag"]["citations_correct"] + summary["rag"]["citations_wrong"] + \
        summary["rag"]["citations_none"] == pytest.approx(1.0)
    # an answer opens with its grade reason and sources
    at.selectbox(key="eval_open").set_value(("q01", "rag")).run()
    assert any("45 days" in t.value for t in at.text)
    assert any(e.label.replace("\\", "").startswith("[1] ") for e in at.expander)  # names escaped
    assert at.download_button(key="eval_csv") and at.download_button(key="eval_json")
    frame = pd.read_csv(io.StringIO(evalrun.export_csv(evalrun.summary(ws, "page-run")[2])))
    assert len(frame) == 6 and {"correct", "score", "reason", "arm"} <= set(frame.columns)
    exported = evalrun.export_json(ws, "page-run")
    assert exported["run"]["name"] == "page-run" and len(exported["answers"]) == 6
    json.dumps(exported)

    # a second run where every answer cites "45 days": the page lists the questions whose grade changed
    openai_server.reply_fn = lambda body: "45 days [1]."
    at.text_input(key="eval_run_name").input("page-run-2")
    at.button(key="eval_run").click().run()
    second = ws.run("page-run-2")
    handle = evalrun.running(ws, second.id)
    if handle is not None:
        handle.thread.join(60)
    at.run()
    assert at.selectbox(key="eval_result_run").value == second.id
    at.selectbox(key="eval_other_run").set_value(record.id).run()
    changed = _frame(at, "before_answer")
    assert set(zip(changed["question_id"], changed["arm"])) == {("q01", "baseline")}


def test_generate_a_set_from_the_knowledge_base_review_and_save(hosted_app, openai_server):
    at = hosted_app
    openai_server.reply_fn = lambda body: '[{"question": "What does the passage say?", "reference": "Something."}]'
    at.multiselect(key="eval_gen_docs").set_value(["refund_policy.md"])
    at.button(key="eval_generate").click().run()
    assert not at.exception, at.exception
    ws = engine.workspace_for(at.session_state["settings"])
    chunks = len(engine.open_kb(at.session_state["settings"]).chunks_of("refund_policy.md"))
    assert len(openai_server.requests_to("/chat/completions", "POST")) == chunks
    assert any(f"Review ({chunks} questions" in h.value for h in at.subheader)
    _draft_name(at).input("generated")
    at.button(key="eval_save").click().run()
    rows = ws.question_set("generated")
    assert len(rows) == chunks and all(r["source"] == "refund_policy.md" for r in rows)


def test_a_run_stopped_by_a_restart_offers_resume(hosted_app, openai_server):
    at = hosted_app
    openai_server.reply_fn = _reply
    s = at.session_state["settings"]
    ws = engine.workspace_for(s)
    run_id, _, _ = evalrun.start(s, ws, engine.open_kb(s), "sample", ["baseline"], "stopped", limit=2)
    at.run()  # recorded as running, and no thread of this process answers it: a restart stopped it
    assert any("stopped at 0 of 2 answers" in w.value for w in at.warning)
    at.button(key=f"eval_resume_{run_id}").click().run()
    handle = evalrun.running(ws, run_id)
    if handle is not None:
        handle.thread.join(60)
    at.run()
    assert not at.exception, at.exception
    assert ws.run(run_id).status == "finished" and len(ws.answers(run_id)) == 2
    assert not any("stopped at" in w.value for w in at.warning)
    assert at.selectbox(key="eval_result_run").value == run_id


def test_runs_of_the_offline_demo_model_say_so(offline_app):
    at = offline_app
    s = at.session_state["settings"]
    assert s.base.provider == "local"
    ws = engine.workspace_for(s)
    evalrun.start(s, ws, None, "sample", ["baseline"], "demo", limit=1)  # recorded, not answered
    at.run()
    assert not at.exception, at.exception
    assert any("135M offline demo model" in w.value and "can invert" in w.value for w in at.warning)
    assert any("No answers stored" in i.value for i in at.info)


def test_the_demo_model_caveat_follows_the_models_the_run_used():
    """A run of hosted arms is not flagged because the fine-tuned role (unused) was the local model."""
    from tests.records import spec as run_spec

    spec = {"arms": ["rag"], "models": {"base": "gpt-4.1-mini", "finetuned": "smollm2-135m-instruct + LoRA x"},
            "providers": {"base": "openai", "finetuned": "local"}}
    assert evalrun.caveat({}, run_spec(**spec)) is None
    assert evalrun.caveat({"rag": {"model": "gpt-4.1-mini", "provider": "openai"}}, run_spec(**spec)) is None
    assert evalrun.caveat({}, run_spec(**{**spec, "arms": ["rag", "hybrid"]})) is not None
    assert evalrun.caveat({"hybrid": {"model": "smollm2-135m-instruct + LoRA x", "provider": "local"}}) is not None


def test_a_run_can_be_cancelled_and_resumed_from_the_page(hosted_app, openai_server):
    at = hosted_app
    openai_server.first_token_delay = 0.3
    at.pills(key="eval_arms").set_value(["baseline"])
    at.number_input(key="eval_limit").set_value(10)
    at.slider(key="eval_concurrency").set_value(1)
    at.text_input(key="eval_run_name").input("to-cancel")
    at.button(key="eval_run").click().run()
    ws = engine.workspace_for(at.session_state["settings"])
    run = ws.run("to-cancel")
    handle = evalrun.running(ws, run.id)
    assert handle is not None
    at.button(key=f"eval_cancel_{run.id}").click().run()
    assert handle.cancel.is_set()
    handle.thread.join(30)
    assert ws.run(run.id).status == "cancelled" and len(ws.answers(run.id)) < 10
    at.run()
    at.button(key="eval_resume_result").click().run()
    again = evalrun.running(ws, run.id)
    if again is not None:
        again.thread.join(60)
    assert ws.run(run.id).status == "finished" and len(ws.answers(run.id)) == 10


def test_a_judged_run_shows_the_judges_agreement_with_the_offline_grader(hosted_app, openai_server):
    at = hosted_app

    def reply(body):
        prompt = body["messages"][-1]["content"]
        if "You grade an answer" in prompt:
            return '{"correct": true, "reason": "same facts"}'
        return _reply(body)

    openai_server.reply_fn = reply
    settings = at.session_state["settings"]
    ws = engine.workspace_for(settings)
    kb = engine.open_kb(settings)
    run_id, _, _ = evalrun.start(settings, ws, kb, "sample", ["rag"], "judged-page", limit=2, judge=True)
    evalrun.resume(settings, ws, kb, run_id)
    at.run()
    if at.selectbox(key="eval_result_run").value != run_id:
        at.selectbox(key="eval_result_run").set_value(run_id).run()
    lines = [m.value for m in at.markdown if "LLM judge" in m.value]
    assert lines and "agreement 50%" in lines[0] and "judge accuracy 100%" in lines[0]
    # the one answer where they disagree is listed first for a spot check, with both verdicts
    disagree = _frame(at, "judge_reason")
    assert list(disagree["question_id"]) == ["q02"] and list(disagree["offline"]) == ["wrong"]
    assert list(disagree["judge"]) == ["correct"] and list(disagree["judge_reason"]) == ["same facts"]


def test_choices_survive_a_visit_to_another_page_and_defaults_match_compare(offline_app):
    at = offline_app
    s = at.session_state["settings"]
    # The same defaults as Compare (per provider), shown on the page.
    assert at.slider(key="eval_top_k").value == s.default_top_k == 1
    assert at.slider(key="eval_max_tokens").value == s.default_max_tokens == 96
    assert any(s.defaults_note in c.value for c in at.caption)
    at.pills(key="eval_arms").set_value(["rag"])
    at.slider(key="eval_top_k").set_value(3)
    at.slider(key="eval_max_tokens").set_value(160)
    at.text_input(key="eval_run_name").input("mine").run()
    at.switch_page("views/compare.py").run()
    assert not at.exception, at.exception
    assert at.slider(key="compare_top_k").value == 1 and at.slider(key="compare_max_tokens").value == 96
    at.switch_page("views/evaluate.py").run()
    assert not at.exception, at.exception
    assert list(at.pills(key="eval_arms").value) == ["rag"]
    assert at.slider(key="eval_top_k").value == 3 and at.slider(key="eval_max_tokens").value == 160
    assert at.text_input(key="eval_run_name").value == "mine"


def test_resume_with_other_models_is_refused_and_offers_a_new_run(hosted_app, openai_server):
    """Issue 18: a run stopped by a restart, resumed after the models changed, is not finished with the new ones:
    the page says what changed and offers to answer the rest in a new run, which then has the new models only."""
    at = hosted_app
    openai_server.reply_fn = _reply
    s = at.session_state["settings"]
    ws = engine.workspace_for(s)
    kb = engine.open_kb(s)
    old = s.with_overrides(base=ModelSpec("openai", "gpt-4.1-mini"))
    run_id, _, _ = evalrun.start(old, ws, kb, "sample", ["baseline"], "before", limit=3)
    ws.update_run(run_id, status="running")  # stopped by a restart, nothing answered yet
    at.run()
    at.button(key=f"eval_resume_{run_id}").click().run()
    assert not at.exception, at.exception
    refused = [e.value.replace("\\", "") for e in at.error if "cannot be resumed" in e.value.replace("\\", "")]
    assert refused and "gpt-4.1-mini" in refused[0] and "gpt-4o-mini" in refused[0]
    assert evalrun.running(ws, run_id) is None and ws.answers(run_id) == []  # nothing was asked
    at.button(key="eval_rerun_rest").click().run()
    assert not at.exception, at.exception
    new_id = at.session_state["eval_result_run"]
    handle = evalrun.running(ws, new_id)
    if handle is not None:
        handle.thread.join(60)
    assert new_id != run_id and len(ws.answers(new_id)) == 3
    assert {a.result.model for a in ws.answers(new_id)} == {"gpt-4o-mini"} and ws.answers(run_id) == []


def test_an_arm_that_never_answered_shows_no_made_up_figures_and_runs_compare_only_with_their_own_set(
        offline_app, tmp_path):
    """A long-context arm refused on every question (the knowledge base does not fit): no "0.00 s" latency, no
    cost, its errors shown, and the noise note counts the questions the other arms answered. "Compare with another
    run" offers only runs of the same question set on the same knowledge base."""
    from tests import records

    at = offline_app
    ws = engine.workspace_for(at.session_state["settings"])
    questions = [records.answer("rag", {"answer": "45 days", "total_ms": 900.0, "ttft_ms": 300.0}, {"correct": True},
                                qid=f"q{i}") for i in range(3)]
    failed = [records.answer("longcontext", {"error": "The knowledge base does not fit", "total_ms": None},
                             qid=f"q{i}") for i in range(3)]
    ws.create_run("r1", records.spec(name="main", question_set="sample", arms=["rag", "longcontext"],
                                     collection="sample", questions=3), [a.question for a in questions])
    ws.create_run("r2", records.spec(name="other-docs", question_set="mine.jsonl", arms=["rag"], collection="mine",
                                     questions=1), [])
    for a in [*questions, *failed]:
        ws.save_answer("r1", a)
    ws.save_answer("r2", records.answer("rag", {"answer": "x", "total_ms": 500.0}, qid="h1"))
    with ws.db.write() as con:  # both finished; r1 is the newer run
        con.execute("UPDATE eval_runs SET status = 'finished'")
        con.execute("UPDATE eval_runs SET created_at = created_at + 10 WHERE id = 'r1'")
    at.run()
    at.switch_page("views/evaluate.py").run()
    if at.selectbox(key="eval_result_run").value != "r1":
        at.selectbox(key="eval_result_run").set_value("r1").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    table = _frame(at, "95% interval").set_index("arm")
    assert pd.isna(table.loc["Long context", "p95 (s)"]) and table.loc["RAG", "p95 (s)"] == pytest.approx(0.9)
    assert table.loc["Long context", "cost / question"] == "–" and table.loc["Long context", "errors"] == 3
    assert not any("No questions graded yet" in c.value for c in at.caption)
    assert any("With 3 questions" in c.value for c in at.caption)
    assert "eval_other_run" not in [s.key for s in at.selectbox]
    assert any("No other run of question set" in c.value for c in at.caption)
