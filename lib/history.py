"""The flat rows that the History page's table, charts and CSV export use, one per (comparison, arm). Pure
functions over comparisons (lib.records.Comparison); they are stored by the workspace
(lib/workspace_records.History)."""

from __future__ import annotations

from typing import Any

from lib.records import Comparison

ROW_COLUMNS = [
    "id", "created_at", "collection", "question", "arm", "label", "model", "provider", "answer", "error",
    "prompt_tokens", "completion_tokens", "system_tokens", "context_tokens", "question_tokens",
    "overhead_tokens", "usage_source", "cost_usd", "cost_note", "retrieval_ms", "ttft_ms", "total_ms",
    "tokens_per_s", "top_k", "min_score", "temperature", "max_tokens", "sources",
]


def rows(comparisons: list[Comparison]) -> list[dict[str, Any]]:
    """One flat row per (comparison, arm): the shape of tables, charts and CSV export (figures as the stored
    record has them, times rounded to 0.1 ms)."""
    out = []
    for c in comparisons:
        for result in c.results:
            r, u = result.to_dict(), result.usage
            out.append({
                "id": c.id, "created_at": c.created_at, "collection": c.collection,
                "question": c.question, "arm": r["arm"], "label": r["label"], "model": r["model"],
                "provider": r["provider"], "answer": r["answer"], "error": r["error"],
                "prompt_tokens": u.prompt_tokens if u else None, "completion_tokens": u.completion_tokens if u else None,
                "system_tokens": u.system_tokens if u else None, "context_tokens": u.context_tokens if u else None,
                "question_tokens": u.question_tokens if u else None,
                "overhead_tokens": u.overhead_tokens if u else None,
                "usage_source": r["usage_source"], "cost_usd": r["cost_usd"], "cost_note": r["cost_note"],
                "retrieval_ms": r["retrieval_ms"], "ttft_ms": r["ttft_ms"], "total_ms": r["total_ms"],
                "tokens_per_s": r["tokens_per_s"], "top_k": c.retrieval.top_k,
                "min_score": c.retrieval.min_score, "temperature": c.params.temperature,
                "max_tokens": c.params.max_tokens,
                "sources": "; ".join(f"{s.document}#{s.chunk} ({s.score:.2f})" for s in result.sources),
            })
    return out


def export_csv(comparisons: list[Comparison]) -> str:
    """The History page's CSV: one row per (comparison, arm), cells that a spreadsheet would run as a formula
    neutralised (lib.format.csv_cell)."""
    from lib.format import to_csv

    return to_csv(rows(comparisons), ROW_COLUMNS)


def export_json(comparisons: list[Comparison]) -> list[dict[str, Any]]:
    """The History page's JSON download: every comparison as it is stored."""
    return [c.to_dict() for c in comparisons]
