"""Leaving the Documents page while a file is embedding does not drop it: the files are stored by a job that
outlives the page's run, and the page shows the results when it is opened again."""

from __future__ import annotations

import threading

from streamlit.testing.v1 import AppTest

from lib import engine
from lib.settings import ModelSpec
from tests.conftest import ROOT


def test_an_upload_survives_leaving_the_page_while_it_embeds(tmp_path, monkeypatch, fake_provider):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["settings_overrides"] = {"base": ModelSpec("fake", "base-model"),
                                              "finetuned": ModelSpec("fake", "tuned-model")}
    at.run()
    at.switch_page("views/documents.py").run()
    kb = engine.open_kb(at.session_state["settings"])
    embedding, go_on = threading.Event(), threading.Event()

    def slow_ingest(progress):  # the file is still embedding when its page is left
        progress("parrot.md", "embedding", 0.1)
        embedding.set()
        go_on.wait(30)
        return [engine.ingest_upload(kb, "parrot.md", b"The office parrot is called Juniper.", progress=progress)]

    at.session_state["docs_job"] = engine.ingest_in_background(slow_ingest)
    assert embedding.wait(10)
    at.switch_page("views/compare.py").run()  # the participant leaves Documents mid-embedding
    assert not at.exception and at.title[0].value == "Compare"
    go_on.set()
    at.session_state["docs_job"].wait(30)
    assert [d.name for d in kb.documents()] == ["parrot.md"]  # stored although nobody watched
    at.switch_page("views/documents.py").run()
    assert not at.exception and "docs_job" not in at.session_state
    assert any("parrot.md" in s.value.replace("\\", "") and "ingested" in s.value for s in at.success)
    assert list(at.dataframe[0].value["document"]) == ["parrot.md"]
