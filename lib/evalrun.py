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
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

from lib.arms import ARMS, run_arm, whole_knowledge_base
from lib.errors import UserError
from lib.evaluate import grade_result
from lib.providers import Provider
from lib.records import AnswerRecord, ArmResult, GenParams, Graded, Question, RetrievalParams, RunRecord, RunSpec

LEASE_TTL_S = 30.0  # a run's owner renews its lease every third of this; another process takes over after it
SHUTDOWN_GRACE_S = 10.0  # on shutdown, runs answering here get this long to stop before they are marked resumable
RESUMABLE = ("running", "cancelled", "failed", "capped", "interrupted")
OWNER = f"{__import__('socket').gethostname()}:{__import__('os').getpid()}:{uuid.uuid4().hex[:8]}"  # this process


class RunBusy(UserError):
    """Another live process owns the run (its lease has not expired)."""


class RunCancelled(Exception):
    """An answer stopped because its run was cancelled (it is not stored: Resume asks it again)."""


class RunStore(Protocol):
    def create_run(self, run_id: str, spec: RunSpec, questions: list[Question]) -> None: ...

    def save_answer(self, run_id: str, record: AnswerRecord) -> None: ...

    def answers(self, run_id: str) -> list[AnswerRecord]: ...

    def update_run(self, run_id: str, **fields: Any) -> None: ...


