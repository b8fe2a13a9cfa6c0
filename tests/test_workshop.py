"""Workshop mode's participants and the spend caps, with the real openai client against tests/openai_server.py."""

import subprocess
import sys
import threading
from dataclasses import replace

import pytest

from lib import engine
from lib.arms import ARMS, build_prompt, run_arm
from lib.history import comparison_to_dict
from lib.pricing import price_tokens
from lib.providers import GenParams
from lib.settings import ModelSpec
from lib.workshop import CappedProvider, Workshop, WorkshopConfig, participant_rows, workshop_config
from tests.conftest import ROOT


@pytest.fixture
def hosted(settings, openai_server):
    return settings.with_overrides(openai_api_key="sk-test-local-key", openai_base_url=openai_server.base_url,
                                   base=ModelSpec("openai", "gpt-4o-mini"), max_retries=0, request_timeout_s=5.0)


def _caps(monkeypatch, participant=None, total=None):
    for name, value in (("WORKBENCH_CAP_PARTICIPANT_USD", participant), ("WORKBENCH_CAP_TOTAL_USD", total)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(value))


def _ask(settings, params=GenParams(max_tokens=16)):
    provider = engine.providers_for(settings)["base"]
    return provider, run_arm(ARMS["baseline"], provider, "How long is the refund window?", None, params)


def test_config_reads_the_settings_and_rejects_bad_ones():
    assert workshop_config({}) == WorkshopConfig()
    c = workshop_config({"WORKBENCH_WORKSHOP": "1", "WORKBENCH_HOST_CODE": "h0st", "WORKBENCH_CAP_PARTICIPANT_USD": "0.50",
                         "WORKBENCH_CAP_TOTAL_USD": "$10"})
    assert (c.enabled, c.host_code, c.cap_participant_usd, c.cap_total_usd) == (True, "h0st", 0.5, 10.0)
    with pytest.raises(ValueError, match="WORKBENCH_HOST_CODE"):
        workshop_config({"WORKBENCH_WORKSHOP": "1"})
    with pytest.raises(ValueError, match="dollars"):
        workshop_config({"WORKBENCH_CAP_TOTAL_USD": "ten"})


def test_a_token_opens_a_workspace_and_a_name_does_not(tmp_path):
    shop = Workshop(tmp_path)
    a, b = shop.join("Ada Lovelace"), shop.join("Ada Lovelace")
    assert a.token != b.token and a.workspace != b.workspace and len(a.token) >= 20
    assert a.name not in a.token and a.workspace.startswith("ada-lovelace-")
    assert Workshop(tmp_path).participant(a.token) == a  # another process, the same file
    assert shop.participant("Ada Lovelace") is None and shop.participant(a.workspace) is None
    assert shop.participant("") is None
    shop.remove(a.token)
    assert shop.participant(a.token) is None and [p.token for p in shop.participants()] == [b.token]


def test_hosted_spend_is_measured_and_recorded(hosted, openai_server, monkeypatch):
    _caps(monkeypatch, participant=1.0)
    openai_server.reply = "The refund window is 45 days [1]."
    provider, r = _ask(hosted)
    assert isinstance(provider, CappedProvider) and r.error is None
    spent = Workshop(hosted.data_dir).spent("default")
    assert spent == pytest.approx(r.cost_usd) and spent > 0  # the measured usage, not the max_tokens reservation
    expected, _ = price_tokens("gpt-4o-mini", r.usage.prompt_tokens, 16)
    assert spent < expected


