"""The comparison grid: model {base, fine-tuned} x context {none, retrieved}.

Every arm gets the same question, retrieved sources, temperature and token
limit; arms run concurrently and each returns a frozen `ArmResult`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lib.errors import UserError, explain
from lib.local_queue import comparison_group
from lib.providers import (
    Delta,
    Done,
    Message,
    Provider,
    Queued,
    Started,
    prompt_token_ceiling,
    untrusted_usage,
)
from lib.records import ArmResult, Comparison, GenParams, RetrievalParams, Source, Usage
from lib.store import KnowledgeBase


@dataclass(frozen=True)
class Arm:
    key: str
    label: str
    role: str  # "base" | "finetuned"
    retrieval: bool
    blurb: str
    whole_kb: bool = False  # the whole knowledge base in the prompt (the long-context arm), no retrieval

    @property
    def context(self) -> str:
        """What the arm's prompt holds besides the question: "retrieved" chunks, "all" documents, or "none"."""
        return "retrieved" if self.retrieval else ("all" if self.whole_kb else "none")


ARMS: dict[str, Arm] = {
    "baseline": Arm("baseline", "Baseline", "base", False, "base model, no retrieval"),
    "rag": Arm("rag", "RAG", "base", True, "base model + retrieved sources"),
    "finetuned": Arm("finetuned", "Fine-tuned", "finetuned", False, "fine-tuned model, no retrieval"),
    "hybrid": Arm("hybrid", "Hybrid", "finetuned", True, "fine-tuned model + retrieved sources"),
    "longcontext": Arm("longcontext", "Long context", "base", False,
                       "base model + the whole knowledge base in the prompt, no retrieval", whole_kb=True),
}
DEFAULT_ARMS = ("rag", "finetuned", "hybrid")

SYSTEM_PLAIN = "You are a helpful assistant for a company's staff and customers. Answer briefly and precisely."
SYSTEM_RETRIEVAL = (
    "You are a helpful assistant for a company's staff and customers. Answer briefly and precisely, "
    "using only the numbered sources. Cite the source you used like [1]. "
    "If the sources do not contain the answer, say that you do not know."
)


SYSTEM_LONG_CONTEXT = (
    "You are a helpful assistant for a company's staff and customers. Answer briefly and precisely, "
    "using only the numbered documents. Cite the document you used like [1]. "
    "If the documents do not contain the answer, say that you do not know."
)


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


def build_prompt_all(question: str, documents: list[Source] | tuple[Source, ...]) -> PromptParts:
    """The long-context arm's prompt: every document of the knowledge base, in a stable order (by name), each
    numbered with its name so the answer can cite it, then the question."""
    blocks = [f"[{i}] {d.document}\n{d.text.strip()}" for i, d in enumerate(documents, 1)]
    context = "Documents:\n" + "\n\n".join(blocks) if blocks else "Documents: (the knowledge base is empty)"
    return PromptParts(SYSTEM_LONG_CONTEXT, context, f"Question: {question.strip()}")


def whole_knowledge_base(kb: KnowledgeBase | None) -> tuple[Source, ...]:
    """Every document of a knowledge base as one source each (its whole text), sorted by name."""
    if kb is None:
        return ()
    from lib.store import document_text

    return tuple(Source(d.name, 0, 1.0, document_text(kb, d.name)) for d in sorted(kb.documents(), key=lambda d: d.name))


OnEvent = Callable[[str, str], None]  # (arm key, text delta)
OnStatus = Callable[[str, str], None]  # (arm key, what the arm is waiting for; "" once it is answering)


def queue_status(event: Queued) -> str:
    ahead = f"{event.ahead} request{'s' if event.ahead != 1 else ''} ahead"
    eta = f", about {event.expected_wait_s:.0f} s" if event.expected_wait_s else ""
    return f"Waiting for the shared local model: {ahead}{eta}"


def apportion(total: int, weights: list[int]) -> list[int]:
    """`total` split in proportion to `weights` as non-negative integers that sum to `total` exactly
    (largest remainder); with no weight at all, everything goes to the last part."""
    if total <= 0:
        return [0] * len(weights)
    whole = sum(max(0, w) for w in weights)
    if whole == 0:
        return [0] * (len(weights) - 1) + [total]
    exact = [max(0, w) * total / whole for w in weights]
    out = [int(x) for x in exact]
    for i in sorted(range(len(weights)), key=lambda i: exact[i] - out[i], reverse=True)[:total - sum(out)]:
        out[i] += 1
    return out


