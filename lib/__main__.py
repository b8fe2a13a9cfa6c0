"""Command-line interface: `python -m lib ingest|ask|eval|capacity|list|remove|kbs|workspaces|jobs|models`.
A thin layer over lib.engine; every command works in one workspace (--workspace)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from lib.arms import ARMS, DEFAULT_ARMS
from lib.chunking import DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS, MAX_CHUNK_TOKENS
from lib.errors import ConfigError, UserError, redact, report_bug
from lib.records import ArmResult, GenParams, Graded
from lib.settings import DEFAULT_DATA_DIR, load_settings


def _whole(low: int, high: int) -> Any:
    """An argparse type: a whole number from `low` to `high`, or a message that names the range."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number: use {low:,} to {high:,}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value:,} is out of range: use {low:,} to {high:,}")
        return value

    return parse


def _number(low: float, high: float, low_open: bool = False) -> Any:
    """An argparse type: a finite number from `low` (excluded when `low_open`) to `high`."""
    def parse(text: str) -> float:
        import math

        rule = f"use a number above {low:g}, at most {high:g}" if low_open else f"use a number from {low:g} to {high:g}"
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number: {rule}") from None
        if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
            raise argparse.ArgumentTypeError(f"{text} is out of range: {rule}")
        return value

    return parse


