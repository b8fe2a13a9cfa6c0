"""python -m bench [--quick]: measure, print the table, write bench/results/latest.json."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.offline import block_network
from bench.timing import Reps

MIN_COSINE = 0.99


@dataclass(frozen=True)
class Plan:
    docs: Reps
    queries: Reps
    ingest: Reps
    app: Reps
    fair: Reps
    bufts: Reps
    batching: Reps


# Budgets keep the full run near 3 minutes on a 2-core machine; a busy machine gets fewer repetitions.
FULL = Plan(docs=Reps(8, 4, budget_s=45), queries=Reps(12, 6, budget_s=20), ingest=Reps(8, 4, budget_s=40),
            app=Reps(10, 4, budget_s=35), fair=Reps(5, 5), bufts=Reps(8, 4, budget_s=30),
            batching=Reps(4, 2, budget_s=120))
QUICK = Plan(docs=Reps(2), queries=Reps(2), ingest=Reps(2), app=Reps(2), fair=Reps(2), bufts=Reps(2),
             batching=Reps(2, warmup=0))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run; noisier figures)")
    p.add_argument("--question", type=int, default=0, help="index in sample_docs/questions.jsonl for the RAG arm")
    p.add_argument("--max-tokens", type=int, default=64, help="tokens the RAG arm may generate")
    p.add_argument("--json", type=Path, help="where to write the results (default: bench/results/latest.json)")
    p.add_argument("--only", help="comma-separated keys of the benchmarks to run (doc_embedding, query_embedding, "
                                  "ingest, app_overhead, fair_timing, batching, workshop_forecast, extra_bufts, "
                                  "eval_concurrency, memory); the corpus is ingested for the ones that need it")
    return p


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    block_network()  # before anything that could reach out is imported

    from bench import cases
    from bench.offline import chroma_default_embedder
    from bench.report import table, write_json
    from lib.embeddings import MiniLMEmbedder

    plan = QUICK if args.quick else FULL
    cpus = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    if load_before > cpus:
        log(f"warning: load average {load_before:.1f} on {cpus} CPUs; other work will make the figures noisy")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-", ignore_cleanup_errors=True) as tmp:
        ours = MiniLMEmbedder()
        chroma = chroma_default_embedder(Path(tmp) / "chroma-onnx")
        corpus = cases.load_corpus(ours)
        question = corpus.questions[args.question]
        checks = {f"{len(corpus.texts)} chunks": cases.min_cosine(ours, chroma, corpus.texts),
                  f"{len(corpus.questions)} questions": cases.min_cosine(ours, chroma, corpus.questions)}
        log(f"like-for-like min cosine: {checks}")
        only = {k.strip() for k in args.only.split(",")} if args.only else None

        def want(key: str) -> bool:
            return only is None or key in only

        results = []
        if want("doc_embedding"):
            log("document embedding ...")
            results.append(cases.document_embedding(ours, chroma, corpus.texts, plan.docs))
        if want("query_embedding"):
            log("query embedding ...")
            results.append(cases.query_embedding(ours, chroma, corpus.questions, plan.queries))
        log("ingest ...")
        measured, kb = cases.ingest(ours, corpus, Path(tmp) / "data", plan.ingest if want("ingest") else Reps(1, 1, warmup=0))
        if want("ingest"):
            results.append(measured)
        if want("app_overhead"):
            log("RAG arm through the local worker vs raw llama.cpp ...")
            results.append(cases.app_overhead(kb, question, args.max_tokens, plan.app))
        if want("fair_timing"):
            log("fair timing: RAG asked alone vs with three other local arms ...")
            results.append(cases.fair_timing(kb, question, args.max_tokens, plan.fair))
        if want("batching"):
            log("batching: 8 requests at once vs one after another, short and RAG prompts ...")
            results.append(cases.batching(kb, corpus.questions, plan.batching, rag=False, max_tokens=args.max_tokens))
            results.append(cases.batching(kb, corpus.questions, plan.batching, rag=True, max_tokens=args.max_tokens))
        if want("workshop_forecast"):
            log("workshop forecast: capacity measured, then 6 participants ask 3 local arms at once ...")
            results.append(cases.workshop_forecast(kb, corpus.questions))
        if want("extra_bufts"):
            log("prompt processing with and without llama.cpp's extra buffer types ...")
            results.append(cases.extra_buffer_types(kb, question, plan.bufts))
        if want("eval_concurrency"):
            log("evaluation: 30 questions x 4 hosted arms against a 300 ms test server, 8 at a time ...")
            results.append(cases.eval_concurrency(kb))
        if want("memory"):
            log("memory: local worker with four arms vs the base model alone ...")
            results.append(cases.memory(kb, question, args.max_tokens))
    elapsed = time.perf_counter() - t0
    load = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2), "cpus": cpus}

    print(table(results, checks, MIN_COSINE))
    settings = {"quick": args.quick, "only": args.only, "plan": asdict(plan), "question": question, "max_tokens": args.max_tokens,
                "elapsed_s": round(elapsed, 1), "load_average": load}
    path = write_json(results, checks, settings, args.json)
    print(f"\n{elapsed:.0f} s in all (load average {load['before']} before, {load['after']} after, {cpus} CPUs); "
          f"results written to {path}")
    return 0 if all(v > MIN_COSINE for v in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
