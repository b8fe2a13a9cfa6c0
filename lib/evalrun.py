"""Evaluation runs: a question set x chosen arms x settings, run with progress, time left,
cancel and resume, every answer stored with its grade as it completes.

Retrieval runs once per question (shared by its retrieval arms, as on Compare). Hosted arms
send requests concurrently, up to `concurrency` at a time, with the client's retries (which
honour the server's Retry-After on a rate limit); local arms go one at a time through the
shared local model's queue. A run is resumable: answers already stored are not asked again.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from lib.arms import ARMS, Comparison, RetrievalParams, run_arm
from lib.evaluate import Graded, Question, grade
from lib.providers import GenParams, Provider

RUN_RECORD_VERSION = 1


@dataclass(frozen=True)
class RunSpec:
    """What a run asks: stored with the run so that runs can be compared later."""

    name: str
    question_set: str
    arms: tuple[str, ...]
    collection: str
    top_k: int = 4
    min_score: float = 0.0
    temperature: float = 0.0
    max_tokens: int = 96
    concurrency: int = 8
    models: dict[str, str] = field(default_factory=dict)  # role -> model label (and adapter)
    providers: dict[str, str] = field(default_factory=dict)  # role -> provider kind
    questions: int = 0
    judge: str = ""  # a hosted model that also grades every answer (empty: offline rules only)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["arms"] = list(self.arms)
        return d


class RunStore(Protocol):
    def create_run(self, run_id: str, spec: dict[str, Any], questions: list[dict[str, Any]]) -> None: ...

    def save_answer(self, run_id: str, question_id: str, arm: str, record: dict[str, Any]) -> None: ...

    def answers(self, run_id: str) -> list[dict[str, Any]]: ...

    def update_run(self, run_id: str, **fields: Any) -> None: ...


class MemoryRunStore:
    """A RunStore in memory (tests, and the CLI when nothing should be kept)."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self._answers: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def create_run(self, run_id: str, spec: dict[str, Any], questions: list[dict[str, Any]]) -> None:
        with self._lock:
            self.runs[run_id] = {"id": run_id, "spec": spec, "questions": questions, "status": "running"}
            self._answers[run_id] = {}

    def save_answer(self, run_id: str, question_id: str, arm: str, record: dict[str, Any]) -> None:
        with self._lock:
            self._answers[run_id][(question_id, arm)] = record

    def answers(self, run_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._answers.get(run_id, {}).values())

    def update_run(self, run_id: str, **fields: Any) -> None:
        with self._lock:
            self.runs[run_id].update(fields)


def answer_record(g: Graded, result: dict[str, Any]) -> dict[str, Any]:
    """The one stored shape of an evaluated answer: the arm's result and its grade."""
    return {
        "version": RUN_RECORD_VERSION, "question_id": g.question.id, "question": g.question.question,
        "reference": g.question.answer, "keywords": list(g.question.keywords), "answerable": g.question.answerable,
        "source": g.question.source,
        "arm": g.arm, "result": result,
        "grade": {"correct": g.correct, "score": g.score, "refused": g.refused, "fabricated": g.fabricated,
                  "reason": g.reason, "cites": g.cites, "citation_ok": g.citation_ok, "grounded": g.grounded,
                  "retrieval_hit": g.retrieval_hit, "house_style": g.house_style},
    }


def question_of(record: dict[str, Any]) -> Question:
    """The question a stored answer record was asked."""
    return Question(record["question_id"], record["question"], tuple(record.get("keywords") or ()),
                    record.get("reference", ""), record.get("source", ""), bool(record.get("answerable", True)))


def graded_from_records(records: list[dict[str, Any]]) -> list[Graded]:
    """Stored answers back into grades (for summaries and comparisons of stored runs)."""
    out = []
    for r in records:
        if r.get("version") != RUN_RECORD_VERSION:
            continue
        q = question_of(r)
        g, res = r["grade"], r["result"]
        usage = res.get("usage") or {}
        out.append(Graded(q, r["arm"], res.get("answer", ""), bool(g["correct"]), bool(g["cites"]),
                          bool(g["house_style"]), res.get("error"), res.get("total_ms"), score=g["score"],
                          refused=g["refused"], fabricated=g["fabricated"], reason=g["reason"],
                          citation_ok=g["citation_ok"], grounded=g["grounded"], retrieval_hit=g["retrieval_hit"],
                          cost_usd=res.get("cost_usd"), prompt_tokens=usage.get("prompt_tokens"),
                          completion_tokens=usage.get("completion_tokens")))
    return out