class MemoryRunStore:
    """A RunStore in memory (tests, and the CLI when nothing should be kept)."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self._answers: dict[str, dict[tuple[str, str], AnswerRecord]] = {}
        self._lock = threading.Lock()

    def create_run(self, run_id: str, spec: RunSpec, questions: list[Question]) -> None:
        with self._lock:
            self.runs[run_id] = {"id": run_id, "spec": spec, "questions": questions, "status": "running"}
            self._answers[run_id] = {}

    def save_answer(self, run_id: str, record: AnswerRecord) -> None:
        with self._lock:
            self._answers[run_id][(record.question.id, record.arm)] = record

    def answers(self, run_id: str) -> list[AnswerRecord]:
        with self._lock:
            return list(self._answers.get(run_id, {}).values())

    def update_run(self, run_id: str, **fields: Any) -> None:
        with self._lock:
            self.runs[run_id].update(fields)


PACE_WINDOW = 8  # the last answers per arm that set its pace


@dataclass
class Progress:
    """A run's progress, and the time left from its own recent pace, per arm: local arms answer one after
    another (their times add up), hosted arms `concurrency` at a time."""

    total: int
    done: int = 0
    skipped: int = 0  # already answered (a resumed run)
    started_at: float = field(default_factory=time.monotonic)
    remaining: dict[str, int] = field(default_factory=dict)  # arm -> answers still to give
    local_arms: frozenset[str] = frozenset()
    concurrency: int = 1
    prior: dict[str, float] = field(default_factory=dict)  # arm -> seconds per answer in earlier runs here
    durations: dict[str, list[float]] = field(default_factory=dict)  # arm -> recent seconds per answer

    def record(self, arm: str, seconds: float) -> None:
        recent = self.durations.setdefault(arm, [])
        recent.append(seconds)
        del recent[:-PACE_WINDOW]
        if self.remaining.get(arm, 0) > 0:
            self.remaining[arm] -= 1

    def pace(self, arm: str) -> float | None:
        recent = self.durations.get(arm)
        if recent:
            return sum(recent) / len(recent)
        if arm in self.prior:
            return self.prior[arm]
        same_pool = [a for a in self.durations if (a in self.local_arms) == (arm in self.local_arms)]
        seen = [s for a in same_pool for s in self.durations[a]]
        return sum(seen) / len(seen) if seen else None

    @property
    def seconds_left(self) -> float | None:
        if self.remaining:
            local = hosted = 0.0
            for arm, left in self.remaining.items():
                if left <= 0:
                    continue
                pace = self.pace(arm)
                if pace is None:
                    return None
                if arm in self.local_arms:
                    local += left * pace
                else:
                    hosted += left * pace / max(1, self.concurrency)
            return max(local, hosted)
        fresh = self.done - self.skipped
        if fresh <= 0:
            return None
        per = (time.monotonic() - self.started_at) / fresh
        return per * (self.total - self.done)


def seconds_per_answer(workspace: Any, models: dict[str, str]) -> dict[str, float]:
    """arm -> mean seconds per answer in this workspace's earlier runs with the same model for that arm's role
    (the answers' own time, retrieval included): how long similar runs took on this machine."""
    sums: dict[str, list[float]] = {}
    for record in workspace.runs():
        if not record.answered:
            continue
        same = {arm for arm in record.spec.arms if arm in ARMS
                and record.spec.models.get(ARMS[arm].role) == models.get(ARMS[arm].role)}
        if not same:
            continue
        for a in workspace.answers(record.id):
            if a.arm in same and not a.result.error and a.result.total_ms is not None:
                sums.setdefault(a.arm, []).append(float(a.result.total_ms) / 1000)
    return {arm: sum(v) / len(v) for arm, v in sums.items()}


def expected_duration(workspace: Any, settings: Any, arms: list[str], questions: int,
                      concurrency: int = 8) -> tuple[float | None, str]:
    """Before a run starts: how long it should take, from how long similar runs took here; and the sentence."""
    models = {"base": settings.base.label, "finetuned": settings.finetuned.label if settings.finetuned else ""}
    kinds = {"base": settings.base.provider, "finetuned": settings.finetuned.provider if settings.finetuned else ""}
    prior = seconds_per_answer(workspace, models)
    if not arms or not questions:
        return None, ""
    missing = [a for a in arms if a not in prior]
    if missing:
        known = ", ".join(f"{ARMS[a].label} {prior[a]:.1f} s" for a in arms if a in prior)
        return None, ("No earlier run here with the same model for " + ", ".join(ARMS[a].label for a in missing)
                      + ": the time left is estimated once the first answers are in"
                      + (f" (seconds per answer so far: {known})" if known else "") + ".")
    progress = Progress(total=questions * len(arms), remaining={a: questions for a in arms}, prior=prior,
                        local_arms=frozenset(a for a in arms if kinds.get(ARMS[a].role) == "local"),
                        concurrency=concurrency)
    seconds = progress.seconds_left
    per = ", ".join(f"{ARMS[a].label} {prior[a]:.1f} s" for a in arms)
    return seconds, (f"Similar runs here took {per} per answer: about {_duration(seconds or 0)} for {questions} "
                     f"questions x {len(arms)} arms.")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


OnProgress = Callable[[Progress, list[Graded]], None]


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


class _Watched:
    """A provider as one answer of a run sees it: it stops at the run's cancel (so a shutdown is quick), and notes
    a refusal by the spend cap (such an answer is an error of its own kind, not a wrong answer)."""

    def __init__(self, inner: Any, cancel: threading.Event) -> None:
        self.inner, self.cancel = inner, cancel
        self.spec, self.kind = inner.spec, inner.kind
        self.where = getattr(inner, "where", "")
        self.capped = self.cancelled = False

    def count_tokens(self, text: str) -> int:
        return int(self.inner.count_tokens(text))

    def __getattr__(self, name: str) -> Any:
        """The rest is the provider's own: a local model's context window and chat template (the long-context arm
        checks the whole knowledge base fits), and `with_context`, which widens the model in place so that the
        answer stays watched."""
        if name == "inner":
            raise AttributeError(name)
        if name == "with_context":
            widen = self.inner.with_context  # AttributeError for a provider that has none (hosted)

            def watched(tokens: int) -> _Watched:
                self.inner = widen(tokens)
                return self

            return watched
        return getattr(self.inner, name)

    def stream(self, messages: list[dict[str, str]], params: GenParams) -> Any:
        from lib.errors import CapReached

        events = self.inner.stream(messages, params)
        try:
            for event in events:
                if self.cancel.is_set():
                    self.cancelled = True
                    raise RunCancelled("The run was cancelled.")
                yield event
        except CapReached:
            self.capped = True
            raise
        finally:
            events.close()


def execute(run_id: str, spec: RunSpec, questions: list[Question], kb: Any,
            providers: dict[str, Provider | Exception], store: RunStore,
            cancel: threading.Event | None = None, on_progress: OnProgress | None = None,
            similarity: Callable[[str, str], float] | None = None, judge: Provider | None = None,
            cancel_grace_s: float = 2.0, windows: tuple[tuple[str, int], ...] = (),
            stamp: Callable[[ArmResult], ArmResult] | None = None) -> Progress:
    """Answer and grade every (question, arm) not yet stored for this run; returns the final progress.
    When `cancel` is set, questions not started are dropped at once, and the call returns within
    `cancel_grace_s` (answers still in flight may be stored after it, as they complete). `stamp` adds what the
    fine-tuned model was trained on to the fine-tuned role's answers (lib.engine.provenance_stamp)."""
    from lib.local_queue import machine_turn

    cancel = cancel or threading.Event()
    arms = [ARMS[a] for a in spec.arms]
    # Answers refused by the spend cap are asked again (after the host raised it); real answers are kept.
    have = {(r.question.id, r.arm) for r in store.answers(run_id) if not r.capped}
    todo = [(q, a) for q in questions for a in arms if (q.id, a.key) not in have]
    remaining: dict[str, int] = {}
    for _, a in todo:
        remaining[a.key] = remaining.get(a.key, 0) + 1
    local_arms = frozenset(a.key for a in arms if getattr(providers.get(a.role), "kind", "") == "local")
    progress = Progress(total=len(questions) * len(arms), done=len(have), skipped=len(have), remaining=remaining,
                        local_arms=local_arms, concurrency=max(1, spec.concurrency))
    params = GenParams(temperature=spec.temperature, max_tokens=spec.max_tokens)
    retrieval = RetrievalParams(spec.top_k, spec.min_score)
    sources: dict[str, tuple[list[Any], float]] = {}
    sources_lock = threading.Lock()
    lock = threading.Lock()
    expected_of: dict[str, dict[str, Any] | None] = {}
    documents: dict[str, Any] = {}

    def retrieve(q: Question) -> tuple[list[Any], float]:
        with sources_lock:
            if q.id not in sources:
                t0 = time.monotonic()
                with machine_turn():
                    found = kb.query(q.question, retrieval.top_k, retrieval.min_score) if kb is not None else []
                sources[q.id] = (found, (time.monotonic() - t0) * 1000)
            return sources[q.id]

    def expected(q: Question) -> dict[str, Any] | None:
        """The question's expected source and its rank in the retriever's top 20 (once per question)."""
        with sources_lock:
            if q.id not in expected_of:
                with machine_turn():
                    expected_of[q.id] = expected_source(q, kb)
            return expected_of[q.id]

    def whole_kb() -> Any:
        with sources_lock:
            if "all" not in documents:
                documents["all"] = whole_knowledge_base(kb)
            return documents["all"]

    def one(q: Question, arm: Any) -> list[Graded]:
        if cancel.is_set():
            return []
        began = time.monotonic()
        chosen = providers.get(arm.role, KeyError("no model"))
        provider = chosen if isinstance(chosen, Exception) else _Watched(chosen, cancel)
        found, ms = retrieve(q) if arm.retrieval else (None, 0.0)
        result = run_arm(arm, provider, q.question, found, params, ms if arm.retrieval else 0.0,
                         documents=whole_kb() if arm.whole_kb else None, windows=windows)
        if isinstance(provider, _Watched) and provider.cancelled:
            return []  # cut short by a cancel: not an answer; Resume asks it again
        if stamp is not None and arm.role == "finetuned":
            result = stamp(result)
        graded = grade_result(q, result, similarity, expected(q))
        # refused by the spend cap before anything was sent: no answer to grade
        capped = isinstance(provider, _Watched) and provider.capped
        verdict: dict[str, Any] | None = None
        if judge is not None and result.error is None:
            from lib.errors import explain
            from lib.judge import judge as ask_judge

            watched = _Watched(judge, cancel)
            try:
                said = ask_judge(q.question, q.answer, result.answer, watched, q.answerable)
                verdict = {"correct": said.correct, "reason": said.reason}
            except Exception as exc:  # the judge failing is recorded; the offline grade stands
                if watched.cancelled:
                    return []
                verdict = {"error": explain(exc), **({"capped": True} if watched.capped else {})}
        store.save_answer(run_id, AnswerRecord(graded, result, capped, verdict))
        with lock:
            progress.done += 1
            progress.record(arm.key, time.monotonic() - began)
            if on_progress:
                on_progress(progress, [graded])
        return [graded]

    def is_local(arm: Any) -> bool:
        p = providers.get(arm.role)
        return getattr(p, "kind", "") == "local"

    from lib.pricing import cost_for
    from lib.records import Usage

    for p in {id(p): p for p in providers.values() if not isinstance(p, Exception)}.values():
        try:  # load tokenizers and price tables once, before the threads that need them start
            p.count_tokens("warm up")
            cost_for(p.spec, Usage(1, 1, 0, 0, 0, 1))
        except Exception:
            pass
    local = [(q, a) for q, a in todo if is_local(a)]
    hosted = [(q, a) for q, a in todo if not is_local(a)]
    pool = ThreadPoolExecutor(max_workers=max(1, spec.concurrency), thread_name_prefix="eval-hosted")
    local_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eval-local")
    futures = [pool.submit(one, q, a) for q, a in hosted] + [local_pool.submit(one, q, a) for q, a in local]
    try:
        pending = set(futures)
        while pending and not cancel.is_set():
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for f in done:
                f.result()
        if pending:  # cancelled: queued work is dropped at once; answers in flight get a short grace to be stored
            for f in pending:
                f.cancel()
            wait([f for f in pending if not f.cancelled()], timeout=cancel_grace_s)
    finally:
        for p in (pool, local_pool):
            p.shutdown(wait=not cancel.is_set(), cancel_futures=True)
    capped = sum(1 for r in store.answers(run_id) if r.capped)
    if cancel.is_set() and progress.done < progress.total:
        store.update_run(run_id, status="cancelled", finished_at=time.time())
    elif capped:  # never "finished": the refused answers were not asked, and the accuracy leaves them out
        store.update_run(run_id, status="capped", finished_at=time.time(), error=(
            f"{capped} of {progress.total} answers were refused by the spend cap (not asked, not graded). Ask the "
            "workshop host to raise the cap, then Resume asks them."))
    else:
        store.update_run(run_id, status="finished", finished_at=time.time())
    return progress


# ---------------------------------------------------------------- the flow the CLI and the Evaluate page call

SAMPLE_SET = "sample"


def expected_source(q: Question, kb: Any) -> dict[str, Any] | None:
    """Where the answer to `q` is: the question set's `source`, or else the document of the chunk that best
    supports the reference (said so in `from`); and that document's rank among the retriever's top 20 for the
    question (None when it is not there). None for a question the documents do not answer, or no knowledge base."""
    from lib.failures import TOP_N, rank_of

    if kb is None or not q.answerable:
        return None
    source, origin = q.source, "question set"
    if not source and q.answer.strip():
        best = kb.query(q.answer, 1, 0.0)
        if best:
            source, origin = best[0].document, "best-supporting chunk"
    if not source:
        return None
    ranked = kb.query(q.question, TOP_N, 0.0)
    return {"source": source, "from": origin, "rank": rank_of(source, [s.document for s in ranked])}


def questions_from_rows(rows: list[dict[str, Any]]) -> list[Question]:
    """The questions of a question set's rows (rows a check refused, with an `error`, left out)."""
    return [Question.from_row(r, i) for i, r in enumerate(rows, 1) if "error" not in r]


def rows_from_questions(questions: list[Question]) -> list[dict[str, Any]]:
    return [q.to_row() for q in questions]


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
            raise UserError(f"{path.name} line {bad[0]['line']}: {bad[0]['error']}")
        return questions_from_rows(rows)
    sets = ", ".join([SAMPLE_SET, *(workspace.question_sets() if workspace is not None else [])])
    raise UserError(f"No question set {name!r}: use one of {sets}, or the path of a JSONL or CSV file.")


def cached_similarity(embedder: Any = None, limit: int = 4096) -> Callable[[str, str], float]:
    """Cosine similarity by the offline embedder, each text embedded once (the grader compares every answer
    with the same refusal examples); at most `limit` texts are kept."""
    import threading

    from lib.embeddings import MiniLMEmbedder

    model = embedder if isinstance(embedder, MiniLMEmbedder) else MiniLMEmbedder()
    cache: dict[str, Any] = {}
    lock = threading.Lock()

    def vector(text: str) -> Any:
        with lock:
            if text in cache:
                return cache[text]
        v = model.embed([text])[0]
        with lock:
            if len(cache) >= limit:
                cache.clear()
            cache[text] = v
        return v

    def similarity(a: str, b: str) -> float:
        return float((vector(a) * vector(b)).sum())

    return similarity


def local_similarity(settings: Any) -> Callable[[str, str], float] | None:
    """Cosine similarity by the offline embedder (refusals by meaning; answers in words)."""
    from lib.engine import embedder_for

    return cached_similarity(embedder_for(settings) if settings.embedder == "minilm" else None)


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
        raise UserError(f"Unknown arm(s) {', '.join(unknown) or '(none)'}: use {', '.join(ARMS)}.")
    questions = load_set(workspace, set_name)[:limit]
    if not questions:
        raise UserError(f"The question set {set_name!r} has no questions.")
    run_id = new_run_id()
    models = {"base": settings.base.label, "finetuned": settings.finetuned.label if settings.finetuned else ""}
    kinds = {"base": settings.base.provider, "finetuned": settings.finetuned.provider if settings.finetuned else ""}
    if judge and (not settings.hosted_configured or settings.base.provider == "local"):
        raise UserError("The LLM judge is a hosted model: configure one (API key or base URL) as the base model.")
    params = _params(settings)
    spec = RunSpec(run_name or f"{set_name}-{run_id}", set_name, tuple(arms), kb.name if kb is not None else "",
                   top_k, min_score, temperature, max_tokens, max(1, concurrency), models, kinds, len(questions),
                   settings.base.name if judge else "", params, run_models(settings))
    workspace.create_run(run_id, spec, questions)
    return run_id, spec, questions


def _params(settings: Any) -> dict[str, int | None]:
    """role -> a local model's parameter count (its GGUF), recorded with a run for the small-model caveat."""
    from lib.catalogue import spec_params

    return {"base": spec_params(settings.base), "finetuned": spec_params(settings.finetuned)}


def run_models(settings: Any) -> dict[str, dict[str, str]]:
    """role -> the model that plays it now, exactly: provider, name, LoRA adapter and (for hosted models) the
    endpoint, without credentials."""
    from lib.errors import redact

    where = {"openai": settings.openai_base_url or "https://api.openai.com/v1", "azure": settings.azure_endpoint or ""}
    out = {}
    for role, spec in (("base", settings.base), ("finetuned", settings.finetuned)):
        if spec is not None:
            out[role] = {"provider": spec.provider, "name": spec.name, "lora": spec.lora or "",
                         "label": spec.label, "endpoint": redact(where.get(spec.provider, ""))}
    return out


class ModelsChanged(UserError):
    """A run is resumed with other models than it was started with; the message says what to configure."""


def models_problem(run: RunRecord, settings: Any) -> str | None:
    """Why `run` cannot be resumed with the models configured now (None when it can): every role its arms use
    must be played by the model it was started with, or the run would mix answers of two models."""
    spec = run.spec
    roles = {ARMS[a].role for a in spec.arms if a in ARMS}
    recorded = spec.model_specs
    now = run_models(settings)
    changed = []
    for role in sorted(roles):
        then = recorded.get(role)
        if then is not None:  # runs recorded since the exact models were kept
            keys = ("provider", "name", "lora", "endpoint")
            same = role in now and all(then.get(k, "") == now[role].get(k, "") for k in keys)
        else:  # older runs kept each role's label and provider
            then = {"label": spec.models.get(role, ""), "provider": spec.providers.get(role, "")}
            if not then["label"]:
                continue
            same = role in now and (now[role]["label"], now[role]["provider"]) == (then["label"], then["provider"])
        if not same:
            def describe(m: dict[str, str] | None) -> str:
                if not m:
                    return "no model"
                where = f" at {m['endpoint']}" if m.get("endpoint") else ""
                return f"{m.get('label') or m.get('name')} ({m.get('provider')}{where})"

            changed.append(f"the {role} model was {describe(then)} and is now {describe(now.get(role))}")
    if not changed:
        return None
    hosted = any((recorded.get(r) or {}).get("provider", spec.providers.get(r)) in ("openai", "azure") for r in roles)
    how = (" Configure the same models again (the API key or base URL they were served with, and "
           "WORKBENCH_BASE_MODEL / WORKBENCH_FT_MODEL or the Settings page) and resume," if hosted else
           " Configure the same models again (Settings, WORKBENCH_BASE_MODEL / WORKBENCH_FT_MODEL / WORKBENCH_FT_LORA, "
           "or the active fine-tuned model) and resume,")
    return (f"Run {run.name!r} cannot be resumed with the models configured now: {'; '.join(changed)}. "
            "Its answers so far came from the models it was started with, and one run never mixes two models."
            f"{how} or answer the rest in a new run with the current models (`python -m lib eval --resume "
            f"{run.name} --new-models`, or the button on the Evaluate page).")


def check_models(run: RunRecord, settings: Any) -> None:
    """Raise ModelsChanged when `run` was started with other models than those configured now."""
    problem = models_problem(run, settings)
    if problem:
        raise ModelsChanged(problem)


def rerun_rest(settings: Any, workspace: Any, run: str, name: str | None = None) -> str:
    """A new run (its id) of the questions `run` has not answered with every arm, on the same arms and
    settings, with the models configured now; `run` is left as it is."""
    record = find_run(workspace, run)
    spec = record.spec
    have = {(a.question.id, a.arm) for a in workspace.answers(record.id)}
    rest = [q for q in record.questions if any((q.id, a) not in have for a in spec.arms)]
    if not rest:
        raise UserError(f"Run {record.name!r} has answered every question with every arm: nothing to re-run.")
    run_id = new_run_id()
    new = RunSpec(name or f"{record.name}-rest", spec.question_set, spec.arms, spec.collection, spec.top_k,
                  spec.min_score, spec.temperature, spec.max_tokens, spec.concurrency,
                  {"base": settings.base.label, "finetuned": settings.finetuned.label if settings.finetuned else ""},
                  {"base": settings.base.provider, "finetuned": settings.finetuned.provider if settings.finetuned
                   else ""}, len(rest), spec.judge, _params(settings), run_models(settings))
    workspace.create_run(run_id, new, rest)
    return run_id


def resume(settings: Any, workspace: Any, kb: Any, run_id: str, cancel: threading.Event | None = None,
           on_progress: OnProgress | None = None) -> Progress:
    """Answer what a run has not answered yet (a new run, or one stopped by a cancel or a restart), with the
    models it was started with (ModelsChanged otherwise, and nothing is asked) and from its own knowledge base
    (opened here when `kb` is another one)."""
    run = find_run(workspace, run_id)
    check_models(run, settings)
    questions = list(run.questions)
    spec = run.spec
    if kb is not None and spec.collection and kb.name != spec.collection:
        from lib import engine  # a run answers from the documents it started on, whichever are open now

        kb = engine.open_kb(settings, spec.collection, create=False)
    judge = None
    if spec.judge:
        from lib import gateway
        from lib.settings import ModelSpec

        if not settings.hosted_configured:
            raise UserError("This run asks an LLM judge, which needs a hosted model: set an API key or base URL.")
        judge = gateway.provider(settings.with_overrides(max_retries=max(settings.max_retries, 5)), ModelSpec(
            settings.base.provider if settings.base.provider != "local" else "openai", spec.judge), "base")
    cancel = cancel or threading.Event()
    release = _own(workspace, run.id, cancel)  # one process answers a run at a time
    try:
        workspace.update_run(run.id, status="running")
        from lib.engine import provenance_stamp

        return execute(run.id, spec, questions, kb, eval_providers(settings), workspace, cancel,
                       on_progress, local_similarity(settings), judge, windows=settings.context_windows,
                       stamp=provenance_stamp(settings, kb))
    except BaseException as exc:
        from lib.errors import redact

        workspace.update_run(run.id, status="failed", error=redact(f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        release()


def _own(workspace: Any, run_id: str, cancel: threading.Event) -> Callable[[], None]:
    """Take the run's lease for this process (RunBusy if another live process holds it) and keep renewing it in a
    thread until the returned function is called, which releases it. If the lease is lost (this process stalled past
    its expiry and another took over), the run is cancelled here: never two processes on one run."""
    resource = f"run:{run_id}"
    if not workspace.take_lease(resource, OWNER, LEASE_TTL_S):
        holder = workspace.lease_holder(resource)
        wait = f" (its lease expires in {holder[1] - time.time():.0f} s unless renewed)" if holder else ""
        raise RunBusy(f"This run is being answered by another app process{wait}; follow it there, or Resume it once "
                      "that process has stopped.")
    done = threading.Event()

    def keep() -> None:
        while not done.wait(LEASE_TTL_S / 3):
            try:
                if not workspace.renew_lease(resource, OWNER, LEASE_TTL_S):
                    cancel.set()
                    return
            except Exception:  # a busy database: try again at the next beat
                continue

    def release() -> None:
        done.set()
        try:
            workspace.release_lease(resource, OWNER)
        except Exception:
            pass  # it expires by itself

    threading.Thread(target=keep, name=f"lease-{run_id}", daemon=True).start()
    return release


def owner(workspace: Any, run_id: str) -> str | None:
    """The process that answers a run now (holds its live lease), or None: then it may be resumed."""
    holder = workspace.lease_holder(f"run:{run_id}")
    return holder[0] if holder else None


def find_run(workspace: Any, run: str, hint: str = "") -> RunRecord:
    """A stored run by id or name (the latest of that name); a UserError naming it when there is none."""
    record = workspace.run(run)
    if record is None:
        raise UserError(f"No evaluation run {run!r} in workspace {workspace.name!r}{hint}.")
    return record  # type: ignore[no-any-return]


def load(workspace: Any, run: str) -> tuple[RunRecord, list[AnswerRecord]]:
    """(the run record, its stored answer records) of a stored run, by id or name: read once."""
    record = find_run(workspace, run, ": run `python -m lib eval --run-name NAME` first")
    return record, workspace.answers(record.id)


def summarise_answers(record: RunRecord, answers: list[AnswerRecord]) -> dict[str, dict[str, Any]]:
    """Per-arm summary (lib.evaluate.summarise) of a run's stored answers, in the run's arm order, with the LLM
    judge's agreement when the run had one."""
    return _summarise(record, answers, _graded(record, answers))


def _graded(record: RunRecord, answers: list[AnswerRecord]) -> list[Graded]:
    order = {a: i for i, a in enumerate(record.spec.arms)}
    return sorted((a.graded for a in answers), key=lambda g: order.get(g.arm, 99))


def _summarise(record: RunRecord, answers: list[AnswerRecord], graded: list[Graded]) -> dict[str, Any]:
    from lib.evaluate import summarise

    per_arm = summarise(graded)
    for arm, s in per_arm.items():
        # the model each arm's answers actually came from
        res = next((a.result for a in answers if a.arm == arm and not a.result.error and a.result.model), None)
        s["model"], s["provider"] = (res.model, res.provider) if res is not None else (None, None)
        # refused by the spend cap: errors of their own kind, not wrong answers
        s["capped"] = sum(1 for a in answers if a.arm == arm and a.capped)
    if record.spec.judge:
        from lib.judge import agreement

        for arm, s in per_arm.items():
            judged = [a for a in answers if a.arm == arm and a.judge is not None]
            pairs = [(bool(a.graded.correct), bool(a.judge["correct"])) for a in judged if "correct" in a.judge]
            agree = agreement(pairs)
            s["judge_accuracy"] = sum(j for _, j in pairs) / len(pairs) if pairs else None
            s["judge_agreement"] = agree["agreement"]
            s["judge_kappa"] = agree["kappa"]
            s["judge_errors"] = sum(1 for a in judged if "error" in a.judge)
    return per_arm


def arm_models(per_arm: dict[str, dict[str, Any]], spec: RunSpec | None = None) -> dict[str, tuple[str, str]]:
    """arm -> (model, provider) the run's answers came from; for an arm with no answer yet, the model its role
    was given when the run started. Only the run's own arms: a role no arm used plays no part."""
    out = {arm: (str(s["model"]), str(s.get("provider") or "")) for arm, s in per_arm.items() if s.get("model")}
    for arm in spec.arms if spec is not None else ():
        if arm not in out and arm in ARMS:
            role = ARMS[arm].role
            model = spec.models.get(role)
            if model:
                out[arm] = (str(model), str(spec.providers.get(role) or ""))
    return out


def caveat(per_arm: dict[str, dict[str, Any]], spec: RunSpec | None = None) -> str | None:
    """The small-model caveat when, and only when, the run's arms used a small local model (under 1B parameters,
    by the GGUF's own count recorded with the run: lib.catalogue.small_model_caveat). The roles no arm of the run
    used play no part; a run without its spec is judged by the models its answers came from."""
    from lib.catalogue import small_model_caveat

    if spec is None:
        models = arm_models(per_arm)
        spec = RunSpec("", "", tuple(models), "", models={ARMS[a].role: m for a, (m, _) in models.items() if a in ARMS},
                       providers={ARMS[a].role: p for a, (_, p) in models.items() if a in ARMS})
    return small_model_caveat(spec)


def summary(workspace: Any, run: str) -> tuple[RunRecord, dict[str, dict[str, Any]], list[Graded]]:
    """(the run record, per-arm summary, graded answers) of a stored run, by id or name."""
    record, answers = load(workspace, run)
    graded = _graded(record, answers)
    return record, _summarise(record, answers, graded), graded


def judge_disagreements(workspace: Any, run: str) -> list[dict[str, Any]]:
    """The answers where the LLM judge and the offline grader disagree (spot-check these first), each with both
    verdicts and reasons; empty when the run has no judge."""
    record = find_run(workspace, run)
    out = []
    for a in workspace.answers(record.id):
        verdict, g = a.judge or {}, a.graded
        if "correct" not in verdict or bool(verdict["correct"]) == bool(g.correct):
            continue
        out.append({"question_id": a.question.id, "arm": a.arm, "question": a.question.question,
                    "reference": a.question.answer, "answer": a.result.answer,
                    "offline": "correct" if g.correct else "wrong", "offline_reason": g.reason,
                    "judge": "correct" if verdict["correct"] else "wrong", "judge_reason": verdict.get("reason", "")})
    order = {q.id: i for i, q in enumerate(record.questions)}
    return sorted(out, key=lambda r: (order.get(r["question_id"], len(order)), r["arm"]))


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
    store: Any = None  # the workspace, to mark the run resumable on shutdown

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
        if _draining.is_set():
            raise RunBusy("The app is shutting down and takes no new work: Resume the run once it is back.")
        holder = owner(workspace, run_id)
        if holder is not None and holder != OWNER:
            raise RunBusy("This run is being answered by another app process; Resume it once that process has "
                          "stopped (its lease expires then).")
        _install_shutdown()
        handle = RunningEval(workspace.name, run_id, store=workspace)

        def on_progress(p: Progress, _rows: list[Graded]) -> None:
            handle.progress = p

        def work() -> None:
            try:
                handle.progress = resume(settings, workspace, kb, run_id, handle.cancel, on_progress)
            except Exception as exc:  # recorded on the run by resume(); shown by the page
                from lib.errors import redact

                handle.error = redact(f"{type(exc).__name__}: {exc}")

        handle.thread = threading.Thread(target=work, name=f"eval-{run_id}", daemon=True)
        _running[key] = handle
        handle.thread.start()
        return handle


def running(workspace: Any, run_id: str) -> RunningEval | None:
    """The live handle of a run in this process, if it is answering now."""
    handle = _running.get((f"{workspace.data_dir}:{workspace.name}", run_id))
    return handle if handle is not None and handle.alive else None


def interrupted(workspace: Any) -> list[RunRecord]:
    """Runs stopped by a restart or a shutdown (recorded as running or interrupted) that no live process owns:
    they can be resumed."""
    return [r for r in workspace.runs() if r.status in ("running", "interrupted")
            and running(workspace, r.id) is None and owner(workspace, r.id) is None]


def resumable(workspace: Any, run: RunRecord) -> bool:
    """Whether Resume may be offered for a run: it is not complete and no live process owns it."""
    return run.status in RESUMABLE and running(workspace, run.id) is None and owner(workspace, run.id) is None


# ---------------------------------------------------------------- shutdown

_draining = threading.Event()
_hooked = False


def shutdown(grace_s: float = SHUTDOWN_GRACE_S) -> list[str]:
    """Stop taking runs, cancel those this process answers, give them `grace_s` to stop, and mark each one
    resumable ('interrupted') with its lease released. Returns the run ids it stopped. Called when the app
    process ends (SIGTERM to Streamlit ends the server, then the interpreter runs this before it waits for
    threads); a run still answering after the grace period is abandoned there (the process then exits)."""
    _draining.set()
    with _running_lock:
        handles = [h for h in _running.values() if h.alive]
    for h in handles:
        h.cancel.set()
    deadline = time.monotonic() + grace_s
    for h in handles:
        if h.thread is not None:
            h.thread.join(max(0.0, deadline - time.monotonic()))
    for h in handles:
        try:
            h.store.update_run(h.run_id, status="interrupted",
                               error="The app stopped while this run was answering; Resume answers the rest.")
            h.store.release_lease(f"run:{h.run_id}", OWNER)
        except Exception:
            pass  # the lease expires by itself; the run shows as interrupted once it has
    return [h.run_id for h in handles]


def _at_exit() -> None:
    import os

    stopped = shutdown()
    with _running_lock:
        stuck = any(h.alive for h in _running.values())
    if stopped and stuck:  # a thread blocked in a read would hold the exit for minutes: it is marked; go now
        os._exit(0)


def _install_shutdown() -> None:
    """Run `shutdown` when the process ends, before the interpreter waits for the runs' worker threads."""
    global _hooked
    if _hooked:
        return
    register = getattr(threading, "_register_atexit", None)  # called before non-daemon threads are joined
    if register is not None:
        try:
            register(_at_exit)
        except RuntimeError:  # already shutting down
            return
    else:  # pragma: no cover - other interpreters
        import atexit

        atexit.register(_at_exit)
    _hooked = True


def reference_for(question: str, workspace: Any = None) -> Question | None:
    """The question with a reference answer that matches `question` (the sample set, then the workspace's sets)."""
    wanted = " ".join(question.lower().split())
    candidates: list[Question] = []
    try:
        candidates += load_set(None, SAMPLE_SET)
    except (OSError, ValueError, UserError):
        pass
    if workspace is not None:
        for name in workspace.question_sets():
            try:
                candidates += load_set(workspace, name)
            except (ValueError, UserError):
                continue
    return next((q for q in candidates if " ".join(q.question.lower().split()) == wanted), None)


def regrade(workspace: Any, run: str, similarity: Callable[[str, str], float] | None = None) -> int:
    """Grade a stored run's answers again with the current grader (no model is asked); returns how many."""
    from dataclasses import replace

    record = find_run(workspace, run)
    count = 0
    for a in workspace.answers(record.id):
        if a.result.error:
            continue
        graded = grade_result(a.question, a.result, similarity, a.graded.expected)
        workspace.save_answer(record.id, replace(a, graded=graded))
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
    """The CSV export; a cell that a spreadsheet would run as a formula is neutralised (lib.format.csv_cell)."""
    from lib.format import to_csv

    return to_csv(export_rows(graded), EXPORT_COLUMNS)


def export_json(workspace: Any, run: str) -> dict[str, Any]:
    """A run's record (spec, questions, status) and every stored answer with its sources and grade."""
    record = find_run(workspace, run)
    return {"run": record.to_dict(), "answers": [a.to_dict() for a in workspace.answers(record.id)]}


def answer_of(workspace: Any, run_id: str, question_id: str, arm: str) -> AnswerRecord | None:
    """One stored answer of a run (its result with sources, and its grade)."""
    return next((a for a in workspace.answers(run_id) if a.question.id == question_id and a.arm == arm), None)
