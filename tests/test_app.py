"""Every page through Streamlit's AppTest, starting from the router, with a fake provider."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from lib.settings import ModelSpec
from tests.conftest import ROOT

PAGES = ["views/home.py", "views/documents.py", "views/compare.py", "views/finetune.py", "views/history.py",
         "views/settings.py"]


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
    saved = (tmp_path / "data" / "history" / "default.jsonl").read_text().splitlines()
    assert [json.loads(line)["question"] for line in saved] == ["Question one?", "Question two?"]
    assert {b.proto.label for b in app.get("download_button")} == {"Download CSV", "Download JSON"}


def test_damaged_history_line_is_skipped_with_a_warning(app, tmp_path):
    folder = tmp_path / "data" / "history"
    folder.mkdir(parents=True)
    (folder / "default.jsonl").write_text('{"broken": \n')
    _open(app, "views/history.py")
    assert any("damaged" in w.value for w in app.warning)


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
    table = app.dataframe[-1].value
    assert (table["active"] == "✓").sum() == 1 and table[table["active"] == "✓"]["provider"].iloc[0] == "openai"
    uploads = openai_server.requests_to("/files", "POST")
    assert len(uploads) == 1
