"""Workshop mode's participants and the spend caps (lib/gateway.py), with the real openai client against
tests/openai_server.py."""

import subprocess
import sys
import threading
from dataclasses import replace

import pytest

from lib import engine
from lib.arms import ARMS, build_prompt, run_arm
from lib.errors import CapReached, ConfigError
from lib.gateway import CappedProvider, Ledger
from lib.pricing import price_tokens
from lib.records import GenParams
from lib.settings import ModelSpec, WorkshopConfig, load_settings
from lib.workshop import Workshop, participant_rows, workshop_config
from tests.conftest import ROOT


@pytest.fixture
def hosted(settings, openai_server):
    return settings.with_overrides(openai_api_key="sk-test-local-key", openai_base_url=openai_server.base_url,
                                   base=ModelSpec("openai", "gpt-4o-mini"), max_retries=0, request_timeout_s=5.0)


def _caps(settings, participant=None, total=None):
    """The settings with these caps (WORKBENCH_CAP_PARTICIPANT_USD / WORKBENCH_CAP_TOTAL_USD)."""
    return replace(settings, workshop=replace(settings.workshop, cap_participant_usd=participant, cap_total_usd=total))


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


def test_hosted_spend_is_measured_and_recorded(hosted, openai_server):
    hosted = _caps(hosted, participant=1.0)
    openai_server.reply = "The refund window is 45 days [1]."
    provider, r = _ask(hosted)
    assert isinstance(provider, CappedProvider) and r.error is None
    spent = Ledger(hosted.data_dir).spent("default")
    assert spent == pytest.approx(r.cost_usd) and spent > 0  # the measured usage, not the max_tokens reservation
    expected, _ = price_tokens("gpt-4o-mini", r.usage.prompt_tokens, 16)
    assert spent < expected


def test_at_the_participant_cap_hosted_arms_refuse_and_local_ones_answer(hosted, openai_server):
    openai_server.reply = "The refund window is 45 days [1]."
    provider, first = _ask(_caps(hosted, participant=1.0))
    expected = provider.expected_cost(build_prompt("How long is the refund window?", None).messages(), 16)
    hosted = _caps(hosted, participant=first.cost_usd + expected * 0.5)  # room for less than one more
    sent = len(openai_server.requests)
    _, r = _ask(hosted)
    assert r.answer == "" and "Spend cap reached" in r.error and "ask the workshop host" in r.error
    assert f"has spent ${first.cost_usd:.6f} of the" in r.error and "WORKBENCH_CAP_PARTICIPANT_USD" in r.error
    assert "reserved" not in r.error  # nothing else under way: the refusal shows settled spend only
    assert len(openai_server.requests) == sent  # refused before anything was sent
    other = replace(hosted, workspace="bob")
    engine.create_workspace(other, "bob")
    assert _ask(other)[1].error is None  # another participant has their own cap
    local = engine.providers_for(replace(hosted, base=ModelSpec("local", "smollm2-135m")))["base"]
    assert not isinstance(local, CappedProvider)


def test_the_total_cap_covers_everyone(hosted, openai_server):
    provider, first = _ask(_caps(hosted, total=1.0))
    expected = provider.expected_cost(build_prompt("How long is the refund window?", None).messages(), 16)
    hosted = _caps(hosted, total=first.cost_usd + expected * 0.5)
    engine.create_workspace(replace(hosted, workspace="bob"), "bob")
    _, r = _ask(replace(hosted, workspace="bob"))
    assert "the workshop has spent" in r.error and "WORKBENCH_CAP_TOTAL_USD" in r.error


def test_a_refusal_separates_settled_spend_from_reservations_under_way(hosted):
    """What "has spent" says is settled money; requests still under way are named as reserved."""
    ledger = Ledger(hosted.data_dir)
    config = WorkshopConfig(cap_participant_usd=0.01)
    ledger.settle(ledger.reserve("default", "gpt-4o-mini", 0.004, config), 0.003)
    ledger.reserve("default", "gpt-4o-mini", 0.005, config)  # under way
    with pytest.raises(Exception, match=r"has spent \$0\.00300 \(\$0\.00500 more is reserved by requests under "
                                        r"way\) of the \$0\.0100 cap"):
        ledger.reserve("default", "gpt-4o-mini", 0.004, config)
    assert ledger.totals("default") == (pytest.approx(0.003), pytest.approx(0.005))


