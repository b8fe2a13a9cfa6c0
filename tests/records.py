"""Typed records for tests that build a run by hand: a partial result and grade are completed with the defaults
of an answered question, then read through the records' own `from_dict` (the one parser of each shape)."""

from __future__ import annotations

from typing import Any

from lib.records import AnswerRecord, RunSpec


def answer(arm: str, result: dict[str, Any], grade: dict[str, Any] | None = None, qid: str = "q1",
           question: str = "How long?", reference: str = "45 days", source: str = "refund_policy.md",
           answerable: bool = True, keywords: tuple[str, ...] = ("45",)) -> AnswerRecord:
    full = {"arm": arm, "label": arm, "model": "", "provider": "", "answer": "", "sources": [], "usage": None,
            "usage_source": "provider", "cost_usd": 0.0, "cost_note": "", "retrieval_ms": 0.0, "ttft_ms": None,
            "total_ms": None, "queued_ms": 0.0, "finish_reason": "stop", "error": None, **result}
    g = {"correct": False, "score": 0.0, "refused": False, "fabricated": False, "reason": "", "cites": False,
         "citation_ok": None, "grounded": None, "retrieval_hit": None, "house_style": False, **(grade or {})}
    return AnswerRecord.from_dict({"version": AnswerRecord.VERSION, "question_id": qid, "question": question,
                                   "reference": reference, "keywords": list(keywords), "answerable": answerable,
                                   "source": source, "arm": arm, "result": full, "grade": g})


def spec(**fields: Any) -> RunSpec:
    """A run's spec from keyword fields (lists become tuples, as the stored shape reads back)."""
    return RunSpec.from_dict(fields)