def _usage(provider: Provider, parts: PromptParts, done: Done, answer: str,
           max_tokens: int | None = None) -> tuple[Usage, str, str | None]:
    """Prompt and completion tokens, and the prompt split into system, context, question and chat template.

    The parts are counted with the provider's tokenizer as we know it. When the provider reports a prompt
    total that differs from our own count of the whole prompt (a server whose tokenizer is not tiktoken's),
    the parts (and our estimate of the chat template) are scaled to the reported total and flagged
    `parts_estimated`: they always sum exactly to `prompt_tokens`, and none is negative.

    Reported usage that cannot be right (`untrusted_usage`) is not used: the tokens are counted instead and
    marked estimated, and the third value says why (None when the reported usage was used or none came)."""
    from lib.tokens import count_chat

    system = provider.count_tokens(parts.system)
    context = provider.count_tokens(parts.context) if parts.context else 0
    question = provider.count_tokens(parts.question)
    counted = system + context + question
    reported = done.prompt_tokens is not None and done.completion_tokens is not None
    distrust = done.untrusted or (untrusted_usage(done, prompt_token_ceiling(parts.messages()), max_tokens)
                                  if reported or done.cached_tokens else None)
    if distrust:
        reported = False
        done = Done(done.finish_reason, None, None, 0)
    if reported:
        prompt, completion, source = int(done.prompt_tokens or 0), int(done.completion_tokens or 0), "provider"
    else:
        prompt = count_chat(parts.messages(), getattr(provider.spec, "name", ""))
        completion, source = provider.count_tokens(answer), "estimate"
    if not reported or provider.kind == "local":
        ours = prompt  # the same tokenizer counted the parts and the whole (llama.cpp's own, or ours)
    else:
        ours = count_chat(parts.messages(), getattr(provider.spec, "name", ""))
    cached = int(done.cached_tokens or 0)
    if ours == prompt and counted <= prompt:
        return Usage(prompt, completion, system, context, question, prompt - counted, cached), source, distrust
    template = max(0, ours - counted)
    s, c, q, t = apportion(prompt, [system, context, question, template])
    return Usage(prompt, completion, s, c, q, t, cached, parts_estimated=True,
                 counted_prompt_tokens=max(ours, counted)), source, distrust


def prompt_tokens(provider: Provider, parts: PromptParts) -> int:
    """The whole prompt in the provider's tokens, chat template included (the local model renders its own)."""
    from lib.tokens import count_chat

    render = getattr(provider, "render", None)
    if render is not None and getattr(provider, "kind", "") == "local":
        return int(provider.count_tokens(render(parts.messages())[0]))
    return count_chat(parts.messages(), getattr(provider.spec, "name", ""))


def does_not_fit(arm: Arm, provider: Provider, parts: PromptParts, params: GenParams,
                 windows: tuple[tuple[str, int], ...] = ()) -> ArmResult | None:
    """The long-context arm's answer when the knowledge base does not fit the model's context window (the model
    is not called: the error gives the token count and the window, the usage has no completion tokens); None when
    it fits, or the window is unknown (then the model is asked and the server has the last word)."""
    from lib.context_windows import window_of

    window, source = window_of(provider, windows)
    if window is None:
        return None
    tokens = prompt_tokens(provider, parts)
    if tokens + params.max_tokens <= window:
        return None
    count = provider.count_tokens
    system, question = count(parts.system), count(parts.question)
    context = count(parts.context) if parts.context else 0
    usage = Usage(tokens, 0, system, context, question, max(0, tokens - system - context - question))
    return ArmResult(arm.key, arm.label, provider.spec.label, provider.kind, "", (), usage, "estimate", 0.0,
                     "not sent: nothing was charged", 0.0, None, None, 0.0, None,
                     f"The knowledge base does not fit in {provider.spec.label}'s context window: the prompt would be "
                     f"{tokens:,} tokens, plus {params.max_tokens:,} for the answer, and the window is {window:,} "
                     f"tokens ({source}). The model was not asked. Use retrieval (RAG), a smaller knowledge base, or "
                     "a model with a larger window.")