def _arm_list(text: str) -> str:
    """An argparse type: comma-separated arms, each known and named once."""
    arms = [a.strip() for a in text.split(",") if a.strip()]
    if not arms:
        raise argparse.ArgumentTypeError(f"name at least one arm: {', '.join(ARMS)}")
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown arm(s) {', '.join(unknown)}: use {', '.join(ARMS)}")
    twice = sorted({a for a in arms if arms.count(a) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"{', '.join(twice)} named more than once: name each arm once")
    return ",".join(arms)


# The ranges of the CLI's flags (each checked before anything runs, the message naming the range).
TOP_K = _whole(1, 50)
MAX_TOKENS = _whole(1, 16_384)
PER_DAY = _whole(1, 1_000_000_000)
MONTHS = _whole(1, 120)
DOLLARS_AN_HOUR = _number(0, 10_000)
LATENCY_MS = _number(0, 3_600_000, low_open=True)


def _self_hosting(p: argparse.ArgumentParser) -> None:
    p.add_argument("--peak-factor", type=_number(1, 100), default=3.0,
                   help="self-hosting: the peak hour's questions over the average hour's, 1-100 (default 3)")
    p.add_argument("--capacity-qph", type=_number(0.001, 1e12),
                   help="self-hosting: questions an hour one machine serves (overrides the measured capacity)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", help="knowledge base name (default: 'default' or WORKBENCH_COLLECTION)")
    p.add_argument("--workspace", help="workspace name (default: 'default' or WORKBENCH_WORKSPACE)")
    p.add_argument("--data-dir", type=Path, help="where workspaces and the store live (default: ./data)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m lib", description="Compare RAG, fine-tuning and both.")
    sub = root.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="add files or folders to a knowledge base")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--chunk-size", type=_whole(16, MAX_CHUNK_TOKENS), default=DEFAULT_CHUNK_TOKENS,
                   help=f"tokens per chunk (16-{MAX_CHUNK_TOKENS})")
    p.add_argument("--overlap", type=_whole(0, MAX_CHUNK_TOKENS // 2), default=DEFAULT_OVERLAP_TOKENS,
                   help="tokens shared by neighbours (at most half the chunk size)")
    _common(p)

    p = sub.add_parser("ask", help="ask one question across arms")
    p.add_argument("question")
    p.add_argument("--arms", type=_arm_list, default=",".join(("baseline", *DEFAULT_ARMS)),
                   help=f"comma-separated, from {','.join(ARMS)}")
    p.add_argument("--top-k", type=TOP_K, default=None,
                   help="sources per question, 1-50 (default: 1 with the local model, 4 with hosted models)")
    p.add_argument("--min-score", type=_number(-1, 1), default=0.0, help="lowest similarity kept, -1 to 1")
    p.add_argument("--temperature", type=_number(0, 2), default=0.0, help="0 to 2")
    p.add_argument("--max-tokens", type=MAX_TOKENS, default=None,
                   help="answer length limit, 1-16384 (default: 96 with the local model, 256 with hosted models)")
    _common(p)

    p = sub.add_parser("eval", help="accuracy, refusals, fabrication, citations and latency of each arm on a "
                                    "question set")
    p.add_argument("--set", dest="question_set", default=None,
                   help="question set: 'sample' (default), a set stored in the workspace, or a JSONL/CSV file")
    p.add_argument("--questions", type=Path, help=argparse.SUPPRESS)  # the earlier name of --set FILE
    p.add_argument("--arms", type=_arm_list, default=",".join(ARMS))
    p.add_argument("--limit", type=_whole(1, 1_000_000), help="only the first N questions")
    p.add_argument("--run-name", help="name the run (stored in the workspace; later commands find it by name)")
    p.add_argument("--resume", metavar="RUN", help="answer what a stopped run (id or name) has not answered yet")
    p.add_argument("--new-models", action="store_true",
                   help="with --resume: answer what the run has not answered in a new run, with the models "
                        "configured now (a run never mixes two models)")
    p.add_argument("--regrade", metavar="RUN", help="grade a stored run's answers again with the current grader "
                                                    "(asks no model) and print its summary")
    p.add_argument("--concurrency", type=_whole(1, 64), default=8,
                   help="hosted requests at once, 1-64 (local arms queue)")
    p.add_argument("--judge", action="store_true",
                   help="also grade every answer with the hosted base model as an LLM judge, and report its "
                        "agreement with the offline grader")
    p.add_argument("--top-k", type=TOP_K, default=None,
                   help="sources per question, 1-50 (default: 1 with the local model, 4 with hosted models)")
    p.add_argument("--max-tokens", type=MAX_TOKENS, default=None,
                   help="answer length limit, 1-16384 (default: 96 with the local model, 256 with hosted models)")
    _common(p)

    p = sub.add_parser("capacity", help="questions per hour, latency and tokens/s of the local model on this machine "
                                        "at each concurrency (stored in the workspace)")
    p.add_argument("--role", choices=["base", "finetuned"], default="base",
                   help="which role's active model to measure (default base)")
    p.add_argument("--concurrency", default="1,2,4,8", help="questions asked at once, comma-separated (default 1,2,4,8)")
    p.add_argument("--questions", type=_whole(1, 1000), default=8,
                   help="questions answered at each concurrency, 1-1000 (default 8)")
    p.add_argument("--max-tokens", type=MAX_TOKENS, default=96, help="tokens each answer may generate (default 96)")
    _common(p)

    p = sub.add_parser("grade", help="grade given answers against references (no generation, offline)")
    p.add_argument("file", type=Path, help="JSONL (or CSV): question, reference, answer, optional keywords, "
                                           "answerable (default true)")
    p.add_argument("--no-embedder", action="store_true",
                   help="rules only: no local embedder (refusals found by patterns alone, answers in words "
                        "compared by word overlap)")
    _common(p)

    p = sub.add_parser("project", help="monthly cost per arm at a volume, from an evaluation run")
    p.add_argument("--run", required=True, help="a run's name (as given with eval --run-name; the latest of that "
                                                "name) or id")
    p.add_argument("--per-day", type=PER_DAY, default=10_000, help="questions a day (default 10,000)")
    p.add_argument("--months", type=MONTHS, default=12, help="months for the break-even, 1-120 (default 12)")
    p.add_argument("--hardware-usd-per-hour", type=DOLLARS_AN_HOUR,
                   help="what the machine running local models costs an hour")
    p.add_argument("--cached-input", action="store_true", help="price the repeated prompt prefix as cached input")
    p.add_argument("--changes", choices=["daily", "weekly", "monthly", "quarterly", "rarely"], default="rarely",
                   help="how often the documents change (retraining that often)")
    p.add_argument("--amortise-months", type=MONTHS, default=12,
                   help="spread one training's cost over this many months (1-120)")
    p.add_argument("--latency-ms", type=_number(1, 3_600_000),
                   help="p95 latency target: self-hosted arms are sized at a concurrency that meets it")
    _self_hosting(p)
    _common(p)

    p = sub.add_parser("decide", help="a recommendation with its reasons, from an evaluation run")
    p.add_argument("--run", required=True, help="a run's name or id")
    p.add_argument("--changes", choices=["daily", "weekly", "monthly", "quarterly", "rarely"])
    p.add_argument("--latency-ms", type=LATENCY_MS, help="p95 latency target in milliseconds")
    p.add_argument("--citations", choices=["yes", "no"])
    p.add_argument("--format", dest="format_matters", choices=["yes", "no"],
                   help="answers must follow a predictable format")
    p.add_argument("--training-examples", choices=["yes", "no"], help="quality training examples are available")
    p.add_argument("--per-day", type=PER_DAY, default=10_000, help="questions a day, for the cost comparison")
    p.add_argument("--hardware-usd-per-hour", type=DOLLARS_AN_HOUR)
    _self_hosting(p)
    _common(p)

    p = sub.add_parser("freshness", help="change a fact in a copy of the knowledge base and see which arms follow")
    p.add_argument("--document", required=True, help="the document to edit (its name in the knowledge base)")
    p.add_argument("--find", required=True, help="the text or number to change (e.g. 45)")
    p.add_argument("--replace", required=True, help="what to put in its place (e.g. 60)")
    p.add_argument("--question", required=True, help="a question whose answer is that fact")
    p.add_argument("--arms", type=_arm_list, default="rag,finetuned,hybrid")
    p.add_argument("--top-k", type=TOP_K, default=None,
                   help="sources per question, 1-50 (default: 1 with the local model, 4 with hosted models)")
    p.add_argument("--max-tokens", type=MAX_TOKENS, default=None,
                   help="answer length limit, 1-16384 (default: 96 with the local model, 256 with hosted models)")
    _common(p)

    p = sub.add_parser("report", help="a report to take to a meeting (self-contained HTML, or Markdown)")
    p.add_argument("--run", required=True, help="a run's name or id")
    p.add_argument("--per-day", type=PER_DAY, default=10_000)
    p.add_argument("--out", required=True, type=Path,
                   help="FILE.html (charts embedded, opens offline) or FILE.md, in an existing folder")
    p.add_argument("--months", type=MONTHS, default=12)
    p.add_argument("--hardware-usd-per-hour", type=DOLLARS_AN_HOUR)
    p.add_argument("--cached-input", action="store_true")
    p.add_argument("--changes", choices=["daily", "weekly", "monthly", "quarterly", "rarely"])
    p.add_argument("--latency-ms", type=LATENCY_MS)
    p.add_argument("--citations", choices=["yes", "no"])
    p.add_argument("--format", dest="format_matters", choices=["yes", "no"],
                   help="answers must follow a predictable format")
    p.add_argument("--training-examples", choices=["yes", "no"], help="quality training examples are available")
    _self_hosting(p)
    _common(p)

    p = sub.add_parser("finetune", help="fine-tune the local model on a knowledge base, no pairs written by hand")
    p.add_argument("--kb", required=True, help="the knowledge base to train on")
    p.add_argument("--steps", type=_whole(1, 20_000), default=125,
                   help="training steps, 1-20,000 (default 125, the shipped recipe)")
    p.add_argument("--lr", type=_number(0, 1, low_open=True), default=3e-3, help="learning rate, above 0 to 1")
    p.add_argument("--rank", type=_whole(1, 256), default=16, help="LoRA rank, 1-256")
    p.add_argument("--name", help="the model's name (default: the knowledge base's name + '-lora')")
    p.add_argument("--offline", action="store_true",
                   help="build the training set without a model even when a hosted model is configured")
    p.add_argument("--no-wait", action="store_true", help="start the job and return (follow it with `jobs`)")
    p.add_argument("--probe", action="store_true",
                   help="first measure this machine's speed with a 3-step run on these examples (about a minute)")
    p.add_argument("--base", help="the downloaded catalogue model to train the LoRA for (default: the workspace's "
                                  "base model if it is one, else the bundled model); its training weights are "
                                  "downloaded first if needed")
    _common(p)

    p = sub.add_parser("list", help="list the documents of a knowledge base")
    _common(p)
    p = sub.add_parser("remove", help="remove a document (all its chunks)")
    p.add_argument("document")
    _common(p)
    p = sub.add_parser("kbs", help="list knowledge bases")
    _common(p)
    p = sub.add_parser("workspaces", help="list workspaces, or create or delete one")
    p.add_argument("action", nargs="?", choices=["list", "create", "delete"], default="list")
    p.add_argument("name", nargs="?", help="the workspace to create or delete")
    _common(p)
    p = sub.add_parser("jobs", help="training and fine-tuning jobs (hosted ones are refreshed when a key is set)")
    _common(p)
    from lib import models_cli

    models_cli.add_parser(sub, _common)
    return root


_SURROGATE = re.compile("[\ud800-\udfff]")


def _emit(obj: dict[str, Any]) -> None:
    """One JSON object on one line, always valid UTF-8 JSON (a lone surrogate, as from a file name that is not
    UTF-8, becomes U+FFFD)."""
    print(_SURROGATE.sub("\ufffd", json.dumps(obj, ensure_ascii=False)), flush=True)


def _print_arm(r: ArmResult) -> None:
    print(f"== {r.label} ({r.model or 'no model'})")
    if r.error:
        print(f"   error: {r.error}")
        return
    print(f"   {r.answer}")
    if r.sources:
        print("   sources: " + ", ".join(f"[{i}] {s.document}#{s.chunk} ({s.score:.2f})"
                                       for i, s in enumerate(r.sources, 1)))
    u = r.usage
    est = " (estimated)" if r.usage_source == "estimate" else ""
    if u:
        print(f"   tokens{est}: prompt {u.prompt_tokens} (system {u.system_tokens}, context {u.context_tokens}, "
              f"question {u.question_tokens}), completion {u.completion_tokens}")
    cost = "unknown" if r.cost_usd is None else f"${r.cost_usd:.6f}"
    print(f"   cost: {cost} ({r.cost_note}); first token {r.ttft_ms:.0f} ms, total {r.total_ms:.0f} ms")


def _evaluate(settings: Any, kb: Any, args: argparse.Namespace, arms: list[str]) -> int:
    from lib import engine, evalrun, evaluate

    ws = engine.workspace_for(settings)
    if args.new_models and not args.resume:
        raise UserError("--new-models goes with --resume RUN: it answers what that run has not answered in a new run.")
    if args.regrade:
        run_id = evalrun.find_run(ws, args.regrade).id
        evalrun.regrade(ws, run_id, evalrun.local_similarity(settings))
    elif args.resume:
        record = evalrun.find_run(ws, args.resume)
        run_id = record.id
        if args.new_models:
            run_id = evalrun.rerun_rest(settings, ws, run_id, args.run_name)
            note = f"answering the rest of run {record.name} in a new run, {run_id}, with the models configured now"
            _emit({"run": run_id, "rerun_of": record.id}) if args.json else print(note, flush=True)
    else:
        chosen = args.question_set or (str(args.questions) if args.questions else evalrun.SAMPLE_SET)
        run_id, _, _ = evalrun.start(settings, ws, kb, chosen, arms, args.run_name, args.top_k, 0.0, 0.0,
                                     args.max_tokens, args.concurrency, args.limit, args.judge)

    def progress(p: evalrun.Progress, rows: list[Graded]) -> None:
        for g in rows:
            if args.json:
                _emit({"run": run_id, **g.to_dict()})
            else:
                left = f", about {p.seconds_left:.0f} s left" if p.seconds_left is not None else ""
                print(f"[{p.done}/{p.total}{left}] {g.question.id} {g.arm}: {'ok' if g.correct else '--'} "
                      f"({g.reason})", flush=True)

    if not args.regrade:
        cancel = _run_cancellable(lambda stop: evalrun.resume(settings, ws, kb, run_id, stop, on_progress=progress))
        if cancel:
            stopped = ws.run(run_id)
            name, answered = (stopped.name, stopped.answered) if stopped else (run_id, 0)
            message = (f"cancelled: {answered} answers of run {name} are stored; finish it "
                       f"with `python -m lib eval --resume {name}`")
            _emit({"run": run_id, "cancelled": True, "answered": answered}) if args.json else \
                print(message, file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)  # answers still in flight are dropped; threads waiting on a server are not waited for
    record, summary, _ = evalrun.summary(ws, run_id)
    if args.json:
        _emit({"run": run_id, "name": record.name, "summary": summary})
    else:
        def pct(x: float | None) -> str:
            return "   -" if x is None else f"{x:4.0%}"

        print(f"run {record.name} ({run_id}) in workspace {ws.name}")
        print(f"{'arm':10} {'accuracy':>9} {'95% CI':>11} {'refused':>7} {'fabric.':>7} {'cites ok':>8} "
              f"{'style':>5} {'errors':>6} {'p50 ms':>7} {'p95 ms':>7}")
        for arm, s in summary.items():
            low, high = s["accuracy_ci95"]
            print(f"{arm:10} {s['correct']:>3}/{s['answerable']:<3} {pct(s['accuracy'])} {low:>5.0%}-{high:<4.0%} "
                  f"{pct(s['refusal_rate']):>7} {pct(s['fabrication_rate']):>7} {pct(s['citation_accuracy']):>8} "
                  f"{pct(s['house_style']):>5} {s['errors']:>6} {s['median_total_ms'] or 0:>7.0f} "
                  f"{s['p95_total_ms'] or 0:>7.0f}")
        print(evaluate.noise_sentence(max((s["answerable"] for s in summary.values()), default=0)))
        capped = sum(s.get("capped", 0) for s in summary.values())
        if capped:  # not wrong answers: never asked; the accuracy above leaves them out
            print(f"stopped at the spend cap: {capped} answer(s) refused before anything was sent (counted in "
                  f"errors, not graded); raise the cap, then: python -m lib eval --resume {run_id}")
    return 0


def _run_cancellable(work: Any) -> bool:
    """Run `work(cancel_event)` with Ctrl-C setting the event (a second Ctrl-C ends the process at once);
    True when it was cancelled."""
    import signal
    import threading

    cancel = threading.Event()

    def on_interrupt(signum: int, frame: Any) -> None:
        if cancel.is_set():
            os._exit(130)
        cancel.set()
        print("Cancelling: questions not started are dropped; answers stored so far are kept.", file=sys.stderr,
              flush=True)

    try:
        previous = signal.signal(signal.SIGINT, on_interrupt)
    except ValueError:  # not the main thread: no Ctrl-C to catch here
        previous = None
    try:
        work(cancel)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return cancel.is_set()


def _capacity(settings: Any, ws: Any, args: argparse.Namespace) -> int:
    from lib import capacity

    levels = capacity.parse_levels(args.concurrency)
    shown: list[int] = []

    def progress(p: capacity.Progress) -> None:
        for lv in p.levels[len(shown):]:
            shown.append(lv.concurrency)
            if args.json:
                _emit(lv.to_dict())
            else:
                print(f"{lv.concurrency:>11} {lv.questions_per_hour:>14,.0f} {lv.latency_p50_ms:>8,.0f} "
                      f"{lv.latency_p95_ms:>8,.0f} {lv.tokens_per_s:>8.1f} {lv.batch_size_mean:>6.1f} "
                      f"{lv.errors:>6}", flush=True)

    if not args.json:
        print(f"{'concurrency':>11} {'questions/hour':>14} {'p50 ms':>8} {'p95 ms':>8} {'tok/s':>8} {'batch':>6} "
              f"{'errors':>6}", flush=True)
    result = capacity.run(settings, ws, args.role, levels, args.questions, args.max_tokens, progress)
    progress(capacity.Progress(levels=list(result.levels)))
    if args.json:
        _emit(result.summary())
    else:
        best = result.best
        print(f"{result.label}; {result.prompts}, up to {result.max_tokens} tokens per answer. Most: "
              f"{best.questions_per_hour:,.0f} questions an hour at {best.concurrency} at a time. "
              f"Stored in workspace {ws.name}.")
    return 0


def _project(settings: Any, args: argparse.Namespace) -> int:
    from lib import engine, projection

    ws = engine.workspace_for(settings)
    a = projection.Assumptions(per_day=args.per_day, months=args.months, cached_input=args.cached_input,
                               hardware_usd_per_hour=args.hardware_usd_per_hour, changes=args.changes,
                               amortise_months=args.amortise_months, peak_factor=args.peak_factor,
                               latency_target_ms=args.latency_ms, capacity_qph=args.capacity_qph)
    record, _, projections = projection.from_run(ws, args.run, a)
    for p in projections:
        row = {**p.to_dict(), "run": record.id}
        if args.json:
            _emit(row)
        else:
            def money(x: float | None) -> str:
                return "unknown" if x is None else f"${x:,.2f}"

            print(f"{p.arm:10} {money(p.monthly_total_usd):>12} a month at {args.per_day:,} questions a day "
                  f"(inference {money(p.monthly_inference_usd)}, training {money(p.monthly_training_usd)}); {p.note}")
    if not args.json:
        for c in projection.crossings(projections, args.months, a):
            print(f"break-even: {c['arms'][0]} and {c['arms'][1]} cross at month {c['month']:.1f}; "
                  f"{c['cheaper_after']} is cheaper after")
    return 0


def _situation(args: argparse.Namespace) -> Any:
    from lib.decision import Situation

    yes_no = {"yes": True, "no": False, None: None}
    return Situation(changes=args.changes, citations=yes_no[args.citations], latency_ms=args.latency_ms,
                     format_matters=yes_no[getattr(args, "format_matters", None)],
                     training_examples=yes_no[getattr(args, "training_examples", None)])


def _decide(settings: Any, args: argparse.Namespace) -> int:
    from lib import engine, projection, report

    ws = engine.workspace_for(settings)
    a = projection.Assumptions(per_day=args.per_day, hardware_usd_per_hour=args.hardware_usd_per_hour,
                               changes=args.changes or "rarely", peak_factor=args.peak_factor,
                               latency_target_ms=args.latency_ms, capacity_qph=args.capacity_qph)
    d = report.build(ws, args.run, a, _situation(args))
    r = d.recommendation
    if args.json:
        _emit({"run": d.run.id, **r.to_dict()})
    else:
        print(f"Recommendation: {r.label}")
        for reason in r.reasons:
            print(f"  because: {reason}")
        for change in r.would_change:
            print(f"  would change: {change}")
        if r.caveat:
            print(f"  caveat: {r.caveat}")
    return 0


def _freshness(settings: Any, kb: Any, args: argparse.Namespace, arms: list[str]) -> int:
    from lib import engine, freshness

    ws = engine.workspace_for(settings)
    result = freshness.run_and_record(settings, ws, kb, args.document, args.find, args.replace, args.question, arms,
                                      args.max_tokens, args.top_k)
    for a in result.arms:
        row = {"arm": a.arm, "answer": a.answer, "follows_change": a.follows_change, "keeps_old": a.keeps_old,
               "error": a.error}
        if args.json:
            _emit(row)
        else:
            verdict = "follows the change" if a.follows_change else ("keeps the old value" if a.keeps_old
                                                                     else "gives neither value")
            print(f"{a.arm:10} {verdict}: {a.error or a.answer}")
    final = {"reindex_s": round(result.reindex_s, 3), "retrain_s": result.retrain_s,
             "retrain_note": result.retrain_note, "document": result.document, "replacements": result.replacements}
    if args.json:
        _emit(final)
    else:
        print(freshness.retrain_sentence(result))
    return 0


def _report(settings: Any, args: argparse.Namespace) -> int:
    from lib import engine, projection, report

    out: Path = args.out
    if out.is_dir():
        raise UserError(f"{out} is a folder: give the report's file name, e.g. {out / 'decision.html'}.")
    if not out.parent.is_dir():
        raise UserError(f"The folder {out.parent} does not exist: create it first, or write the report elsewhere.")
    if out.suffix.lower() not in (".html", ".htm", ".md"):
        raise UserError(f"{out.name}: name the report FILE.html (self-contained, opens offline) or FILE.md.")
    ws = engine.workspace_for(settings)
    a = projection.Assumptions(per_day=args.per_day, months=args.months, cached_input=args.cached_input,
                               hardware_usd_per_hour=args.hardware_usd_per_hour, changes=args.changes or "rarely",
                               peak_factor=args.peak_factor, latency_target_ms=args.latency_ms,
                               capacity_qph=args.capacity_qph)
    d = report.build(ws, args.run, a, _situation(args))
    text = report.markdown(d) if out.suffix.lower() == ".md" else report.html_report(d)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)  # never a half-written report
    except OSError as exc:
        raise UserError(f"The report could not be written to {out}: {exc.strerror or exc}.") from None
    finally:
        tmp.unlink(missing_ok=True)  # nothing stray is left behind
    row = {"out": str(out), "bytes": len(text.encode()), "recommendation": d.recommendation.choice,
           "run": d.run.id}
    _emit(row) if args.json else print(f"wrote {out} ({row['bytes']:,} bytes): {d.recommendation.label}")
    return 0


