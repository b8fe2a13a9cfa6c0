"""The value types and record shapes every layer shares: a retrieved `Source`, generation and retrieval
parameters, one arm's `ArmResult` and its `Usage`, a `Comparison`, a `Question`, its `Graded` answer, the
stored `AnswerRecord` of an evaluation run and the `RunRecord` itself.

Each record has one `to_dict` (the shape stored in the workspace, printed by the CLI and exported) and one
`from_dict` (which reads every version written so far and raises `RecordError` on another shape: a newer
version, or damage); nothing else serialises or parses them. Frozen dataclasses, no imports from the rest of
lib: any module may import this one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any


class RecordError(ValueError):
    """A stored record of another shape (written by a newer version, or damaged): skipped and counted."""


def _known(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    """The items of `d` that are fields of the dataclass `cls`."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# ---------------------------------------------------------------- what an arm is given

@dataclass(frozen=True)
class Source:
    """A retrieved chunk: what the arms saw and what citations [n] point to."""

    document: str
    chunk: int
    score: float  # cosine similarity, 1 = identical
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"document": self.document, "chunk": self.chunk, "score": self.score, "text": self.text}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Source:
        return cls(str(d["document"]), int(d["chunk"]), float(d["score"]), str(d["text"]))


@dataclass(frozen=True)
class GenParams:
    """Generation settings shared by every arm of a comparison."""

    temperature: float = 0.0
    max_tokens: int = 256
    seed: int = 42
    # Small models tend to go on to invent the next "Question:"; every arm stops there.
    stop: tuple[str, ...] = ("\nQuestion:",)
    repeat_penalty: float = 1.1  # llama.cpp only; hosted APIs have no equivalent

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GenParams:
        known = _known(cls, d)
        if "stop" in known:
            known["stop"] = tuple(known["stop"] or ())
        return cls(**known)


@dataclass(frozen=True)
class RetrievalParams:
    top_k: int = 4
    min_score: float = 0.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RetrievalParams:
        return cls(int(d["top_k"]), float(d["min_score"]))


# ---------------------------------------------------------------- what an arm returns

@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    system_tokens: int
    context_tokens: int
    question_tokens: int
    overhead_tokens: int  # chat template / message framing: prompt minus the three parts, never negative
    cached_tokens: int = 0
    # True when the four parts above are estimates scaled to `prompt_tokens`: the provider's reported prompt
    # total differed from our own count of the prompt (its tokenizer is not ours). They still sum exactly.
    parts_estimated: bool = False
    counted_prompt_tokens: int | None = None  # our own count of the whole prompt, when it differed

    @property
    def parts(self) -> dict[str, int]:
        """The prompt by part; the values always sum to `prompt_tokens`."""
        return {"system": self.system_tokens, "context": self.context_tokens, "question": self.question_tokens,
                "overhead": self.overhead_tokens}

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Usage:
        parts = {k: d.get(k, 0) for k in ("system_tokens", "context_tokens", "question_tokens", "overhead_tokens")}
        return cls(**{**_known(cls, d), **parts})


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
    queued_ms: float  # time spent waiting for a shared local model (until it joined a batch)
    finish_reason: str | None
    error: str | None
    # Things the reader should know about this answer (e.g. the fine-tuned model was trained on other documents).
    warnings: tuple[str, ...] = ()
    # What a fine-tuned model was trained on (lib.provenance.trained_on); None for a base model.
    trained_on: dict[str, Any] | None = None
    # Local model: the most requests decoded in one batch with this one, itself included (1 = served alone);
    # its times include sharing the machine with them. None for hosted models.
    batch_size: int | None = None

    # What every stored result has had since the first release; the rest has defaults.
    REQUIRED = ("arm", "label", "model", "provider", "answer", "error", "usage", "usage_source", "cost_usd",
                "cost_note", "ttft_ms", "total_ms", "sources")

    @property
    def tokens_per_s(self) -> float | None:
        if not self.usage or self.total_ms is None or self.ttft_ms is None:
            return None
        gen_s = (self.total_ms - self.ttft_ms) / 1000
        return self.usage.completion_tokens / gen_s if gen_s > 0 and self.usage.completion_tokens > 1 else None

    def to_dict(self) -> dict[str, Any]:
        """The one serialised shape of a result: the CLI's JSON (`ask --json`), the workspace's history records,
        evaluation answers and the history table all derive from it."""
        d = asdict(self)
        d["sources"] = [s.to_dict() for s in self.sources]
        for key in ("retrieval_ms", "ttft_ms", "total_ms", "queued_ms"):
            d[key] = _round(d[key])
        # from the rounded times, so that a stored result read back (`from_dict`) prints exactly the same
        d["tokens_per_s"] = _round(replace(self, ttft_ms=d["ttft_ms"], total_ms=d["total_ms"]).tokens_per_s)
        d["warnings"] = list(self.warnings)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArmResult:
        """A stored result (any version since the first release); RecordError when it is not one."""
        try:
            if not isinstance(d, dict) or not set(cls.REQUIRED) <= set(d) or not isinstance(d["sources"], list):
                raise RecordError("not an arm's result")
            usage = d["usage"]
            return cls(
                arm=str(d["arm"]), label=str(d["label"]), model=str(d["model"] or ""),
                provider=str(d["provider"] or ""), answer=str(d["answer"] or ""),
                sources=tuple(Source.from_dict(s) for s in d["sources"]),
                usage=Usage.from_dict(usage) if usage else None, usage_source=str(d["usage_source"]),
                cost_usd=d["cost_usd"], cost_note=str(d["cost_note"] or ""),
                retrieval_ms=float(d.get("retrieval_ms") or 0.0), ttft_ms=d["ttft_ms"], total_ms=d["total_ms"],
                queued_ms=float(d.get("queued_ms") or 0.0), finish_reason=d.get("finish_reason"), error=d["error"],
                warnings=tuple(d.get("warnings") or ()), trained_on=d.get("trained_on"),
                batch_size=d.get("batch_size"))
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"not an arm's result ({exc})") from None


