"""No markup from names (issue 18): every user-supplied string (file, knowledge base, set, run, job and participant
names, questions, and what servers say) shown in a progress bar, status line, notice, label or the Markdown report
is escaped or plain text, and CSV exports neutralise formula cells.

Every string a page hands to a Streamlit call that renders Markdown is recorded (progress texts included, which
appear only while work runs); each one that carries the canary is rendered with a CommonMark renderer, which must
make no image and no link, and must leave nothing that GitHub-flavoured Markdown would turn into an autolink."""

from __future__ import annotations

import dataclasses
import functools
import html as html_module
import re
import threading
from typing import Any

import pytest
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from lib.settings import ModelSpec
from tests.conftest import ROOT

CANARY = "![c](http://127.0.0.1:9/canary.png) www.canary.example"  # short enough for a participant's name
LINK = "[l](http://127.0.0.1:9/canary-link)"
RENDERING = ("markdown", "caption", "error", "warning", "info", "success", "toast", "progress", "expander", "button",
             "checkbox", "subheader", "title", "header", "write", "page_link", "popover", "tabs", "radio",
             "selectbox", "text_input", "number_input", "slider", "multiselect", "pills", "toggle",
             "download_button", "form_submit_button", "metric", "status", "select_slider")
_render = MarkdownIt("commonmark", {"html": False}).enable("table").enable("strikethrough").render


def markup_problems(text: str) -> list[str]:
    """What in `text` would render as an image, a link, or a GFM autolink."""
    html = _render(text)
    found = [f"image: {m}" for m in re.findall(r"<img[^>]*>", html)]
    found += [f"link: {h}" for h in re.findall(r'href="([^"]*)"', html) if not h.startswith("#")]
    shown = html_module.unescape(re.sub(r"<[^>]*>", " ", html))  # the text as shown (GFM autolinks form there)
    found += [f"autolink: {m}" for m in re.findall(r"(?i)\bwww\.\S*|\w+://\S*", shown)]
    return found


@pytest.fixture
def recorded(monkeypatch) -> list[tuple[str, str]]:
    """Every string passed to a Markdown-rendering Streamlit call while the test runs: (call, text)."""
    import streamlit
    from streamlit.delta_generator import DeltaGenerator

    calls: list[tuple[str, str]] = []
    lock = threading.Lock()

    def wrap(name: str, original: Any) -> Any:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            values = [args[0]] if args and name != "progress" else []
            values += list(args[1:2]) if name == "progress" else []
            values += [kwargs.get(k) for k in ("body", "label", "text")]
            values += list(args[0]) if name == "tabs" and args else []
            with lock:
                calls.extend((name, v) for v in values if isinstance(v, str))
            return original(self, *args, **kwargs)

        return wrapper

    for name in RENDERING:
        monkeypatch.setattr(DeltaGenerator, name, wrap(name, getattr(DeltaGenerator, name)))
        bound = getattr(streamlit, name, None)
        if isinstance(getattr(bound, "__self__", None), DeltaGenerator):  # st.markdown & co. are bound at import
            monkeypatch.setattr(streamlit, name, functools.partial(getattr(DeltaGenerator, name), bound.__self__))
    return calls


def assert_inert(calls: list[tuple[str, str]]) -> int:
    """Every recorded string that carries the canary renders inert; returns how many were checked."""
    checked = 0
    for call, text in calls:
        plain = text.replace("\\", "").replace("\u2060", "")
        if "canary" in plain:
            checked += 1
            assert not markup_problems(text), (call, text, markup_problems(text))
    return checked


@pytest.fixture
def canary_workspace(tmp_path, monkeypatch, fake_provider, embedder):
    """A workspace in which every name a user gives carries the canary: a document, a question set, runs (one
    cancelled with answers, one stopped by a restart, one failed), a training job and a hosted job, a history."""
    from lib import engine, evalrun
    from lib.settings import load_settings

    data = tmp_path / "data"
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(data))
    s = load_settings(env={}, secrets_file=None, data_dir=data).with_overrides(
        base=ModelSpec("fake", "base-model"), finetuned=ModelSpec("fake", f"tuned {CANARY}"))
    kb = engine.open_kb(s, embedder=embedder)
    assert engine.ingest_upload(kb, f"{CANARY} {LINK}.md", b"The refund window is 45 days.").status == "ingested"
    ws = engine.workspace_for(s)
    question = f"How long is the refund window? {CANARY} {LINK}"
    rows = [{"id": "q1", "question": question, "reference": "45 days", "keywords": [], "source": "x",
             "answerable": True}, {"id": "q2", "question": "Another one?", "reference": "45 days", "keywords": [],
                                   "source": "", "answerable": True}]
    ws.save_question_set(f"set {CANARY}", rows, f"upload {CANARY}")
    fake_provider.fail_with = {}
    run_id, _, _ = evalrun.start(s, ws, kb, f"set {CANARY}", ["baseline", "rag"], f"run {CANARY}")
    evalrun.resume(s, ws, kb, run_id)
    ws.update_run(run_id, status="failed", error=f"boom {CANARY}")
    stopped, _, _ = evalrun.start(s, ws, kb, f"set {CANARY}", ["baseline"], f"stopped {CANARY}")
    ws.update_run(stopped, status="running")  # as a restart leaves it
    ws.add_job("job-1", "local", f"adapter {CANARY}", {"steps": 5})
    ws.update_job("job-1", status="failed", error=f"training failed {CANARY}")
    ws.add_job("ftjob-canary", "openai", f"hosted {CANARY}", {"base_model": "gpt-4o-mini"})
    ws.update_job("ftjob-canary", status="failed", error=f"hosted failed {CANARY}")
    ws.add_comparison(engine.ask(s, question, ["baseline", "rag"], kb))
    return data


