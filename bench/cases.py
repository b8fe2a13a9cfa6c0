"""The four measurements, each against a reference timed in the same process."""

from __future__ import annotations

import itertools
import json
import statistics
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.timing import Measurement, Reps, alternate, slowdown, throughput, timed
from lib.chunking import chunk_text
from lib.documents import expand_paths, load_path
from lib.embeddings import MiniLMEmbedder
from lib.engine import EMBED_BATCH, SAMPLE_DOCS, SAMPLE_QUESTIONS, ingest_paths
from lib.store import KnowledgeBase, open_client

CHROMA_LABEL = "Chroma ONNXMiniLM_L6_V2"


@dataclass(frozen=True)
class Corpus:
    paths: tuple[Path, ...]  # what ingest_paths is given
    chunks: dict[str, list[str]]  # file name -> its chunk texts, as ingest makes them
    questions: list[str]

    @property
    def texts(self) -> list[str]:
        return [t for texts in self.chunks.values() for t in texts]


def load_corpus(embedder: MiniLMEmbedder, paths: Sequence[Path] = (SAMPLE_DOCS,),
                questions_file: Path = SAMPLE_QUESTIONS) -> Corpus:
    """Every supported file under paths, chunked with the default size and overlap."""
    files, _ = expand_paths(list(paths))
    chunks = {name: [c.text for c in chunk_text(load_path(path, name=name).text, embedder.spans)]
              for path, name in files}
    questions = [json.loads(line)["question"] for line in questions_file.read_text().splitlines() if line.strip()]
    return Corpus(tuple(paths), chunks, questions)


def min_cosine(ours: MiniLMEmbedder, chroma: Any, texts: list[str]) -> float:
    """The lowest cosine between the two embedders' vectors for the same text (both are unit vectors)."""
    a = ours.embed(texts)
    b = np.asarray(chroma(texts), dtype=np.float32)
    return float(np.min(np.sum(a * b, axis=1)))


def document_embedding(ours: MiniLMEmbedder, chroma: Any, texts: list[str], reps: Reps) -> Measurement:
    """All chunks in one call each, as a batch ingest would."""
    runs = alternate(timed(lambda: ours.embed(texts)), timed(lambda: chroma(texts)), reps)
    return throughput("doc_embedding", f"Document embedding ({len(texts)} chunks)", runs, len(texts), 1.5,
                      "lib MiniLMEmbedder", CHROMA_LABEL, unit="chunks/s")


def query_embedding(ours: MiniLMEmbedder, chroma: Any, questions: list[str], reps: Reps) -> Measurement:
    """One question per call, as a user asks them."""

    def run_ours() -> None:
        for q in questions:
            ours.embed([q])

    def run_chroma() -> None:
        for q in questions:
            chroma([q])

    runs = alternate(timed(run_ours), timed(run_chroma), reps)
    return throughput("query_embedding", f"Query embedding ({len(questions)} x 1)", runs, len(questions), 5.0,
                      "lib MiniLMEmbedder", CHROMA_LABEL, unit="queries/s")


def ingest(embedder: MiniLMEmbedder, corpus: Corpus, workdir: Path, reps: Reps) -> tuple[Measurement, KnowledgeBase]:
    """ingest_paths into a fresh collection vs embedding the same chunks in the same batches.
    Returns the last knowledge base built, for the generation benchmark to query."""
    client = open_client(workdir)
    names = (f"bench-ingest-{i}" for i in itertools.count())
    state: dict[str, KnowledgeBase] = {}

    def fresh_collection() -> None:
        if "kb" in state:
            client.delete_collection(state["kb"].name)
        state["kb"] = KnowledgeBase(client, next(names), embedder)

    def run_ingest() -> None:
        results = ingest_paths(state["kb"], corpus.paths)
        failed = [r for r in results if r.status not in ("ingested", "skipped")]
        if failed:
            raise RuntimeError(f"ingest did not store every file: {failed}")

    def run_embed() -> None:
        for texts in corpus.chunks.values():
            for s in range(0, len(texts), EMBED_BATCH):
                embedder.embed(texts[s:s + EMBED_BATCH])

    runs = alternate(timed(run_ingest, setup=fresh_collection), timed(run_embed), reps)
    kb = state["kb"]
    if kb.count() != len(corpus.texts):
        raise RuntimeError(f"the collection holds {kb.count()} chunks, expected {len(corpus.texts)}")
    m = slowdown("ingest", f"Ingest end to end ({len(corpus.chunks)} files)", runs, 1.15,
                 "engine.ingest_paths", "embedding alone", files=len(corpus.chunks), chunks=len(corpus.texts))
    m.details["note"] = (f"{len(corpus.texts)} chunks, per file in batches of {EMBED_BATCH} on both sides; "
                         f"parse + chunk + store cost {m.ours - m.reference:+.2f} s")
    return m, kb


