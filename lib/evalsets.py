"""Question sets and answer files: reading JSONL or CSV rows into one checked shape."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

TRUE = {"true", "1", "yes", "y"}
FALSE = {"false", "0", "no", "n"}


def _as_bool(value: Any, default: bool = True) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValueError(f"'answerable' must be true or false, not {value!r}")


def _keywords(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(k) for k in value if str(k).strip()]
    return [k.strip() for k in str(value).split(";") if k.strip()]


def _row(n: int, item: Any, need_answer: bool) -> dict[str, Any]:
    if not isinstance(item, dict):
        return {"line": n, "error": "each line must be a JSON object"}
    question = str(item.get("question") or "").strip()
    if not question:
        return {"line": n, "error": "no 'question'"}
    try:
        answerable = _as_bool(item.get("answerable"))
    except ValueError as exc:
        return {"line": n, "error": str(exc)}
    reference = str(item.get("reference", item.get("answer_reference", "")) or "").strip()
    if need_answer:
        if "answer" not in item:
            return {"line": n, "error": "no 'answer' to grade"}
    elif not reference:
        reference = str(item.get("answer") or "").strip()
    keywords = _keywords(item.get("keywords"))
    if answerable and not reference and not keywords:
        return {"line": n, "error": "an answerable question needs a 'reference' (or 'keywords')"}
    return {"line": n, "id": str(item.get("id") or f"q{n:03d}"), "question": question, "reference": reference,
            "keywords": keywords, "answerable": answerable, "answer": str(item.get("answer") or ""),
            "source": str(item.get("source") or item.get("source_document") or "")}


def read_rows(data: bytes | str, name: str = "", need_answer: bool = False) -> tuple[list[dict[str, Any]],
                                                                                   list[tuple[int, str]]]:
    """Rows from JSONL (one object a line) or CSV (a header row); problems as (line, message)."""
    text = data.decode("utf-8-sig", errors="replace") if isinstance(data, bytes) else data
    rows: list[dict[str, Any]] = []
    problems: list[tuple[int, str]] = []
    if name.lower().endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        fields = {f.strip().lower(): f for f in reader.fieldnames or []}
        if "question" not in fields:
            return [], [(1, "the CSV needs a header row with a 'question' column")]
        for n, raw in enumerate(reader, 2):
            rows.append(_row(n, {k: raw.get(v) for k, v in fields.items()}, need_answer))
        return rows, problems
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.append({"line": n, "error": f"not valid JSON ({exc.msg}, column {exc.colno})"})
            continue
        rows.append(_row(n, item, need_answer))
    return rows, problems


def read_grading_file(path: str | Path) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{p} does not exist") from None
    return read_rows(data, p.name, need_answer=True)
