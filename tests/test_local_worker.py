"""The local model's worker process: every CPU, crashes contained, one copy of the weights, fair timing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lib import local_worker
from lib.arms import ARMS, compare, run_arm
from lib.local_queue import LocalQueue
from lib.local_worker import LocalWorker, describe_exit, resolve_extra_bufts
from lib.providers import LocalLlama, Queued
from lib.records import GenParams
from lib.settings import LOCAL_BASE_MODEL, ModelSpec, load_settings

ROOT = Path(__file__).resolve().parent.parent
ADAPTER = ROOT / "assets" / "adapters" / "quillmere-smollm2-lora.gguf"
QUESTION = "How long is the refund window?"


def test_extra_buffer_types_are_off_on_cpus_with_amx_unless_forced():
    xeon = {"avx512f", "amx_tile", "amx_int8", "amx_bf16"}
    epyc = {"avx2", "avx512f", "avx512bw"}
    assert resolve_extra_bufts("auto", xeon) is False
    assert resolve_extra_bufts("auto", epyc) is True
    assert resolve_extra_bufts("auto", set()) is True
    assert resolve_extra_bufts("on", xeon) is True
    assert resolve_extra_bufts("off", epyc) is False


def test_setting_for_extra_buffer_types_is_checked():
    assert load_settings(env={}, secrets_file=None).llama_extra_bufts == "auto"
    assert load_settings(env={"WORKBENCH_LLAMA_EXTRA_BUFTS": "OFF"}, secrets_file=None).llama_extra_bufts == "off"
    with pytest.raises(ValueError, match="auto, on or off"):
        load_settings(env={"WORKBENCH_LLAMA_EXTRA_BUFTS": "maybe"}, secrets_file=None)


def test_exit_descriptions_name_the_signal():
    assert describe_exit(-11) == "stopped (signal 11, SIGSEGV)"
    assert "lack of memory" in describe_exit(-9)
    assert describe_exit(3) == "exited with code 3"


def test_queue_serves_one_at_a_time_in_arrival_order():
    queue = LocalQueue()
    tickets = [queue.join() for _ in range(4)]
    assert [queue.position(t) for t in tickets] == [0, 1, 2, 3]
    served: list[int] = []
    seen_positions: dict[int, list[int]] = {i: [] for i in range(4)}
    running = threading.Semaphore(1)
    overlap: list[bool] = []

    def client(i: int) -> None:
        while (ahead := queue.wait_turn(tickets[i], 0.05)) > 0:
            seen_positions[i].append(ahead)
        if not running.acquire(blocking=False):
            overlap.append(True)
        served.append(i)
        time.sleep(0.02)
        running.release()
        queue.leave(tickets[i])

    threads = [threading.Thread(target=client, args=(i,)) for i in (3, 1, 2, 0)]  # started out of order
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert served == [0, 1, 2, 3] and not overlap
    assert seen_positions[3] and all(1 <= p <= 3 for p in seen_positions[3])
    assert seen_positions[3] == sorted(seen_positions[3], reverse=True)  # its place only moves forward
    assert not seen_positions[0] or max(seen_positions[0]) <= 1
    assert queue.length == 0
    assert queue.expected_wait_s(2) is not None and queue.expected_wait_s(2) > 0


def test_a_waiting_request_that_is_abandoned_leaves_the_queue():
    queue = LocalQueue()
    first, second, third = queue.join(), queue.join(), queue.join()
    assert queue.wait_turn(first, 0.01) == 0
    queue.leave(second)  # its browser tab went away while waiting
    assert queue.position(third) == 1
    queue.leave(first)
    assert queue.wait_turn(third, 0.01) == 0


@pytest.fixture
def local_pair():
    base = LocalLlama(ModelSpec("local", LOCAL_BASE_MODEL))
    tuned = LocalLlama(ModelSpec("local", LOCAL_BASE_MODEL, str(ADAPTER)))
    return {"base": base, "finetuned": tuned}


@pytest.mark.slow
def test_adapter_applied_per_request_matches_a_model_loaded_with_it(local_pair):
    """The worker's per-request LoRA gives the same tokens as llama.cpp loading the adapter with the model,
    and switching back to the base model leaves no trace of the adapter."""
    from llama_cpp import Llama

    params = GenParams(max_tokens=24)
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": QUESTION}]

    def via_worker(role: str) -> str:
        return "".join(e.text for e in local_pair[role].stream(messages, params) if hasattr(e, "text"))

    base_first = via_worker("base")
    tuned = via_worker("finetuned")
    base_again = via_worker("base")
    assert base_first == base_again and tuned != base_first

    prompt, _ = local_pair["base"].render(messages)
    reference = Llama(model_path=str(local_pair["base"].path), lora_path=str(ADAPTER), n_ctx=2048, verbose=False,
                      seed=42)
    ids = reference.tokenize(prompt.encode(), add_bos=False, special=True)
    reference.set_seed(42)
    out = []
    for token in reference.generate(ids, temp=0.0, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1):
        if token == reference.token_eos() or len(out) >= len(reference.tokenize(tuned.encode(), add_bos=False)):
            break
        out.append(token)
    assert reference.detokenize(out).decode(errors="replace").strip().startswith(tuned.strip()[:40])
    reference.close()

    stats = local_pair["base"].worker.stats()
    assert stats["model"] == str(local_pair["base"].path)  # one base model in the worker
    assert stats["adapters"] == [str(ADAPTER)]


@pytest.mark.slow
def test_killing_the_worker_mid_answer_fails_that_arm_only(local_pair, fake_settings):
    """A native crash (signal 11) while the local model streams: that arm reports it, the hosted arm
    answers, and the next question works on a restarted worker."""
    from lib.providers import make_provider

    worker = local_pair["base"].worker
    hosted = make_provider(fake_settings.finetuned, fake_settings)
    killed: list[int] = []

    def on_delta(arm: str, text: str) -> None:
        if arm == "baseline" and not killed and worker.pid:
            killed.append(worker.pid)
            os.kill(worker.pid, signal.SIGSEGV)

    providers = {"base": local_pair["base"], "finetuned": hosted}
    c = compare(QUESTION, ["baseline", "finetuned"], None, providers, GenParams(max_tokens=200), on_delta=on_delta)
    by = {r.arm: r for r in c.results}
    assert killed
    assert by["baseline"].error is not None
    assert "signal 11" in by["baseline"].error and "restarted" in by["baseline"].error
    assert by["finetuned"].error is None and "tuned-model says hello" in by["finetuned"].answer
    assert worker.pid is not None and worker.pid != killed[0]

    again = run_arm(ARMS["baseline"], local_pair["base"], QUESTION, None, GenParams(max_tokens=8))
    assert again.error is None and again.answer and again.usage.completion_tokens > 0


@pytest.mark.slow
def test_an_out_of_memory_kill_is_explained(local_pair):
    worker = local_pair["base"].worker
    stream = local_pair["base"].stream([{"role": "user", "content": QUESTION}], GenParams(max_tokens=200))
    for event in stream:
        if hasattr(event, "text"):
            os.kill(worker.pid, signal.SIGKILL)
            break
    with pytest.raises(Exception, match="signal 9.*memory"):
        for _ in stream:
            pass
    ok = run_arm(ARMS["baseline"], local_pair["base"], QUESTION, None, GenParams(max_tokens=4))
    assert ok.error is None


@pytest.mark.slow
def test_local_arms_take_turns_and_report_their_wait(local_pair):
    """Four local arms of one comparison asked together: they never generate at the same time (never one
    batch), each arm's time excludes its wait, and the ones that waited said where they were in the queue."""
    from lib.local_queue import comparison_group
    from lib.providers import Started

    spans: dict[str, list[float]] = {}
    statuses: dict[str, list[str]] = {}

    class Recording:
        def __init__(self, inner: LocalLlama, arm: str) -> None:
            self.inner, self.arm = inner, arm
            self.spec, self.kind = inner.spec, inner.kind

        def count_tokens(self, text: str) -> int:
            return self.inner.count_tokens(text)

        def stream(self, messages, params):
            for event in self.inner.stream(messages, params):
                if isinstance(event, Started):
                    spans.setdefault(self.arm, []).append(time.monotonic())
                yield event
            spans[self.arm].append(time.monotonic())

    results = []
    threads = []
    for arm, role in (("baseline", "base"), ("rag", "base"), ("finetuned", "finetuned"), ("hybrid", "finetuned")):
        provider = Recording(local_pair[role], arm)

        def go(arm=arm, provider=provider):
            with comparison_group("one comparison"):
                results.append(run_arm(ARMS[arm], provider, QUESTION, [] if ARMS[arm].retrieval else None,
                                       GenParams(max_tokens=16),
                                       on_status=lambda a, s: statuses.setdefault(a, []).append(s)))

        threads.append(threading.Thread(target=go))
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 4 and all(r.error is None for r in results)
    ordered = sorted(spans.values())
    for (_, end), (start, _) in zip(ordered, ordered[1:]):
        assert start >= end  # no two local generations overlap
    waited = [r for r in results if r.queued_ms > 0 and statuses.get(r.arm)]
    assert waited, statuses
    assert any("Waiting for the shared local model: " in s for r in waited for s in statuses[r.arm])
    for r in results:
        assert r.total_ms < (max(e for _, e in spans.values()) - min(s for s, _ in spans.values())) * 1000 + 50
        assert r.batch_size == 1


