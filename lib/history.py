"""Every comparison asked, persisted per knowledge base as JSON lines under
the data folder, so it survives a restart. One line per comparison, written
in one append; a damaged line is skipped on reading, never fatal."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lib.arms import Comparison

_write_lock = threading.Lock()

ROW_COLUMNS = [
    "id", "created_at", "collection", "question", "arm", "label", "model", "provider", "answer", "error",
    "prompt_tokens", "completion_tokens", "system_tokens", "context_tokens", "question_tokens",
    "overhead_tokens", "usage_source", "cost_usd", "cost_note", "retrieval_ms", "ttft_ms", "total_ms",
    "tokens_per_s", "top_k", "min_score", "temperature", "max_tokens", "sources",
]


def comparison_to_dict(c: Comparison) -> dict[str, Any]:
    return {
        "id": c.id, "question": c.question, "created_at": c.created_at, "collection": c.collection,
        "retrieval": asdict(c.retrieval), "params": asdict(c.params), "retrieval_ms": c.retrieval_ms,
        "sources": [asdict(s) for s in c.sources],
        "results": [r.to_dict() for r in c.results],
    }


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
                "retrieval_ms": r["retrieval_ms"], "ttft_ms": r["ttft_ms"], "total_ms": r["total_ms"],
                "tokens_per_s": r.get("tokens_per_s"), "top_k": c["retrieval"]["top_k"],
                "min_score": c["retrieval"]["min_score"], "temperature": c["params"]["temperature"],
                "max_tokens": c["params"]["max_tokens"],
                "sources": "; ".join(f"{s['document']}#{s['chunk']} ({s['score']:.2f})" for s in r["sources"]),
            })
    return out


class History:
    def __init__(self, data_dir: str | Path) -> None:
        self.folder = Path(data_dir) / "history"

    def _file(self, collection: str) -> Path:
        return self.folder / f"{collection or 'default'}.jsonl"

    def append(self, comparison: Comparison) -> None:
        line = json.dumps(comparison_to_dict(comparison), ensure_ascii=False) + "\n"
        self.folder.mkdir(parents=True, exist_ok=True)
        with _write_lock, self._file(comparison.collection).open("a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def load(self, collection: str) -> tuple[list[dict[str, Any]], int]:
        """(comparisons oldest first, number of damaged lines skipped)."""
        path = self._file(collection)
        if not path.exists():
            return [], 0
        good, bad = [], 0
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                if isinstance(item, dict) and "results" in item:
                    good.append(item)
                else:
                    bad += 1
            except json.JSONDecodeError:
                bad += 1
        return good, bad

    def clear(self, collection: str) -> None:
        self._file(collection).unlink(missing_ok=True)