def test_an_unknown_price_is_refused_while_a_cap_is_set(hosted, openai_server):
    _, r = _ask(replace(_caps(hosted, total=5.0), base=ModelSpec("openai", "my-own-lora")))
    assert "no known price" in r.error and "ask the workshop host" in r.error
    assert openai_server.requests_to("/chat/completions") == []
    # without caps it is allowed
    assert _ask(replace(hosted, base=ModelSpec("openai", "my-own-lora")))[1].error is None


def test_simultaneous_requests_cannot_overspend(hosted, openai_server):
    openai_server.first_token_delay = 0.3
    ledger = Ledger(hosted.data_dir)
    probe = engine.providers_for(_caps(hosted, participant=1.0))["base"]
    expected = probe.expected_cost([{"role": "user", "content": "x"}], 16)
    hosted = _caps(hosted, participant=expected * 3.5)  # three reservations fit, the fourth does not
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
    assert ledger.spent("default") <= expected * 3.5


def test_spend_survives_a_restart(hosted, openai_server):
    _, r = _ask(_caps(hosted, participant=1.0))
    code = ("import sys; sys.path.insert(0, sys.argv[2]); from lib.gateway import Ledger; "
            "print(repr(Ledger(sys.argv[1]).spent('default')))")
    out = subprocess.run([sys.executable, "-c", code, str(hosted.data_dir), str(ROOT)], capture_output=True,
                         text=True, check=True).stdout
    assert float(out) == pytest.approx(r.cost_usd) and float(out) > 0


def test_host_rows_count_questions_runs_and_spend(fake_settings, monkeypatch):
    shop = Workshop(fake_settings.data_dir)
    p = shop.join("Grace")
    s = replace(fake_settings, workspace=p.workspace)
    engine.create_workspace(s, p.workspace)
    ws = engine.workspace_for(s)
    ws.add_comparison(engine.ask(s, "What is the refund window?", ["baseline"]))
    ledger = Ledger(fake_settings.data_dir)
    ledger.settle(ledger.reserve(p.workspace, "gpt-4o-mini", 0.25, WorkshopConfig()), 0.125)
    shop.join("Linus")
    rows = participant_rows(fake_settings.data_dir)
    assert [(r.name, r.questions, r.runs, r.spent_usd) for r in rows] == [("Grace", 1, 0, 0.125), ("Linus", 0, 0, 0.0)]


# ---------------------------------------------------------------- joining: code, limits, duplicates

def test_joining_needs_the_join_code_and_is_limited_per_client_and_in_number(tmp_path):
    shop = Workshop(tmp_path)
    config = WorkshopConfig(enabled=True, host_code="h", join_code="owl-42", max_participants=2, join_rate=2)
    with pytest.raises(ConfigError, match="not the join code"):
        shop.join("Ada", "10.0.0.1", config, "owl-41")
    shop.join("Ada", "10.0.0.1", config, " owl-42 ")
    with pytest.raises(ConfigError, match="Too many attempts to join from this device"):
        shop.join("Ada again", "10.0.0.1", config, "owl-42")  # the wrong code counted as an attempt too
    shop.join("Bob", "10.0.0.2", config, "owl-42")
    with pytest.raises(ConfigError, match="workshop is full"):
        shop.join("Cy", "10.0.0.3", config, "owl-42")
    assert [p.name for p in shop.participants()] == ["Ada", "Bob"]
    outcomes = [(j.name, j.client, j.outcome == "joined") for j in shop.joins()]
    assert outcomes[:2] == [("Ada", "10.0.0.1", False), ("Ada", "10.0.0.1", True)]
    assert len(outcomes) == 5  # refused attempts are recorded for the host


def test_a_name_is_refused_with_a_message_when_too_long_or_empty(tmp_path):
    shop = Workshop(tmp_path)
    with pytest.raises(ConfigError, match="61 characters long: use at most 60"):
        shop.join("x" * 61)
    with pytest.raises(ConfigError, match="Type your name"):
        shop.join("   ")
    assert shop.join("y" * 60).name == "y" * 60  # at the limit it is kept whole


