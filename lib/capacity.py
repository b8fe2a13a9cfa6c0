"""How many questions an hour this machine's local model answers, measured.

At each concurrency level c, c clients ask one question after another through the real serving path (the
provider, the machine queue and the worker's batches, as participants' questions arrive), until `questions`
have been answered. A level reports questions per hour (answered / wall time), the latency of one question
(from asking to its last token, any wait for a place in a batch included) at p50 and p95, and tokens per
second (completion tokens / wall time). The prompts are the app's own: for the sample questions, RAG prompts
with the knowledge base's retrieved sources (as the RAG and hybrid arms build them) alternating with the
no-context prompts of the baseline and fine-tuned arms. A measurement is stored in the workspace with the
machine's description (CPU model, cores, worker processes, threads per process, batch size), and is what
lib.serving_cost prices self-hosting from and forecasts a workshop with.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lib.errors import UserError
from lib.providers import Delta, Done, Message, Started
from lib.records import GenParams

VERSION = 1
DEFAULT_CONCURRENCY = (1, 2, 4, 8)
DEFAULT_QUESTIONS = 8  # per level
DEFAULT_MAX_TOKENS = 96  # as an evaluation run asks (`python -m lib eval`)
ROLES = ("base", "finetuned")


class Cancelled(Exception):
    """The measurement was cancelled; nothing was stored."""


@dataclass(frozen=True)
class Level:
    """One concurrency level of a measurement."""

    concurrency: int
    questions_per_hour: float
    latency_p50_ms: float
    latency_p95_ms: float
    tokens_per_s: float
    questions: int  # answered
    errors: int
    wall_s: float
    prompt_tokens_mean: float
    completion_tokens_mean: float
    batch_size_mean: float  # requests decoded together with each question, on average over the questions
    queued_ms_p50: float  # wait for a place in a batch

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, float):
                d[k] = round(v, 3 if k.endswith("_mean") else 1)
        return d


@dataclass(frozen=True)
class Capacity:
    id: str
    created_at: float
    role: str
    model: str  # the model's label (with its adapter for the fine-tuned role)
    machine: dict[str, Any]  # cpu, cores, processes, threads (per process), batch, extra_bufts
    prompts: str  # what was asked, in words
    max_tokens: int
    levels: tuple[Level, ...]
    version: int = VERSION

    @property
    def best(self) -> Level:
        return max(self.levels, key=lambda lv: (lv.questions_per_hour, -lv.concurrency))

    @property
    def machine_text(self) -> str:
        m = self.machine
        return (f"{m.get('cpu', 'unknown CPU')}, {m.get('cores', '?')} cores, {m.get('processes', 1)} worker "
                f"process{'es' if m.get('processes', 1) != 1 else ''} x {m.get('threads', '?')} threads, "
                f"batches of up to {m.get('batch', '?')}")

    @property
    def label(self) -> str:
        """The measurement in one line: when, where and what (the note every price and forecast names)."""
        when = time.strftime("%d %b %Y", time.localtime(self.created_at))
        return f"capacity measured on {when} on {self.machine_text}, for {self.model} ({self.role} role)"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "created_at": self.created_at, "role": self.role, "model": self.model,
                "machine": dict(self.machine), "prompts": self.prompts, "max_tokens": self.max_tokens,
                "levels": [lv.to_dict() for lv in self.levels], "version": self.version}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Capacity:
        if int(d.get("version", 0)) != VERSION:
            raise ValueError(f"capacity record of version {d.get('version')!r}, expected {VERSION}")
        names = {f for f in Level.__dataclass_fields__}
        levels = tuple(Level(**{k: v for k, v in lv.items() if k in names}) for lv in d["levels"])
        return cls(str(d["id"]), float(d["created_at"]), str(d["role"]), str(d["model"]), dict(d["machine"]),
                   str(d["prompts"]), int(d["max_tokens"]), levels)

    def summary(self) -> dict[str, Any]:
        """The final object of `capacity --json`."""
        best = self.best
        return {"summary": True, "id": self.id, "role": self.role, "model": self.model, "machine": self.machine,
                "prompts": self.prompts, "max_tokens": self.max_tokens, "created_at": self.created_at,
                "best_concurrency": best.concurrency, "best_questions_per_hour": round(best.questions_per_hour, 1),
                "label": self.label}


@dataclass
class Progress:
    done: int = 0  # questions answered so far, all levels
    total: int = 0
    level: int = 0  # the concurrency being measured
    message: str = ""
    levels: list[Level] = field(default_factory=list)


OnProgress = Callable[[Progress], None]


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = (len(ordered) - 1) * p / 100
    lo = int(math.floor(k))
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def parse_levels(text: str) -> tuple[int, ...]:
    """"1,2,4,8" -> (1, 2, 4, 8); a clear error for anything else."""
    try:
        levels = tuple(sorted({int(x) for x in text.split(",") if x.strip()}))
    except ValueError:
        levels = ()
    if not levels or levels[0] < 1 or levels[-1] > 64:
        raise UserError(f"--concurrency {text!r}: give whole numbers from 1 to 64, separated by commas "
                         "(for example 1,2,4,8).")
    return levels


# ---------------------------------------------------------------- prompts

def _passages(folder: Path, size_chars: int = 900) -> list[tuple[str, str]]:
    """(document, passage) from the sample documents' plain-text files, cut at paragraphs."""
    out = []
    for path in sorted(folder.glob("*")):
        if path.suffix not in (".md", ".txt"):
            continue
        buf = ""
        for para in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            if buf and len(buf) + len(para) > size_chars:
                out.append((path.name, buf.strip()))
                buf = ""
            buf += para + "\n\n"
        if buf.strip():
            out.append((path.name, buf.strip()))
    return out


