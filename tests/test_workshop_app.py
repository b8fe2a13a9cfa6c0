"""Workshop mode through Streamlit's AppTest: join, the token's isolation, the host view, the caps' messages."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from lib.settings import ModelSpec
from lib.workshop import Workshop
from lib.workspace import Workspace
from tests.conftest import ROOT


@pytest.fixture
def workshop_env(tmp_path, monkeypatch, fake_provider):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WORKBENCH_WORKSHOP", "1")
    monkeypatch.setenv("WORKBENCH_HOST_CODE", "open-sesame")
    return tmp_path / "data"


def _session(token: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["settings_overrides"] = {"base": ModelSpec("fake", "base-model"),
                                              "finetuned": ModelSpec("fake", "tuned-model")}
    if token:
        at.query_params["t"] = token
    return at.run()


def _join(name: str) -> AppTest:
    at = _session()
    assert at.title[0].value == "Join the workshop" and not at.sidebar.selectbox
    at.text_input(key="join_name").input(name)
    at.button(key="join_submit").click().run()
    assert not at.exception, at.exception
    return at


def _ask(at: AppTest, question: str) -> AppTest:
    at.switch_page("views/compare.py").run()
    at.text_input(key="compare_question").input(question).run()
    at.button(key="compare_ask").click().run()
    assert not at.exception, at.exception
    return at


def test_joining_gives_a_personal_link_to_an_own_workspace(workshop_env):
    at = _join("Ada")
    token = at.query_params["t"][0] if isinstance(at.query_params["t"], list) else at.query_params["t"]
    p = Workshop(workshop_env).participant(token)
    assert p is not None and p.name == "Ada" and at.title[0].value == "RAG, fine-tuning, or both?"
    assert at.session_state["settings"].workspace == p.workspace
    assert "Workspace" not in [s.label for s in at.sidebar.selectbox]  # no free switcher in a workshop
    # the link opens the same workspace in a new session; a name or a guessed token opens nothing
    assert _session(token).session_state["settings"].workspace == p.workspace
    for guess in ("Ada", p.workspace, token[:-1] + ("A" if token[-1] != "A" else "B")):
        other = _session(guess)
        assert other.title[0].value == "Join the workshop" and other.warning
        assert "settings" not in other.session_state or other.session_state["settings"].workspace == "default"


def test_participants_do_not_see_each_others_questions(workshop_env, fake_provider):
    ada, bob = _join("Ada"), _join("Bob")
    _ask(ada, "What does Ada ask about tents?")
    _ask(bob, "What does Bob ask about boots?")
    ada.switch_page("views/history.py").run()
    bob.switch_page("views/history.py").run()
    ada_text = " ".join(m.value for m in ada.markdown) + " ".join(e.value for e in ada.expander if hasattr(e, "value"))
    bob_text = " ".join(m.value for m in bob.markdown)
    shop = Workshop(workshop_env)
    asked = {p.name: [c.question for c in Workspace(workshop_env, p.workspace).comparisons()[0]]
             for p in shop.participants()}
    assert asked == {"Ada": ["What does Ada ask about tents?"], "Bob": ["What does Bob ask about boots?"]}
    assert "Bob ask" not in ada_text and "Ada ask" not in bob_text
    assert Workspace(workshop_env).comparisons()[0] == []  # nothing landed in the default workspace


def test_host_view_needs_the_code_and_resets_and_removes(workshop_env, fake_provider):
    ada = _join("Ada")
    _ask(ada, "What does Ada ask about tents?")
    _join("Bob")
    host = _session()
    host.switch_page("views/host.py").run()
    assert not host.dataframe
    host.text_input(key="host_code").input("ada").run()
    host.button(key="host_open").click().run()
    assert host.error and "not the host code" in host.error[0].value and not host.dataframe
    host.text_input(key="host_code").input("open-sesame")
    host.button(key="host_open").click().run()
    table = host.dataframe[0].value
    assert list(table["Name"]) == ["Ada", "Bob"] and list(table["Questions asked"]) == [1, 0]
    assert list(table["Spend (USD)"]) == [0.0, 0.0]
    shop = Workshop(workshop_env)
    ada_p = next(p for p in shop.participants() if p.name == "Ada")
    host.selectbox(key="host_pick").select(ada_p.token)
    host.button(key="host_reset").click().run()
    assert "empty again" in host.success[0].value
    assert Workspace(workshop_env, ada_p.workspace).comparisons()[0] == []
    assert shop.participant(ada_p.token) == ada_p
    host.selectbox(key="host_pick").select(ada_p.token)
    host.button(key="host_remove").click().run()
    assert "removed" in host.success[0].value and list(host.dataframe[0].value["Name"]) == ["Bob"]
    assert shop.participant(ada_p.token) is None
    assert _session(ada_p.token).title[0].value == "Join the workshop"


def test_at_the_cap_a_hosted_arm_says_so_and_a_local_arm_answers(workshop_env, monkeypatch, openai_server):
    monkeypatch.setenv("WORKBENCH_CAP_PARTICIPANT_USD", "0")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-local-key")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    at = _join("Ada")
    at.session_state["settings_overrides"] = {"base": ModelSpec("openai", "gpt-4o-mini"),
                                              "finetuned": ModelSpec("fake", "tuned-model")}
    at.run()
    at.switch_page("views/compare.py").run()
    _ask(at, "How long is the refund window?")
    text = " ".join(e.value for e in at.error).replace("\\", "")
    assert "Spend cap reached" in text and "ask the workshop host" in text and "$0.00" in text
    assert openai_server.requests_to("/chat/completions") == []
    assert any("tuned\\-model says hello" in m.value for m in at.markdown)  # the uncapped (non-hosted) arm answered


def test_names_are_shown_as_text_and_long_ones_refused_with_a_message(workshop_env):
    at = _session()
    at.text_input(key="join_name").input("x" * 75)
    at.button(key="join_submit").click().run()
    assert at.title[0].value == "Join the workshop"
    assert "75 characters long: use at most 60" in at.error[0].value.replace("\\", "")
    at = _join("**Bold** [link](http://evil.example) Ada")
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "\\*\\*Bold\\*\\*" in sidebar and "](http" not in sidebar  # escaped: no bold, no link
    host = _session()
    host.switch_page("views/host.py").run()
    host.text_input(key="host_code").input("open-sesame")
    host.button(key="host_open").click().run()
    host.button(key="host_reset").click().run()
    notice = host.success[0].value
    assert "\\*\\*Bold\\*\\*" in notice and "](http" not in notice


def test_join_code_small_caps_and_locked_settings(workshop_env, monkeypatch):
    monkeypatch.setenv("WORKBENCH_JOIN_CODE", "owl-42")
    monkeypatch.setenv("WORKBENCH_CAP_PARTICIPANT_USD", "0.002")
    at = _session()
    at.text_input(key="join_name").input("Ada")
    at.text_input(key="join_code").input("owl-41")
    at.button(key="join_submit").click().run()
    assert "not the join code" in at.error[0].value and at.title[0].value == "Join the workshop"
    at.text_input(key="join_code").input("owl-42")
    at.button(key="join_submit").click().run()
    assert at.title[0].value == "RAG, fine-tuning, or both?"
    at.switch_page("views/settings.py").run()
    assert not at.exception
    keys = {w.key for w in at.text_input}
    assert not keys & {"settings_base_url", "settings_key", "settings_azure_endpoint", "settings_base_name"}
    assert "workshop host chose the providers" in at.info[0].value
    caps = at.dataframe[0].value
    assert list(caps["limit"]) == ["$0.00200"] and list(caps["left"]) == ["$0.00200"]  # not "$0.00"
    host = _session()
    host.switch_page("views/host.py").run()
    host.text_input(key="host_code").input("open-sesame")
    host.button(key="host_open").click().run()
    assert [c.value for c in host.code] == ["owl-42"]  # to read out or project
    assert "per participant $0.00200" in " ".join(c.value for c in host.caption)
