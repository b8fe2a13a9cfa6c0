"""Evaluation runs: stored per answer in the workspace, concurrent hosted arms, cancel and resume."""

import json
import threading
import time
from dataclasses import replace

import pytest

from lib import engine, evalrun
from lib.__main__ import main
from lib.settings import ModelSpec


@pytest.fixture
def hosted_settings(settings, openai_server):
    return settings.with_overrides(openai_api_key="sk-test-eval", openai_base_url=openai_server.base_url,
                                   base=ModelSpec("openai", "gpt-4o-mini"),
                                   finetuned=ModelSpec("openai", "ft:gpt-4o-mini-2024-07-18:acme::x"), max_retries=0)


def _reply(body):
    prompt = body["messages"][-1]["content"]
    if "Revenue" in prompt or "revenue" in prompt:
        return "I do not know."
    return "45 days [1]." if "Sources:" in prompt else "Thirty days."


def test_a_run_is_stored_per_answer_and_summarised(hosted_settings, openai_server, sample_kb_dir, embedder):
    openai_server.reply_fn = _reply
    s = hosted_settings.with_overrides(data_dir=sample_kb_dir)
    ws = engine.workspace_for(s)
    kb = engine.open_kb(s, embedder=embedder)
    run_id, spec, questions = evalrun.start(s, ws, kb, "sample", ["baseline", "rag"], "first", limit=3)
    assert ws.run("first").id == run_id and ws.run(run_id).status == "running"
    progress = evalrun.resume(s, ws, kb, run_id)
    assert progress.done == progress.total == 6
    record, summary, graded = evalrun.summary(ws, "first")
    assert record.status == "finished" and record.spec.arms == ("baseline", "rag")
    assert record.spec.models["base"] == "gpt-4o-mini" and record.spec.top_k == 4
    assert summary["rag"]["accuracy"] == 1 / 3 and summary["rag"]["n"] == 3  # "45 days" is right for q01 only
    assert summary["baseline"]["correct"] == 0
    stored = ws.answers(run_id)
    assert len(stored) == 6 and all(a.result.usage.prompt_tokens > 0 for a in stored)
    assert all(a.graded.reason for a in stored)


def test_cancel_then_resume_answers_only_what_is_missing(hosted_settings, openai_server, sample_kb_dir, embedder):
    openai_server.reply_fn = _reply
    s = hosted_settings.with_overrides(data_dir=sample_kb_dir)
    ws = engine.workspace_for(s)
    kb = engine.open_kb(s, embedder=embedder)
    run_id, _, _ = evalrun.start(s, ws, kb, "sample", ["rag"], "resumable", limit=6, concurrency=1)
    cancel = threading.Event()

    def stop_after_two(p, rows):
        if p.done >= 2:
            cancel.set()

    first = evalrun.resume(s, ws, kb, run_id, cancel=cancel, on_progress=stop_after_two)
    assert ws.run(run_id).status == "cancelled" and 2 <= first.done < 6
    asked = len(openai_server.requests)
    second = evalrun.resume(s, ws, kb, run_id)  # e.g. after a restart: a new process, the same workspace
    assert second.skipped == first.done and second.done == 6
    assert len(openai_server.requests) - asked == 6 - first.done  # nothing asked twice
    assert ws.run(run_id).status == "finished" and len(ws.answers(run_id)) == 6


def test_hosted_requests_run_concurrently_up_to_the_limit(hosted_settings, openai_server, sample_kb_dir, embedder):
    openai_server.first_token_delay = 0.3
    s = hosted_settings.with_overrides(data_dir=sample_kb_dir)
    ws = engine.workspace_for(s)
    kb = engine.open_kb(s, embedder=embedder)
    run_id, _, _ = evalrun.start(s, ws, kb, "sample", ["baseline", "finetuned"], limit=8, concurrency=8)
    t0 = time.monotonic()
    evalrun.resume(s, ws, kb, run_id)
    wall = time.monotonic() - t0
    assert len(ws.answers(run_id)) == 16
    assert wall < 16 * 0.3 / 2  # serial would take at least 4.8 s; 8 at a time about 0.6 s


def test_set_from_a_file_and_from_the_workspace(tmp_path, settings):
    ws = engine.workspace_for(settings)
    f = tmp_path / "mine.csv"
    f.write_text("question,reference,keywords,answerable\nHow long?,30 days,30,true\nRevenue?,,,false\n")
    qs = evalrun.load_set(ws, str(f))
    assert [q.answerable for q in qs] == [True, False] and qs[0].keywords == ("30",)
    ws.save_question_set("mine", evalrun.rows_from_questions(qs))
    assert evalrun.load_set(ws, "mine") == qs
    with pytest.raises(ValueError, match="sample, mine"):
        evalrun.load_set(ws, "nope")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answerable": true}\n')
    with pytest.raises(ValueError, match="line 1"):
        evalrun.load_set(ws, str(bad))


