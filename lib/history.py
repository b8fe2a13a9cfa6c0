"""The shape of a comparison record and the flat rows that tables, charts and CSV
export use. Pure functions: records are stored by the workspace (lib/workspace.py)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from lib.arms import Comparison

RECORD_VERSION = 1  # the shape written by comparison_to_dict; readers skip other versions

ROW_COLUMNS = [
    "id", "created_at", "collection", "question", "arm", "label", "model", "provider", "answer", "error",
    "prompt_tokens", "completion_tokens", "system_tokens", "context_tokens", "question_tokens",
    "overhead_tokens", "usage_source", "cost_usd", "cost_note", "retrieval_ms", "ttft_ms", "total_ms",
    "tokens_per_s", "top_k", "min_score", "temperature", "max_tokens", "sources",
]
_RESULT_KEYS = {"arm", "label", "model", "provider", "answer", "error", "usage", "usage_source", "cost_usd",
                "cost_note", "ttft_ms", "total_ms", "sources"}


def comparison_to_dict(c: Comparison) -> dict[str, Any]:
    return {
        "version": RECORD_VERSION, "id": c.id, "question": c.question, "created_at": c.created_at,
        "collection": c.collection, "retrieval": asdict(c.retrieval), "params": asdict(c.params),
        "retrieval_ms": c.retrieval_ms, "sources": [asdict(s) for s in c.sources],
        "results": [r.to_dict() for r in c.results],
    }


def is_valid_record(c: Any) -> bool:
    """A comparison record this version can show (records of the first release had no version)."""
    try:
        return (isinstance(c, dict) and c.get("version", RECORD_VERSION) == RECORD_VERSION
                and isinstance(c["id"], str) and isinstance(c["question"], str)
                and isinstance(c["created_at"], (int, float))
                and {"top_k", "min_score"} <= set(c["retrieval"]) and {"temperature", "max_tokens"} <= set(c["params"])
                and isinstance(c["results"], list)
                and all(isinstance(r, dict) and _RESULT_KEYS <= set(r) and isinstance(r["sources"], list)
                        for r in c["results"]))
    except (KeyError, TypeError):
        return False


def rows(comparisons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per (comparison, arm): the shape of tables, charts and CSV export."""
    out = []
    for c in comparisons:
        for r in c["results"]:
            u = r.get("usage") or {}
            out.append({
                "id": c["id"], "created_at": c["created_at"], "collection": c.get("collection", ""),
                "question": c["question"], "arm": r["arm"], "label": r["label"], "model": r["model"],
                "provider": r["provider"], "answer": r["answer"], "error": r["error"],
                "prompt_tokens": u.get("prompt_tokens"), "completion_tokens": u.get("completion_tokens"),
                "system_tokens": u.get("system_tokens"), "context_tokens": u.get("context_tokens"),
                "question_tokens": u.get("question_tokens"), "overhead_tokens": u.get("overhead_tokens"),
                "usage_source": r["usage_source"], "cost_usd": r["cost_usd"], "cost_note": r["cost_note"],
                "retrieval_ms": r.get("retrieval_ms"), "ttft_ms": r["ttft_ms"], "total_ms": r["total_ms"],
                "tokens_per_s": r.get("tokens_per_s"), "top_k": c["retrieval"]["top_k"],
                "min_score": c["retrieval"]["min_score"], "temperature": c["params"]["temperature"],
                "max_tokens": c["params"]["max_tokens"],
                "sources": "; ".join(f"{s['document']}#{s['chunk']} ({s['score']:.2f})" for s in r["sources"]),
            })
    return out


def export_csv(comparisons: list[dict[str, Any]]) -> str:
    """The History page's CSV: one row per (comparison, arm), cells that a spreadsheet would run as a formula
    neutralised (lib.format.csv_cell)."""
    from lib.format import to_csv

    return to_csv(rows(comparisons), ROW_COLUMNS)