@dataclass
class Progress:
    total: int
    done: int = 0
    skipped: int = 0  # already answered (a resumed run)
    started_at: float = field(default_factory=time.monotonic)

    @property
    def seconds_left(self) -> float | None:
        fresh = self.done - self.skipped
        if fresh <= 0:
            return None
        per = (time.monotonic() - self.started_at) / fresh
        return per * (self.total - self.done)


OnProgress = Callable[[Progress, list[Graded]], None]


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def execute(run_id: str, spec: RunSpec, questions: list[Question], kb: Any,
            providers: dict[str, Provider | Exception], store: RunStore,
            cancel: threading.Event | None = None, on_progress: OnProgress | None = None,
            similarity: Callable[[str, str], float] | None = None, judge: Provider | None = None) -> Progress:
    """Answer and grade every (question, arm) not yet stored for this run; returns the final progress."""
    from lib.local_queue import machine_turn

    cancel = cancel or threading.Event()
    arms = [ARMS[a] for a in spec.arms]
    have = {(r["question_id"], r["arm"]) for r in store.answers(run_id)}
    todo = [(q, a) for q in questions for a in arms if (q.id, a.key) not in have]
    progress = Progress(total=len(questions) * len(arms), done=len(have), skipped=len(have))
    params = GenParams(temperature=spec.temperature, max_tokens=spec.max_tokens)
    retrieval = RetrievalParams(spec.top_k, spec.min_score)
    sources: dict[str, tuple[list[Any], float]] = {}
    sources_lock = threading.Lock()
    lock = threading.Lock()

    def retrieve(q: Question) -> tuple[list[Any], float]:
        with sources_lock:
            if q.id not in sources:
                t0 = time.monotonic()
                with machine_turn():
                    found = kb.query(q.question, retrieval.top_k, retrieval.min_score) if kb is not None else []
                sources[q.id] = (found, (time.monotonic() - t0) * 1000)
            return sources[q.id]

    def one(q: Question, arm: Any) -> list[Graded]:
        if cancel.is_set():
            return []
        provider = providers.get(arm.role, KeyError("no model"))
        found, ms = retrieve(q) if arm.retrieval else (None, 0.0)
        result = run_arm(arm, provider, q.question, found, params, ms if arm.retrieval else 0.0)
        comparison = Comparison(run_id, q.question, time.time(), spec.collection, retrieval, params,
                                tuple(found or ()), ms, (result,))
        graded = grade(q, comparison, similarity)
        record = answer_record(graded[0], result.to_dict())
        if judge is not None and result.error is None:
            from lib.errors import explain
            from lib.judge import judge as ask_judge

            try:
                verdict = ask_judge(q.question, q.answer, result.answer, judge, q.answerable)
                record["judge"] = {"correct": verdict.correct, "reason": verdict.reason}
            except Exception as exc:  # the judge failing is recorded; the offline grade stands
                record["judge"] = {"error": explain(exc)}
        store.save_answer(run_id, q.id, arm.key, record)
        with lock:
            progress.done += 1
            if on_progress:
                on_progress(progress, graded)
        return graded

    def is_local(arm: Any) -> bool:
        p = providers.get(arm.role)
        return getattr(p, "kind", "") == "local"

    from lib.arms import Usage
    from lib.pricing import cost_for

    for p in {id(p): p for p in providers.values() if not isinstance(p, Exception)}.values():
        try:  # load tokenizers and price tables once, before the threads that need them start
            p.count_tokens("warm up")
            cost_for(p.spec, Usage(1, 1, 0, 0, 0, 1))
        except Exception:
            pass
    local = [(q, a) for q, a in todo if is_local(a)]
    hosted = [(q, a) for q, a in todo if not is_local(a)]
    with ThreadPoolExecutor(max_workers=max(1, spec.concurrency), thread_name_prefix="eval-hosted") as pool, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="eval-local") as local_pool:
        futures = [pool.submit(one, q, a) for q, a in hosted] + [local_pool.submit(one, q, a) for q, a in local]
        for f in as_completed(futures):
            f.result()
    store.update_run(run_id, status="cancelled" if cancel.is_set() and progress.done < progress.total
                     else "finished", finished_at=time.time())
    return progress


# ---------------------------------------------------------------- the flow the CLI and the Evaluate page call

SAMPLE_SET = "sample"