def test_at_the_participant_cap_hosted_arms_refuse_and_local_ones_answer(hosted, openai_server, monkeypatch):
    openai_server.reply = "The refund window is 45 days [1]."
    _caps(monkeypatch, participant=1.0)
    provider, first = _ask(hosted)
    expected = provider.expected_cost(build_prompt("How long is the refund window?", None).messages(), 16)
    _caps(monkeypatch, participant=first.cost_usd + expected * 0.5)  # room for less than one more
    sent = len(openai_server.requests)
    _, r = _ask(hosted)
    assert r.answer == "" and "Spend cap reached" in r.error and "ask the workshop host" in r.error
    assert f"${first.cost_usd:.6f}" in r.error and "WORKBENCH_CAP_PARTICIPANT_USD" in r.error
    assert len(openai_server.requests) == sent  # refused before anything was sent
    other = replace(hosted, workspace="bob")
    engine.create_workspace(other, "bob")
    assert _ask(other)[1].error is None  # another participant has their own cap
    local = engine.providers_for(replace(hosted, base=ModelSpec("local", "smollm2-135m")))["base"]
    assert not isinstance(local, CappedProvider)


def test_the_total_cap_covers_everyone(hosted, openai_server, monkeypatch):
    _caps(monkeypatch, total=1.0)
    provider, first = _ask(hosted)
    expected = provider.expected_cost(build_prompt("How long is the refund window?", None).messages(), 16)
    _caps(monkeypatch, total=first.cost_usd + expected * 0.5)
    engine.create_workspace(replace(hosted, workspace="bob"), "bob")
    _, r = _ask(replace(hosted, workspace="bob"))
    assert "the workshop has spent" in r.error and "WORKBENCH_CAP_TOTAL_USD" in r.error


def test_an_unknown_price_is_refused_while_a_cap_is_set(hosted, openai_server, monkeypatch):
    _caps(monkeypatch, total=5.0)
    _, r = _ask(replace(hosted, base=ModelSpec("openai", "my-own-lora")))
    assert "no known price" in r.error and "ask the workshop host" in r.error
    assert openai_server.requests_to("/chat/completions") == []
    _caps(monkeypatch)  # without caps it is allowed
    assert _ask(replace(hosted, base=ModelSpec("openai", "my-own-lora")))[1].error is None


def test_simultaneous_requests_cannot_overspend(hosted, openai_server, monkeypatch):
    openai_server.first_token_delay = 0.3
    shop = Workshop(hosted.data_dir)
    _caps(monkeypatch, participant=1.0)
    probe = engine.providers_for(hosted)["base"]
    expected = probe.expected_cost([{"role": "user", "content": "x"}], 16)
    _caps(monkeypatch, participant=expected * 3.5)  # three reservations fit, the fourth does not
    errors = []

    def one() -> None:
        provider = engine.providers_for(hosted)["base"]
        errors.append(run_arm(ARMS["baseline"], provider, "x", None, GenParams(max_tokens=16)).error)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(e is None for e in errors) <= 3 and any(e and "Spend cap" in e for e in errors)
    assert shop.spent("default") <= expected * 3.5


def test_spend_survives_a_restart(hosted, openai_server, monkeypatch):
    _caps(monkeypatch, participant=1.0)
    _, r = _ask(hosted)
    code = ("import sys; sys.path.insert(0, sys.argv[2]); from lib.workshop import Workshop; "
            "print(repr(Workshop(sys.argv[1]).spent('default')))")
    out = subprocess.run([sys.executable, "-c", code, str(hosted.data_dir), str(ROOT)], capture_output=True,
                         text=True, check=True).stdout
    assert float(out) == pytest.approx(r.cost_usd) and float(out) > 0


def test_host_rows_count_questions_runs_and_spend(fake_settings, monkeypatch):
    shop = Workshop(fake_settings.data_dir)
    p = shop.join("Grace")
    s = replace(fake_settings, workspace=p.workspace)
    engine.create_workspace(s, p.workspace)
    ws = engine.workspace_for(s)
    ws.add_comparison(comparison_to_dict(engine.ask(s, "What is the refund window?", ["baseline"])))
    shop.settle(shop.reserve(p.workspace, "gpt-4o-mini", 0.25, WorkshopConfig()), 0.125)
    shop.join("Linus")
    rows = participant_rows(fake_settings.data_dir)
    assert [(r.name, r.questions, r.runs, r.spent_usd) for r in rows] == [("Grace", 1, 0, 0.125), ("Linus", 0, 0, 0.0)]