def _finetune(settings: Any, args: argparse.Namespace) -> int:
    import time

    from lib import engine, finetune, provenance
    from lib.finetune import from_kb

    ws = engine.workspace_for(settings)
    kb = engine.open_kb(settings, args.kb, create=False)
    if kb.count() == 0:
        raise UserError(f"Knowledge base {args.kb!r} has no documents to train on.")
    examples, kinds, method = from_kb.training_set(settings, kb, offline=args.offline)
    if not examples:
        raise UserError("No training examples could be made from this knowledge base.")
    base = _training_base(settings, ws, args)
    if args.probe:
        from_kb.probe(ws, examples, base=base)
    estimate = from_kb.estimate(ws, args.steps, examples, base=base)
    head = {"knowledge_base": kb.name, "examples": len(examples), "kinds": kinds, "method": method,
            "estimate": estimate, "can_and_cannot": from_kb.CAN_AND_CANNOT}
    if args.json:
        _emit(head)
    else:
        print(f"{len(examples)} examples from {kb.name} ({method}). Expected: about {estimate['seconds'] / 60:.0f} min "
              f"for {args.steps} steps at {estimate['seconds_per_step']:.1f} s per step, from "
              f"{estimate['source']} ({estimate['note']}).\n{from_kb.CAN_AND_CANNOT}", flush=True)
    job_id = from_kb.start(ws, kb, examples, method, args.steps, args.rank, args.lr, args.name, base=base)
    if args.no_wait:
        _emit({"job": job_id, "status": "started"}) if args.json else print(f"started job {job_id}")
        return 0
    last = None
    while True:
        job = ws.job(job_id)
        if job is None or job.finished:
            break
        status = finetune.local_status(ws, job)
        if not args.json and status.get("step") != last:
            last = status.get("step")
            print(f"step {status.get('step')}/{status.get('total_steps')} loss {status.get('loss')}", flush=True)
        time.sleep(2)
    job = ws.job(job_id)
    model = next((m for m in ws.models() if m.id == job_id), None) if job else None
    out = {"job": job_id, "status": job.status if job else "missing", "error": job.error if job else None,
           "model": provenance.trained_on(model) if model else None}
    if args.json:
        _emit(out)
    else:
        print(f"{out['status']}: " + (provenance.model_card(model) if model else str(out["error"])))
    return 0 if model else 1


