"""The comparison grid: model {base, fine-tuned} x context {none, retrieved}.

Every arm gets the same question, retrieved sources, temperature and token
limit; arms run concurrently and each returns a frozen `ArmResult`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from lib.errors import explain
from lib.providers import Delta, Done, GenParams, Message, Provider, Queued, Started
from lib.store import KnowledgeBase, Source


@dataclass(frozen=True)
class Arm:
    key: str
    label: str
    role: str  # "base" | "finetuned"
    retrieval: bool
    blurb: str


ARMS: dict[str, Arm] = {
    "baseline": Arm("baseline", "Baseline", "base", False, "base model, no retrieval"),
    "rag": Arm("rag", "RAG", "base", True, "base model + retrieved sources"),
    "finetuned": Arm("finetuned", "Fine-tuned", "finetuned", False, "fine-tuned model, no retrieval"),
    "hybrid": Arm("hybrid", "Hybrid", "finetuned", True, "fine-tuned model + retrieved sources"),
}
DEFAULT_ARMS = ("rag", "finetuned", "hybrid")

SYSTEM_PLAIN = "You are a helpful assistant for a company's staff and customers. Answer briefly and precisely."
SYSTEM_RETRIEVAL = (
    "You are a helpful assistant for a company's staff and customers. Answer briefly and precisely, "
    "using only the numbered sources. Cite the source you used like [1]. "
    "If the sources do not contain the answer, say that you do not know."
)


@dataclass(frozen=True)
class RetrievalParams:
    top_k: int = 4
    min_score: float = 0.0


@dataclass(frozen=True)
class PromptParts:
    system: str
    context: str  # empty without retrieval
    question: str

    def messages(self) -> list[Message]:
        user = f"{self.context}\n\n{self.question}" if self.context else self.question
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


def build_prompt(question: str, sources: list[Source] | None) -> PromptParts:
    """System | context [1..k] | question. `sources=None` means an arm without retrieval."""
    if sources is None:
        return PromptParts(SYSTEM_PLAIN, "", f"Question: {question.strip()}")
    if sources:
        blocks = [f"[{i}] (from {s.document})\n{s.text.strip()}" for i, s in enumerate(sources, 1)]
        context = "Sources:\n" + "\n\n".join(blocks)
    else:
        context = "Sources: (none found for this question)"
    return PromptParts(SYSTEM_RETRIEVAL, context, f"Question: {question.strip()}")


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    system_tokens: int
    context_tokens: int
    question_tokens: int
    overhead_tokens: int  # chat template / message framing: prompt minus the three parts
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class ArmResult:
    arm: str
    label: str
    model: str
    provider: str
    answer: str
    sources: tuple[Source, ...]
    usage: Usage | None
    usage_source: str  # "provider" (reported by the model's runtime/API) or "estimate"
    cost_usd: float | None
    cost_note: str
    retrieval_ms: float
    ttft_ms: float | None  # retrieval + wait for the first token (queue time excluded)
    total_ms: float | None  # retrieval + whole generation (queue time excluded)
    queued_ms: float  # time spent waiting for a shared local model
    finish_reason: str | None
    error: str | None

    @property
    def tokens_per_s(self) -> float | None:
        if not self.usage or self.total_ms is None or self.ttft_ms is None:
            return None
        gen_s = (self.total_ms - self.ttft_ms) / 1000
        return self.usage.completion_tokens / gen_s if gen_s > 0 and self.usage.completion_tokens > 1 else None

    def to_dict(self) -> dict[str, Any]:
        """The one serialised shape of a result: the CLI's JSON, the workspace's history
        records and the history table (`lib.history.rows`) all derive from it."""
        d = asdict(self)
        d["sources"] = [{"document": s.document, "chunk": s.chunk, "score": s.score, "text": s.text}
                        for s in self.sources]
        for key in ("retrieval_ms", "ttft_ms", "total_ms", "queued_ms"):
            d[key] = _round(d[key])
        d["tokens_per_s"] = _round(self.tokens_per_s)
        return d


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@dataclass(frozen=True)
class Comparison:
    id: str
    question: str
    created_at: float
    collection: str
    retrieval: RetrievalParams
    params: GenParams
    sources: tuple[Source, ...]
    retrieval_ms: float
    results: tuple[ArmResult, ...]
    extra: dict[str, Any] = field(default_factory=dict)


OnEvent = Callable[[str, str], None]  # (arm key, text delta)
OnStatus = Callable[[str, str], None]  # (arm key, what the arm is waiting for; "" once it is answering)


def queue_status(event: Queued) -> str:
    ahead = f"{event.ahead} request{'s' if event.ahead != 1 else ''} ahead"
    eta = f", about {event.expected_wait_s:.0f} s" if event.expected_wait_s else ""
    return f"Waiting for the shared local model: {ahead}{eta}"


def _usage(provider: Provider, parts: PromptParts, done: Done, answer: str) -> tuple[Usage, str]:
    from lib.tokens import count_chat

    system = provider.count_tokens(parts.system)
    context = provider.count_tokens(parts.context) if parts.context else 0
    question = provider.count_tokens(parts.question)
    if done.prompt_tokens is not None and done.completion_tokens is not None:
        prompt, completion, source = done.prompt_tokens, done.completion_tokens, "provider"
    else:
        prompt = count_chat(parts.messages(), getattr(provider.spec, "name", ""))
        completion, source = provider.count_tokens(answer), "estimate"
    overhead = prompt - system - context - question
    return Usage(prompt, completion, system, context, question, overhead, done.cached_tokens), source


def run_arm(arm: Arm, provider: Provider | Exception, question: str, sources: list[Source] | None,
            params: GenParams, retrieval_ms: float = 0.0, on_delta: OnEvent | None = None,
            on_status: OnStatus | None = None) -> ArmResult:
    """One arm, start to finish; any failure becomes `error` on the result, never an exception."""
    from lib.pricing import cost_for

    parts = build_prompt(question, sources)
    shown = tuple(sources or ())
    if isinstance(provider, Exception):
        return ArmResult(arm.key, arm.label, "", "", "", shown, None, "estimate", None, "", retrieval_ms,
                         None, None, 0.0, None, explain(provider))
    model, kind = provider.spec.label, provider.kind
    asked = time.monotonic()
    started = asked
    first: float | None = None
    pieces: list[str] = []
    done: Done | None = None
    try:
        for event in provider.stream(parts.messages(), params):
            if isinstance(event, Queued):
                if on_status:
                    on_status(arm.key, queue_status(event))
            elif isinstance(event, Started):
                started = time.monotonic()
                if on_status:
                    on_status(arm.key, "")
            elif isinstance(event, Delta):
                if first is None and event.text.strip():
                    first = time.monotonic()
                pieces.append(event.text)
                if on_delta:
                    on_delta(arm.key, event.text)
            elif isinstance(event, Done):
                done = event
    except Exception as exc:  # the arm fails alone; the others go on
        return ArmResult(arm.key, arm.label, model, kind, "".join(pieces), shown, None, "estimate", None, "",
                         retrieval_ms, None, None, (started - asked) * 1000, None,
                         explain(exc, provider.spec.name, getattr(provider, "where", "")))
    end = time.monotonic()
    answer = "".join(pieces).strip()
    usage, usage_source = _usage(provider, parts, done or Done(None, None, None), answer)
    cost, note = cost_for(provider.spec, usage)
    return ArmResult(
        arm=arm.key, label=arm.label, model=model, provider=kind, answer=answer, sources=shown, usage=usage,
        usage_source=usage_source, cost_usd=cost, cost_note=note, retrieval_ms=retrieval_ms,
        ttft_ms=retrieval_ms + ((first or end) - started) * 1000, total_ms=retrieval_ms + (end - started) * 1000,
        queued_ms=(started - asked) * 1000, finish_reason=done.finish_reason if done else None, error=None)


def compare(question: str, arm_keys: list[str] | tuple[str, ...], kb: KnowledgeBase | None,
            providers: dict[str, Provider | Exception], params: GenParams = GenParams(),
            retrieval: RetrievalParams = RetrievalParams(), on_delta: OnEvent | None = None,
            on_status: OnStatus | None = None) -> Comparison:
    """Retrieve once, then run every chosen arm on the same inputs: hosted arms concurrently, local
    arms one at a time through the shared local model's queue (each timed from when its turn starts)."""
    if not question.strip():
        raise ValueError("Ask a question first.")
    unknown = [k for k in arm_keys if k not in ARMS]
    if unknown:
        raise ValueError(f"Unknown arm(s) {', '.join(unknown)}: use {', '.join(ARMS)}.")
    arms = [ARMS[k] for k in arm_keys]
    sources: list[Source] = []
    retrieval_ms = 0.0
    if any(a.retrieval for a in arms) and kb is not None:
        t0 = time.monotonic()
        sources = kb.query(question, retrieval.top_k, retrieval.min_score)
        retrieval_ms = (time.monotonic() - t0) * 1000
    missing = KeyError("no model")
    with ThreadPoolExecutor(max_workers=max(1, len(arms)), thread_name_prefix="arm") as pool:
        futures = [pool.submit(run_arm, arm, providers.get(arm.role, missing), question,
                               sources if arm.retrieval else None, params,
                               retrieval_ms if arm.retrieval else 0.0, on_delta, on_status) for arm in arms]
        results = tuple(f.result() for f in futures)
    return Comparison(id=uuid.uuid4().hex[:12], question=question.strip(), created_at=time.time(),
                      collection=kb.name if kb else "", retrieval=retrieval, params=params,
                      sources=tuple(sources), retrieval_ms=retrieval_ms, results=results)