def test_eval_cli_stores_a_named_run_and_compares(hosted_settings, openai_server, sample_kb_dir, monkeypatch,
                                                 capsys):
    openai_server.reply_fn = _reply
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-eval")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("WORKBENCH_FT_MODEL", "ft:gpt-4o-mini-2024-07-18:acme::x")
    argv = ["eval", "--set", "sample", "--limit", "2", "--arms", "rag,finetuned", "--run-name", "cli-run",
            "--data-dir", str(sample_kb_dir), "--json"]
    assert main(argv) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 5 and lines[-1]["name"] == "cli-run"
    assert {x["arm"] for x in lines[:-1]} == {"rag", "finetuned"}
    assert all({"correct", "score", "refused", "reason"} <= set(x) for x in lines[:-1])
    ws = engine.workspace_for(hosted_settings.with_overrides(data_dir=sample_kb_dir))
    assert ws.run("cli-run").status == "finished"
    openai_server.reply_fn = lambda body: "45 days [1]."
    assert main(argv) == 0
    capsys.readouterr()
    runs = [r for r in ws.runs() if r.name == "cli-run"]
    assert len(runs) == 2
    _, _, before = evalrun.summary(ws, runs[1].id)
    _, _, after = evalrun.summary(ws, runs[0].id)
    changed = evalrun.changed_questions(before, after)
    assert {(c["question_id"], c["arm"]) for c in changed} == {("q01", "finetuned")}


def test_a_background_run_can_be_followed_cancelled_and_resumed(hosted_settings, openai_server, sample_kb_dir,
                                                               embedder):
    openai_server.first_token_delay = 0.2
    s = hosted_settings.with_overrides(data_dir=sample_kb_dir)
    ws = engine.workspace_for(s)
    kb = engine.open_kb(s, embedder=embedder)
    run_id, _, _ = evalrun.start(s, ws, kb, "sample", ["baseline"], "background", limit=12, concurrency=1)
    handle = evalrun.run_in_background(s, ws, kb, run_id)
    assert evalrun.run_in_background(s, ws, kb, run_id) is handle  # a second session attaches to the same run
    while handle.progress is None or handle.progress.done < 2:
        time.sleep(0.05)
    handle.cancel.set()
    handle.thread.join(10)
    assert not handle.alive and ws.run(run_id).status == "cancelled"
    assert evalrun.running(ws, run_id) is None
    ws.update_run(run_id, status="running")  # as a server restart mid-run leaves it
    assert [r.id for r in evalrun.interrupted(ws)] == [run_id]
    again = evalrun.run_in_background(s, ws, kb, run_id)
    again.thread.join(30)
    assert again.error is None and ws.run(run_id).status == "finished" and len(ws.answers(run_id)) == 12


def test_llm_judge_grades_in_random_order_and_its_agreement_is_reported(hosted_settings, openai_server,
                                                                       sample_kb_dir, embedder):
    from lib.judge import agreement

    def reply(body):
        prompt = body["messages"][-1]["content"]
        if "You grade an answer" in prompt:
            assert prompt.index("REFERENCE:") != prompt.index("CANDIDATE:")
            order = "ref-first" if prompt.index("REFERENCE:") < prompt.index("CANDIDATE:") else "cand-first"
            judge_replies.append(order)
            return '{"correct": true, "reason": "same facts"}'
        return "45 days [1]."

    judge_replies: list[str] = []
    openai_server.reply_fn = reply
    s = hosted_settings.with_overrides(data_dir=sample_kb_dir)
    ws = engine.workspace_for(s)
    kb = engine.open_kb(s, embedder=embedder)
    run_id, spec, _ = evalrun.start(s, ws, kb, "sample", ["rag"], "judged", limit=6, judge=True)
    assert spec.judge == "gpt-4o-mini"
    evalrun.resume(s, ws, kb, run_id)
    _, summary, _ = evalrun.summary(ws, run_id)
    assert len(judge_replies) == 6 and set(judge_replies) == {"ref-first", "cand-first"}
    rag = summary["rag"]
    assert rag["judge_accuracy"] == 1.0 and rag["judge_agreement"] == rag["accuracy"]  # the rules pass q01 only
    assert agreement([(True, True), (False, False), (True, False), (False, True)]) == \
        {"n": 4, "agreement": 0.5, "kappa": 0.0}
    from lib.settings import load_settings

    offline = load_settings(env={}, secrets_file=None, data_dir=sample_kb_dir)
    with pytest.raises(ValueError, match="hosted"):
        evalrun.start(offline, ws, kb, "sample", ["rag"], "no-judge", limit=1, judge=True)