@pytest.mark.slow
def test_a_crash_when_loading_with_extra_buffer_types_falls_back(monkeypatch):
    """As on Xeons with AMX: loading with extra buffer types crashes llama.cpp. In auto mode the worker is
    restarted without them and the question is answered; forced on, the arm says what happened."""
    monkeypatch.setenv("WORKBENCH_FAULT_WORKER_LOAD", "extra_bufts")
    auto = LocalWorker("auto")
    auto.extra_bufts = True  # as on a CPU that does not report AMX
    forced = LocalWorker("on")
    try:
        base = LocalLlama(ModelSpec("local", LOCAL_BASE_MODEL))
        base.worker = auto
        r = run_arm(ARMS["baseline"], base, QUESTION, None, GenParams(max_tokens=6))
        assert r.error is None and r.answer
        assert auto.extra_bufts is False and "signal 11" in (auto.fallback_note or "")
        base.worker = forced
        r = run_arm(ARMS["baseline"], base, QUESTION, None, GenParams(max_tokens=6))
        assert r.error and "signal 11" in r.error and "loading the model" in r.error
    finally:
        auto.stop()
        forced.stop()


@pytest.mark.slow
def test_smoke_check_passes_here_and_fails_clearly_on_a_broken_build():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = subprocess.run([sys.executable, "-m", "lib.local_worker", "--smoke"], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=180)
    assert ok.returncode == 0 and "llama.cpp works on this CPU" in ok.stdout
    broken = subprocess.run([sys.executable, "-m", "lib.local_worker", "--smoke"], cwd=ROOT,
                            env={**env, "WORKBENCH_FAULT_WORKER_LOAD": "always"},
                            capture_output=True, text=True, timeout=180)
    assert broken.returncode == 1
    assert "does not run on this machine" in broken.stderr and "pip install --force-reinstall" in broken.stderr