def _raw_llama(path: Any, threads: int, extra_bufts: bool, n_ctx: int = 2048) -> Any:
    """llama-cpp-python in this process, loaded with the same parameters as the worker loads it."""
    from lib.local_worker import load_llama

    return load_llama(str(path), n_ctx, threads, extra_bufts)


def app_overhead(kb: KnowledgeBase, question: str, max_tokens: int, reps: Reps, top_k: int = 4) -> Measurement:
    """run_arm("rag") through the local worker process vs driving llama_cpp.Llama directly in this process
    with the same prompt tokens, sampler and number of generated tokens. Both evaluate the whole prompt
    (the worker keeps no prompt cache between requests; the raw model's cache is cleared, untimed)."""
    from lib.arms import ARMS, build_prompt, run_arm
    from lib.providers import LocalLlama
    from lib.records import GenParams
    from lib.settings import LOCAL_BASE_MODEL, ModelSpec

    provider = LocalLlama(ModelSpec("local", LOCAL_BASE_MODEL))
    llm = _raw_llama(provider.path, provider.threads, provider.worker.extra_bufts, provider.n_ctx)
    sources = kb.query(question, top_k)
    params = GenParams(max_tokens=max_tokens, temperature=0.0)
    prompt, stops = provider.render(build_prompt(question, sources).messages())
    end_ids = {llm.token_eos()}  # as the worker: EOS and single-token template stops
    for s in stops:
        ids = llm.tokenize(s.encode(), add_bos=False, special=True)
        if len(ids) == 1:
            end_ids.add(ids[0])

    app_out: dict[str, Any] = {}
    raw_out: dict[str, Any] = {}

    def run_app() -> None:
        result = run_arm(ARMS["rag"], provider, question, sources, params)
        if result.error or result.usage is None:
            raise RuntimeError(f"the RAG arm failed: {result.error}")
        app_out.update(answer=result.answer, tokens=result.usage.completion_tokens,
                       prompt_tokens=result.usage.prompt_tokens, finish=result.finish_reason)

    def run_raw(limit: int) -> None:
        ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        llm.set_seed(params.seed)
        out: list[int] = []
        for token in llm.generate(ids, temp=params.temperature, top_k=40, top_p=0.95, min_p=0.05,
                                  repeat_penalty=params.repeat_penalty, reset=True):
            if token in end_ids:
                break
            out.append(token)
            if len(out) >= limit:
                break
        raw_out.update(text=llm.detokenize(out).decode("utf-8", errors="replace"), tokens=len(out),
                       prompt_tokens=len(ids))

    # Probe (untimed): how many tokens the app generates, and where the raw loop must stop to do the
    # same forward passes: at the same end token, or after the same count when a stop string cut the app.
    run_app()
    llm.reset()
    run_raw(max_tokens)
    limit = max_tokens if raw_out["tokens"] == app_out["tokens"] else app_out["tokens"]

    runs = alternate(timed(run_app), timed(lambda: run_raw(limit), setup=llm.reset), reps)
    llm.close()
    if (raw_out["tokens"], raw_out["prompt_tokens"]) != (app_out["tokens"], app_out["prompt_tokens"]):
        raise RuntimeError(f"the raw call did different work: {raw_out} vs {app_out}")
    same_text = raw_out["text"].strip().startswith(app_out["answer"])
    m = slowdown("app_overhead", f"RAG arm through the worker ({app_out['tokens']} tokens)", runs, 1.05,
                 "arms.run_arm via local worker", "raw llama_cpp generate in-process", unit="ms", question=question,
                 prompt_tokens=app_out["prompt_tokens"], completion_tokens=app_out["tokens"],
                 finish_reason=app_out["finish"], same_output=same_text, top_k=top_k, max_tokens=max_tokens)
    m.details["note"] = (f"{app_out['prompt_tokens']}-token prompt, {app_out['tokens']} tokens generated by both, "
                         f"same text: {'yes' if same_text else 'NO'}; worker overhead {m.ours - m.reference:+.0f} ms")
    return m


def _local_providers() -> dict[str, Any]:
    from lib.finetune import SHIPPED_ADAPTER
    from lib.providers import LocalLlama
    from lib.settings import LOCAL_BASE_MODEL, ModelSpec

    return {"base": LocalLlama(ModelSpec("local", LOCAL_BASE_MODEL)),
            "finetuned": LocalLlama(ModelSpec("local", LOCAL_BASE_MODEL, str(SHIPPED_ADAPTER)))}