def _app() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.session_state["settings_overrides"] = {"base": ModelSpec("fake", "base-model"),
                                              "finetuned": ModelSpec("fake", f"tuned {CANARY}")}
    return at


def test_every_page_shows_user_supplied_names_as_text(canary_workspace, recorded, fake_provider):
    at = _app().run()
    for page in ("views/documents.py", "views/compare.py", "views/evaluate.py", "views/decide.py",
                 "views/finetune.py", "views/history.py", "views/settings.py", "views/home.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        if page == "views/documents.py":  # an upload: its progress bar and its result
            at.file_uploader[0].set_value([(f"up {CANARY}.md", b"The office cat is called Pixel.",
                                            "text/markdown")]).run()
            at.button(key="docs_add").click().run()
            assert not at.exception, at.exception
        if page == "views/compare.py":
            at.text_input(key="compare_question").input(f"Where? {CANARY}").run()
            at.button(key="compare_ask").click().run()
            assert not at.exception, at.exception
        if page == "views/evaluate.py":  # the Resume of a run stopped by a restart, and a set being saved
            at.button(key=next(b.key for b in at.button if b.key.startswith("eval_resume_"))).click().run()
            assert not at.exception, at.exception
    progress = [t for c, t in recorded if c == "progress" and "canary" in t.replace("\\", "")]
    assert progress, "the upload's progress bar carried the file name"
    assert assert_inert(recorded) >= 20  # documents, sets, runs, jobs, models, questions, errors


def test_participant_names_are_text_on_every_workshop_surface(tmp_path, monkeypatch, fake_provider, recorded):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WORKBENCH_WORKSHOP", "1")
    monkeypatch.setenv("WORKBENCH_HOST_CODE", "open-sesame")
    at = _app().run()
    at.text_input(key="join_name").input(CANARY)
    at.button(key="join_submit").click().run()
    assert not at.exception, at.exception
    host = _app().run()
    host.switch_page("views/host.py").run()
    host.text_input(key="host_code").input("open-sesame")
    host.button(key="host_open").click().run()
    host.button(key="host_reset").click().run()
    assert not host.exception, host.exception
    assert assert_inert(recorded) >= 2  # the sidebar's greeting and the host's notice


def test_the_markdown_report_shows_run_set_and_model_names_as_text(canary_workspace):
    from lib import projection, report
    from lib.workspace import Workspace

    ws = Workspace(canary_workspace)
    text = report.markdown(report.build(ws, f"run {CANARY}", projection.Assumptions()))
    assert "canary" in text.replace("\\", "")
    assert not markup_problems(text), markup_problems(text)


def test_csv_exports_neutralise_formulas(canary_workspace):
    import csv
    import io

    from lib import evalrun, history
    from lib.workspace import Workspace

    ws = Workspace(canary_workspace)
    comparisons, _ = ws.comparisons()
    first = dataclasses.replace(comparisons[0].results[0], answer="=1+2", error="@SUM(A1:A9)", model="+cmd",
                                cost_note="-2+3", label="\tTab", provider="\rReturn")
    comparisons[0] = dataclasses.replace(comparisons[0], question="=HYPERLINK(\"http://127.0.0.1:9/x\",\"click\")",
                                         results=(first, *comparisons[0].results[1:]))
    cells = [c for row in csv.reader(io.StringIO(history.export_csv(comparisons))) for c in row]
    assert cells and not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert "'=HYPERLINK(\"http://127.0.0.1:9/x\",\"click\")" in cells and "'=1+2" in cells and "'@SUM(A1:A9)" in cells
    _, _, graded = evalrun.summary(ws, f"run {CANARY}")
    graded = [dataclasses.replace(g, answer="=1+2", reason="@x") for g in graded]
    cells = [c for row in csv.reader(io.StringIO(evalrun.export_csv(graded))) for c in row]
    assert "'=1+2" in cells and "'@x" in cells and not [c for c in cells if c[:1] in ("=", "+", "@", "\t", "\r")]
