"""Accuracy, refusals, fabrication, citations and latency of each arm on a question set, graded by
lib.grading (offline: the claim an answer makes against the reference's, refusals by meaning, citations
checked against the answer's own claim)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lib.format import citations
from lib.records import ArmResult, Graded, Question


def load_questions(path: str | Path) -> list[Question]:
    """The questions of a JSONL file (the shipped sample set's shape: `answer` is the reference)."""
    return [Question.from_row(json.loads(line), n) for n, line in enumerate(Path(path).read_text().splitlines(), 1)
            if line.strip()]


def is_correct(answer: str, keywords: tuple[str, ...] | list[str]) -> bool:
    """Every keyword present (numbers compared as numbers, "thirty" = 30; see lib.grading)."""
    from lib.grading import grade_answer

    return grade_answer("", "", answer, list(keywords)).correct


def follows_house_style(answer: str) -> bool:
    """One answer line, then a line starting with 'Reason:' (the style the shipped adapter is trained on)."""
    lines = [line for line in answer.strip().splitlines() if line.strip()]
    return len(lines) == 2 and lines[1].lstrip().lower().startswith("reason:")


def citation_ok_of(citations: str | None) -> bool | None:
    """The older yes/no/none view of a citation grade."""
    return {"correct": True, "wrong": False}.get(citations or "none")


def grade_result(question: Question, result: ArmResult, similarity: Callable[[str, str], float] | None = None,
                 expected: dict[str, Any] | None = None) -> Graded:
    """One arm's answer graded against the question's reference, with its failure mode when wrong. `expected`: the
    expected source ({"source", "from", "rank"}: its rank in the retriever's top 20, measured by an evaluation run);
    without it the question set's source is used and retrieval misses are not told apart."""
    from lib.arms import ARMS
    from lib.failures import classify, format_ok, is_partial
    from lib.grading import grade_answer, grade_citations, grounded

    expected = expected or ({"source": question.source, "from": "question set"} if question.source else None)
    r = result
    valid = [n for n in citations(r.answer) if 1 <= n <= len(r.sources)]
    texts = [s.text for s in r.sources]
    if r.error is not None:
        g, cites, cite_why = None, None, ""
    else:
        g = grade_answer(question.question, question.answer, r.answer, question.keywords, question.answerable,
                         similarity)
        cites, cite_why = grade_citations(question.question, r.answer, texts, similarity)
    arm = ARMS.get(r.arm)
    retrieval = arm.retrieval if arm is not None else bool(r.sources)
    correct, refused, score, why = bool(g and g.correct), bool(g and g.refused), g.score if g else 0.0, \
        g.reason if g else ""
    fmt = format_ok(r.answer, question.format) if g else None
    if correct and fmt is False:  # the right content in the wrong format is not a right answer
        correct, why = False, f"{why}; but it breaks the required format ({question.format})"
    mode = classify(correct=correct, answerable=question.answerable, fabricated=bool(g and g.fabricated),
                    error=r.error, context=arm.context if arm is not None else ("retrieved" if retrieval else "none"),
                    expected_source=(expected or {}).get("source", ""),
                    prompt_documents=[s.document for s in r.sources],
                    expected_rank=(expected or {}).get("rank"),
                    rank_measured=bool(expected and "rank" in expected),
                    partial=is_partial(correct, refused, score, why), format_ok=fmt)
    return Graded(
        question, r.arm, r.answer, correct, bool(valid), follows_house_style(r.answer), r.error,
        r.total_ms, score=score, refused=refused,
        fabricated=bool(g and g.fabricated), reason=why if g else f"request failed: {r.error}",
        citation_ok=citation_ok_of(cites) if question.answerable else None,
        grounded=grounded(r.answer, r.sources)[0] if retrieval and r.error is None and r.sources else None,
        retrieval_hit=(any(s.document == expected["source"] for s in r.sources)
                       if retrieval and expected and expected.get("source") else None),
        cost_usd=r.cost_usd, prompt_tokens=r.usage.prompt_tokens if r.usage else None,
        completion_tokens=r.usage.completion_tokens if r.usage else None, citations=cites,
        citation_reason=cite_why, failure_mode=mode, expected=expected)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% confidence interval of a proportion (Wilson score): honest for small n and for 0 or n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    i = (len(values) - 1) * q
    lo, hi = math.floor(i), math.ceil(i)
    return values[lo] + (values[hi] - values[lo]) * (i - lo)


def _rate(flags: list[bool | None]) -> float | None:
    known = [f for f in flags if f is not None]
    return sum(known) / len(known) if known else None


def _share(values: list[str | None], which: str) -> float | None:
    known = [v for v in values if v is not None]
    return sum(v == which for v in known) / len(known) if known else None


def summarise(graded: list[Graded]) -> dict[str, dict[str, Any]]:
    """Per arm: accuracy on answerable questions with its 95% interval, refusals, fabrication on unanswerable
    ones, citations (claim-checked: the shares of answers citing no source, a source that supports the answer's
    claim, or one that does not; and correct / cited), retrieval hits, latency p50/p95, tokens and cost."""
    out: dict[str, dict[str, Any]] = {}
    for arm in dict.fromkeys(g.arm for g in graded):
        rows = [g for g in graded if g.arm == arm]
        answerable = [g for g in rows if g.question.answerable and g.error is None]
        unanswerable = [g for g in rows if not g.question.answerable and g.error is None]
        times = [g.total_ms for g in rows if g.total_ms is not None]
        correct = sum(g.correct for g in answerable)
        low, high = wilson(correct, len(answerable))
        costs = [g.cost_usd for g in rows if g.cost_usd is not None]
        out[arm] = {
            "n": len(rows),
            "answerable": len(answerable),
            "correct": correct,
            "accuracy": correct / len(answerable) if answerable else None,
            "accuracy_ci95": [round(low, 4), round(high, 4)],
            # per question, for a paired comparison of two arms on the same questions (lib.decision.paired)
            "answered_ids": sorted(g.question.id for g in answerable),
            "correct_ids": sorted(g.question.id for g in answerable if g.correct),
            "refusal_rate": _rate([g.refused for g in answerable]),
            "unanswerable": len(unanswerable),
            "fabrication_rate": _rate([g.fabricated for g in unanswerable]),
            "cites": sum(g.cites for g in rows) / len(rows),
            "citation_accuracy": _rate([citation_ok_of(g.citations) if g.citations is not None else g.citation_ok
                                        for g in answerable]),
            "citations_none": _share([g.citations for g in answerable], "none"),
            "citations_correct": _share([g.citations for g in answerable], "correct"),
            "citations_wrong": _share([g.citations for g in answerable], "wrong"),
            "grounded_rate": _rate([g.grounded for g in answerable]),
            "retrieval_hit_rate": _rate([g.retrieval_hit for g in answerable]),
            "house_style": sum(g.house_style for g in rows) / len(rows),
            "errors": sum(g.error is not None for g in rows),
            "median_total_ms": _percentile(times, 0.5),
            "p95_total_ms": _percentile(times, 0.95),
            "mean_prompt_tokens": _mean([g.prompt_tokens for g in rows]),
            "mean_completion_tokens": _mean([g.completion_tokens for g in rows]),
            "cost_per_question_usd": sum(costs) / len(costs) if costs else None,
            "failure_modes": failure_counts([g.failure_mode for g in rows]),
        }
    return out


def failure_counts(modes: list[str | None]) -> dict[str, int]:
    from lib.failures import counts

    return counts(modes)


def _mean(values: list[int | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def noise_sentence(n: int) -> str:
    """What a question count implies: the half-width of a 95% interval around 50%, in points."""
    if n <= 0:
        return "No questions graded yet."
    low, high = wilson(n // 2, n)
    return (f"With {n} questions, a 95% interval around 50% spans about ±{(high - low) * 50:.0f} points: "
            f"differences between arms smaller than about {(high - low) * 50:.0f} points may be noise.")