def questions_from_rows(rows: list[dict[str, Any]]) -> list[Question]:
    return [Question(str(r.get("id") or f"q{i:03d}"), str(r["question"]), tuple(r.get("keywords") or ()),
                     str(r.get("reference") or r.get("answer") or ""), str(r.get("source") or ""),
                     bool(r.get("answerable", True))) for i, r in enumerate(rows, 1) if "error" not in r]


def rows_from_questions(questions: list[Question]) -> list[dict[str, Any]]:
    return [{"id": q.id, "question": q.question, "reference": q.answer, "keywords": list(q.keywords),
             "source": q.source, "answerable": q.answerable} for q in questions]


def load_set(workspace: Any, name: str) -> list[Question]:
    """'sample' (shipped), a question set stored in the workspace, or a JSONL/CSV file."""
    from pathlib import Path

    from lib.engine import SAMPLE_QUESTIONS
    from lib.evalsets import read_rows
    from lib.evaluate import load_questions

    if name == SAMPLE_SET:
        return load_questions(SAMPLE_QUESTIONS)
    stored = workspace.question_set(name) if workspace is not None else None
    if stored is not None:
        return questions_from_rows(stored)
    path = Path(name)
    if path.is_file():
        rows, problems = read_rows(path.read_bytes(), path.name)
        bad = [r for r in rows if "error" in r] + [{"line": n, "error": m} for n, m in problems]
        if bad:
            raise ValueError(f"{path.name} line {bad[0]['line']}: {bad[0]['error']}")
        return questions_from_rows(rows)
    sets = ", ".join([SAMPLE_SET, *(workspace.question_sets() if workspace is not None else [])])
    raise ValueError(f"No question set {name!r}: use one of {sets}, or the path of a JSONL or CSV file.")


def local_similarity(settings: Any) -> Callable[[str, str], float] | None:
    """Cosine similarity by the offline embedder (for references without numbers or keywords)."""
    from lib.embeddings import MiniLMEmbedder
    from lib.engine import embedder_for

    embedder = embedder_for(settings)
    if not isinstance(embedder, MiniLMEmbedder):
        embedder = MiniLMEmbedder()

    def similarity(a: str, b: str) -> float:
        va, vb = embedder.embed([a, b])
        return float((va * vb).sum())

    return similarity


def eval_providers(settings: Any) -> dict[str, Provider | Exception]:
    """Providers for a run: the hosted client retries more (honouring Retry-After) than on Compare."""
    from lib.engine import providers_for

    return providers_for(settings.with_overrides(max_retries=max(settings.max_retries, 5)))


def start(settings: Any, workspace: Any, kb: Any, set_name: str, arms: list[str], run_name: str | None = None,
          top_k: int = 4, min_score: float = 0.0, temperature: float = 0.0, max_tokens: int = 96,
          concurrency: int = 8, limit: int | None = None, judge: bool = False) -> tuple[str, RunSpec, list[Question]]:
    """Create a run record (nothing is asked yet): its id, spec and questions."""
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        raise ValueError(f"Unknown arm(s) {', '.join(unknown) or '(none)'}: use {', '.join(ARMS)}.")
    questions = load_set(workspace, set_name)[:limit]
    if not questions:
        raise ValueError(f"The question set {set_name!r} has no questions.")
    run_id = new_run_id()
    models = {"base": settings.base.label, "finetuned": settings.finetuned.label if settings.finetuned else ""}
    kinds = {"base": settings.base.provider, "finetuned": settings.finetuned.provider if settings.finetuned else ""}
    if judge and (not settings.hosted_configured or settings.base.provider == "local"):
        raise ValueError("The LLM judge is a hosted model: configure one (API key or base URL) as the base model.")
    spec = RunSpec(run_name or f"{set_name}-{run_id}", set_name, tuple(arms), kb.name if kb is not None else "",
                   top_k, min_score, temperature, max_tokens, max(1, concurrency), models, kinds, len(questions),
                   settings.base.name if judge else "")
    workspace.create_run(run_id, spec.to_dict(), rows_from_questions(questions))
    return run_id, spec, questions


def spec_of(run: dict[str, Any]) -> RunSpec:
    s = dict(run["spec"])
    s["arms"] = tuple(s.get("arms", ()))
    return RunSpec(**{k: v for k, v in s.items() if k in RunSpec.__dataclass_fields__})


