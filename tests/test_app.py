"""Every page through Streamlit's AppTest, starting from the router, with a fake provider."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from streamlit.testing.v1 import AppTest

from lib.settings import ModelSpec
from lib.workspace import Workspace
from tests.conftest import ROOT

PAGES = ["views/home.py", "views/documents.py", "views/compare.py", "views/evaluate.py", "views/decide.py",
         "views/finetune.py",
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
    app.file_uploader[0].set_value([
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
    # right after the add: the counts include the new chunks, and the uploader is empty again
    chunks = int(table["chunks"].sum())
    assert chunks > 0 and any(f"· {chunks} chunks ·" in c.value for c in app.caption)
    assert not app.file_uploader[0].value and app.button(key="docs_add").disabled
    app.selectbox(key="docs_selected").set_value("page.html").run()
    texts = [t.value for t in app.text]
    assert any("Hours:" in t and "9-17" in t for t in texts) and not any("x()" in t for t in texts)
    # removing asks first; Cancel keeps the document
    app.button(key="docs_remove").click().run()
    assert any("page.html" in w.value.replace("\\", "") and "cannot be undone" in w.value for w in app.warning)
    assert sorted(app.dataframe[0].value["document"]) == ["notes.md", "page.html"]
    app.button(key="docs_remove_cancel").click().run()
    assert not app.warning and len(app.dataframe[0].value) == 2
    app.button(key="docs_remove").click().run()
    app.button(key="docs_remove_confirm").click().run()
    assert list(app.dataframe[0].value["document"]) == ["notes.md"]
    assert any(f"· {chunks - 1} chunks ·" in c.value for c in app.caption)


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
    shown = [c.value.replace("\\", "") for c in app.sidebar.caption]  # Markdown source: model names are escaped
    assert any("base-model" in c and "tuned-model" in c for c in shown)


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
    assert [c.question for c in saved] == ["Question one?", "Question two?"] and skipped == 0
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
    assert any("Line 6: empty question or answer" in w.value.replace("\\", "") for w in app.warning)
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
    assert any("Registered ft:gpt-4.1-mini-2025-04-14:" in s.value.replace("\\", "") for s in app.success)
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
    assert any(str(db) in e.value.replace("\\", "") and "left exactly as it is" in e.value for e in app.error)
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
    assert any("Trained and registered zorblat-codes" in s.value.replace("\\", "") for s in later.success)
    table = next(d.value for d in later.dataframe if "active" in d.value.columns)
    assert table[table["active"] == "✓"]["name"].iloc[0] == "zorblat-codes"
    assert later.session_state["settings"].finetuned.lora == model.lora


def test_a_workspace_error_inside_a_page_is_shown_not_a_traceback(app, monkeypatch):
    from lib.workspace import Workspace, WorkspaceError

    def broken(self, collection=None):
        raise WorkspaceError(f"The workspace database {self.db_path} could not be read (disk I/O error).")

    monkeypatch.setattr(Workspace, "comparisons", broken)
    _open(app, "views/history.py")
    assert any("could not be read (disk I/O error)" in e.value.replace("\\", "") for e in app.error)
# ---------------------------------------------------------------- issue 10: what a new user trips over


def _docs_in(at, name):
    from lib import engine

    return {d.name for d in engine.open_kb(at.session_state["settings"], name).documents()}


def test_one_click_sample_goes_into_its_own_knowledge_base(app, fake_provider):
    app.session_state["kb_switch"] = "scratch"
    _open(app, "views/home.py")
    assert app.sidebar.selectbox(key="kb_name").value == "scratch"
    app.button(key="home_start").click().run()
    assert not app.exception
    assert app.title[0].value == "Compare"
    assert app.sidebar.selectbox(key="kb_name").value == "sample"  # switched, visibly
    assert app.session_state["settings"].collection == "sample"
    assert any("Switched to knowledge base **sample**" in i.value and "scratch" in i.value for i in app.info)
    assert _docs_in(app, "scratch") == set()  # the user's knowledge base is untouched
    assert {"refund_policy.md", "warranty.pdf"} <= _docs_in(app, "sample")
    assert any("says hello" in m.value for m in app.markdown)


def test_compare_answer_stays_with_its_knowledge_base_and_inputs_survive_pages(app, fake_provider):
    _open(app, "views/compare.py")
    app.text_input(key="compare_question").input("What is the refund window?").run()
    app.toggle(key="compare_baseline").set_value(True).run()
    app.slider(key="compare_top_k").set_value(6).run()
    app.button(key="compare_ask").click().run()
    assert any("says hello" in m.value for m in app.markdown)
    # another page and back: question, toggles and settings are as they were, the answer too
    app.switch_page("views/history.py").run()
    app.switch_page("views/compare.py").run()
    assert not app.exception
    assert app.text_input(key="compare_question").value == "What is the refund window?"
    assert app.toggle(key="compare_baseline").value is True
    assert app.slider(key="compare_top_k").value == 6
    assert any("says hello" in m.value for m in app.markdown)
    # another knowledge base: the answer (and its sources) is not shown there
    app.session_state["kb_switch"] = "other-kb"
    app.run()
    assert not app.exception
    assert not any("says hello" in m.value for m in app.markdown)
    assert not app.get("plotly_chart") and not any(m.value.startswith("#### ") for m in app.markdown)
    app.session_state["kb_switch"] = "default"
    app.run()
    assert any("says hello" in m.value for m in app.markdown)  # back where it was asked: shown again


def test_arm_pills_have_short_labels_and_the_blurbs_as_help(app):
    _open(app, "views/compare.py")
    pills = app.get("button_group")[-1]
    assert [o.content for o in pills.proto.options] == ["RAG", "Fine-tuned", "Hybrid", "Long context"]
    assert "fine-tuned model + retrieved sources" in pills.proto.help
    assert "the whole knowledge base in the prompt" in pills.proto.help
    assert list(app.pills(key="compare_arms").value) == ["rag", "finetuned", "hybrid"]  # long context: off by default


def test_settings_form_shows_what_is_in_force_and_refuses_impossible_models(app):
    app.session_state["settings_overrides"] = {}
    _open(app, "views/settings.py")
    assert app.selectbox(key="settings_base_provider").value == "local"
    # a provider switch proposes that provider's model
    app.selectbox(key="settings_base_provider").set_value("openai").run()
    assert app.text_input(key="settings_base_name").value == "gpt-4.1-mini"
    # an impossible combination is refused with a message, and nothing is applied
    app.text_input(key="settings_base_name").input("smollm2-135m-instruct").run()
    app.button(key="settings_apply").click().run()
    assert any("bundled local model" in e.value and "Not applied" in e.value for e in app.error)
    assert app.session_state["settings"].base.provider == "local"
    # the form and what is in force never disagree silently: after another click the page still says so
    app.run()
    assert any("Not applied" in e.value for e in app.error)
    assert any("not applied" in w.value for w in app.warning)
    assert any("In force now" in m.value and "smollm2-135m-instruct (local)" in m.value.replace("\\", "")
               for m in app.markdown)
    # Discard: the form shows what is in force again, and the warning goes
    app.button(key="settings_discard_button").click().run()
    assert app.selectbox(key="settings_base_provider").value == "local"
    assert not any("not applied" in w.value for w in app.warning) and not app.error
    app.selectbox(key="settings_base_provider").set_value("openai").run()
    app.text_input(key="settings_base_name").input("gpt-4o-mini").run()
    app.text_input(key="settings_base_url").input("http://127.0.0.1:9/v1").run()
    app.button(key="settings_apply").click().run()
    assert app.session_state["settings"].base.provider == "openai"
    # Reset: the form shows the defaults again, not the old provider, model and URL
    app.button(key="settings_reset").click().run()
    assert not app.exception
    assert app.session_state["settings"].base.provider == "local"
    assert app.selectbox(key="settings_base_provider").value == "local"
    assert app.text_input(key="settings_base_name").value == "smollm2-135m-instruct"
    assert app.text_input(key="settings_base_url").value == ""


def test_settings_connection_tests_keep_their_own_results(app, openai_server):
    app.session_state["settings_overrides"] = {
        "base": ModelSpec("openai", "gpt-4o-mini"), "finetuned": ModelSpec("openai", "missing-model"),
        "openai_api_key": "sk-test-two", "openai_base_url": openai_server.base_url}
    _open(app, "views/settings.py")
    app.button(key="settings_test_base").click().run()
    app.button(key="settings_test_finetuned").click().run()
    assert not app.exception
    assert len(app.success) == 1 and "answered" in app.success[0].value
    assert len(app.error) == 1 and "missing" in app.error[0].value.replace("\\", "")


def test_token_parts_add_up_when_the_server_counts_differently(app, openai_server):
    """The test server counts prompt tokens as words, unlike tiktoken: parts are scaled and labelled."""
    app.session_state["settings_overrides"] = {"base": ModelSpec("openai", "gpt-4o-mini"),
                                              "openai_api_key": "sk-test-tok", "openai_base_url": openai_server.base_url}
    _open(app, "views/compare.py")
    app.text_input(key="compare_question").input("What is the refund window?").run()
    app.toggle(key="compare_baseline").set_value(True).run()
    app.pills(key="compare_arms").set_value(["rag"]).run()
    app.button(key="compare_ask").click().run()
    assert not app.exception
    comparison = app.session_state["compare_last"].comparison
    for r in comparison.results:
        u = r.usage
        assert u.parts_estimated and u.counted_prompt_tokens != u.prompt_tokens
        assert min(u.parts.values()) >= 0 and sum(u.parts.values()) == u.prompt_tokens
    numbers = " ".join(m.value for m in app.markdown if m.value.startswith("First token"))
    assert "parts estimated" in numbers and " -" not in numbers
    spec = json.loads(app.get("plotly_chart")[1].proto.spec)
    prompt_parts = [t for t in spec["data"] if t["name"] != "completion"]
    for i, r in enumerate(comparison.results):
        assert sum(t["y"][i] for t in prompt_parts) == r.usage.prompt_tokens


def test_local_only_cost_charts_say_so(app, tmp_path):
    from tests.test_ui_lib import _comparison, _result

    local = [_result(), _result("baseline", "Baseline", cost=0.0)]
    for question in ("one?", "two?", "three?"):
        Workspace(tmp_path / "data", "default").add_comparison(
            dataclasses.replace(_comparison(question, local), id=question, collection="default"))
    _open(app, "views/history.py")
    assert not app.exception and app.metric[0].value == "3"
    scatter, _, cumulative = (json.loads(c.proto.spec) for c in app.get("plotly_chart"))
    for spec in (scatter, cumulative):
        assert "$0: local models" in spec["layout"]["annotations"][0]["text"]
        assert spec["layout"]["yaxis"]["visible"] is False  # no axis running from -1 to 1 dollars
    assert cumulative["layout"]["xaxis"]["dtick"] == 1 and cumulative["layout"]["xaxis"]["tickformat"] == "d"


def test_history_clear_asks_first(app, fake_provider):
    _open(app, "views/compare.py")
    app.text_input(key="compare_question").input("Question one?").run()
    app.button(key="compare_ask").click().run()
    app.switch_page("views/history.py").run()
    app.button(key="history_clear").click().run()
    assert any("cannot be undone" in w.value for w in app.warning) and app.metric[0].value == "1"
    app.button(key="history_clear_cancel").click().run()
    assert app.metric[0].value == "1"
    app.button(key="history_clear").click().run()
    app.button(key="history_clear_confirm").click().run()
    assert any("No questions asked yet" in i.value for i in app.info)


def test_finetune_says_why_training_cannot_start_and_how_long_it_takes(app, monkeypatch):
    from lib import finetune

    monkeypatch.setattr(finetune, "missing_training_deps", lambda: [])
    _open(app, "views/finetune.py")
    assert app.button(key="ft_local_start").disabled
    assert any("Training cannot start yet" in c.value and "load training data first" in c.value for c in app.caption)
    recipe = json.loads((ROOT / "assets/adapters/quillmere-smollm2-lora.gguf.json").read_text())
    assert app.number_input(key="ft_local_steps").value == recipe["steps"] == 125
    assert app.select_slider(key="ft_local_lr").value == recipe["lr"] == 3e-3
    minutes = round(125 * recipe["seconds_per_step"] / 60)
    assert any(f"about **{minutes} min** for 125 steps" in i.value for i in app.info)
    app.number_input(key="ft_local_steps").set_value(250).run()
    assert any(f"about **{round(250 * recipe['seconds_per_step'] / 60)} min**" in i.value for i in app.info)
    app.radio(key="ft_source").set_value("The sample training set").run()
    app.button(key="ft_load_sample").click().run()
    assert not app.button(key="ft_local_start").disabled
    assert not any("Training cannot start yet" in c.value for c in app.caption)


def test_untrusted_text_cannot_form_links_or_load_images(app, fake_provider, embedder, tmp_path):
    """A document name with blank lines and Markdown, an answer with an image and a www. address, a question
    and an error with images: all shown as text (issue 9, item 12)."""
    from lib import engine
    from lib.settings import load_settings

    name = "notes\n\n![x](http://127.0.0.1:9/doc.png) www.evil.example [a](http://e.example).md"
    kb = engine.open_kb(load_settings(env={}, secrets_file=None, data_dir=tmp_path / "data"), embedder=embedder)
    assert engine.ingest_upload(kb, name, b"The refund window is 45 days.").status == "ingested"
    fake_provider.enqueue("It is 45 days [1]. See www.evil.example or ![i](http://127.0.0.1:9/a.png) <img src=x>")
    fake_provider.fail_with["tuned-model"] = RuntimeError("bad ![e](http://127.0.0.1:9/e.png) www.err.example")
    _open(app, "views/compare.py")
    app.text_input(key="compare_question").input("Refund? ![q](http://127.0.0.1:9/q.png)").run()
    app.pills(key="compare_arms").set_value(["rag", "finetuned"]).run()
    app.button(key="compare_ask").click().run()
    assert not app.exception
    shown = [m.value for m in app.markdown] + [e.value for e in app.error]
    shown = [re.sub(r'\]\(#sources-rag-\d+ "(?:[^"\\\\]|\\\\.)*"\)', "](#link)", md) for md in shown]  # titles: tooltips
    for md in shown:  # Markdown source: every image, link or tag character is backslash-escaped
        assert not re.search(r"(?<!\\)!\[|\]\(http|(?<!\\)<img", md), md
        assert not re.search(r"www\\?\.", md), md  # a word joiner after "www" stops GFM's autolinks
    assert sum(md.count("](#link)") for md in shown) == 1  # the one real link: the citation
    answer = next(m.value for m in app.markdown if "45 days" in m.value)
    assert answer.count("](#sources-rag-1 ") == 1  # the one real link: the citation
    title = answer.split('](#sources-rag-1 "')[1].split('")')[0]
    assert "\n" not in title
    html = " ".join(h.proto.body for h in app.get("html"))
    assert 'id="sources-rag-1"' in html and "<img" not in html and "<a " not in html


def test_compare_shows_the_reference_and_each_arms_grade_for_a_set_question(app, fake_provider):
    fake_provider.enqueue("The refund window is forty-five days [1].", "I do not know.")
    _open(app, "views/compare.py")
    app.text_input(key="compare_question").input("How long is the refund window?").run()
    app.pills(key="compare_arms").set_value(["rag", "finetuned"])
    app.button(key="compare_ask").click().run()
    assert not app.exception
    captions = " ".join(c.value for c in app.caption)
    assert "Reference answer (from the question set): 45 days from the delivery date" in captions
    grades = [m.value for m in app.markdown if "Grade:" in m.value]
    assert len(grades) == 2
    assert any("Grade: correct" in g for g in grades) and any("Grade: refused" in g for g in grades)
    app.text_input(key="compare_question").input("A question of my own?").run()
    app.button(key="compare_ask").click().run()
    assert not [m.value for m in app.markdown if "Grade:" in m.value]  # no reference, no grade


def test_decide_page_recommends_projects_costs_and_runs_the_freshness_test(tmp_path, monkeypatch, openai_server,
                                                                          sample_kb_dir):
    """From a stored run: a recommendation with reasons, the cost table and charts, the freshness test on a copy
    of the knowledge base (the real one unchanged), and both report downloads."""
    import shutil

    from lib.__main__ import main

    data = tmp_path / "data"
    shutil.copytree(sample_kb_dir, data)
    for var, value in {"OPENAI_API_KEY": "sk-test-decide-page", "OPENAI_BASE_URL": openai_server.base_url,
                       "WORKBENCH_FT_MODEL": "ft:gpt-4o-mini-2024-07-18:acme::x", "WORKBENCH_DATA_DIR": str(data)}.items():
        monkeypatch.setenv(var, value)

    def reply(body):
        prompt = body["messages"][-1]["content"]
        return "60 days [1]." if "60 days" in prompt else "45 days [1]."

    openai_server.reply_fn = reply
    assert main(["eval", "--limit", "3", "--arms", "rag,finetuned", "--run-name", "page-run", "--json"]) == 0
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    _open(at, "views/decide.py")
    assert not at.error, [e.value for e in at.error]
    assert any(h.value.startswith("Recommendation: ") for h in at.subheader)
    assert any("Why" in m.value for m in at.markdown)
    assert len(at.get("plotly_chart")) == 3
    at.selectbox(key="decide_citations").set_value("yes").run()
    assert any(h.value == "Recommendation: RAG" for h in at.subheader), ([h.value for h in at.subheader], [m.value for m in at.markdown if "Why" in m.value])
    run_id = at.selectbox(key="decide_run").value  # the freshness fields belong to the chosen run
    assert at.text_input(key=f"decide_fresh_find_{run_id}").value == "45"
    assert at.text_input(key=f"decide_fresh_replace_{run_id}").value == "60"
    at.button(key="decide_fresh_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = at.dataframe[-1].value
    assert list(table["follows the change"]) == [True, False]  # RAG follows the edit, fine-tuned does not
    assert any("Re-indexing the edited document took" in c.value.replace("\\", "") for c in at.caption)
    assert len(at.get("download_button")) == 2


def test_fine_tuned_columns_show_the_model_card_and_warn_about_another_knowledge_base(app, tmp_path,
                                                                                      fake_provider, monkeypatch):
    from lib.finetune import registry
    from lib.finetune.registry import FineTunedModel

    monkeypatch.setattr(registry, "PROVIDER_KINDS", registry.PROVIDER_KINDS | {"fake"})
    ws = Workspace(tmp_path / "data", "default")
    ws.add_model(FineTunedModel(id="lic", name="license-adapter", provider="fake", model="tuned-model",
                                base_model="SmolLM2-135M-Instruct", knowledge_base="licenses", workspace="default",
                                trained_on=({"name": "mit.txt", "sha256": "aaa"},), method="LoRA r=16, 40 steps",
                                train_seconds=300.0, created_at=1_700_000_000))
    _open(app, "views/compare.py")
    app.text_input(key="compare_question").input("What does the licence allow?").run()
    app.button(key="compare_ask").click().run()
    assert not app.exception
    cards = [c.value for c in app.caption if c.value.startswith("Model card: ")]
    assert len(cards) == 2 and all("license\\-adapter" in c or "license-adapter" in c for c in cards)
    warnings = [w.value for w in app.warning]
    assert len(warnings) == 2 and all("not on knowledge base 'default'" in w.replace("\\", "") for w in warnings)


def test_fine_tune_on_this_knowledge_base_shows_its_duration_and_records_provenance(app, tmp_path, embedder):
    from lib import engine, finetune
    from lib.settings import load_settings
    from tests.test_training import needs_training_deps

    needs_training_deps()
    doc = tmp_path / "zorblat.md"
    doc.write_text("The Zorblat warranty lasts 7 years from purchase.\n\nZorblat units weigh 12 kg.\n")
    s = load_settings(env={}, secrets_file=None, data_dir=tmp_path / "data")
    engine.ingest_paths(engine.open_kb(s, "default", embedder=embedder), [doc])
    _open(app, "views/finetune.py")
    assert any("Expected duration: about" in i.value and "s per step" in i.value for i in app.info)
    assert any("not taught to answer questions" in c.value for c in app.caption)
    app.number_input(key="ft_kb_steps").set_value(5)
    app.button(key="ft_kb_start").click().run()
    assert not app.exception and not app.error
    ws = engine.workspace_for(s)
    [job] = ws.jobs("local")
    try:
        assert job.params["knowledge_base"] == "default" and job.params["steps"] == 5
        assert job.params["trained_on"] == [{"name": "zorblat.md", "sha256": ws and
                                             engine.open_kb(s).documents()[0].sha256}]
        assert "offline" in job.params["data_method"] and job.params["origin"] == "knowledge_base"
        # its progress is shown in its own section, before the section that trains on tab 1's set
        texts = [getattr(e, "value", "") for e in app.main]
        progress = next(i for i, e in enumerate(app.main) if e.type == "progress")
        other = next(i for i, t in enumerate(texts) if "Or train on the training set" in str(t))
        assert progress < other
    finally:
        finetune.cancel_local_training(ws, job.id)
    import time

    deadline = time.monotonic() + 60
    while not ws.job(job.id).finished and time.monotonic() < deadline:
        time.sleep(0.5)
    app.run()
    assert ws.job(job.id).status == "cancelled"
    assert any(i.value.startswith("Training was cancelled: no adapter was written") for i in app.info)
    assert not app.error, [e.value for e in app.error]


def test_decide_keeps_the_situation_across_pages_and_restarts(tmp_path, monkeypatch, openai_server, sample_kb_dir):
    import shutil

    from lib.__main__ import main

    data = tmp_path / "data"
    shutil.copytree(sample_kb_dir, data)
    for var, value in {"OPENAI_API_KEY": "sk-test-decide-keep", "OPENAI_BASE_URL": openai_server.base_url,
                       "WORKBENCH_DATA_DIR": str(data)}.items():
        monkeypatch.setenv(var, value)
    openai_server.reply_fn = lambda body: "45 days [1]."
    assert main(["eval", "--limit", "2", "--arms", "rag", "--run-name", "keep", "--json"]) == 0
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    _open(at, "views/decide.py")
    at.number_input(key="decide_per_day").set_value(5000)
    at.selectbox(key="decide_changes").set_value("weekly")
    at.selectbox(key="decide_citations").set_value("yes")
    at.number_input(key="decide_latency").set_value(2.5).run()
    assert not at.exception, at.exception
    at.switch_page("views/compare.py").run()
    at.switch_page("views/decide.py").run()
    assert at.number_input(key="decide_per_day").value == 5000 and at.selectbox(key="decide_changes").value == "weekly"
    fresh = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)  # a new session: a restart
    _open(fresh, "views/decide.py")
    assert fresh.selectbox(key="decide_citations").value == "yes" and fresh.number_input(key="decide_latency").value == 2.5
    assert fresh.number_input(key="decide_per_day").value == 5000
    # the prices used are shown with their source
    assert any("genai-prices" in str(d.value.to_dict()) for d in fresh.dataframe)
