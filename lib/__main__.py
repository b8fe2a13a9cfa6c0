"""Command-line interface: `python -m lib ingest|ask|eval|capacity|list|remove|kbs|workspaces|jobs`.
A thin layer over lib.engine; every command works in one workspace (--workspace)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lib.arms import ARMS, DEFAULT_ARMS, ArmResult
from lib.chunking import DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS
from lib.errors import ConfigError, redact
from lib.providers import GenParams
from lib.settings import load_settings


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
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_TOKENS, help="tokens per chunk (16-254)")
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP_TOKENS, help="tokens shared by neighbours")
    _common(p)

    p = sub.add_parser("ask", help="ask one question across arms")
    p.add_argument("question")
    p.add_argument("--arms", default=",".join(("baseline", *DEFAULT_ARMS)),
                   help=f"comma-separated, from {','.join(ARMS)}")
    p.add_argument("--top-k", type=int, default=None,
                   help="sources per question (default: 1 with the local model, 4 with hosted models)")
    p.add_argument("--min-score", type=float, default=0.0)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--max-tokens", type=int, default=256)
    _common(p)

    p = sub.add_parser("eval", help="accuracy, refusals, fabrication, citations and latency of each arm on a "
                                    "question set")
    p.add_argument("--set", dest="question_set", default=None,
                   help="question set: 'sample' (default), a set stored in the workspace, or a JSONL/CSV file")
    p.add_argument("--questions", type=Path, help=argparse.SUPPRESS)  # the earlier name of --set FILE
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--limit", type=int, help="only the first N questions")
    p.add_argument("--run-name", help="name the run (stored in the workspace; later commands find it by name)")
    p.add_argument("--resume", metavar="RUN", help="answer what a stopped run (id or name) has not answered yet")
    p.add_argument("--regrade", metavar="RUN", help="grade a stored run's answers again with the current grader "
                                                    "(asks no model) and print its summary")
    p.add_argument("--concurrency", type=int, default=8, help="hosted requests at once (local arms queue)")
    p.add_argument("--judge", action="store_true",
                   help="also grade every answer with the hosted base model as an LLM judge, and report its "
                        "agreement with the offline grader")
    p.add_argument("--top-k", type=int, default=None,
                   help="sources per question (default: 1 with the local model, 4 with hosted models)")
    p.add_argument("--max-tokens", type=int, default=96)
    _common(p)

    p = sub.add_parser("capacity", help="questions per hour, latency and tokens/s of the local model on this machine "
                                        "at each concurrency (stored in the workspace)")
    p.add_argument("--role", choices=["base", "finetuned"], default="base",
                   help="which role's active model to measure (default base)")
    p.add_argument("--concurrency", default="1,2,4,8", help="questions asked at once, comma-separated (default 1,2,4,8)")
    p.add_argument("--questions", type=int, default=8, help="questions answered at each concurrency (default 8)")
    p.add_argument("--max-tokens", type=int, default=96, help="tokens each answer may generate (default 96)")
    _common(p)

    p = sub.add_parser("grade", help="grade given answers against references (no generation, offline)")
    p.add_argument("file", type=Path, help="JSONL (or CSV): question, reference, answer, optional keywords, "
                                           "answerable (default true)")
    p.add_argument("--no-embedder", action="store_true",
                   help="rules only: skip the local embedder's similarity for references without numbers")
    _common(p)

    p = sub.add_parser("project", help="monthly cost per arm at a volume, from an evaluation run")
    p.add_argument("--run", required=True, help="a run's name (as given with eval --run-name; the latest of that "
                                                "name) or id")
    p.add_argument("--per-day", type=int, default=10_000, help="questions a day (default 10,000)")
    p.add_argument("--months", type=int, default=12, help="months for the break-even (default 12)")
    p.add_argument("--hardware-usd-per-hour", type=float, help="what the machine running local models costs an hour")
    p.add_argument("--cached-input", action="store_true", help="price the repeated prompt prefix as cached input")
    p.add_argument("--changes", choices=["daily", "weekly", "monthly", "quarterly", "rarely"], default="rarely",
                   help="how often the documents change (retraining that often)")
    p.add_argument("--amortise-months", type=int, default=12, help="spread one training's cost over this many months")
    _common(p)

    p = sub.add_parser("decide", help="a recommendation with its reasons, from an evaluation run")
    p.add_argument("--run", required=True, help="a run's name or id")
    p.add_argument("--changes", choices=["daily", "weekly", "monthly", "quarterly", "rarely"])
    p.add_argument("--latency-ms", type=float, help="p95 latency target in milliseconds")
    p.add_argument("--citations", choices=["yes", "no"])
    p.add_argument("--format", dest="format_matters", choices=["yes", "no"],
                   help="answers must follow a predictable format")
    p.add_argument("--training-examples", choices=["yes", "no"], help="quality training examples are available")
    p.add_argument("--per-day", type=int, default=10_000, help="questions a day, for the cost comparison")
    p.add_argument("--hardware-usd-per-hour", type=float)
    _common(p)

    p = sub.add_parser("freshness", help="change a fact in a copy of the knowledge base and see which arms follow")
    p.add_argument("--document", required=True, help="the document to edit (its name in the knowledge base)")
    p.add_argument("--find", required=True, help="the text or number to change (e.g. 45)")
    p.add_argument("--replace", required=True, help="what to put in its place (e.g. 60)")
    p.add_argument("--question", required=True, help="a question whose answer is that fact")
    p.add_argument("--arms", default="rag,finetuned,hybrid")
    p.add_argument("--top-k", type=int, default=None,
                   help="sources per question (default: 1 with the local model, 4 with hosted models)")
    p.add_argument("--max-tokens", type=int, default=96)
    _common(p)

    p = sub.add_parser("report", help="a report to take to a meeting (self-contained HTML, or Markdown)")
    p.add_argument("--run", required=True, help="a run's name or id")
    p.add_argument("--per-day", type=int, default=10_000)
    p.add_argument("--out", required=True, type=Path, help="FILE.html (charts embedded, opens offline) or FILE.md")
    p.add_argument("--months", type=int, default=12)
    p.add_argument("--hardware-usd-per-hour", type=float)
    p.add_argument("--cached-input", action="store_true")
    p.add_argument("--changes", choices=["daily", "weekly", "monthly", "quarterly", "rarely"])
    p.add_argument("--latency-ms", type=float)
    p.add_argument("--citations", choices=["yes", "no"])
    _common(p)

    p = sub.add_parser("finetune", help="fine-tune the local model on a knowledge base, no pairs written by hand")
    p.add_argument("--kb", required=True, help="the knowledge base to train on")
    p.add_argument("--steps", type=int, default=125, help="training steps (default 125, the shipped recipe)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--name", help="the model's name (default: the knowledge base's name + '-lora')")
    p.add_argument("--offline", action="store_true",
                   help="build the training set without a model even when a hosted model is configured")
    p.add_argument("--no-wait", action="store_true", help="start the job and return (follow it with `jobs`)")
    p.add_argument("--probe", action="store_true",
                   help="first measure this machine's speed with a 3-step run on these examples (about a minute)")
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
    return root


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, ensure_ascii=False), flush=True)


def _arm_json(r: ArmResult) -> dict[str, Any]:
    return r.to_dict()  # the one serialised shape of a result (history records use it too)


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
    if args.regrade:
        record = ws.run(args.regrade)
        if record is None:
            raise ValueError(f"No evaluation run {args.regrade!r} in workspace {ws.name!r}.")
        run_id = record["id"]
        evalrun.regrade(ws, run_id, evalrun.local_similarity(settings))
    elif args.resume:
        record = ws.run(args.resume)
        if record is None:
            raise ValueError(f"No evaluation run {args.resume!r} in workspace {ws.name!r}.")
        run_id = record["id"]
    else:
        chosen = args.question_set or (str(args.questions) if args.questions else evalrun.SAMPLE_SET)
        run_id, _, _ = evalrun.start(settings, ws, kb, chosen, arms, args.run_name, args.top_k, 0.0, 0.0,
                                     args.max_tokens, args.concurrency, args.limit, args.judge)

    def progress(p: evalrun.Progress, rows: list[evaluate.Graded]) -> None:
        for g in rows:
            if args.json:
                _emit({"run": run_id, "id": g.question.id, "arm": g.arm, "correct": g.correct, "score": g.score,
                       "refused": g.refused, "fabricated": g.fabricated, "reason": g.reason, "cites": g.cites,
                       "citation_ok": g.citation_ok, "retrieval_hit": g.retrieval_hit,
                       "house_style": g.house_style, "answer": g.answer, "error": g.error,
                       "total_ms": g.total_ms, "cost_usd": g.cost_usd})
            else:
                left = f", about {p.seconds_left:.0f} s left" if p.seconds_left is not None else ""
                print(f"[{p.done}/{p.total}{left}] {g.question.id} {g.arm}: {'ok' if g.correct else '--'} "
                      f"({g.reason})", flush=True)

    if not args.regrade:
        evalrun.resume(settings, ws, kb, run_id, on_progress=progress)
    record, summary, _ = evalrun.summary(ws, run_id)
    if args.json:
        _emit({"run": run_id, "name": record["name"], "summary": summary})
    else:
        def pct(x: float | None) -> str:
            return "   -" if x is None else f"{x:4.0%}"

        print(f"run {record['name']} ({run_id}) in workspace {ws.name}")
        print(f"{'arm':10} {'accuracy':>9} {'95% CI':>11} {'refused':>7} {'fabric.':>7} {'cites ok':>8} "
              f"{'style':>5} {'errors':>6} {'p50 ms':>7} {'p95 ms':>7}")
        for arm, s in summary.items():
            low, high = s["accuracy_ci95"]
            print(f"{arm:10} {s['correct']:>3}/{s['answerable']:<3} {pct(s['accuracy'])} {low:>5.0%}-{high:<4.0%} "
                  f"{pct(s['refusal_rate']):>7} {pct(s['fabrication_rate']):>7} {pct(s['citation_accuracy']):>8} "
                  f"{pct(s['house_style']):>5} {s['errors']:>6} {s['median_total_ms'] or 0:>7.0f} "
                  f"{s['p95_total_ms'] or 0:>7.0f}")
        print(evaluate.noise_sentence(max((s["answerable"] for s in summary.values()), default=0)))
    return 0


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
                               amortise_months=args.amortise_months)
    record, _, projections = projection.from_run(ws, args.run, a)
    for p in projections:
        row = {"arm": p.arm, "model": p.model, "questions": p.questions,
               "cost_per_question_usd": p.cost_per_question_usd, "monthly_inference_usd": p.monthly_inference_usd,
               "training_usd": p.training_usd, "monthly_total_usd": p.monthly_total_usd, "priced": p.priced,
               "monthly_training_usd": p.monthly_training_usd, "note": p.note, "run": record["id"]}
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


def _decide(settings: Any, args: argparse.Namespace) -> int:
    from lib import decision, engine, evalrun, projection

    ws = engine.workspace_for(settings)
    record, summary, _ = evalrun.summary(ws, args.run)
    yes_no = {"yes": True, "no": False, None: None}
    situation = decision.Situation(changes=args.changes, citations=yes_no[args.citations],
                                   latency_ms=args.latency_ms, format_matters=yes_no[args.format_matters],
                                   training_examples=yes_no[args.training_examples])
    a = projection.Assumptions(per_day=args.per_day, hardware_usd_per_hour=args.hardware_usd_per_hour,
                               changes=args.changes or "rarely")
    _, _, projections = projection.from_run(ws, record["id"], a)
    freshness = ws.meta(f"freshness:{record['spec'].get('collection', '')}")
    small = "local" in (record["spec"].get("providers") or {}).values()
    r = decision.decide(summary, situation, json.loads(freshness) if freshness else None,
                        {p.arm: p.monthly_total_usd for p in projections}, small_model=small)
    if args.json:
        _emit({"run": record["id"], **r.to_dict()})
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
    settings = engine.resolve_finetuned(settings, ws)
    result = freshness.run(settings, kb, args.document, args.find, args.replace, args.question, arms,
                           args.max_tokens, args.top_k, freshness.retrain_seconds(ws, settings))
    ws.set_meta(f"freshness:{kb.name}", json.dumps(result.by_arm()))
    for a in result.arms:
        row = {"arm": a.arm, "answer": a.answer, "follows_change": a.follows_change, "keeps_old": a.keeps_old,
               "error": a.error}
        if args.json:
            _emit(row)
        else:
            verdict = "follows the change" if a.follows_change else ("keeps the old value" if a.keeps_old
                                                                     else "gives neither value")
            print(f"{a.arm:10} {verdict}: {a.error or a.answer}")
    final = {"reindex_s": round(result.reindex_s, 3), "retrain_s": result.retrain_s, "document": result.document,
             "replacements": result.replacements}
    if args.json:
        _emit(final)
    else:
        retrain = f"; retraining the fine-tuned model took {result.retrain_s:.0f} s" if result.retrain_s else ""
        print(f"re-indexing the edited document took {result.reindex_s:.2f} s{retrain}")
    return 0


def _report(settings: Any, args: argparse.Namespace) -> int:
    from lib import decision, engine, projection, report

    ws = engine.workspace_for(settings)
    a = projection.Assumptions(per_day=args.per_day, months=args.months, cached_input=args.cached_input,
                               hardware_usd_per_hour=args.hardware_usd_per_hour, changes=args.changes or "rarely")
    situation = decision.Situation(changes=args.changes, latency_ms=args.latency_ms,
                                   citations={"yes": True, "no": False, None: None}[args.citations])
    d = report.build(ws, args.run, a, situation)
    text = report.markdown(d) if args.out.suffix.lower() == ".md" else report.html_report(d)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(args.out)  # never a half-written report
    row = {"out": str(args.out), "bytes": len(text.encode()), "recommendation": d.recommendation.choice,
           "run": d.run["id"]}
    _emit(row) if args.json else print(f"wrote {args.out} ({row['bytes']:,} bytes): {d.recommendation.label}")
    return 0


def _finetune(settings: Any, args: argparse.Namespace) -> int:
    import time

    from lib import engine, finetune, provenance
    from lib.finetune import from_kb

    ws = engine.workspace_for(settings)
    kb = engine.open_kb(settings, args.kb, create=False)
    if kb.count() == 0:
        raise ValueError(f"Knowledge base {args.kb!r} has no documents to train on.")
    if settings.hosted_configured and not args.offline:
        from lib.providers import make_provider

        chunks = [c for d in kb.documents() for c in kb.chunks_of(d.name)][:60]
        examples, problems = finetune.generate_pairs(chunks, make_provider(settings.base, settings))
        method = f"{len(examples)} question/answer pairs written by {settings.base.label} from {len(chunks)} chunks"
        kinds = {"generated_pairs": len(examples), "problems": len(problems)}
    else:
        examples, kinds = from_kb.offline_examples(kb)
        method = (f"offline: {kinds['document_text']} document-text examples + {kinds['house_style_sentences']} "
                  "house-style sentences")
    if not examples:
        raise ValueError("No training examples could be made from this knowledge base.")
    if args.probe:
        from_kb.probe(ws, examples)
    estimate = from_kb.estimate(ws, args.steps)
    head = {"knowledge_base": kb.name, "examples": len(examples), "kinds": kinds, "method": method,
            "estimate": estimate, "can_and_cannot": from_kb.CAN_AND_CANNOT}
    if args.json:
        _emit(head)
    else:
        print(f"{len(examples)} examples from {kb.name} ({method}). Expected: about {estimate['seconds'] / 60:.0f} min "
              f"for {args.steps} steps at {estimate['seconds_per_step']:.1f} s per step, measured in "
              f"{estimate['source']}; {estimate['note']}.\n{from_kb.CAN_AND_CANNOT}", flush=True)
    job_id = finetune.start_local_training(ws, examples, args.name or f"{kb.name}-lora", args.steps, args.rank,
                                           args.lr, from_kb.trained_on(kb), kb.name, method)
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


def _grade(args: argparse.Namespace) -> int:
    """One JSON line per input line: correct, score, refused, reason (and fabricated, method)."""
    from lib.evalsets import read_grading_file
    from lib.grading import grade_answer

    rows, problems = read_grading_file(args.file)
    similarity = None
    if not args.no_embedder and any(not r.get("keywords") for r in rows):
        from lib.embeddings import MiniLMEmbedder

        embedder = MiniLMEmbedder()

        def similarity(a: str, b: str) -> float:
            va, vb = embedder.embed([a, b])
            return float((va * vb).sum())

    failed = False
    for row in rows:
        if "error" in row:
            failed = True
            out = {"line": row["line"], "error": row["error"]}
        else:
            g = grade_answer(row["question"], row["reference"], row["answer"], row["keywords"], row["answerable"],
                             similarity)
            out = {"line": row["line"], "question": row["question"], **g.to_dict()}
        if args.json:
            _emit(out)
        elif "error" in out:
            print(f"line {out['line']}: error: {out['error']}")
        else:
            mark = "PASS" if out["correct"] else ("REFUSED" if out["refused"] else "FAIL")
            print(f"line {out['line']}: {mark} {out['score']:.2f}  {out['question'][:60]}  ({out['reason']})")
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
        from lib.providers import openai_client

        problems = finetune.refresh_openai_jobs(ws, openai_client(settings))
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
        except (ConfigError, ValueError, OSError) as exc:
            _emit({"error": redact(str(exc))}) if args.json else print(f"error: {redact(str(exc))}", file=sys.stderr)
            return 2
    overrides = {"data_dir": args.data_dir, "collection": args.collection, "workspace": args.workspace}
    try:
        settings = load_settings(**overrides)
        if getattr(args, "top_k", 0) is None:
            args.top_k = settings.default_top_k
        from lib import engine

        if args.command == "workspaces":
            return _workspaces(settings, args)
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
            for d in kb.documents():
                row = {"document": d.name, "chunks": d.chunks, "tokens": d.tokens, "kind": d.kind,
                       "sha256": d.sha256, "added_at": d.added_at}
                _emit(row) if args.json else print(f"{d.name}: {d.chunks} chunks, {d.tokens} tokens")
            return 0
        if args.command == "remove":
            n = kb.remove_document(args.document)
            if args.json:
                _emit({"document": args.document, "removed_chunks": n})
            else:
                print(f"removed {n} chunks of {args.document}" if n else f"no document named {args.document}")
            return 0 if n else 1
        settings = engine.resolve_finetuned(settings, ws)
        arms = [a.strip() for a in args.arms.split(",") if a.strip()]
        if args.command == "eval":
            return _evaluate(settings, kb, args, arms)
        if args.command == "freshness":
            return _freshness(settings, kb, args, arms)
        comparison = engine.ask(settings, args.question, arms, kb,
                                GenParams(temperature=args.temperature, max_tokens=args.max_tokens),
                                top_k=args.top_k, min_score=args.min_score)
        from lib.history import comparison_to_dict

        ws.add_comparison(comparison_to_dict(comparison))
        for r in comparison.results:
            _emit(_arm_json(r)) if args.json else _print_arm(r)
        return 1 if all(r.error for r in comparison.results) else 0
    except (ConfigError, ValueError) as exc:
        if args.json:
            _emit({"error": redact(str(exc))})
        else:
            print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
