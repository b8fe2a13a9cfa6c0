"""Why a wrong answer was wrong: failure modes after Barnett et al. 2024, "Seven Failure Points When
Engineering a Retrieval Augmented Generation System", measured on the user's own documents.

Each graded answer gets at most one mode (None for a correct answer, and for a correct refusal):

- ``missing_content``: the documents do not answer the question and the arm answered anyway (fabrication);
- ``missed_top_ranked``: the expected source was not among the retrieved chunks but is in the retriever's top 20
  (a higher top-k, or a reranker, would reach it);
- ``missed_retrieval``: the expected source is not even in the top 20 (a chunking or embedding problem);
- ``not_extracted``: the expected source was in the prompt and the answer is still wrong;
- ``wrong_format``: the content is right but the answer breaks the required format (the question set's);
- ``incomplete``: part of the reference's claims are in the answer, part missing;
- ``not_known``: an arm without retrieval does not know the answer (its model was never given the source);
- ``request_failed``: the request failed, so there is no answer to judge;
- ``unclassified``: wrong, with no expected source to tell retrieval from reading.

The expected source is the question set's ``source``, or else the chunk that best supports the reference
(which one is recorded with the answer). Pure functions: no model is asked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

TOP_N = 20  # how deep the retriever is asked, to tell "missed the top-ranked" from "not retrievable"

MODES: dict[str, str] = {
    "missing_content": "answered a question the documents do not answer (fabrication)",
    "missed_top_ranked": "the right source was not retrieved, but is in the top 20: a higher top-k or a reranker "
                         "would reach it",
    "missed_retrieval": "the right source is not even in the top 20: a chunking or embedding problem",
    "not_retrieved": "the right source was not retrieved (not checked against the top 20)",
    "not_extracted": "the right source was in the prompt and the answer is still wrong",
    "wrong_format": "the right answer in the wrong format",
    "incomplete": "part of the reference's facts, part missing",
    "not_known": "no retrieval, and the model does not know it",
    "request_failed": "the request failed",
    "unclassified": "wrong, with no expected source to tell retrieval from reading",
}
LABELS: dict[str, str] = {
    "missing_content": "missing content (fabricated)", "missed_top_ranked": "missed the top-ranked",
    "missed_retrieval": "not in the top 20", "not_retrieved": "not retrieved", "not_extracted": "not extracted", "wrong_format": "wrong format",
    "incomplete": "incomplete", "not_known": "not known (no retrieval)", "request_failed": "request failed",
    "unclassified": "unclassified",
}
# What fine-tuning can address, and what it cannot (the Decide page's reasons say so).
FINE_TUNING_CAN_FIX = ("wrong_format", "not_extracted", "not_known", "incomplete")
FINE_TUNING_CANNOT_FIX = ("missing_content", "missed_top_ranked", "missed_retrieval", "not_retrieved")
RETRIEVAL_MODES = ("missed_top_ranked", "missed_retrieval", "not_retrieved")


def classify(*, correct: bool, answerable: bool, fabricated: bool = False, error: str | None = None,
             context: str = "none", expected_source: str = "", prompt_documents: Iterable[str] = (),
             expected_rank: int | None = None, partial: bool = False, format_ok: bool | None = None,
             rank_measured: bool = True) -> str | None:
    """The failure mode of one graded answer (None when it is right).

    context: what the arm's prompt held: "none" (no retrieval), "retrieved" (top-k chunks) or "all" (the whole
    knowledge base, the long-context arm). prompt_documents: the documents of the chunks in the prompt.
    expected_rank: the expected source's first rank in the retriever's top TOP_N (1-based), None if absent or
    not measured (then `rank_measured` is False). partial: some but not all of the reference's claims are in the
    answer. format_ok: False when a required format is broken (None when no format is required)."""
    if error:
        return "request_failed"
    if not answerable:
        return "missing_content" if fabricated else None
    if correct:
        return "wrong_format" if format_ok is False else None
    if context == "retrieved":
        if expected_source and expected_source not in set(prompt_documents):
            if not rank_measured:
                return "not_retrieved"
            return "missed_top_ranked" if expected_rank is not None else "missed_retrieval"
        if partial:
            return "incomplete"
        return "not_extracted" if expected_source else "unclassified"
    if partial:
        return "incomplete"
    if context == "all":
        return "not_extracted"
    return "not_known"


def is_partial(correct: bool, refused: bool, score: float, reason: str) -> bool:
    """A wrong answer that has part of the reference's claims and misses the rest (not a hedge between values,
    a swap or the opposite claim: those are wrong, not incomplete)."""
    if correct or refused or not 0 < score < 1:
        return False
    return not any(word in reason for word in ("conflicting", "opposite", "swaps", "another unit", "neither"))


def rank_of(document: str, ranked_documents: Iterable[str]) -> int | None:
    """1-based rank of the first chunk of `document` among the retriever's ranked chunks' documents."""
    for i, d in enumerate(ranked_documents, 1):
        if d == document:
            return i
    return None


def counts(modes: Iterable[str | None]) -> dict[str, int]:
    """mode -> count, for the modes that occur (the `failure_modes` of a per-arm summary)."""
    out: dict[str, int] = {}
    for m in modes:
        if m:
            out[m] = out.get(m, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: list(MODES).index(kv[0]) if kv[0] in MODES else 99))


def retrieval_share(per_arm: dict[str, dict[str, Any]], arms: Iterable[str] = ("rag", "hybrid")) -> tuple[int, int]:
    """(wrong answers whose source retrieval missed, wrong answers) over the retrieval arms of a run."""
    missed = wrong = 0
    for arm in arms:
        modes = (per_arm.get(arm) or {}).get("failure_modes") or {}
        wrong += sum(v for k, v in modes.items() if k not in ("request_failed",))
        missed += sum(modes.get(k, 0) for k in RETRIEVAL_MODES)
    return missed, wrong


# ---------------------------------------------------------------- a format the question set requires

HOUSE = "house"  # one line with the answer, then a line starting with "Reason:"


def format_ok(answer: str, required: str) -> bool | None:
    """Whether an answer keeps the format a question requires: "house" (the house style), "re:PATTERN" (the
    whole answer matches the regular expression), "one-line" or "number" (the answer is a number); None when no
    format is required."""
    required = (required or "").strip()
    if not required:
        return None
    text = answer.strip()
    if required == HOUSE:
        lines = [line for line in text.splitlines() if line.strip()]
        return len(lines) == 2 and lines[1].lstrip().lower().startswith("reason:")
    if required == "one-line":
        return bool(text) and "\n" not in text
    if required == "number":
        return re.fullmatch(r"[-+]?[$€£]?\d[\d,]*(\.\d+)?\s*%?", text) is not None
    if required.startswith("re:"):
        try:
            return re.fullmatch(required[3:], text, re.S) is not None
        except re.error:
            return None
    return None