def _training_base(settings: Any, ws: Any, args: argparse.Namespace) -> str | None:
    """The catalogue model to fine-tune (None: the bundled one), its training weights downloaded if needed."""
    from lib import catalogue, engine, modelhub
    from lib.finetune.local import training_base_for

    name = args.base
    if not name:  # the workspace's base model, if it is a catalogue model that can be fine-tuned here
        name, note = training_base_for(engine.resolve_models(settings, ws))
        print(note, file=sys.stderr, flush=True)
    if name in (None, catalogue.BUNDLED):
        return None
    info = catalogue.training_base(settings.data_dir, name)
    if info is not None and not info["train_dir"]:
        print(f"downloading {name}'s training weights first", file=sys.stderr, flush=True)
        modelhub.pull_training(settings, name, lambda p: print(p.line(), file=sys.stderr, flush=True))
    return name


def _grade(args: argparse.Namespace) -> int:
    """One JSON line per input line: correct, score, refused, reason (and fabricated, method, and citations:
    none / correct / wrong when the line gives its `sources`, else null)."""
    from lib.evalsets import read_grading_file
    from lib.grading import grade_answer

    rows, problems = read_grading_file(args.file)
    similarity = None
    if not args.no_embedder and any("error" not in r for r in rows):
        from lib.evalrun import cached_similarity

        similarity = cached_similarity()  # refusals by meaning, and answers in words

    failed = False
    for row in rows:
        if "error" in row:
            failed = True
            out = {"line": row["line"], "error": row["error"]}
        else:
            g = grade_answer(row["question"], row["reference"], row["answer"], row["keywords"], row["answerable"],
                             similarity, row.get("sources"))
            out = {"line": row["line"], "question": row["question"], **g.to_dict()}
        if args.json:
            _emit(out)
        elif "error" in out:
            print(f"line {out['line']}: error: {out['error']}")
        else:
            mark = "PASS" if out["correct"] else ("REFUSED" if out["refused"] else "FAIL")
            cites = f"  citations {out['citations']}" if out.get("citations") else ""
            print(f"line {out['line']}: {mark} {out['score']:.2f}  {out['question'][:60]}  ({out['reason']}){cites}")
    for line, message in problems:
        failed = True
        _emit({"line": line, "error": message}) if args.json else print(f"line {line}: error: {message}")
    return 1 if failed else 0
