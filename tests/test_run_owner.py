"""One owner per evaluation run (a lease in the workspace database), a bounded shutdown that leaves runs
resumable, and a run that hits the spend cap saying so instead of "finished"."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from lib import engine, evalrun
from lib.evalrun import RunBusy
from lib.gateway import Ledger
from lib.settings import ModelSpec, WorkshopConfig
from tests.conftest import ROOT


@pytest.fixture
def hosted(settings, openai_server):
    return settings.with_overrides(openai_api_key="sk-test-owner-key", openai_base_url=openai_server.base_url,
                                   base=ModelSpec("openai", "gpt-4o-mini"), max_retries=0, request_timeout_s=10.0)


def _run(s, n=6, concurrency=1):
    ws = engine.workspace_for(s)
    run_id, _, _ = evalrun.start(s, ws, None, "sample", ["baseline"], limit=n, concurrency=concurrency)
    return ws, run_id


def test_a_run_owned_by_a_live_process_is_not_resumed_elsewhere(hosted, openai_server, monkeypatch):
    ws, run_id = _run(hosted)
    assert ws.take_lease(f"run:{run_id}", "other-host:4242:abcd", 30)  # another process answers it
    with pytest.raises(RunBusy, match="another app process"):
        evalrun.resume(hosted, ws, None, run_id)
    with pytest.raises(RunBusy):
        evalrun.run_in_background(hosted, ws, None, run_id)
    assert not evalrun.resumable(ws, ws.run(run_id)) and evalrun.interrupted(ws) == []
    assert openai_server.requests == []  # nobody asked anything twice
    # its owner stops renewing: once the lease has expired, Resume is offered and takes the run over
    assert ws.take_lease(f"run:{run_id}", "other-host:4242:abcd", -1)
    assert evalrun.resumable(ws, ws.run(run_id)) and [r.id for r in evalrun.interrupted(ws)] == [run_id]
    evalrun.resume(hosted, ws, None, run_id)
    assert ws.run(run_id).status == "finished" and ws.lease_holder(f"run:{run_id}") is None


def test_a_lost_lease_stops_the_run_here(hosted, openai_server, monkeypatch):
    monkeypatch.setattr(evalrun, "LEASE_TTL_S", 0.6)
    openai_server.first_token_delay = 0.3
    ws, run_id = _run(hosted, n=20)
    handle = evalrun.run_in_background(hosted, ws, None, run_id)
    while ws.lease_holder(f"run:{run_id}") is None:
        time.sleep(0.02)
    with ws.db.write() as con:  # this process stalled past its expiry, and another took the run over
        con.execute("UPDATE leases SET owner = 'the-other-process', expires_at = ? WHERE resource = ?",
                    (time.time() + 60, f"run:{run_id}"))
    handle.thread.join(15)
    assert not handle.alive and ws.run(run_id).status == "cancelled"
    assert len(ws.answers(run_id)) < 20 and ws.lease_holder(f"run:{run_id}")[0] == "the-other-process"


def test_shutdown_stops_runs_in_bounded_time_and_leaves_them_resumable(hosted, openai_server):
    openai_server.first_token_delay = 0.5
    ws, run_id = _run(hosted, n=12)
    handle = evalrun.run_in_background(hosted, ws, None, run_id)
    while handle.progress is None or handle.progress.done < 1:
        time.sleep(0.05)
    try:
        t0 = time.monotonic()
        assert evalrun.shutdown(grace_s=5) == [run_id]
        took = time.monotonic() - t0
        assert took < 5 and not handle.alive  # the answer under way stopped at its next token
        run = ws.run(run_id)
        assert run.status == "interrupted" and ws.lease_holder(f"run:{run_id}") is None
        with pytest.raises(RunBusy, match="shutting down"):  # no new work while draining
            evalrun.run_in_background(hosted, ws, None, run_id)
    finally:
        evalrun._draining.clear()
    stored = len(ws.answers(run_id))
    assert 1 <= stored < 12 and all(not a.result.error for a in ws.answers(run_id))  # no half answers
    assert evalrun.resumable(ws, ws.run(run_id))
    openai_server.first_token_delay = 0.0
    evalrun.resume(hosted, ws, None, run_id)
    assert ws.run(run_id).status == "finished" and len(ws.answers(run_id)) == 12


def test_sigterm_ends_the_process_within_the_grace_period(hosted, openai_server, tmp_path):
    """The app's process on SIGTERM (Streamlit stops its server, then the interpreter ends): the run answering
    there is cancelled, marked resumable and its lease released, and the process is gone in bounded time."""
    openai_server.first_token_delay = 1.0
    child = textwrap.dedent(f"""
        import signal, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from lib import engine, evalrun
        from lib.settings import ModelSpec, load_settings
        s = load_settings(env={{"OPENAI_API_KEY": "sk-test-child", "OPENAI_BASE_URL": {openai_server.base_url!r}}},
                          secrets_file=None, data_dir={str(hosted.data_dir)!r}, base=ModelSpec("openai", "gpt-4o-mini"))
        ws = engine.workspace_for(s)
        run_id, _, _ = evalrun.start(s, ws, None, "sample", ["baseline"], limit=30, concurrency=2)
        evalrun.run_in_background(s, ws, None, run_id)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # as Streamlit's handler: stop, then exit
        print(run_id, flush=True)
        while True:
            time.sleep(0.1)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        run_id = proc.stdout.readline().strip()
        ws = engine.workspace_for(hosted)
        deadline = time.monotonic() + 120
        while not ws.answers(run_id) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ws.answers(run_id) and ws.lease_holder(f"run:{run_id}") is not None
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    run = ws.run(run_id)
    assert took < 15, f"the process took {took:.1f} s to end"
    assert run.status == "interrupted" and ws.lease_holder(f"run:{run_id}") is None
    assert len(ws.answers(run_id)) < 30 and evalrun.resumable(ws, run)