def test_a_stored_run_can_be_regraded_without_asking_any_model(hosted_settings, openai_server, sample_kb_dir,
                                                              embedder, capsys):
    openai_server.reply_fn = lambda body: "45 days [1]."
    s = hosted_settings.with_overrides(data_dir=sample_kb_dir)
    ws = engine.workspace_for(s)
    kb = engine.open_kb(s, embedder=embedder)
    run_id, _, _ = evalrun.start(s, ws, kb, "sample", ["rag"], "to-regrade", limit=2)
    evalrun.resume(s, ws, kb, run_id)
    first = ws.answers(run_id)[0]
    older = replace(first, graded=replace(first.graded, correct=not first.graded.correct))  # as an older grader said
    ws.save_answer(run_id, older)
    asked = len(openai_server.requests)
    assert evalrun.regrade(ws, run_id) == 2
    assert len(openai_server.requests) == asked
    assert {a.question.id: a.graded.correct for a in ws.answers(run_id)} == {"q01": True, "q02": False}


def test_time_left_follows_each_arms_own_recent_pace():
    from lib.evalrun import Progress

    # Local arms answer one after another, hosted ones 4 at a time.
    p = Progress(total=40, remaining={"rag": 10, "finetuned": 10, "hybrid": 10, "baseline": 10},
                 local_arms=frozenset({"rag", "finetuned"}), concurrency=4)
    assert p.seconds_left is None  # no pace known yet for any arm
    for _ in range(3):
        p.record("rag", 6.0)  # the slow arm
        p.record("finetuned", 0.5)
        p.record("hybrid", 2.0)
        p.record("baseline", 2.0)
    # local: 7 x 6 s + 7 x 0.5 s = 45.5 s; hosted: (7 x 2 + 7 x 2) / 4 = 7 s; both pools run side by side
    assert p.seconds_left == pytest.approx(45.5)
    # The pace is the recent one: the last answers, not the first.
    for _ in range(8):
        p.record("rag", 1.0)
    assert p.pace("rag") == pytest.approx(1.0)


def test_expected_duration_before_a_run_comes_from_similar_runs_here(fake_settings):
    from lib import engine, evalrun

    ws = engine.workspace_for(fake_settings)
    seconds, sentence = evalrun.expected_duration(ws, fake_settings, ["rag"], 10)
    assert seconds is None and "No earlier run here" in sentence
    run_id, _, _ = evalrun.start(fake_settings, ws, None, "sample", ["rag"], "pace", limit=2)
    evalrun.resume(fake_settings, ws, None, run_id)
    seconds, sentence = evalrun.expected_duration(ws, fake_settings, ["rag"], 10)
    per = evalrun.seconds_per_answer(ws, {"base": fake_settings.base.label})["rag"]
    assert seconds == pytest.approx(10 * per / 8)  # the fake provider is hosted: 8 at a time
    assert "Similar runs here took RAG" in sentence
# ---------------------------------------------------------------- issue 18: runs keep their models