def fair_timing(kb: KnowledgeBase, question: str, max_tokens: int, reps: Reps, top_k: int = 4) -> Measurement:
    """The RAG arm's own reported total time when asked together with baseline, fine-tuned and hybrid,
    against the same arm asked alone (both from engine/arms.compare, as the Compare page asks)."""
    from lib.arms import compare
    from lib.records import GenParams, RetrievalParams

    providers = _local_providers()
    params = GenParams(max_tokens=max_tokens, temperature=0.0)
    retrieval = RetrievalParams(top_k=top_k)
    reported: dict[str, list[float]] = {"alone": [], "together": []}

    def ask(arms: list[str], key: str) -> float:
        c = compare(question, arms, kb, providers, params, retrieval)
        rag = next(r for r in c.results if r.arm == "rag")
        if rag.error or rag.total_ms is None:
            raise RuntimeError(f"the RAG arm failed: {rag.error}")
        if any(r.error for r in c.results):
            raise RuntimeError(f"an arm failed: {[r.error for r in c.results if r.error]}")
        reported[key].append(rag.total_ms / 1000)
        return rag.total_ms / 1000

    def trial(arms: list[str], key: str) -> Callable[[], float]:
        return lambda: ask(arms, key)

    runs = alternate(trial(["baseline", "rag", "finetuned", "hybrid"], "together"), trial(["rag"], "alone"), reps)
    m = slowdown("fair_timing", "RAG arm's reported time, asked with 3 other arms vs alone", runs, 1.15,
                 "rag total_ms in a 4-arm comparison", "rag total_ms asked alone", unit="ms", question=question,
                 max_tokens=max_tokens, top_k=top_k)
    m.details["note"] = ("medians of the arm's own reported total time (its wait for the shared model excluded); "
                         "the arms of one comparison run one after another, never in one batch")
    return m


def _ask_local(provider: Any, messages: list[dict[str, str]], params: Any) -> tuple[str, int, int]:
    """One answer through the provider (queue, worker, batch): its text, prompt and completion tokens."""
    from lib.providers import Delta, Done

    text, prompt, completion = "", 0, 0
    for event in provider.stream(messages, params):
        if isinstance(event, Delta):
            text += event.text
        elif isinstance(event, Done):
            prompt, completion = int(event.prompt_tokens or 0), int(event.completion_tokens or 0)
    return text, prompt, completion


BATCH_TOPICS = ("camping in the rain", "choosing a tent", "electric bikes", "hiking boots", "winter cycling",
                "packing a backpack", "trail safety", "caring for a sleeping bag")


def batching_prompts(kb: KnowledgeBase | None, questions: list[str], rag: bool, requests: int = 8,
                     top_k: int = 2) -> list[list[dict[str, str]]]:
    """Prompts that ask for a long answer, so every request generates its whole token allowance, as in the
    measurement the targets come from (8 requests of 64 new tokens): short ones (about 40 tokens with the chat
    template), or RAG-sized ones (`top_k` retrieved sources, about 400 tokens)."""
    from lib.arms import SYSTEM_PLAIN

    out = []
    for i in range(requests):
        if not rag:
            out.append([{"role": "user", "content": f"Write a detailed guide to {BATCH_TOPICS[i % len(BATCH_TOPICS)]}, "
                                                    "in several paragraphs."}])
            continue
        q = questions[i % len(questions)]
        sources = kb.query(q, top_k) if kb is not None else []
        context = "\n\n".join(f"[{n}] (from {s.document})\n{s.text.strip()}" for n, s in enumerate(sources, 1))
        out.append([{"role": "system", "content": SYSTEM_PLAIN},
                    {"role": "user", "content": f"Sources:\n{context}\n\nSummarise in detail, in several paragraphs, "
                                                f"what the sources say about this question: {q}"}])
    return out