def test_joining_again_under_the_same_name_shares_the_allowance(tmp_path):
    shop, ledger = Workshop(tmp_path), Ledger(tmp_path)
    config = WorkshopConfig(enabled=True, host_code="h", cap_participant_usd=0.01)
    first = shop.join("Ada Lovelace", "10.0.0.1", config)
    ledger.settle(ledger.reserve(first.workspace, "gpt-4o-mini", 0.004, config), 0.006)
    second = shop.join("ada  lovelace", "10.0.0.9", config)  # another browser, the same person
    assert second.workspace != first.workspace
    assert ledger.totals(second.workspace) == (pytest.approx(0.006), 0.0)  # not a fresh allowance
    with pytest.raises(CapReached, match="has spent"):
        ledger.reserve(second.workspace, "gpt-4o-mini", 0.005, config)
    with pytest.raises(CapReached, match="joined before, and that allowance is used up"):
        shop.join("Ada Lovelace", "10.0.0.7", config)  # refused at the cap: a new join brings nothing new
    assert shop.join("Grace", "10.0.0.7", config).name == "Grace"  # another name has its own
    raised = replace(config, cap_participant_usd=0.02)  # the host raised the cap: the request would fit now
    assert shop.join("Ada Lovelace", "10.0.0.8", raised).workspace not in (first.workspace, second.workspace)
    assert [len(g) for g in shop.duplicates()] == [3]  # for the host to merge


def test_the_host_merges_a_duplicate_join(fake_settings):
    from lib.workspace import workspace_exists

    shop, ledger = Workshop(fake_settings.data_dir), Ledger(fake_settings.data_dir)
    first, again = shop.join("Ada"), shop.join("Ada")
    for p in (first, again):
        engine.create_workspace(replace(fake_settings, workspace=p.workspace), p.workspace)
    ledger.settle(ledger.reserve(again.workspace, "gpt-4o-mini", 0.01, WorkshopConfig()), 0.01)
    kept, dup = engine.merge_participants(fake_settings, first.token, again.token)
    assert (kept.token, dup.token) == (first.token, again.token)
    assert shop.participant(again.token).workspace == first.workspace  # the later link opens the first workspace
    assert not workspace_exists(fake_settings.data_dir, again.workspace)
    assert ledger.workspace_spent(first.workspace) == pytest.approx(0.01) and shop.duplicates() == []
    shop.remove(first.token)
    assert shop.participant(again.token) is None  # removing the participant retires merged links too


def test_the_host_code_can_be_tried_a_few_times_per_client(tmp_path):
    shop = Workshop(tmp_path)
    config = WorkshopConfig(enabled=True, host_code="open-sesame")
    assert [shop.check_host_code(f"guess-{i}", config, "10.0.0.5") for i in range(5)] == [False] * 5
    with pytest.raises(ConfigError, match="Too many wrong host codes"):
        shop.check_host_code("open-sesame", config, "10.0.0.5")  # not even compared while it waits
    assert shop.check_host_code("open-sesame", config, "10.0.0.6")  # another device is not locked out
    assert shop.host_wait("10.0.0.5") > 200


def test_a_participant_cannot_change_provider_endpoint_or_key(settings):
    from lib.errors import NotAllowed
    from lib.gateway import check_allowed
    from lib.workshop import locked_settings

    host = load_settings(env={"OPENAI_API_KEY": "sk-host-0123456789", "WORKBENCH_WORKSHOP": "1",
                              "WORKBENCH_HOST_CODE": "h", "WORKBENCH_BASE_MODEL": "gpt-4o-mini",
                              "WORKBENCH_WORKSHOP_BASE_MODELS": "gpt-4.1-nano"}, secrets_file=None)
    asked = {"base": ModelSpec("openai", "gpt-4.1"), "openai_base_url": "http://evil.example/v1",
             "openai_api_key": "sk-mine", "finetuned": ModelSpec("azure", "big-deployment")}
    mine = locked_settings(host, asked)
    assert (mine.base, mine.openai_base_url, mine.openai_api_key, mine.finetuned) == (
        host.base, None, "sk-host-0123456789", host.finetuned)
    assert locked_settings(host, {"base": ModelSpec("openai", "gpt-4.1-nano")}).base.name == "gpt-4.1-nano"
    assert [m.name for m in host.workshop.base_models] == ["gpt-4o-mini", "gpt-4.1-nano"]
    with pytest.raises(NotAllowed, match="not a model this workshop serves"):  # and the gateway refuses it anyway
        check_allowed(host, ModelSpec("openai", "gpt-4.1"), "base")
    check_allowed(host, ModelSpec("local", "smollm2-135m-instruct"), "base")  # local models are free