def _workspaces(settings: Any, args: argparse.Namespace) -> int:
    from lib import engine
    from lib.workspace import list_workspaces

    if args.action == "list":
        for name in list_workspaces(settings.data_dir):
            current = name == settings.workspace
            _emit({"workspace": name, "current": current}) if args.json else print(("* " if current else "  ") + name)
        return 0
    if not args.name:
        raise ConfigError(f"Name the workspace: python -m lib workspaces {args.action} NAME")
    if args.action == "create":
        engine.create_workspace(settings, args.name)
        _emit({"workspace": args.name, "created": True}) if args.json else print(f"created workspace {args.name}")
    else:
        engine.delete_workspace(settings, args.name)
        _emit({"workspace": args.name, "deleted": True}) if args.json else print(f"deleted workspace {args.name}")
    return 0


def _jobs(settings: Any, ws: Any, args: argparse.Namespace) -> int:
    from lib import finetune

    problems: list[str] = []
    if settings.hosted_configured and any(not j.finished for j in ws.jobs("openai")):
        from lib import gateway

        problems = gateway.fine_tuning(settings).refresh_all(ws)
    for job in ws.jobs():
        row = job.to_dict()
        if job.kind == "local":
            status = finetune.local_status(ws, job)
            row.update(step=status.get("step"), total_steps=status.get("total_steps"), loss=status.get("loss"))
        if args.json:
            _emit(row)
        else:
            done = f" step {row['step']}/{row['total_steps']}" if job.kind == "local" and not job.finished else ""
            model = f" -> {job.result.get('model_id')}" if job.result else ""
            print(f"{job.id}  {job.kind:6} {job.status:10} {job.name}{done}{model}"
                  + (f"  ({job.error})" if job.error else ""))
    for problem in problems:
        print(f"could not refresh {problem}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "grade":
        try:
            return _grade(args)
        except (ConfigError, OSError) as exc:
            _emit({"error": redact(str(exc))}) if args.json else print(f"error: {redact(str(exc))}", file=sys.stderr)
            return 2
    overrides = {"data_dir": args.data_dir, "collection": args.collection, "workspace": args.workspace}
    settings = None
    try:
        settings = load_settings(**overrides)
        if getattr(args, "top_k", 0) is None:
            args.top_k = settings.default_top_k
        if getattr(args, "max_tokens", 0) is None:
            args.max_tokens = settings.default_max_tokens
        from lib import engine

        if args.command == "workspaces":
            return _workspaces(settings, args)
        if args.command == "models":
            from lib import models_cli

            return models_cli.run(settings, args)
        ws = engine.workspace_for(settings, create=False)
        if args.command == "jobs":
            return _jobs(settings, ws, args)
        if args.command == "capacity":
            return _capacity(settings, ws, args)
        if args.command == "project":
            return _project(settings, args)
        if args.command == "decide":
            return _decide(settings, args)
        if args.command == "report":
            return _report(settings, args)
        if args.command == "finetune":
            return _finetune(settings, args)
        if args.command == "kbs":
            from lib.store import list_knowledge_bases

            names = list_knowledge_bases(engine.client_for(settings))
            for name in names:
                _emit({"collection": name}) if args.json else print(name)
            return 0
        if args.command == "eval" and (args.resume or args.regrade) and not args.collection:
            from dataclasses import replace

            from lib import evalrun

            stored = evalrun.find_run(engine.workspace_for(settings), args.resume or args.regrade)
            settings = replace(settings, collection=stored.spec.collection or settings.collection)  # the run's own
        kb = engine.open_kb(settings, create=args.command == "ingest")
        if args.command == "ingest":
            results = engine.ingest_paths(kb, args.paths, args.chunk_size, args.overlap,
                                          settings.max_upload_mb * 1024 * 1024)
            for r in results:
                if args.json:
                    _emit({k: v for k, v in r.to_dict().items() if k != "ms"})
                else:
                    detail = r.error if r.error else f"{r.chunks} chunks, {r.tokens} tokens"
                    print(f"{r.status:9} {r.file}: {detail}")
            return 1 if any(r.status == "error" for r in results) else 0
        if args.command == "list":
            from lib.documents import display_safe

            for d in kb.documents():
                row = {"document": d.name, "chunks": d.chunks, "tokens": d.tokens, "kind": d.kind,
                       "sha256": d.sha256, "added_at": d.added_at}
                _emit(row) if args.json else print(f"{display_safe(d.name)}: {d.chunks} chunks, {d.tokens} tokens")
            return 0
        if args.command == "remove":
            n = kb.remove_document(args.document)
            if args.json:
                _emit({"document": args.document, "removed_chunks": n})
            else:
                print(f"removed {n} chunks of {args.document}" if n else f"no document named {args.document}")
            return 0 if n else 1
        settings = engine.resolve_models(settings, ws)
        arms = [a.strip() for a in args.arms.split(",") if a.strip()]
        if args.command == "eval":
            return _evaluate(settings, kb, args, arms)
        if args.command == "freshness":
            return _freshness(settings, kb, args, arms)
        from lib.compare import ask_and_record

        comparison = ask_and_record(settings, args.question, arms, kb,
                                    GenParams(temperature=args.temperature, max_tokens=args.max_tokens),
                                    args.top_k, args.min_score, ws).comparison
        for r in comparison.results:
            _emit(r.to_dict()) if args.json else _print_arm(r)  # the one serialised shape of a result
        return 1 if all(r.error for r in comparison.results) else 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if type(exc).__module__.split(".")[0] == "chromadb":  # the store failed: one line naming it
            from lib.store import store_error

            exc = store_error(exc, settings.chroma_host or Path(settings.data_dir) / "chroma")
        elif not isinstance(exc, ConfigError):  # a bug: logged with its traceback, one plain line here
            message = report_bug(exc, settings.data_dir if settings else (args.data_dir or DEFAULT_DATA_DIR))
            _emit({"error": message, "bug": True}) if args.json else print(f"error: {message}", file=sys.stderr)
            return 70  # EX_SOFTWARE
        if args.json:
            _emit({"error": redact(str(exc))})
        else:
            print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