def test_a_run_is_never_resumed_with_other_models(hosted_settings, openai_server, sample_kb_dir, embedder, tmp_path):
    """A run started on a hosted model and resumed without the key (so the local model would answer) is refused
    with what to configure; nothing is asked, and the run stays resumable as it was."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(sample_kb_dir, data)
    openai_server.reply_fn = _reply
    s = hosted_settings.with_overrides(data_dir=data)
    ws = engine.workspace_for(s)
    kb = engine.open_kb(s, embedder=embedder)
    run_id, _, _ = evalrun.start(s, ws, kb, "sample", ["baseline", "finetuned"], "mixed?", limit=4, concurrency=1)
    cancel = threading.Event()
    evalrun.resume(s, ws, kb, run_id, cancel=cancel, on_progress=lambda p, rows: p.done >= 2 and cancel.set())
    answered, asked = len(ws.answers(run_id)), len(openai_server.requests)
    assert 2 <= answered < 8 and ws.run(run_id).spec.model_specs["base"]["name"] == "gpt-4o-mini"

    from lib.settings import load_settings

    no_key = engine.resolve_finetuned(load_settings(env={}, secrets_file=None, data_dir=data), ws)
    with pytest.raises(evalrun.ModelsChanged) as refused:
        evalrun.resume(no_key, ws, kb, run_id)
    message = str(refused.value)
    assert "gpt-4o-mini" in message and "smollm2" in message and "never mixes" in message
    assert "API key" in message and "--new-models" in message
    assert len(ws.answers(run_id)) == answered and len(openai_server.requests) == asked  # nothing asked
    assert ws.run(run_id).status == "cancelled"  # still resumable, not failed
    evalrun.check_models(ws.run(run_id), s)  # with the run's own models it resumes


def test_resume_with_new_models_answers_the_rest_in_a_new_run(hosted_settings, openai_server, sample_kb_dir,
                                                             tmp_path, monkeypatch, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(sample_kb_dir, data)
    openai_server.reply_fn = _reply
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-eval")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("WORKBENCH_BASE_MODEL", "gpt-4o-mini")
    d = ["--data-dir", str(data)]
    ws = engine.workspace_for(hosted_settings.with_overrides(data_dir=data))
    assert main(["eval", "--limit", "3", "--arms", "baseline", "--run-name", "kept", "--json", *d]) == 0
    first = ws.run("kept")
    with ws.db.write() as con:  # as a run stopped after its first answer leaves it
        con.execute("DELETE FROM eval_answers WHERE run_id = ? AND question_id != 'q01'", (first.id,))
        con.execute("UPDATE eval_runs SET status = 'cancelled' WHERE id = ?", (first.id,))
    capsys.readouterr()
    monkeypatch.setenv("WORKBENCH_BASE_MODEL", "gpt-4.1-mini")  # another model configured since
    assert main(["eval", "--resume", "kept", "--json", *d]) == 2
    out = capsys.readouterr().out
    assert "cannot be resumed with the models configured now" in out and "gpt-4o-mini" in out
    assert len(ws.answers(first.id)) == 1
    assert main(["eval", "--resume", "kept", "--new-models", "--json", *d]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    new_id = lines[0]["run"]
    assert lines[0]["rerun_of"] == first.id and new_id != first.id
    new = ws.run(new_id)
    assert [q.id for q in new.questions] == ["q02", "q03"] and new.status == "finished"
    assert {a.result.model for a in ws.answers(new_id)} == {"gpt-4.1-mini"}
    assert {a.result.model for a in ws.answers(first.id)} == {"gpt-4o-mini"}  # the old run is untouched
    assert ws.run(first.id).status == "cancelled"


def test_an_evaluation_run_checks_the_long_context_arm_fits_the_local_model_as_compare_does(sample_kb_dir, tmp_path,
                                                                                           capsys):
    """A run's answers go through a watched provider (cancel, spend cap); the local model's window, chat template
    and `with_context` still reach the long-context arm: the sample knowledge base (about 9,200 tokens) is refused
    before the model is asked, with the window from the GGUF, not sent to a 4,096-token context and failed there.
    `--resume` without --collection opens the run's own knowledge base."""
    import shutil

    from lib.evalrun import _Watched
    from lib.providers import LocalLlama
    from lib.settings import LOCAL_BASE_MODEL, load_settings

    local = LocalLlama(ModelSpec("local", LOCAL_BASE_MODEL))
    watched = _Watched(local, threading.Event())
    assert watched.context_window == local.context_window == 8192 and watched.render is not None
    assert watched.with_context(6000) is watched and watched.inner.n_ctx == 6144 and not watched.cancelled
    data = tmp_path / "data"
    shutil.copytree(sample_kb_dir, data)
    s = load_settings(env={}, secrets_file=None, data_dir=data)
    ws = engine.workspace_for(s)
    run_id, _, _ = evalrun.start(s, ws, engine.open_kb(s, create=False), "sample", ["longcontext"], "whole", limit=1)
    assert main(["eval", "--resume", "whole", "--data-dir", str(data), "--json"]) == 0
    [answer] = ws.answers(run_id)
    assert answer.result.error and "does not fit" in answer.result.error, answer.result.error
    assert "the window is 8,192 tokens" in answer.result.error and answer.result.usage.completion_tokens == 0
    capsys.readouterr()


def test_a_run_resumed_with_another_knowledge_base_open_answers_from_its_own(fake_settings, embedder, tmp_path):
    """The Evaluate page resumes with the knowledge base chosen in the sidebar; the run still retrieves from the
    documents it started on."""
    (tmp_path / "zorblat.md").write_text("The Zorblat warranty lasts 7 years from purchase.")
    (tmp_path / "other.md").write_text("The office cat is called Pixel.")
    own = engine.open_kb(fake_settings, "own", embedder=embedder)
    engine.ingest_paths(own, [tmp_path / "zorblat.md"])
    other = engine.open_kb(fake_settings, "other", embedder=embedder)
    engine.ingest_paths(other, [tmp_path / "other.md"])
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"id": "z1", "question": "How long is the Zorblat warranty?", "answer": "7 years",
                                     "keywords": ["7"]}) + "\n")
    ws = engine.workspace_for(fake_settings)
    run_id, _, _ = evalrun.start(fake_settings, ws, own, str(questions), ["rag"], "own-docs")
    evalrun.resume(fake_settings, ws, other, run_id)
    [answer] = ws.answers(run_id)
    assert [s.document for s in answer.result.sources] == ["zorblat.md"]