def prompts_for(questions: Sequence[str], kb: Any | None, top_k: int) -> tuple[list[list[Message]], str]:
    """(prompts, what they are): for each question a RAG prompt (sources from the knowledge base, or from the
    sample documents' passages when it is empty) and a no-context prompt, alternating."""
    from lib.arms import build_prompt
    from lib.engine import SAMPLE_DOCS
    from lib.local_queue import machine_turn
    from lib.records import Source

    use_kb = kb is not None and kb.count() > 0
    passages = [] if use_kb else _passages(SAMPLE_DOCS)
    out: list[list[Message]] = []
    for q in questions:
        if use_kb:
            with machine_turn():
                sources = kb.query(q, top_k)
        else:
            words = set(re.findall(r"\w{4,}", q.lower()))
            ranked = sorted(range(len(passages)), key=lambda i: -len(words & set(re.findall(r"\w{4,}",
                                                                                         passages[i][1].lower()))))
            sources = [Source(passages[i][0], i, 0.0, passages[i][1]) for i in ranked[:top_k]]
        out.append(build_prompt(q, sources).messages())
        out.append(build_prompt(q, None).messages())
    where = f"knowledge base '{kb.name}'" if use_kb else "the sample documents (the knowledge base is empty)"
    return out, (f"{len(questions)} sample question{'s' if len(questions) != 1 else ''}: RAG prompts with "
                 f"top-{top_k} sources from {where}, alternating with no-context prompts")


def machine(provider: Any) -> dict[str, Any]:
    """What the measurement ran on."""
    from lib.local_worker import cpu_model

    w = provider.worker
    return {"cpu": cpu_model(), "cores": os.cpu_count() or 1, "processes": w.processes,
            "threads": provider.threads, "batch": w.batch, "extra_bufts": w.extra_bufts}


# ---------------------------------------------------------------- measuring

@dataclass
class _Answer:
    latency_ms: float
    queued_ms: float
    prompt_tokens: int
    completion_tokens: int
    batch_size: int