def run_arm(arm: Arm, provider: Provider | Exception, question: str, sources: list[Source] | None,
            params: GenParams, retrieval_ms: float = 0.0, on_delta: OnEvent | None = None,
            on_status: OnStatus | None = None, documents: tuple[Source, ...] | None = None,
            windows: tuple[tuple[str, int], ...] = ()) -> ArmResult:
    """One arm, start to finish; any failure becomes `error` on the result, never an exception. `documents`: the
    whole knowledge base (`whole_knowledge_base`), for the long-context arm; `windows`: context windows that
    override the known ones (WORKBENCH_CONTEXT_WINDOWS)."""
    from lib.pricing import cost_for

    if arm.whole_kb:
        parts = build_prompt_all(question, documents or ())
        shown = tuple(documents or ())
    else:
        parts = build_prompt(question, sources)
        shown = tuple(sources or ())
    if isinstance(provider, Exception):
        return ArmResult(arm.key, arm.label, "", "", "", shown, None, "estimate", None, "", retrieval_ms,
                         None, None, 0.0, None, explain(provider))
    if arm.whole_kb:
        try:
            refused = does_not_fit(arm, provider, parts, params, windows)
        except Exception as exc:
            return ArmResult(arm.key, arm.label, provider.spec.label, provider.kind, "", shown, None, "estimate",
                             None, "", 0.0, None, None, 0.0, None, explain(exc, provider.spec.name))
        if refused is not None:
            return refused
        widen = getattr(provider, "with_context", None)  # a local model reads the whole prompt: room for it
        if widen is not None:
            provider = widen(prompt_tokens(provider, parts) + params.max_tokens)
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
    notes: tuple[str, ...] = ()
    if kind != "local" and (done is None or done.finish_reason is None):
        notes = ("The stream ended without a finish reason: the answer may be cut off.",)
    try:  # whatever the provider reported, a failure here is this arm's alone
        usage, usage_source, distrust = _usage(provider, parts, done or Done(None, None, None), answer,
                                               params.max_tokens)
        cost, note = cost_for(provider.spec, usage)
    except Exception as exc:
        return ArmResult(arm.key, arm.label, model, kind, answer, shown, None, "estimate", None, "", retrieval_ms,
                         None, None, (started - asked) * 1000, None,
                         f"The usage {model} reported could not be read ({explain(exc)}); the answer is not scored.")
    if distrust:
        notes = (*notes, f"The server reported usage that cannot be right ({distrust}): the tokens were counted "
                         "here instead, and the figures are estimated.")
    return ArmResult(
        arm=arm.key, label=arm.label, model=model, provider=kind, answer=answer, sources=shown, usage=usage,
        usage_source=usage_source, cost_usd=cost, cost_note=note, retrieval_ms=retrieval_ms,
        ttft_ms=retrieval_ms + ((first or end) - started) * 1000, total_ms=retrieval_ms + (end - started) * 1000,
        queued_ms=(started - asked) * 1000, finish_reason=done.finish_reason if done else None, error=None,
        warnings=notes, batch_size=done.batch_size if done else None)


def compare(question: str, arm_keys: list[str] | tuple[str, ...], kb: KnowledgeBase | None,
            providers: dict[str, Provider | Exception], params: GenParams = GenParams(),
            retrieval: RetrievalParams = RetrievalParams(), on_delta: OnEvent | None = None,
            on_status: OnStatus | None = None, windows: tuple[tuple[str, int], ...] = ()) -> Comparison:
    """Retrieve once, then run every chosen arm on the same inputs: hosted arms concurrently, local
    arms one after another through the shared local model's queue (each timed from when its turn starts; they
    form one group, so they never share a batch and each is timed as if asked alone on an idle server). The
    long-context arm gets the whole knowledge base instead of retrieved sources."""
    if not question.strip():
        raise UserError("Ask a question first.")
    unknown = [k for k in arm_keys if k not in ARMS]
    if unknown:
        raise UserError(f"Unknown arm(s) {', '.join(unknown)}: use {', '.join(ARMS)}.")
    arms = [ARMS[k] for k in arm_keys]
    sources: list[Source] = []
    retrieval_ms = 0.0
    if any(a.retrieval for a in arms) and kb is not None:
        t0 = time.monotonic()
        sources = kb.query(question, retrieval.top_k, retrieval.min_score)
        retrieval_ms = (time.monotonic() - t0) * 1000
    documents = whole_knowledge_base(kb) if any(a.whole_kb for a in arms) else None
    missing = KeyError("no model")
    comparison_id = uuid.uuid4().hex[:12]

    def in_group(*args: Any) -> ArmResult:
        with comparison_group(comparison_id):
            return run_arm(*args)

    with ThreadPoolExecutor(max_workers=max(1, len(arms)), thread_name_prefix="arm") as pool:
        futures = [pool.submit(in_group, arm, providers.get(arm.role, missing), question,
                               sources if arm.retrieval else None, params,
                               retrieval_ms if arm.retrieval else 0.0, on_delta, on_status, documents, windows)
                   for arm in arms]
        results = tuple(f.result() for f in futures)
    return Comparison(id=comparison_id, question=question.strip(), created_at=time.time(),
                      collection=kb.name if kb else "", retrieval=retrieval, params=params,
                      sources=tuple(sources), retrieval_ms=retrieval_ms, results=results)
