"""The capacity measurement: its levels, what it stores, cancel, and the CLI's contract (`capacity --json`)."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import pytest

from lib import capacity
from lib.providers import Delta, Done, Started
from lib.records import GenParams
from lib.settings import ModelSpec
from lib.workspace import Workspace

CONTRACT = ("concurrency", "questions_per_hour", "latency_p50_ms", "latency_p95_ms", "tokens_per_s")


class FakeLocal:
    """A stand-in for the local model: every answer takes `seconds`, at most `at_once` at a time, and reports
    how many were being answered with it."""

    kind = "local"

    def __init__(self, seconds: float = 0.01, at_once: int = 4) -> None:
        self.spec = ModelSpec("local", "fake-model")
        self.threads = 3
        self.worker = SimpleNamespace(processes=1, batch=at_once, extra_bufts=False)
        self.seconds = seconds
        self.gate = threading.Semaphore(at_once)
        self.busy = 0
        self.lock = threading.Lock()
        self.asked: list[list[dict[str, str]]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(self, messages, params: GenParams):
        self.asked.append(messages)
        with self.gate:
            with self.lock:
                self.busy += 1
                together = self.busy
            yield Started()
            time.sleep(self.seconds)
            yield Delta("ok")
            with self.lock:
                self.busy -= 1
        yield Done("length", 10, params.max_tokens, batch_size=together)


def test_levels_count_what_was_answered(tmp_path):
    fake = FakeLocal()
    prompts, text = capacity.prompts_for(["How long is the refund window?", "Who pays return postage?"], None, 1)
    assert len(prompts) == 4 and "sample documents" in text
    assert "Sources:" in prompts[0][1]["content"] and "Sources:" not in prompts[1][1]["content"]
    seen: list[int] = []
    result = capacity.measure(fake, prompts, "base", text, (1, 3), questions=6, max_tokens=5,
                              on_progress=lambda p: seen.append(p.done))
    assert [lv.concurrency for lv in result.levels] == [1, 3]
    for lv in result.levels:
        assert lv.questions == 6 and lv.errors == 0
        assert lv.tokens_per_s == pytest.approx(6 * 5 / lv.wall_s)
        assert lv.questions_per_hour == pytest.approx(6 / lv.wall_s * 3600)
        assert 0 < lv.latency_p50_ms <= lv.latency_p95_ms
    assert result.levels[0].batch_size_mean == 1.0 and result.levels[1].batch_size_mean > 1
    assert max(seen) == 12  # progress after every answer
    assert len(fake.asked) == 1 + 12  # one untimed question loads the model first
    assert result.machine["threads"] == 3 and result.machine["batch"] == 4 and result.machine["cores"] >= 1
    again = capacity.Capacity.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.levels[1].concurrency == 3 and again.label == result.label
    assert "fake-model" in result.label and "1 worker process x 3 threads" in result.label


def test_a_hosted_role_and_bad_levels_are_refused(fake_settings):
    with pytest.raises(Exception, match="local model on this machine"):
        capacity.provider_for(fake_settings, "base")
    with pytest.raises(ValueError, match="1,2,4,8"):
        capacity.parse_levels("1,two")
    with pytest.raises(ValueError, match="from 1 to 64"):
        capacity.parse_levels("0,2")
    assert capacity.parse_levels("8, 1,2,2") == (1, 2, 8)


def test_run_stores_the_measurement_and_cancel_stores_nothing(settings, monkeypatch):
    ws = Workspace(settings.data_dir, "default")
    monkeypatch.setattr(capacity, "provider_for", lambda s, role: FakeLocal(seconds=0.01))
    stored = capacity.run(settings, ws, "base", (1, 2), questions=2, max_tokens=3,
                          question_texts=["How long is the refund window?"])
    assert capacity.latest(ws).id == stored.id and capacity.latest(ws, "finetuned") is None
    assert ws.capacities("base")[0]["machine"]["cpu"]

    cancel = threading.Event()
    with pytest.raises(capacity.Cancelled):
        capacity.run(settings, ws, "base", (1, 2), questions=50, max_tokens=3, cancel=cancel,
                     on_progress=lambda p: cancel.set() if p.done >= 2 else None,
                     question_texts=["How long is the refund window?"])
    assert [r["id"] for r in ws.capacities()] == [stored.id]


def test_a_background_measurement_reports_progress_and_its_result(settings, monkeypatch):
    ws = Workspace(settings.data_dir, "default")
    monkeypatch.setattr(capacity, "provider_for", lambda s, role: FakeLocal(seconds=0.01))
    handle = capacity.start(settings, ws, "base", (1, 2), questions=2, max_tokens=3)
    handle.thread.join(60)
    assert handle.error is None and handle.result is not None
    assert handle.progress.done == 4 and capacity.running(ws) is handle
    assert capacity.latest(ws).id == handle.result.id


@pytest.mark.slow
def test_capacity_cli_prints_one_object_per_level_then_a_summary(tmp_path, capsys):
    """The contract of `python -m lib capacity --json`, on the real local model (tiny: 2 levels x 2 questions)."""
    from lib.__main__ import main

    code = main(["capacity", "--concurrency", "1,2", "--questions", "2", "--max-tokens", "4", "--json",
                 "--data-dir", str(tmp_path)])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    levels, summary = rows[:-1], rows[-1]
    assert [r["concurrency"] for r in levels] == [1, 2]
    for r in levels:
        assert all(isinstance(r[k], int | float) and r[k] > 0 for k in CONTRACT), r
        assert r["latency_p50_ms"] <= r["latency_p95_ms"] and r["questions"] == 2
    assert summary["summary"] is True and summary["role"] == "base"
    assert summary["machine"]["cores"] >= 1 and summary["machine"]["threads"] >= 1 and summary["machine"]["cpu"]
    assert capacity.latest(Workspace(tmp_path, "default")).id == summary["id"]

    assert main(["capacity", "--concurrency", "x", "--json", "--data-dir", str(tmp_path)]) == 2
    assert "1,2,4,8" in json.loads(capsys.readouterr().out)["error"]


def test_the_curve_shows_throughput_and_p95_against_concurrency():
    from lib.charts import capacity_curve

    levels = [{"concurrency": 4, "questions_per_hour": 900.0, "latency_p95_ms": 6000.0},
              {"concurrency": 1, "questions_per_hour": 300.0, "latency_p95_ms": 2500.0}]
    fig = capacity_curve(levels)
    bars, line = fig.data
    assert list(bars.x) == ["1", "4"] and list(bars.y) == [300.0, 900.0]
    assert list(line.y) == [2.5, 6.0] and line.yaxis == "y2"
    assert fig.layout.yaxis2.overlaying == "y"


def test_host_page_measures_capacity_and_forecasts_the_workshop(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from lib.settings import LOCAL_BASE_MODEL
    from tests.conftest import ROOT

    data = tmp_path / "data"
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(data))
    monkeypatch.setenv("WORKBENCH_WORKSHOP", "1")
    monkeypatch.setenv("WORKBENCH_HOST_CODE", "open-sesame")
    monkeypatch.setattr(capacity, "provider_for", lambda s, role: FakeLocal(seconds=0.01))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["settings_overrides"] = {
        "base": ModelSpec("local", LOCAL_BASE_MODEL),
        "finetuned": ModelSpec("local", LOCAL_BASE_MODEL, str(ROOT / "assets/adapters/quillmere-smollm2-lora.gguf"))}
    at.run()
    at.switch_page("views/host.py").run()
    at.text_input(key="host_code").input("open-sesame")
    at.button(key="host_open").click().run()
    assert not at.exception, at.exception
    assert any("No capacity measurement yet" in i.value for i in at.info)
    at.number_input(key="host_cap_questions").set_value(2)
    at.button(key="host_cap_start").click().run()
    handle = capacity.running(Workspace(data, "default"))
    handle.thread.join(60)
    assert handle.result is not None
    at.run()
    assert not at.exception, at.exception
    labels = {m.label: m.value for m in at.metric}
    assert set(labels) == {"Local questions a minute", "Median participant waits", "Last participant waits"}
    at.number_input(key="host_cap_people").set_value(20).run()
    assert any("20 participants asking 3 local arms" in c.value for c in at.caption)