def _ask_one(provider: Any, messages: list[Message], params: GenParams, cancel: threading.Event) -> _Answer | None:
    asked = time.monotonic()
    started = asked
    done: Done | None = None
    stream = provider.stream(messages, params)
    try:
        for event in stream:
            if cancel.is_set():
                return None
            if isinstance(event, Started):
                started = time.monotonic()
            elif isinstance(event, Done):
                done = event
            elif isinstance(event, Delta):
                pass
    finally:
        stream.close()  # cancels the request if it was cut short
    if done is None:
        raise RuntimeError("the local model ended the answer without its usage")
    return _Answer((time.monotonic() - asked) * 1000, (started - asked) * 1000, int(done.prompt_tokens or 0),
                   int(done.completion_tokens or 0), int(done.batch_size or 1))


def measure_level(provider: Any, prompts: Sequence[list[Message]], concurrency: int, questions: int,
                  params: GenParams, cancel: threading.Event, on_answer: Callable[[], None] | None = None,
                  start_at: int = 0) -> Level:
    """`concurrency` clients, each asking the next prompt as soon as its previous answer is complete, until
    `questions` are answered."""
    lock = threading.Lock()
    answers: list[_Answer] = []
    errors: list[str] = []
    taken = [0]

    def client() -> None:
        while not cancel.is_set():
            with lock:
                if taken[0] >= questions:
                    return
                i = taken[0]
                taken[0] += 1
            try:
                a = _ask_one(provider, prompts[(start_at + i) % len(prompts)], params, cancel)
            except Exception as exc:  # counted; the level goes on
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if a is None:
                return
            with lock:
                answers.append(a)
            if on_answer:
                on_answer()

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, name=f"capacity-{concurrency}-{n}", daemon=True)
               for n in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    if cancel.is_set():
        raise Cancelled("the capacity measurement was cancelled")
    if not answers:
        raise RuntimeError(f"no question was answered at concurrency {concurrency}: {errors[0] if errors else ''}")
    latencies = [a.latency_ms for a in answers]
    completion = sum(a.completion_tokens for a in answers)
    return Level(concurrency=concurrency, questions_per_hour=len(answers) / wall * 3600,
                 latency_p50_ms=percentile(latencies, 50), latency_p95_ms=percentile(latencies, 95),
                 tokens_per_s=completion / wall, questions=len(answers), errors=len(errors), wall_s=wall,
                 prompt_tokens_mean=statistics.fmean(a.prompt_tokens for a in answers),
                 completion_tokens_mean=completion / len(answers),
                 batch_size_mean=statistics.fmean(a.batch_size for a in answers),
                 queued_ms_p50=percentile([a.queued_ms for a in answers], 50))


def measure(provider: Any, prompts: Sequence[list[Message]], role: str, prompts_text: str,
            concurrency: Sequence[int] = DEFAULT_CONCURRENCY, questions: int = DEFAULT_QUESTIONS,
            max_tokens: int = DEFAULT_MAX_TOKENS, on_progress: OnProgress | None = None,
            cancel: threading.Event | None = None) -> Capacity:
    """Every level in turn (after one untimed question, so loading the model is not measured)."""
    if getattr(provider, "kind", "") != "local":
        raise UserError("The capacity measurement is for the local model on this machine; for a hosted or "
                         "self-hosted server, enter its capacity instead.")
    if not prompts:
        raise UserError("No prompts to measure with.")
    if questions < 1:
        raise UserError("--questions must be at least 1.")
    cancel = cancel or threading.Event()
    params = GenParams(max_tokens=max_tokens, temperature=0.0)
    progress = Progress(total=questions * len(concurrency), message="loading the model")
    if on_progress:
        on_progress(progress)
    _ask_one(provider, prompts[0], GenParams(max_tokens=1), cancel)  # untimed: the model loads
    lock = threading.Lock()

    def answered() -> None:
        with lock:
            progress.done += 1
        if on_progress:
            on_progress(progress)

    for c in concurrency:  # every level asks the same questions: only the concurrency differs
        progress.level = c
        progress.message = f"{c} at a time"
        if on_progress:
            on_progress(progress)
        progress.levels.append(measure_level(provider, prompts, c, questions, params, cancel, answered))
    return Capacity(uuid.uuid4().hex[:12], time.time(), role, provider.spec.label, machine(provider), prompts_text,
                    max_tokens, tuple(progress.levels))


