"""Every page through Streamlit's AppTest, starting from the router, with a fake provider."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from lib.settings import ModelSpec
from tests.conftest import ROOT

PAGES = ["views/home.py", "views/documents.py", "views/compare.py", "views/evaluate.py", "views/finetune.py",
         "views/history.py", "views/settings.py"]


@pytest.fixture
def app(tmp_path, monkeypatch, fake_provider):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["settings_overrides"] = {"base": ModelSpec("fake", "base-model"),
                                              "finetuned": ModelSpec("fake", "tuned-model")}
    return at


def _open(at, page):
    at.run()
    if page != "views/home.py":
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens(app, page):
    _open(app, page)
    assert app.title and not app.error


def test_first_visit_offers_one_click_start_and_answers(app, fake_provider):
    _open(app, "views/home.py")
    assert "RAG, fine-tuning, or both?" in app.title[0].value
    app.button(key="home_start").click().run()
    assert not app.exception
    assert app.title[0].value == "Compare"
    headers = [m.value for m in app.main.markdown if m.value.startswith("### :")]
    assert headers == ["### :blue[RAG]", "### :orange[Fine-tuned]", "### :green[Hybrid]"]
    assert any("says hello" in m.value for m in app.markdown)
    # the retrieval arms saw the sample corpus; the fine-tuned arm did not
    prompts = {name: msgs[1]["content"] for name, msgs, _ in fake_provider.history}
    assert "refund_policy.md" in prompts["base-model"]
    assert len(app.get("plotly_chart")) == 4
    assert app.download_button(key="compare_download")


def test_documents_upload_preview_remove(app):
    _open(app, "views/documents.py")
    app.file_uploader(key="docs_uploader").set_value([
        ("notes.md", b"# Notes\n\nThe office parrot is called Juniper.", "text/markdown"),
        ("empty.txt", b"", "text/plain"),
        ("page.html", b"<html><body><p>Hours: <b>9-17</b></p><script>x()</script></body></html>", "text/html"),
    ]).run()
    app.button(key="docs_add").click().run()
    assert not app.exception
    errors = [e.value.replace("\\", "") for e in app.error]  # Markdown source: names are escaped
    assert len(errors) == 1 and "empty.txt" in errors[0] and "is empty" in errors[0]
    assert len(app.success) == 2
    table = app.dataframe[0].value
    assert sorted(table["document"]) == ["notes.md", "page.html"]
    app.selectbox(key="docs_selected").set_value("page.html").run()
    texts = [t.value for t in app.text]
    assert any("Hours:" in t and "9-17" in t for t in texts) and not any("x()" in t for t in texts)
    app.button(key="docs_remove").click().run()
    assert list(app.dataframe[0].value["document"]) == ["notes.md"]


def _kbs(at):
    from lib import engine
    from lib.store import list_knowledge_bases

    return list_knowledge_bases(engine.client_for(at.session_state["settings"]))


def test_create_and_delete_knowledge_base(app):
    _open(app, "views/documents.py")
    app.text_input(key="docs_new_name").input("support-docs")
    app.button[[b.label for b in app.button].index("Create and switch")].click().run()
    assert not app.exception
    assert "support-docs" in _kbs(app)
    assert app.sidebar.selectbox(key="kb_name").value == "support-docs"
    app.text_input(key="docs_new_name").input("bad name!")
    app.button[[b.label for b in app.button].index("Create and switch")].click().run()
    assert any("not a valid knowledge base name" in e.value for e in app.error)



def test_delete_knowledge_base(app):
    app.session_state["kb_switch"] = "old-kb"
    _open(app, "views/documents.py")
    assert "old-kb" in _kbs(app)
    app.button(key="docs_sample").click().run()
    app.checkbox(key="docs_confirm_delete").check().run()
    app.button(key="docs_delete").click().run()
    assert not app.exception
    assert "old-kb" not in _kbs(app) and app.sidebar.selectbox(key="kb_name").value == "default"


def test_router_switches_knowledge_base_in_the_sidebar(app):
    app.session_state["kb_switch"] = "support-docs"
    app.run()
    assert not app.exception
    box = app.sidebar.selectbox(key="kb_name")
    assert box.value == "support-docs" and "support-docs" in box.options
    assert app.session_state["settings"].collection == "support-docs"
    assert any("Offline mode" in c.value for c in app.sidebar.caption)  # no key configured
    assert any("base-model" in c.value and "tuned-model" in c.value for c in app.sidebar.caption)


def test_compare_shows_failing_arm_in_its_own_column(app, fake_provider):
    fake_provider.fail_with["tuned-model"] = TimeoutError("took too long")
    _open(app, "views/compare.py")
    app.text_input(key="compare_question").input("What is the refund window?")
    app.toggle(key="compare_baseline").set_value(True).run()
    app.button(key="compare_ask").click().run()
    assert not app.exception
    errors = [e.value for e in app.error]
    assert len(errors) == 2 and all("took too long" in e for e in errors)  # finetuned and hybrid
    assert sum("says hello" in m.value for m in app.markdown) == 2  # baseline and rag answered
    assert any("No document" in i.value or "no documents" in i.value for i in app.info)


def test_history_persists_and_exports(app, tmp_path, fake_provider):
    _open(app, "views/compare.py")
    app.text_input(key="compare_question").input("Question one?").run()
    app.button(key="compare_ask").click().run()
    app.text_input(key="compare_question").input("Question two?").run()
    app.button(key="compare_ask").click().run()
    app.switch_page("views/history.py").run()
    assert not app.exception
    assert app.metric[0].value == "2"
    table = app.dataframe[0].value
    assert len(table) == 6 and set(table["question"]) == {"Question one?", "Question two?"}
    assert len(app.get("plotly_chart")) == 3
    from lib.workspace import Workspace

    saved, skipped = Workspace(tmp_path / "data", "default").comparisons("default")
    assert [c["question"] for c in saved] == ["Question one?", "Question two?"] and skipped == 0
    assert {b.proto.label for b in app.get("download_button")} == {"Download CSV", "Download JSON"}


def test_damaged_or_newer_history_records_are_skipped_with_a_warning(app, tmp_path, fake_provider):
    import sqlite3

    _open(app, "views/compare.py")
    app.text_input(key="compare_question").input("Question one?").run()
    app.button(key="compare_ask").click().run()
    db = tmp_path / "data" / "workspaces" / "default" / "workspace.db"
    with sqlite3.connect(db) as con:
        con.execute("INSERT INTO comparisons VALUES ('x1', 1.0, 'default', 'q?', 1, '{\"broken\": ')")
        con.execute("INSERT INTO comparisons VALUES ('x2', 2.0, 'default', 'q?', 7, '{\"id\": \"x2\"}')")
    app.switch_page("views/history.py").run()
    assert not app.exception
    assert any("2 damaged record(s)" in w.value for w in app.warning)
    assert app.metric[0].value == "1"  # the good record is still shown


def test_settings_never_show_the_key_and_test_connection(app, openai_server):
    app.session_state["settings_overrides"] = {}
    _open(app, "views/settings.py")
    app.selectbox(key="settings_base_provider").set_value("openai")
    app.text_input(key="settings_base_name").input("gpt-4o-mini")
    app.text_input(key="settings_key").input("sk-secret-abcdefghijklmnop-9999")
    app.text_input(key="settings_base_url").input(openai_server.base_url)
    app.button[[b.label for b in app.button].index("Apply")].click().run()
    assert not app.exception
    shown = " ".join(str(e.value) for e in app.caption) + " ".join(str(m.value) for m in app.markdown)
    assert "sk-secret-abcdefghijklmnop" not in shown and "9999" in shown
    app.button(key="settings_test_base").click().run()
    assert any("answered" in s.value for s in app.success)
    app.text_input(key="settings_key").input("sk-invalid")
    app.button[[b.label for b in app.button].index("Apply")].click().run()
    app.button(key="settings_test_base").click().run()
    assert any("API key was rejected" in e.value for e in app.error)


def _csv(n_good, bad=True):
    rows = "".join(f"Question {i}?,Answer {i}.\n" for i in range(n_good))
    return ("question,answer\n" + rows + (",no question\n" if bad else "")).encode()


def test_finetune_upload_review_and_validate(app, monkeypatch):
    from lib import finetune

    monkeypatch.setattr(finetune, "missing_training_deps", lambda: ["torch"])
    _open(app, "views/finetune.py")
    app.file_uploader(key="ft_upload").set_value(("pairs.csv", _csv(4), "text/csv")).run()
    app.button(key="ft_load_upload").click().run()
    assert not app.exception
    assert any("Line 6: empty question or answer" in w.value for w in app.warning)
    assert any("problem(s) to fix" in e.value for e in app.error)  # 4 examples: fewer than 10
    problem_tables = [d.value for d in app.dataframe if "problem" in d.value.columns]
    assert problem_tables and "at least 10" in " ".join(map(str, problem_tables[0]["problem"]))
    assert app.get("download_button")  # export as JSONL
    assert any("requirements-train.txt" in i.value for i in app.info)  # local training: what to install
    assert app.button(key="ft_local_start").disabled


def test_finetune_page_works_without_a_usable_knowledge_base(app, monkeypatch):
    from lib import engine
    from lib.errors import ConfigError

    def refuse(*_args, **_kwargs):
        raise ConfigError("Knowledge base 'default' was built with another embedder.")

    monkeypatch.setattr(engine, "open_kb", refuse)
    _open(app, "views/finetune.py")
    assert not app.exception
    assert any("built with another embedder" in w.value for w in app.warning)
    app.file_uploader(key="ft_upload").set_value(("pairs.csv", _csv(12, bad=False), "text/csv")).run()
    app.button(key="ft_load_upload").click().run()
    assert not app.exception
    assert any("12 examples pass the checks" in s.value for s in app.success)


def test_finetune_on_openai_from_start_to_registered_model(app, openai_server):
    app.session_state["settings_overrides"] = {"openai_api_key": "sk-test-ft", "openai_base_url": openai_server.base_url}
    _open(app, "views/finetune.py")
    app.file_uploader(key="ft_upload").set_value(("pairs.csv", _csv(12, bad=False), "text/csv")).run()
    app.button(key="ft_load_upload").click().run()
    assert any("12 examples pass the checks" in s.value for s in app.success)
    assert app.metric[0].value.startswith("~$") and "estimated" in app.metric[0].value
    app.button(key="ft_oai_start").click().run()
    assert not app.exception and not app.error
    for _ in range(6):
        if any("Registered" in s.value for s in app.success):
            break
        app.button(key="ft_oai_refresh").click().run()
    assert any("Registered ft:gpt-4.1-mini-2025-04-14:" in s.value for s in app.success)
    table = next(d.value for d in app.dataframe if "active" in d.value.columns)
    assert (table["active"] == "✓").sum() == 1 and table[table["active"] == "✓"]["provider"].iloc[0] == "openai"
    uploads = openai_server.requests_to("/files", "POST")
    assert len(uploads) == 1


def test_lower_case_secrets_work_in_the_app(tmp_path, monkeypatch, openai_server):
    """secrets.toml keys are read by the same rules as the CLI: `openai_api_key` works like OPENAI_API_KEY."""
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.secrets["openai_api_key"] = "sk-lower-case-abcdefghij-4321"
    at.secrets["openai_base_url"] = openai_server.base_url
    at.secrets["workbench_base_model"] = "gpt-4o-mini"
    at.run()
    assert not at.exception, at.exception
    s = at.session_state["settings"]
    assert s.openai_api_key == "sk-lower-case-abcdefghij-4321" and s.base == ModelSpec("openai", "gpt-4o-mini")
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert "4321" in captions and "abcdefghij" not in captions and "Offline mode" not in captions


def test_sidebar_creates_and_switches_workspaces_and_keeps_them_apart(app, tmp_path, fake_provider):
    _open(app, "views/compare.py")
    assert app.sidebar.selectbox(key="workspace").value == "default"
    app.text_input(key="compare_question").input("Asked in default?").run()
    app.button(key="compare_ask").click().run()
    app.text_input(key="ws_new_name").input("Not Valid")
    app.button(key="ws_create").click().run()
    assert any("not a valid workspace name" in e.value for e in app.error)
    app.text_input(key="ws_new_name").input("alice")
    app.button(key="ws_create").click().run()
    assert not app.exception
    assert app.sidebar.selectbox(key="workspace").value == "alice"
    assert app.session_state["settings"].workspace == "alice"
    assert "Workspace:** alice" in " ".join(c.value for c in app.sidebar.caption)
    app.switch_page("views/history.py").run()
    assert any("No questions asked yet" in i.value for i in app.info)  # default's history is not alice's
    app.sidebar.selectbox(key="workspace").set_value("default").run()
    assert not app.exception and app.metric[0].value == "1"


def test_a_damaged_workspace_database_is_reported_not_replaced(app, tmp_path):
    db = tmp_path / "data" / "workspaces" / "default" / "workspace.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"not a database at all" * 50)
    app.run()
    assert not app.exception
    assert any(str(db) in e.value and "left exactly as it is" in e.value for e in app.error)
    assert db.read_bytes() == b"not a database at all" * 50


@pytest.mark.slow
def test_a_training_job_outlives_the_session_that_started_it(tmp_path, monkeypatch):
    """Start a (tiny, real) local LoRA training from one session, drop that session, and the
    training process still registers its adapter as the workspace's active model."""
    import gc
    import time

    from lib.workspace import Workspace
    from tests.test_training import needs_training_deps

    needs_training_deps()
    data = tmp_path / "data"
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(data))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    _open(at, "views/finetune.py")
    pairs = "".join(f"What is code {i} of Zorblat?,Code {i} is QX-{7700 + i}.\n" for i in range(10))
    at.file_uploader(key="ft_upload").set_value(("pairs.csv", ("question,answer\n" + pairs).encode(),
                                                 "text/csv")).run()
    at.button(key="ft_load_upload").click().run()
    at.number_input(key="ft_local_steps").set_value(5)
    at.select_slider(key="ft_local_rank").set_value(4)
    at.text_input(key="ft_local_name").input("zorblat-codes")
    at.button(key="ft_local_start").click().run()
    assert not at.exception and not at.error
    [job] = Workspace(data, "default").jobs("local")
    assert job.name == "zorblat-codes" and not job.finished
    del at  # the browser session that started it is gone
    gc.collect()
    deadline = time.time() + 600
    while time.time() < deadline and not Workspace(data, "default").job(job.id).finished:
        time.sleep(2)
    ws = Workspace(data, "default")
    done = ws.job(job.id)
    assert done.status == "succeeded", (done.error, ws.job_log_tail(job.id, 2000))
    model = ws.active_model()
    assert model.id == job.id and model.name == "zorblat-codes" and model.examples == 10
    assert model.lora and ws.adapter_path(job.id).is_file() and model.lora == str(ws.adapter_path(job.id))
    assert model.workspace == "default" and "5 steps" in model.method
    # a new session sees the finished job and the new model, active
    later = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    _open(later, "views/finetune.py")
    assert any("Trained and registered zorblat-codes" in s.value for s in later.success)
    table = next(d.value for d in later.dataframe if "active" in d.value.columns)
    assert table[table["active"] == "✓"]["name"].iloc[0] == "zorblat-codes"
    assert later.session_state["settings"].finetuned.lora == model.lora


def test_a_workspace_error_inside_a_page_is_shown_not_a_traceback(app, monkeypatch):
    from lib.workspace import Workspace, WorkspaceError

    def broken(self, collection=None):
        raise WorkspaceError(f"The workspace database {self.db_path} could not be read (disk I/O error).")

    monkeypatch.setattr(Workspace, "comparisons", broken)
    _open(app, "views/history.py")
    assert any("could not be read (disk I/O error)" in e.value for e in app.error)
