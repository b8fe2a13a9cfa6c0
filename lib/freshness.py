"""The freshness test: change one fact in one document and see which arms follow.

The edited document goes into a temporary copy of the knowledge base (the user's own is never
touched); the arms are asked there; the copy is deleted afterwards. It reports which arms give
the new value and which keep the old one, and how long re-indexing took against how long
retraining the fine-tuned model would take (its measured training time).
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from lib.evaluate import Question
from lib.grading import normalise, quantities


@dataclass(frozen=True)
class ArmFreshness:
    arm: str
    answer: str
    follows_change: bool  # the answer contains the new value
    keeps_old: bool  # the answer contains the old value
    error: str | None = None


@dataclass(frozen=True)
class FreshnessResult:
    document: str
    find: str
    replace: str
    question: str
    arms: tuple[ArmFreshness, ...]
    reindex_s: float
    retrain_s: float | None  # the fine-tuned model's measured training time, when known
    replacements: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def by_arm(self) -> dict[str, dict[str, Any]]:
        return {a.arm: {"follows_change": a.follows_change, "keeps_old": a.keeps_old} for a in self.arms}


def contains_value(answer: str, value: str) -> bool:
    """Whether an answer states `value`: numbers compared as numbers ("sixty" = 60), text as words."""
    wanted = quantities(value)
    if wanted:
        got = quantities(answer)
        return any(abs(g.value - w.value) < 1e-9 for g in got for w in wanted)
    text = normalise(answer)
    key = normalise(value).strip()
    return bool(key) and re.search(r"(?<![\w])" + re.escape(key) + r"(?![\w])", text) is not None


def suggest(questions: list[Question], documents: list[str]) -> tuple[Question, str, str] | None:
    """A question whose reference holds a number, from a document in the knowledge base, with the number
    changed (45 -> 60): (question, old, new)."""
    for q in questions:
        if not q.answerable or q.source not in documents:
            continue
        numbers = [k for k in q.keywords if re.fullmatch(r"\d+", k)] or \
            [str(int(x.value)) for x in quantities(q.answer) if x.value == int(x.value) and x.value >= 2]
        if numbers:
            old = numbers[0]
            value = int(old)
            return q, old, str(value + max(1, round(value / 3)))
    return None


def edit_text(text: str, find: str, replace: str) -> tuple[str, int]:
    """Replace `find` where it stands alone (45 is not the 45 in 145), counting the replacements."""
    pattern = (r"(?<![\w.])" if find[:1].isalnum() else "") + re.escape(find) + (r"(?![\w])" if find[-1:].isalnum()
                                                                                else "")
    return re.subn(pattern, replace, text)


def run(settings: Any, kb: Any, document: str, find: str, replace: str, question: str,
        arms: list[str], max_tokens: int = 96, top_k: int = 4, retrain_s: float | None = None) -> FreshnessResult:
    """Edit, re-index into a temporary copy, ask the arms, delete the copy."""
    from lib import engine
    from lib.chunking import DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS
    from lib.documents import Document
    from lib.providers import GenParams
    from lib.store import copy_knowledge_base, delete_knowledge_base, document_text

    if not find or find == replace:
        raise ValueError("Say what to find and a different value to put in its place.")
    original = document_text(kb, document)
    edited, count = edit_text(original, find, replace)
    if count == 0:
        raise ValueError(f"{find!r} does not occur in {document} as a separate word or number; pick text that does.")
    temp_name = f"fresh-{uuid.uuid4().hex[:10]}"
    copy = copy_knowledge_base(kb, temp_name)
    try:
        kind = next((d.kind for d in kb.documents() if d.name == document), "txt")
        doc = Document(document, edited, kind, hashlib.sha256(edited.encode()).hexdigest(), len(edited.encode()))
        t0 = time.monotonic()
        result = engine.ingest_document(copy, document, lambda: doc, DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS)
        reindex_s = time.monotonic() - t0
        if result.status not in ("replaced", "ingested"):
            raise RuntimeError(f"re-indexing the edited document failed: {result.error or result.status}")
        comparison = engine.ask(settings, question, arms, copy, GenParams(max_tokens=max_tokens), top_k=top_k)
    finally:
        delete_knowledge_base(kb.client, temp_name)
    out = tuple(ArmFreshness(r.arm, r.answer, r.error is None and contains_value(r.answer, replace),
                             r.error is None and contains_value(r.answer, find), r.error) for r in comparison.results)
    return FreshnessResult(document, find, replace, question, out, reindex_s, retrain_s, count)


def retrain_seconds(workspace: Any, settings: Any) -> float | None:
    """The measured training time of the fine-tuned model in use (None when unknown)."""
    from lib.engine import resolve_finetuned

    spec = resolve_finetuned(settings, workspace).finetuned
    if spec is None:
        return None
    model = next((m for m in workspace.models() if m.spec == spec), None)
    return None if model is None else model.train_seconds