# ---------------------------------------------------------------- a comparison (the History page's record)

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

    VERSION = 1  # the shape written by to_dict; from_dict refuses others (records of the first release had none)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.VERSION, "id": self.id, "question": self.question, "created_at": self.created_at,
            "collection": self.collection, "retrieval": asdict(self.retrieval), "params": asdict(self.params),
            "retrieval_ms": self.retrieval_ms, "sources": [s.to_dict() for s in self.sources],
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, d: Any) -> Comparison:
        """A stored comparison this version can show; RecordError for another version or shape."""
        try:
            if not isinstance(d, dict) or d.get("version", cls.VERSION) != cls.VERSION:
                raise RecordError("a comparison of another version")
            if not isinstance(d["id"], str) or not isinstance(d["question"], str) or \
                    not isinstance(d["created_at"], (int, float)) or not isinstance(d["results"], list) or \
                    not {"temperature", "max_tokens"} <= set(d["params"]):
                raise RecordError("not a comparison")
            return cls(d["id"], d["question"], float(d["created_at"]), str(d.get("collection") or ""),
                       RetrievalParams.from_dict(d["retrieval"]), GenParams.from_dict(d["params"]),
                       tuple(Source.from_dict(s) for s in d.get("sources") or ()),
                       float(d.get("retrieval_ms") or 0.0), tuple(ArmResult.from_dict(r) for r in d["results"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"not a comparison ({exc})") from None


# ---------------------------------------------------------------- evaluation: questions, grades, runs

@dataclass(frozen=True)
class Question:
    id: str
    question: str
    keywords: tuple[str, ...]
    answer: str = ""  # the reference answer
    source: str = ""  # the document that answers it
    answerable: bool = True
    format: str = ""  # a format the answer must keep ("house", "one-line", "number", "re:PATTERN"; lib.failures)

    def to_row(self) -> dict[str, Any]:
        """The row of a question set (and of a run's questions)."""
        return {"id": self.id, "question": self.question, "reference": self.answer, "keywords": list(self.keywords),
                "source": self.source, "answerable": self.answerable, **({"format": self.format} if self.format else {})}

    @classmethod
    def from_row(cls, r: dict[str, Any], n: int = 1) -> Question:
        """A question from a question set's row (`reference`, or the sample file's `answer`); `n` numbers a row
        without an id."""
        return cls(str(r.get("id") or f"q{n:03d}"), str(r["question"]), tuple(r.get("keywords") or ()),
                   str(r.get("reference") or r.get("answer") or ""), str(r.get("source") or ""),
                   bool(r.get("answerable", True)), str(r.get("format") or ""))


@dataclass(frozen=True)
class Graded:
    question: Question
    arm: str
    answer: str
    correct: bool
    cites: bool  # has a [n] citation of a retrieved source
    house_style: bool
    error: str | None
    total_ms: float | None
    score: float = 0.0
    refused: bool = False
    fabricated: bool = False
    reason: str = ""
    citation_ok: bool | None = None  # None: nothing cited (derived from `citations`)
    grounded: bool | None = None  # retrieval arms: every number in the answer is in its sources
    retrieval_hit: bool | None = None  # retrieval arms: the reference's document was among the sources
    cost_usd: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    citations: str | None = None  # none | correct | wrong: a cited source supports the answer's claim (None: error)
    citation_reason: str = ""
    failure_mode: str | None = None  # why a wrong answer was wrong (lib.failures); None when it is right
    expected: dict[str, Any] | None = None  # the expected source: {"source", "from", "rank" in the top 20}

    def to_dict(self) -> dict[str, Any]:
        """One graded answer as `python -m lib eval --json` prints it (with the run's id in front)."""
        return {"id": self.question.id, "arm": self.arm, "correct": self.correct, "score": self.score,
                "refused": self.refused, "fabricated": self.fabricated, "reason": self.reason, "cites": self.cites,
                "citation_ok": self.citation_ok, "citations": self.citations, "retrieval_hit": self.retrieval_hit,
                "house_style": self.house_style, "answer": self.answer, "error": self.error,
                "total_ms": self.total_ms, "cost_usd": self.cost_usd, "failure_mode": self.failure_mode,
                "expected_source": (self.expected or {}).get("source")}

    def grade_dict(self) -> dict[str, Any]:
        return {"correct": self.correct, "score": self.score, "refused": self.refused, "fabricated": self.fabricated,
                "reason": self.reason, "cites": self.cites, "citation_ok": self.citation_ok,
                "citations": self.citations, "citation_reason": self.citation_reason, "grounded": self.grounded,
                "retrieval_hit": self.retrieval_hit, "house_style": self.house_style,
                "failure_mode": self.failure_mode}


@dataclass(frozen=True)
class AnswerRecord:
    """One evaluated answer as a run stores it: the question, the arm's result and its grade; `capped` when the
    spend cap refused it before anything was sent (asked again on Resume), `judge` the LLM judge's verdict
    ({"correct", "reason"}, or {"error"[, "capped"]})."""

    graded: Graded
    result: ArmResult
    capped: bool = False
    judge: dict[str, Any] | None = None

    VERSION = 1

    @property
    def question(self) -> Question:
        return self.graded.question

    @property
    def arm(self) -> str:
        return self.graded.arm

    def to_dict(self) -> dict[str, Any]:
        g, q = self.graded, self.graded.question
        d = {"version": self.VERSION, "question_id": q.id, "question": q.question, "reference": q.answer,
             "keywords": list(q.keywords), "answerable": q.answerable, "source": q.source, "arm": g.arm,
             "result": self.result.to_dict(), "grade": g.grade_dict(), "failure_mode": g.failure_mode,
             "expected": g.expected, "format": q.format}
        if self.capped:
            d["capped"] = True
        if self.judge is not None:
            d["judge"] = self.judge
        return d

    @classmethod
    def from_dict(cls, d: Any) -> AnswerRecord:
        try:
            if not isinstance(d, dict) or d.get("version") != cls.VERSION:
                raise RecordError("an answer record of another version")
            q = Question(str(d["question_id"]), str(d["question"]), tuple(d.get("keywords") or ()),
                         str(d.get("reference") or ""), str(d.get("source") or ""), bool(d.get("answerable", True)),
                         str(d.get("format") or ""))
            result = ArmResult.from_dict(d["result"])
            g = d["grade"]
            usage = result.usage
            graded = Graded(
                q, str(d["arm"]), result.answer, bool(g["correct"]), bool(g["cites"]), bool(g["house_style"]),
                result.error, result.total_ms, score=g["score"], refused=g["refused"], fabricated=g["fabricated"],
                reason=g["reason"], citation_ok=g["citation_ok"], grounded=g["grounded"],
                retrieval_hit=g["retrieval_hit"], cost_usd=result.cost_usd,
                prompt_tokens=usage.prompt_tokens if usage else None,
                completion_tokens=usage.completion_tokens if usage else None, citations=g.get("citations"),
                citation_reason=g.get("citation_reason", ""), failure_mode=g.get("failure_mode"),
                expected=d.get("expected"))
            judge = d.get("judge")
            return cls(graded, result, bool(d.get("capped")), judge if isinstance(judge, dict) else None)
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"not an answer record ({exc})") from None


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
    params: dict[str, int | None] = field(default_factory=dict)  # role -> a local model's parameters (its GGUF)
    # role -> the model exactly (provider, name, LoRA adapter, endpoint): a resume must use the same ones; runs
    # recorded before it was kept have none (their models and providers say each role's label and kind)
    model_specs: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["arms"] = list(self.arms)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        known = _known(cls, d)
        known["arms"] = tuple(known.get("arms") or ())
        for key in ("name", "question_set", "collection"):
            known.setdefault(key, "")
        return cls(**known)


@dataclass(frozen=True)
class RunRecord:
    """An evaluation run as the workspace keeps it: its spec and questions, its state, and how many answers are
    stored."""

    id: str
    name: str
    created_at: float
    updated_at: float
    status: str  # running | finished | cancelled | failed | capped | interrupted
    spec: RunSpec
    questions: tuple[Question, ...]
    finished_at: float | None = None
    error: str | None = None
    answered: int = 0

    VERSION = 1

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.VERSION, "id": self.id, "name": self.name, "created_at": self.created_at,
                "updated_at": self.updated_at, "status": self.status, "spec": self.spec.to_dict(),
                "questions": [q.to_row() for q in self.questions], "finished_at": self.finished_at,
                "error": self.error, "answered": self.answered}

    @classmethod
    def from_dict(cls, d: Any) -> RunRecord:
        try:
            if not isinstance(d, dict) or d.get("version", cls.VERSION) != cls.VERSION:
                raise RecordError("a run of another version")
            return cls(str(d["id"]), str(d["name"]), float(d["created_at"]), float(d["updated_at"]), str(d["status"]),
                       RunSpec.from_dict(d["spec"]),
                       tuple(Question.from_row(r, n) for n, r in enumerate(d["questions"], 1) if "error" not in r),
                       d.get("finished_at"), d.get("error"), int(d.get("answered") or 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"not a run record ({exc})") from None