def batching(kb: KnowledgeBase | None, questions: list[str], reps: Reps, rag: bool, max_tokens: int = 64,
             requests: int = 8, top_k: int = 2) -> Measurement:
    """`requests` questions to the base model at once (decoded in batches) against the same questions one after
    another, through the same provider and worker (see `batching_prompts`). Both produce the same tokens
    (temperature 0: a batched answer equals the answer alone)."""
    from lib.records import GenParams

    provider = _local_providers()["base"]
    prompts = batching_prompts(kb, questions, rag, requests, top_k)
    params = GenParams(max_tokens=max_tokens, temperature=0.0)
    out: dict[str, list[tuple[str, int, int]]] = {}

    def together() -> None:
        answers: list[tuple[str, int, int]] = [("", 0, 0)] * len(prompts)

        def one(i: int) -> None:
            answers[i] = _ask_local(provider, prompts[i], params)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out["together"] = answers

    def one_by_one() -> None:
        out["alone"] = [_ask_local(provider, m, params) for m in prompts]

    runs = alternate(timed(together), timed(one_by_one), reps)
    prompt_tokens = statistics.fmean(p for _, p, _ in out["alone"])
    completion = [c for _, _, c in out["alone"]]
    same = out["together"] == out["alone"]
    kind = f"RAG prompts, top-{top_k}" if rag else "short prompts"
    m = throughput(f"batching_{'rag' if rag else 'short'}",
                   f"{requests} requests at once vs one after another ({kind}, {prompt_tokens:.0f} tokens)",
                   runs, requests, 1.1 if rag else 1.4, "batched (continuous batching)", "one after another",
                   unit="answers/s", prompt_tokens_mean=round(prompt_tokens, 1), completion_tokens=completion,
                   same_output=same, max_tokens=max_tokens)
    m.details["note"] = (f"{requests} answers, {statistics.fmean(completion):.0f} tokens each on average (up to "
                         f"{max_tokens}); the batched answers equal the ones given alone: {'yes' if same else 'NO'}")
    return m