def test_a_run_that_hits_the_cap_says_so_and_grades_only_real_answers(hosted, openai_server):
    from lib.arms import build_prompt
    from lib.gateway import CappedProvider

    openai_server.reply = "45 days [1]. " + "more " * 200  # the whole max_tokens: each answer costs its reservation
    probe = CappedProvider(engine.providers_for(hosted)["base"], Ledger(hosted.data_dir), "default", WorkshopConfig())
    one = probe.expected_cost(build_prompt("How long is the refund window for a tent?", None).messages(), 96)
    capped = dataclasses.replace(hosted, workshop=WorkshopConfig(cap_participant_usd=one * 3))
    ws, run_id = _run(capped, n=8)
    evalrun.resume(capped, ws, None, run_id)
    run, per_arm, graded = evalrun.summary(ws, run_id)
    s = per_arm["baseline"]
    real = len(openai_server.requests_to("/chat/completions"))
    assert 1 <= real < 8 and s["capped"] == 8 - real  # refused ones are their own kind of error
    assert run.status == "capped" and "refused by the spend cap" in run.error  # never "finished"
    assert s["answerable"] + s["unanswerable"] == real  # the accuracy is over the real answers only
    refused = [a for a in ws.answers(run_id) if a.capped]
    assert len(refused) == 8 - real and all("Spend cap reached" in a.result.error for a in refused)
    # the host raises the cap: Resume asks exactly the refused ones, and the run finishes
    raised = dataclasses.replace(hosted, workshop=WorkshopConfig(cap_participant_usd=1.0))
    assert evalrun.resumable(ws, run)
    evalrun.resume(raised, ws, None, run_id)
    run, per_arm, _ = evalrun.summary(ws, run_id)
    assert run.status == "finished" and per_arm["baseline"]["capped"] == 0
    assert len(openai_server.requests_to("/chat/completions")) == 8 and len(ws.answers(run_id)) == 8


def test_a_training_job_is_alive_while_its_lease_is_renewed_even_from_another_machine(tmp_path):
    """A local training job's owner is the process that holds its lease (the runner renews it while it trains):
    a job trained on another machine sharing the data folder (its pid means nothing here) is not taken for dead,
    and one whose lease expired (its process died) is marked failed."""
    from lib.workspace import Workspace

    ws = Workspace(tmp_path)
    assert ws.take_lease("job:job-a", "other-machine:123", 30)
    ws.add_job("job-a", "local", "a", {}, status="running", pid=2 ** 22 + 7)  # no such process here
    assert ws.job("job-a").status == "running"
    with ws.db.write() as con:
        con.execute("UPDATE leases SET expires_at = ? WHERE resource = 'job:job-a'", (time.time() - 1,))
    job = ws.job("job-a")
    assert job.status == "failed" and "ended without reporting" in job.error


def test_the_evaluate_page_says_a_run_stopped_at_the_cap(hosted, openai_server, monkeypatch):
    from streamlit.testing.v1 import AppTest

    openai_server.reply = "45 days [1]. " + "more " * 200
    capped = dataclasses.replace(hosted, workshop=WorkshopConfig(cap_participant_usd=0.0001))
    ws, run_id = _run(capped, n=6)
    evalrun.resume(capped, ws, None, run_id)
    real = len(openai_server.requests_to("/chat/completions"))
    assert real < 6
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(hosted.data_dir))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("views/evaluate.py").run()
    assert not at.exception
    warning = " ".join(w.value for w in at.warning).replace("\\", "")
    assert f"{6 - real} answer(s) were refused by the cap" in warning and f"over the {real} real answers" in warning
    assert at.button(key="eval_resume_result")  # Resume is offered: nobody owns the run
    caption = " ".join(c.value for c in at.caption)
    assert f"**capped**, {real} of 6 answers" in caption and "finished" not in caption
