"""Batched local serving: the machine queue's admission rules, the worker layout, and with the real model:
a batched answer equals the same request alone, cancel and crash in the middle of a batch."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from lib.local_queue import MACHINE, LocalQueue, comparison_group, current_group
from lib.local_worker import serving_layout
from lib.providers import Delta, Done, LocalLlama, Started
from lib.records import GenParams
from lib.settings import LOCAL_BASE_MODEL, ModelSpec, load_settings

ROOT = Path(__file__).resolve().parent.parent
ADAPTER = ROOT / "assets" / "adapters" / "quillmere-smollm2-lora.gguf"
LANES = (("w", 0),)


# ---------------------------------------------------------------- the queue (no model)

def test_requests_of_one_model_share_a_batch_up_to_its_slots():
    q = LocalQueue()
    tickets = [q.join("base", LANES, slots=3) for _ in range(4)]
    assert [q.position(t) for t in tickets] == [0, 0, 0, 3]  # three in the batch; the fourth waits for a slot
    assert {t.lane for t in tickets[:3]} == {LANES[0]}
    q.leave(tickets[1])
    assert q.wait_turn(tickets[3], 0.01) == 0  # joins the running batch as soon as a slot frees
    assert q.running == 3


def test_another_adapter_waits_for_the_batch_to_finish_and_holds_back_the_ones_behind_it():
    q = LocalQueue()
    first = q.join("base", LANES, slots=8)
    tuned = q.join("base+lora", LANES, slots=8)
    later = q.join("base", LANES, slots=8)
    assert q.position(tuned) == 1 and q.position(later) == 2  # arrival order: the base request does not jump ahead
    q.leave(first)
    assert q.position(tuned) == 0 and q.position(later) == 1 and later.lane is None  # the adapter's batch now
    q.leave(tuned)
    assert q.position(later) == 0


def test_arms_of_one_comparison_never_share_a_batch_but_let_others_pass():
    q = LocalQueue()
    a_rag = q.join("base", LANES, slots=8, group="alice")
    a_base = q.join("base", LANES, slots=8, group="alice")
    b_rag = q.join("base", LANES, slots=8, group="bob")
    assert q.position(a_rag) == 0 and q.position(a_base) > 0  # Alice's second arm waits for her first
    assert q.position(b_rag) == 0  # Bob's request batches with Alice's first
    q.leave(a_rag)
    assert q.position(a_base) == 0


def test_whole_machine_work_waits_for_every_batch_and_holds_the_rest():
    q = LocalQueue()
    gen = q.join("base", LANES, slots=8)
    embed = q.join()  # an embedding batch: the whole machine, alone
    after = q.join("base", LANES, slots=8)
    assert q.position(embed) == 1 and q.position(after) == 2
    q.leave(gen)
    assert q.position(embed) == 0 and embed.lane == MACHINE and q.position(after) == 1
    q.leave(embed, record=False)
    assert q.position(after) == 0


def test_two_worker_processes_each_take_a_request_before_either_batches():
    q = LocalQueue()
    lanes = (("w", 0), ("w", 1))
    one, two, three = (q.join("base", lanes, slots=4) for _ in range(3))
    assert {one.lane, two.lane} == set(lanes)  # the idle process first: it serves a request fastest
    assert three.lane in lanes and q.running == 3


def test_the_wait_estimate_counts_the_requests_served_at_once():
    q = LocalQueue()
    t = q.join("base", LANES, slots=4)
    time.sleep(0.02)
    q.leave(t)  # one request took about 20 ms
    assert q.expected_wait_s(2, capacity=1) > q.expected_wait_s(8, capacity=4) * 0.9
    assert q.expected_wait_s(3, capacity=4) == 0.0  # a slot is free: no wait beyond the running one


def test_the_group_is_per_thread_and_ends_with_its_block():
    seen: list[str | None] = []
    with comparison_group("c1"):
        seen.append(current_group())
        other = threading.Thread(target=lambda: seen.append(current_group()))
        other.start()
        other.join()
    seen.append(current_group())
    assert seen == ["c1", None, None]


def test_serving_layout_shares_the_cores_out():
    assert serving_layout(2) == (1, 2)
    assert serving_layout(16) == (2, 8)
    assert serving_layout(64) == (8, 8)
    assert serving_layout(16, processes=4) == (4, 4)
    assert serving_layout(16, processes=1, threads=6) == (1, 6)


def test_serving_settings_are_checked():
    s = load_settings(env={}, secrets_file=None)
    assert (s.local_processes, s.local_batch, s.n_threads) == (None, 8, None)
    s = load_settings(env={"WORKBENCH_LOCAL_PROCESSES": "2", "WORKBENCH_LOCAL_BATCH": "1", "WORKBENCH_THREADS": "4"},
                      secrets_file=None)
    assert (s.local_processes, s.local_batch, s.n_threads) == (2, 1, 4)
    assert load_settings(env={"WORKBENCH_LOCAL_PROCESSES": "AUTO"}, secrets_file=None).local_processes is None
    with pytest.raises(ValueError, match="WORKBENCH_LOCAL_BATCH.*from 1 to 64"):
        load_settings(env={"WORKBENCH_LOCAL_BATCH": "0"}, secrets_file=None)
    with pytest.raises(ValueError, match="WORKBENCH_LOCAL_PROCESSES.*or auto"):
        load_settings(env={"WORKBENCH_LOCAL_PROCESSES": "many"}, secrets_file=None)


# ---------------------------------------------------------------- the real model

QUESTIONS = ("How long is the refund window?", "Write a haiku about rain.", "Who wrote Hamlet?")


def _messages(question: str, long: bool = False) -> list[dict[str, str]]:
    system = "Answer briefly." + (" You help the staff and customers of an outdoor shop." * 8 if long else "")
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def _ask(provider: LocalLlama, messages: list[dict[str, str]], max_tokens: int = 24,
         on_delta=None) -> tuple[str, Done | None]:
    text, done = "", None
    stream = provider.stream(messages, GenParams(max_tokens=max_tokens))
    for event in stream:
        if isinstance(event, Delta):
            text += event.text
            if on_delta and on_delta(text):
                stream.close()  # the reader goes away: the request is cancelled
                break
        elif isinstance(event, Done):
            done = event
    return text, done


@pytest.fixture(scope="module")
def models():
    return {"base": LocalLlama(ModelSpec("local", LOCAL_BASE_MODEL)),
            "finetuned": LocalLlama(ModelSpec("local", LOCAL_BASE_MODEL, str(ADAPTER)))}


def _together(jobs: list, stagger_s: float = 0.0) -> list:
    out: list = [None] * len(jobs)

    def run(i: int) -> None:
        out[i] = jobs[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
        time.sleep(stagger_s)
    for t in threads:
        t.join(300)
    return out


@pytest.mark.slow
def test_a_batched_answer_equals_the_same_request_alone(models):
    """At temperature 0, each request decoded in a batch (joining while others decode, prompts of different
    lengths, base model and adapter) gives exactly the tokens it gives alone."""
    requests = [("base", _messages(QUESTIONS[0], long=True)), ("base", _messages(QUESTIONS[1])),
                ("finetuned", _messages(QUESTIONS[0])), ("finetuned", _messages(QUESTIONS[2], long=True))]
    alone = [_ask(models[role], m, max_tokens=16) for role, m in requests]
    together = _together([lambda role=role, m=m: _ask(models[role], m, max_tokens=16) for role, m in requests],
                         stagger_s=0.05)
    for (text_alone, done_alone), (text, done) in zip(alone, together, strict=True):
        assert done is not None and done_alone is not None
        assert text == text_alone and text
        assert (done.prompt_tokens, done.completion_tokens, done.finish_reason) == \
            (done_alone.prompt_tokens, done_alone.completion_tokens, done_alone.finish_reason)
        assert done_alone.batch_size == 1
    assert max(d.batch_size for _, d in together[:2]) > 1  # the base requests did share a batch
    assert max(d.batch_size for _, d in together[2:]) > 1  # and so did the adapter's
    assert models["base"].worker.stats()["active"] == 0


@pytest.mark.slow
def test_cancelling_one_request_mid_batch_leaves_the_others_exact(models):
    base = models["base"]
    question = _messages(QUESTIONS[1])
    expected, _ = _ask(base, question, max_tokens=24)
    other_started = threading.Event()

    def cancelled() -> tuple[str, Done | None]:
        return _ask(base, _messages(QUESTIONS[0]), max_tokens=200, on_delta=lambda text: other_started.wait(60))

    def kept() -> tuple[str, Done | None]:
        return _ask(base, question, max_tokens=24, on_delta=lambda text: other_started.set() and False)

    (cut, cut_done), (text, done) = _together([cancelled, kept])
    assert cut and cut_done is None  # it stopped when its reader went away
    assert text == expected and done is not None and done.batch_size == 2
    stats = base.worker.stats()
    assert stats["active"] == 0 and stats["pending"] == 0  # its slot and memory were released
    again, again_done = _ask(base, question, max_tokens=24)
    assert again == expected and again_done.batch_size == 1


@pytest.mark.slow
def test_a_crash_mid_batch_fails_that_batch_clearly_and_the_next_question_gets_a_fresh_worker(models):
    from lib.arms import ARMS, run_arm

    base = models["base"]
    worker = base.worker
    _ask(base, _messages("Hi"), max_tokens=2)  # the worker is up
    restarts = worker.restarts
    answering = threading.Barrier(3, timeout=120)
    killed: list[int] = []
    once = threading.Lock()

    def one(question: str):
        def on_delta(arm: str, text: str) -> None:
            if killed:
                return
            try:
                answering.wait()  # all three are answering, in one batch
            except threading.BrokenBarrierError:
                return
            with once:
                if not killed and worker.pid:
                    killed.append(worker.pid)
                    os.kill(worker.pid, signal.SIGSEGV)

        return run_arm(ARMS["baseline"], base, question, None, GenParams(max_tokens=200), on_delta=on_delta)

    results = _together([lambda q=q: one(q) for q in QUESTIONS])
    assert killed
    for r in results:
        assert r.error and "signal 11" in r.error and "restarted; ask again" in r.error, r.error
    assert worker.restarts == restarts + 1  # one crash, one restart, however many requests it failed
    assert worker.pid is not None and worker.pid != killed[0]
    again = run_arm(ARMS["baseline"], base, QUESTIONS[2], None, GenParams(max_tokens=8))
    assert again.error is None and again.answer and again.batch_size == 1


def test_started_then_done_for_every_request():  # the event order a column relies on (no model: a fake worker)
    from lib.local_worker import LocalWorker

    class FakeWorker(LocalWorker):
        def generate(self, req, lane=0):
            yield ("started",)
            yield ("delta", "ok")
            yield ("done", "stop", 3, 1, 2)

    provider = LocalLlama.__new__(LocalLlama)
    provider.spec, provider.path, provider.n_ctx, provider.threads = ModelSpec("local", "x"), Path("x"), 64, 1
    provider.worker = FakeWorker()
    events = list(provider.stream([{"role": "user", "content": "q"}], GenParams()))
    assert [type(e) for e in events] == [Started, Delta, Done] and events[-1].batch_size == 2


@pytest.mark.slow
def test_two_worker_processes_serve_side_by_side(models):
    """With WORKBENCH_LOCAL_PROCESSES=2 two requests go to two processes (each its own batch) and answer as alone."""
    two = LocalLlama(ModelSpec("local", LOCAL_BASE_MODEL), threads=1, processes=2)
    try:
        assert two.worker.processes == 2 and two.worker is not models["base"].worker
        messages = [_messages(q) for q in QUESTIONS[:2]]
        alone = [_ask(two, m, max_tokens=8) for m in messages]
        together = _together([lambda m=m: _ask(two, m, max_tokens=8) for m in messages])
        assert [t for t, _ in together] == [t for t, _ in alone]
        assert all(d.batch_size == 1 for _, d in together)  # each alone on its own process
        pids = two.worker.pids
        assert None not in pids and len(set(pids)) == 2
    finally:
        two.worker.stop()