def resume(settings: Any, workspace: Any, kb: Any, run_id: str, cancel: threading.Event | None = None,
           on_progress: OnProgress | None = None) -> Progress:
    """Answer what a run has not answered yet (a new run, or one stopped by a cancel or a restart)."""
    run = workspace.run(run_id)
    if run is None:
        raise ValueError(f"No evaluation run {run_id!r} in workspace {workspace.name!r}.")
    workspace.update_run(run["id"], status="running")
    questions = questions_from_rows(run["questions"])
    spec = spec_of(run)
    judge = None
    if spec.judge:
        from lib.providers import make_provider
        from lib.settings import ModelSpec

        if not settings.hosted_configured:
            raise ValueError("This run asks an LLM judge, which needs a hosted model: set an API key or base URL.")
        judge = make_provider(ModelSpec(settings.base.provider if settings.base.provider != "local" else "openai",
                                        spec.judge), settings.with_overrides(max_retries=max(settings.max_retries, 5)))
    try:
        return execute(run["id"], spec, questions, kb, eval_providers(settings), workspace, cancel,
                       on_progress, local_similarity(settings), judge)
    except BaseException as exc:
        workspace.update_run(run["id"], status="failed", error=f"{type(exc).__name__}: {exc}")
        raise


def summary(workspace: Any, run: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[Graded]]:
    """(the run record, per-arm summary, graded answers) of a stored run, by id or name."""
    from lib.evaluate import summarise

    record = workspace.run(run)
    if record is None:
        raise ValueError(f"No evaluation run {run!r} in workspace {workspace.name!r}: run `python -m lib eval "
                         "--run-name NAME` first.")
    answers = workspace.answers(record["id"])
    graded = graded_from_records(answers)
    order = {a: i for i, a in enumerate(record["spec"].get("arms", []))}
    graded.sort(key=lambda g: order.get(g.arm, 99))
    per_arm = summarise(graded)
    if record["spec"].get("judge"):
        from lib.judge import agreement

        for arm, s in per_arm.items():
            pairs = [(bool(a["grade"]["correct"]), bool(a["judge"]["correct"])) for a in answers
                     if a["arm"] == arm and "correct" in (a.get("judge") or {})]
            agree = agreement(pairs)
            s["judge_accuracy"] = sum(j for _, j in pairs) / len(pairs) if pairs else None
            s["judge_agreement"] = agree["agreement"]
            s["judge_kappa"] = agree["kappa"]
            s["judge_errors"] = sum(1 for a in answers if a["arm"] == arm and "error" in (a.get("judge") or {}))
    return record, per_arm, graded


def changed_questions(a: list[Graded], b: list[Graded]) -> list[dict[str, Any]]:
    """Questions whose grade changed between two runs, per arm present in both."""
    first = {(g.question.id, g.arm): g for g in a}
    out = []
    for g in b:
        before = first.get((g.question.id, g.arm))
        if before is not None and before.correct != g.correct:
            out.append({"question_id": g.question.id, "question": g.question.question, "arm": g.arm,
                        "before": before.correct, "after": g.correct, "before_answer": before.answer,
                        "after_answer": g.answer})
    return out


# ---------------------------------------------------------------- runs that outlive the browser tab

@dataclass
class RunningEval:
    """A run answering in a background thread of this server process; any session can follow or cancel it."""

    workspace: str
    run_id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    progress: Progress | None = None
    error: str | None = None
    thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


_running: dict[tuple[str, str], RunningEval] = {}
_running_lock = threading.Lock()


def run_in_background(settings: Any, workspace: Any, kb: Any, run_id: str) -> RunningEval:
    """Start (or resume) a run in a daemon thread; a second call for the same run returns the same handle."""
    key = (f"{workspace.data_dir}:{workspace.name}", run_id)
    with _running_lock:
        current = _running.get(key)
        if current is not None and current.alive:
            return current
        handle = RunningEval(workspace.name, run_id)

        def on_progress(p: Progress, _rows: list[Graded]) -> None:
            handle.progress = p

        def work() -> None:
            try:
                handle.progress = resume(settings, workspace, kb, run_id, handle.cancel, on_progress)
            except Exception as exc:  # recorded on the run by resume(); shown by the page
                handle.error = f"{type(exc).__name__}: {exc}"

        handle.thread = threading.Thread(target=work, name=f"eval-{run_id}", daemon=True)
        _running[key] = handle
        handle.thread.start()
        return handle


