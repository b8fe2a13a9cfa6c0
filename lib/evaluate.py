"""Fact accuracy of each arm on a question file with reference keywords."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.arms import Comparison
from lib.format import citations


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    keywords: tuple[str, ...]
    answer: str = ""
    source: str = ""


def load_questions(path: str | Path) -> list[Question]:
    out = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            q = json.loads(line)
            out.append(Question(q["id"], q["question"], tuple(q["keywords"]), q.get("answer", ""), q.get("source", "")))
    return out


def _contains(answer: str, keyword: str) -> bool:
    """Case-insensitive; a keyword that starts or ends with a digit must not be part of a longer number
    ("12" does not match "120"), and "1,250" matches "1250"."""
    text = answer.lower().replace(",", "")
    key = keyword.lower().replace(",", "")
    left = r"(?<![\d.])" if key[:1].isdigit() else ""
    right = r"(?![\d])" if key[-1:].isdigit() else ""
    return re.search(left + re.escape(key) + right, text) is not None


def is_correct(answer: str, keywords: tuple[str, ...] | list[str]) -> bool:
    return bool(answer.strip()) and all(_contains(answer, k) for k in keywords)


def follows_house_style(answer: str) -> bool:
    """One answer line, then a line starting with 'Reason:' (the style the shipped adapter is trained on)."""
    lines = [line for line in answer.strip().splitlines() if line.strip()]
    return len(lines) == 2 and lines[1].lstrip().lower().startswith("reason:")


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


def grade(question: Question, comparison: Comparison) -> list[Graded]:
    out = []
    for r in comparison.results:
        valid = [n for n in citations(r.answer) if 1 <= n <= len(r.sources)]
        out.append(Graded(question, r.arm, r.answer, r.error is None and is_correct(r.answer, question.keywords),
                          bool(valid), follows_house_style(r.answer), r.error, r.total_ms))
    return out


def summarise(graded: list[Graded]) -> dict[str, dict[str, Any]]:
    """Per arm: n, accuracy, citation rate, house-style rate, errors, median latency."""
    out: dict[str, dict[str, Any]] = {}
    for arm in dict.fromkeys(g.arm for g in graded):
        rows = [g for g in graded if g.arm == arm]
        times = sorted(g.total_ms for g in rows if g.total_ms is not None)
        out[arm] = {
            "n": len(rows),
            "correct": sum(g.correct for g in rows),
            "accuracy": sum(g.correct for g in rows) / len(rows),
            "cites": sum(g.cites for g in rows) / len(rows),
            "house_style": sum(g.house_style for g in rows) / len(rows),
            "errors": sum(g.error is not None for g in rows),
            "median_total_ms": times[len(times) // 2] if times else None,
        }
    return out


def run(questions: list[Question], ask: Callable[[str], Comparison],
        on_progress: Callable[[int, int, list[Graded]], None] | None = None) -> list[Graded]:
    graded: list[Graded] = []
    for i, q in enumerate(questions, 1):
        rows = grade(q, ask(q.question))
        graded += rows
        if on_progress:
            on_progress(i, len(questions), rows)
    return graded