def workshop_forecast(kb: KnowledgeBase, questions: list[str], participants: int = 6, max_tokens: int = 32,
                      capacity_questions: int = 8) -> Measurement:
    """The Host page's forecast against a workshop simulated without browsers: the capacity of the base model
    is measured (1, 2, 4, 8 at once, the app's prompts, `max_tokens`), then `participants` ask the default arms
    (RAG, fine-tuned, hybrid) at the same moment through arms.compare; the forecast median wait (asking to
    every answer) against the measured median. The ratio is 1 + |forecast - measured| / measured."""
    import time as _time

    from lib import capacity, serving_cost
    from lib.arms import DEFAULT_ARMS, compare
    from lib.records import GenParams, RetrievalParams

    providers = _local_providers()
    prompts, text = capacity.prompts_for(questions[:capacity_questions // 2], kb, 1)
    cap = capacity.measure(providers["base"], prompts, "base", text, questions=capacity_questions,
                           max_tokens=max_tokens)
    worker = providers["base"].worker
    forecast = serving_cost.workshop_forecast(serving_cost.points_from(cap), participants, len(DEFAULT_ARMS),
                                              worker.processes * worker.batch)
    waits: list[float] = [0.0] * participants
    errors: list[str] = []

    def participant(i: int) -> None:
        t0 = _time.monotonic()
        c = compare(questions[i % len(questions)], DEFAULT_ARMS, kb, providers,
                    GenParams(max_tokens=max_tokens, temperature=0.0), RetrievalParams(top_k=1))
        waits[i] = _time.monotonic() - t0
        errors.extend(r.error for r in c.results if r.error)

    threads = [threading.Thread(target=participant, args=(i,)) for i in range(participants)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"an arm failed: {errors[0]}")
    measured = statistics.median(waits)
    ratio = 1 + abs(forecast.wait_p50_s - measured) / measured
    return Measurement("workshop_forecast", f"Workshop forecast, {participants} participants x 3 local arms",
                       forecast.wait_p50_s, measured, "s", ratio, 1.3, False, "forecast median wait",
                       "measured median wait", 1,
                       {"forecast": forecast.to_dict(), "waits_s": [round(w, 2) for w in waits],
                        "capacity": cap.to_dict(),
                        "note": f"forecast {forecast.wait_p50_s:.1f} s (last {forecast.wait_max_s:.1f} s), measured "
                                f"median {measured:.1f} s (last {max(waits):.1f} s); {len(DEFAULT_ARMS)} arms of up "
                                f"to {max_tokens} tokens each"})


def memory(kb: KnowledgeBase, question: str, max_tokens: int) -> Measurement:
    """Resident memory of the local worker after all four arms answered once, against after the base model
    alone answered, in a fresh worker process."""
    from lib.arms import compare
    from lib.records import GenParams, RetrievalParams

    providers = _local_providers()
    w = providers["base"].worker
    w.stop()  # a fresh process, so nothing measured earlier is resident
    params = GenParams(max_tokens=max_tokens, temperature=0.0)
    compare(question, ["baseline", "rag"], kb, providers, params, RetrievalParams(top_k=4))
    alone = w.stats()["rss_kb"] / 1024
    compare(question, ["baseline", "rag", "finetuned", "hybrid"], kb, providers, params, RetrievalParams(top_k=4))
    after = w.stats()
    four = after["rss_kb"] / 1024
    return Measurement("memory", "Worker resident memory, 4 arms vs base model alone", four, alone, "MiB",
                       four / alone, 1.25, False, "after baseline+RAG+fine-tuned+hybrid",
                       "after base model answers only", 1,
                       {"adapters": after["adapters"], "extra_bufts": after["extra_bufts"],
                        "note": f"one copy of the weights; LoRA adapters applied per request ({len(after['adapters'])} "
                                "loaded)"})


def extra_buffer_types(kb: KnowledgeBase, question: str, reps: Reps, top_k: int = 3) -> Measurement:
    """Prompt processing (one RAG prompt evaluated, no generation) with llama.cpp's extra buffer types
    (weight repacking; AMX on CPUs that have it) against without them, on this CPU."""
    from lib.arms import build_prompt
    from lib.providers import LocalLlama
    from lib.settings import LOCAL_BASE_MODEL, ModelSpec

    provider = LocalLlama(ModelSpec("local", LOCAL_BASE_MODEL))
    prompt, _ = provider.render(build_prompt(question, kb.query(question, top_k)).messages())
    with_bufts = _raw_llama(provider.path, provider.threads, True)
    without = _raw_llama(provider.path, provider.threads, False)
    ids = with_bufts.tokenize(prompt.encode(), add_bos=False, special=True)

    def evaluate(llm: Any) -> None:
        llm.eval(ids)

    runs = alternate(timed(lambda: evaluate(with_bufts), setup=with_bufts.reset),
                     timed(lambda: evaluate(without), setup=without.reset), reps)
    with_bufts.close()
    without.close()
    from lib.local_worker import cpu_flags

    m = throughput("extra_bufts", f"Prompt processing, extra buffer types on vs off ({len(ids)} tokens)", runs,
                   len(ids), 0.95, "use_extra_bufts=True", "use_extra_bufts=False", unit="tokens/s",
                   prompt_tokens=len(ids), amx=sorted(f for f in cpu_flags() if f.startswith("amx")))
    m.details["note"] = ("auto mode keeps them on where the CPU has no AMX: the target checks that this gives no "
                         "speed away here (on at least 0.95x off: within the run-to-run noise of about 5%)")
    return m


def eval_concurrency(kb: KnowledgeBase, questions: int = 30, delay_s: float = 0.3, concurrency: int = 8
                     ) -> Measurement:
    """An evaluation of `questions` x 4 arms against the OpenAI-compatible test server (on 127.0.0.1) adding
    `delay_s` to each request, `concurrency` at a time: wall time against the summed request time / concurrency."""
    import time as _time

    from lib import evalrun
    from lib.evaluate import load_questions
    from lib.settings import ModelSpec, load_settings
    from tests.openai_server import FakeOpenAIServer

    server = FakeOpenAIServer().start()
    try:
        server.first_token_delay = delay_s
        server.reply = "45 days [1]."
        settings = load_settings(env={}, secrets_file=None).with_overrides(
            openai_api_key="sk-bench", openai_base_url=server.base_url, base=ModelSpec("openai", "gpt-4o-mini"),
            finetuned=ModelSpec("openai", "ft:gpt-4o-mini-2024-07-18:bench::x"))
        qs = load_questions(SAMPLE_QUESTIONS)[:questions]
        spec = evalrun.RunSpec("bench", "sample", ("baseline", "rag", "finetuned", "hybrid"), kb.name,
                               concurrency=concurrency)
        store = evalrun.MemoryRunStore()
        store.create_run("bench", spec, [])
        t0 = _time.perf_counter()
        evalrun.execute("bench", spec, qs, kb, evalrun.eval_providers(settings), store)
        wall = _time.perf_counter() - t0
        answers = store.answers("bench")
        if len(answers) != len(qs) * 4 or any(a.result.error for a in answers):
            raise RuntimeError("the evaluation did not answer every question")
        summed = sum((a.result.total_ms - a.result.retrieval_ms) / 1000 for a in answers)
    finally:
        server.stop()
    ideal = summed / concurrency
    m = Measurement("eval_concurrency", f"Evaluation, {len(qs)} questions x 4 hosted arms, {concurrency} at a time",
                    wall, ideal, "s", wall / ideal, 1.3, False, "evalrun.execute wall time",
                    f"summed request time / {concurrency}", 1,
                    {"requests": len(answers), "summed_request_s": round(summed, 2), "delay_s": delay_s,
                     "note": f"{len(answers)} requests of >= {delay_s * 1000:.0f} ms each against the test server"})
    return m