# ---------------------------------------------------------------- the flow the CLI and pages call

def provider_for(settings: Any, role: str) -> Any:
    """The active model of a role, if it is local."""
    from lib import engine, gateway
    from lib.errors import ConfigError

    if role not in ROLES:
        raise UserError(f"--role {role!r}: use base or finetuned.")
    spec = settings.base if role == "base" else engine.resolve_finetuned(settings).finetuned
    if spec is None:
        raise ConfigError("There is no fine-tuned model: train one on the Fine-tune page, or measure the base role.")
    if spec.provider != "local":
        raise ConfigError(f"The {role} role is {spec.label} on {spec.provider}: the capacity measurement is for "
                          "the local model on this machine. For a hosted or self-hosted server, enter its capacity.")
    return gateway.provider(settings, spec, role)


def run(settings: Any, workspace: Any, role: str = "base", concurrency: Sequence[int] = DEFAULT_CONCURRENCY,
        questions: int = DEFAULT_QUESTIONS, max_tokens: int = DEFAULT_MAX_TOKENS,
        on_progress: OnProgress | None = None, cancel: threading.Event | None = None,
        question_texts: Sequence[str] | None = None) -> Capacity:
    """Measure the active model of `role` with the workspace's knowledge base's prompts and store the result."""
    from lib import engine

    provider = provider_for(settings, role)
    if question_texts is None:
        question_texts = [str(q["question"]) for q in engine.sample_questions()]
    question_texts = list(question_texts)[:max(1, math.ceil(questions / 2))]  # two prompts per question
    try:
        kb = engine.open_kb(settings, create=False)
    except Exception:  # no knowledge base yet: the sample documents stand in
        kb = None
    prompts, text = prompts_for(question_texts, kb, settings.default_top_k)
    capacity = measure(provider, prompts, role, text, concurrency, questions, max_tokens, on_progress, cancel)
    workspace.save_capacity(capacity.to_dict())
    return capacity


def latest(workspace: Any, role: str | None = None) -> Capacity | None:
    """The newest stored measurement (of a role), or None."""
    for record in workspace.capacities(role):
        try:
            return Capacity.from_dict(record)
        except (KeyError, TypeError, ValueError):
            continue
    return None


# ---------------------------------------------------------------- a measurement that outlives the page

@dataclass
class RunningCapacity:
    """A measurement in a background thread of this server process; the page follows or cancels it."""

    role: str
    cancel: threading.Event = field(default_factory=threading.Event)
    progress: Progress = field(default_factory=Progress)
    result: Capacity | None = None
    error: str | None = None
    thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


_running: dict[str, RunningCapacity] = {}
_running_lock = threading.Lock()


def _key(workspace: Any) -> str:
    return f"{workspace.data_dir}:{workspace.name}"


def start(settings: Any, workspace: Any, role: str = "base", concurrency: Sequence[int] = DEFAULT_CONCURRENCY,
          questions: int = DEFAULT_QUESTIONS, max_tokens: int = DEFAULT_MAX_TOKENS) -> RunningCapacity:
    """Start a measurement in a daemon thread; while one runs for this workspace, that one is returned."""
    from lib.errors import explain

    provider_for(settings, role)  # a clear error now, not in the thread
    with _running_lock:
        current = _running.get(_key(workspace))
        if current is not None and current.alive:
            return current
        handle = RunningCapacity(role)

        def on_progress(p: Progress) -> None:
            handle.progress = p

        def work() -> None:
            try:
                handle.result = run(settings, workspace, role, concurrency, questions, max_tokens, on_progress,
                                    handle.cancel)
            except Cancelled:
                handle.error = "Cancelled: nothing was stored."
            except Exception as exc:
                handle.error = explain(exc)

        handle.thread = threading.Thread(target=work, name="capacity", daemon=True)
        _running[_key(workspace)] = handle
        handle.thread.start()
        return handle


def running(workspace: Any) -> RunningCapacity | None:
    """The measurement of this workspace in this process (running or just finished), if any."""
    return _running.get(_key(workspace))