def test_queued_events_become_status_lines(fake_settings):
    from lib.arms import queue_status

    assert queue_status(Queued(2, 7.4)) == "Waiting for the shared local model: 2 requests ahead, about 7 s"
    assert queue_status(Queued(1, None)) == "Waiting for the shared local model: 1 request ahead"


def test_worker_module_has_one_process_wide_worker_per_setting():
    assert local_worker.worker("auto") is local_worker.worker("auto")
    assert local_worker.worker("off") is not local_worker.worker("auto")


@pytest.mark.slow
def test_ingest_and_local_generation_take_turns(local_pair, settings, embedder, monkeypatch, tmp_path):
    """An ingest's embedding batches and a local answer never use the cores at the same time: the answer's
    reported time is its own, however large the ingest running beside it."""
    from lib import engine
    from lib.embeddings import MiniLMEmbedder
    from lib.providers import Started

    spans: list[tuple[str, float, float]] = []
    embed = MiniLMEmbedder.embed

    def recording_embed(self, texts):
        t0 = time.monotonic()
        try:
            return embed(self, texts)
        finally:
            spans.append(("embed", t0, time.monotonic()))

    monkeypatch.setattr(MiniLMEmbedder, "embed", recording_embed)
    doc = tmp_path / "long.txt"
    doc.write_text("\n\n".join(f"Paragraph {i}: the warranty covers seams, zips and buckles for {i} months "
                               "after purchase, when the product was used as intended." * 3 for i in range(300)))
    kb = engine.open_kb(settings, "turns", embedder=embedder)
    ingest = threading.Thread(target=lambda: engine.ingest_paths(kb, [doc]))
    ingest.start()
    while not spans:
        time.sleep(0.01)
    start = end = 0.0
    for event in local_pair["base"].stream([{"role": "user", "content": QUESTION}], GenParams(max_tokens=48)):
        if isinstance(event, Started):
            start = time.monotonic()
    end = time.monotonic()
    ingest.join(300)
    assert kb.count() > 10 and start > 0
    batches = [(a, b) for _, a, b in spans]
    assert any(b <= start for a, b in batches) and any(a >= end for a, b in batches)  # ingest ran on both sides
    assert not [(a, b) for a, b in batches if a < end and b > start]  # and never during the answer