def running(workspace: Any, run_id: str) -> RunningEval | None:
    """The live handle of a run in this process, if it is answering now."""
    handle = _running.get((f"{workspace.data_dir}:{workspace.name}", run_id))
    return handle if handle is not None and handle.alive else None


def interrupted(workspace: Any) -> list[dict[str, Any]]:
    """Runs recorded as running that no thread of this process is answering (stopped by a restart):
    they can be resumed."""
    return [r for r in workspace.runs() if r["status"] == "running" and running(workspace, r["id"]) is None]


def reference_for(question: str, workspace: Any = None) -> Question | None:
    """The question with a reference answer that matches `question` (the sample set, then the workspace's sets)."""
    wanted = " ".join(question.lower().split())
    candidates: list[Question] = []
    try:
        candidates += load_set(None, SAMPLE_SET)
    except (OSError, ValueError):
        pass
    if workspace is not None:
        for name in workspace.question_sets():
            try:
                candidates += load_set(workspace, name)
            except ValueError:
                continue
    return next((q for q in candidates if " ".join(q.question.lower().split()) == wanted), None)


def grade_comparison(question: Question, comparison: Comparison) -> dict[str, Graded]:
    """Each arm's grade against the reference (as an evaluation run grades it), by arm key."""
    return {g.arm: g for g in grade(question, comparison)}


def regrade(workspace: Any, run: str, similarity: Callable[[str, str], float] | None = None) -> int:
    """Grade a stored run's answers again with the current grader (no model is asked); returns how many."""
    from types import SimpleNamespace

    record = workspace.run(run)
    if record is None:
        raise ValueError(f"No evaluation run {run!r} in workspace {workspace.name!r}.")
    count = 0
    for a in workspace.answers(record["id"]):
        res = a["result"]
        if res.get("error"):
            continue
        q = question_of(a)
        usage = res.get("usage")
        stored = SimpleNamespace(  # the stored result, in the shape evaluate.grade reads
            arm=a["arm"], answer=res.get("answer", ""), error=None, total_ms=res.get("total_ms"),
            cost_usd=res.get("cost_usd"), usage=SimpleNamespace(**usage) if usage else None,
            sources=[SimpleNamespace(**src) for src in res.get("sources") or []])
        [graded] = grade(q, SimpleNamespace(results=(stored,)), similarity)  # type: ignore[arg-type]
        a["grade"] = answer_record(graded, res)["grade"]
        workspace.save_answer(record["id"], a["question_id"], a["arm"], a)
        count += 1
    return count


# ---------------------------------------------------------------- exports (the Evaluate page offers them)

EXPORT_COLUMNS = ("question_id", "question", "reference", "answerable", "source", "arm", "answer", "correct",
                  "score", "refused", "fabricated", "reason", "cites", "citation_ok", "grounded", "retrieval_hit",
                  "error", "total_ms", "prompt_tokens", "completion_tokens", "cost_usd")


def export_rows(graded: list[Graded]) -> list[dict[str, Any]]:
    """One flat row per question x arm with its grade fields (the CSV export)."""
    return [{"question_id": g.question.id, "question": g.question.question, "reference": g.question.answer,
             "answerable": g.question.answerable, "source": g.question.source, "arm": g.arm, "answer": g.answer,
             "correct": g.correct, "score": g.score, "refused": g.refused, "fabricated": g.fabricated,
             "reason": g.reason, "cites": g.cites, "citation_ok": g.citation_ok, "grounded": g.grounded,
             "retrieval_hit": g.retrieval_hit, "error": g.error, "total_ms": g.total_ms,
             "prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens, "cost_usd": g.cost_usd}
            for g in graded]


def export_csv(graded: list[Graded]) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(EXPORT_COLUMNS))
    writer.writeheader()
    writer.writerows(export_rows(graded))
    return out.getvalue()


def export_json(workspace: Any, run: str) -> dict[str, Any]:
    """A run's record (spec, questions, status) and every stored answer with its sources and grade."""
    record = workspace.run(run)
    if record is None:
        raise ValueError(f"No evaluation run {run!r} in workspace {workspace.name!r}.")
    return {"run": record, "answers": workspace.answers(record["id"])}


def answer_of(workspace: Any, run_id: str, question_id: str, arm: str) -> dict[str, Any] | None:
    """One stored answer of a run (its result with sources, and its grade)."""
    return next((a for a in workspace.answers(run_id) if a.get("question_id") == question_id and a.get("arm") == arm),
                None)
