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

from lib.errors import UserError
from lib.grading import normalise, quantities
from lib.records import Question


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
    retrain_s: float | None  # the fine-tuned model's training time: measured, or estimated for this KB
    replacements: int
    retrain_note: str = ""  # which: "measured ..." or "estimated ..." (lib.projection.training_time)

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
        arms: list[str], max_tokens: int = 96, top_k: int = 4, retrain_s: float | None = None,
        retrain_note: str = "") -> FreshnessResult:
    """Edit, re-index into a temporary copy, ask the arms, delete the copy."""
    from lib import engine
    from lib.chunking import DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS
    from lib.documents import Document
    from lib.records import GenParams
    from lib.store import copy_knowledge_base, delete_knowledge_base, document_text

    if not find or find == replace:
        raise UserError("Say what to find and a different value to put in its place.")
    original = document_text(kb, document)
    edited, count = edit_text(original, find, replace)
    if count == 0:
        raise UserError(f"{find!r} does not occur in {document} as a separate word or number; pick text that does.")
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
    return FreshnessResult(document, find, replace, question, out, reindex_s, retrain_s, count, retrain_note)


def retrain_time(workspace: Any, settings: Any, collection: str) -> Any:
    """How long retraining the fine-tuned model in use takes (lib.projection.TrainingTime): measured when it
    was trained on this knowledge base, else estimated for fine-tuning on it on this machine, saying which."""
    from lib.engine import resolve_finetuned
    from lib.projection import TrainingTime, training_time

    spec = resolve_finetuned(settings, workspace).finetuned
    if spec is None:
        return TrainingTime(None, None, False, "no fine-tuned model is configured")
    return training_time(workspace, spec.label, collection)


def retrain_sentence(result: FreshnessResult) -> str:
    """The re-indexing time against the retraining time, in words (the page and the CLI say the same)."""
    text = f"Re-indexing the edited document took {result.reindex_s:.2f} s"
    if result.retrain_s:
        text += f"; retraining the fine-tuned model: about {result.retrain_s / 60:.0f} min ({result.retrain_note})"
    return text + "."


def _key(collection: str) -> str:
    return f"freshness:{collection}"


def save(workspace: Any, collection: str, result: FreshnessResult) -> None:
    """Keep a knowledge base's latest freshness result in the workspace (the Decide page and report read it)."""
    import json

    workspace.set_meta(_key(collection), json.dumps(result.by_arm()))


def stored(workspace: Any, collection: str) -> dict[str, dict[str, Any]] | None:
    """The latest freshness result of a knowledge base, by arm ({"follows_change", "keeps_old"}), or None."""
    import json

    raw = workspace.meta(_key(collection))
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def run_and_record(settings: Any, workspace: Any, kb: Any, document: str, find: str, replace: str, question: str,
                   arms: list[str], max_tokens: int = 96, top_k: int | None = None) -> FreshnessResult:
    """The use case the Decide page and the CLI share: run the test with the fine-tuned model in force, state its
    retraining time (measured or estimated, saying which), and keep the result for the decision."""
    from lib.engine import resolve_finetuned

    settings = resolve_finetuned(settings, workspace)
    retrain = retrain_time(workspace, settings, kb.name)
    result = run(settings, kb, document, find, replace, question, arms, max_tokens,
                 top_k if top_k is not None else settings.default_top_k, retrain.seconds, retrain.note)
    save(workspace, kb.name, result)
    return result
