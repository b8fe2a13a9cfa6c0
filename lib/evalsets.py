"""Question sets and answer files: reading JSONL or CSV rows into one checked shape."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lib.errors import UserError

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
    raise UserError(f"'answerable' must be true or false, not {value!r}")


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
    row = {"line": n, "id": str(item.get("id") or f"q{n:03d}"), "question": question, "reference": reference,
           "keywords": keywords, "answerable": answerable, "answer": str(item.get("answer") or ""),
           "source": str(item.get("source") or item.get("source_document") or "")}
    if str(item.get("format") or "").strip():  # a format the answer must keep (lib.failures.format_ok)
        row["format"] = str(item["format"]).strip()
    if need_answer and item.get("sources") is not None:  # the texts retrieved for the answer, numbered from 1
        sources = item["sources"]
        if not isinstance(sources, list) or not all(isinstance(x, str) for x in sources):
            return {"line": n, "error": "'sources' must be a list of source texts (the first is [1])"}
        row["sources"] = sources
    return row


def read_rows(data: bytes | str, name: str = "", need_answer: bool = False) -> tuple[list[dict[str, Any]],
                                                                                   list[tuple[int, str]]]:
    """Rows from JSONL (one object a line) or CSV (a header row); problems as (line, message). Bytes are decoded
    as documents are (UTF-8, or refused with the same message), never guessed; JSON nesting is bounded."""
    from lib.documents import DocumentError, decode_text, display_safe, parse_json

    if isinstance(data, bytes):
        try:
            text = decode_text(display_safe(name or "the file"), data)
        except DocumentError as exc:
            return [], [(1, str(exc))]
    else:
        text = data
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
            item = parse_json(line)
        except json.JSONDecodeError as exc:
            rows.append({"line": n, "error": f"not valid JSON ({exc.msg}, column {exc.colno})"})
            continue
        except ValueError as exc:
            rows.append({"line": n, "error": f"not a question: {exc}"})
            continue
        rows.append(_row(n, item, need_answer))
    return rows, problems


def read_grading_file(path: str | Path) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{p} does not exist") from None
    return read_rows(data, p.name, need_answer=True)


# ---------------------------------------------------------------- sets written by a hosted model

_SET_PROMPT = (
    "Write {n} question(s) that a customer or employee could ask about the passage below, each answerable "
    "from the passage alone, with a short reference answer that states the fact (keep numbers and units as "
    "written). Reply with JSON only: [{{\"question\": \"...\", \"reference\": \"...\"}}]\n\n"
    "Passage (from {doc}):\n{text}"
)


def generate_from_chunks(chunks: list[Any], provider: Any, per_chunk: int = 1,
                         on_progress: Callable[[int, int], None] | None = None
                         ) -> tuple[list[dict[str, Any]], list[str]]:
    """Question-set rows (question, reference, source document) written by a (hosted) model from
    knowledge-base chunks; (rows, problems). A reply that is not the JSON asked for is a problem, not a row."""
    from lib.providers import Delta
    from lib.records import GenParams

    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for i, chunk in enumerate(chunks, 1):
        prompt = _SET_PROMPT.format(n=per_chunk, doc=chunk.document, text=chunk.text)
        where = f"{chunk.document} chunk {chunk.chunk}"
        try:
            text = "".join(e.text for e in provider.stream([{"role": "user", "content": prompt}],
                                                           GenParams(temperature=0.3, max_tokens=600, stop=()))
                           if isinstance(e, Delta))
        except Exception as exc:
            from lib.errors import CapReached, explain

            if isinstance(exc, CapReached):  # the rest would be refused too: stop, keep what was written
                problems.append(f"Stopped at {where}: {explain(exc)}")
                break
            problems.append(f"{where}: the model could not answer ({explain(exc, getattr(provider.spec, 'name', ''))})")
            text = None
        if text is not None:
            match = re.search(r"\[.*\]", text, re.S)
            try:
                from lib.documents import parse_json

                items = parse_json(match.group(0)) if match else None
                if not isinstance(items, list):
                    raise TypeError
                found = [(str(x["question"]).strip(), str(x.get("reference") or x.get("answer") or "").strip())
                         for x in items if isinstance(x, dict) and x.get("question")]
                found = [(q, r) for q, r in found if q and r]
                if not found:
                    raise TypeError
                for q, r in found:
                    rows.append({"id": f"g{len(rows) + 1:03d}", "question": q, "reference": r, "keywords": [],
                                 "source": chunk.document, "answerable": True})
            except (ValueError, TypeError, KeyError, AttributeError):  # not JSON, or nested too deeply
                problems.append(f"{where}: the model's reply was not the JSON asked for")
        if on_progress:
            on_progress(i, len(chunks))
    return rows, problems


# ---------------------------------------------------------------- overlap with a model's training data

NEAR_COPY_RATIO = 0.75  # as training/build_dataset.py: a question this similar is a near-copy


def normalise(question: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed (as training/build_dataset.py compares)."""
    return " ".join(re.sub(r"[^\w\s]", " ", question.lower()).split())


def training_questions(path: str | Path) -> list[str]:
    """The questions a chat-format training file (JSONL of {"messages": [...]}) asked: each user message,
    without a 'Sources:' context, keeping the 'Question: ...' text."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        messages = item.get("messages") if isinstance(item, dict) else None
        for m in messages if isinstance(messages, list) else []:
            if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str):
                text = m["content"]
                at = text.rfind("Question:")
                text = text[at + len("Question:"):] if at >= 0 else text
                if text.strip():
                    out.append(text.strip())
    return out


def training_file_of(model: Any, root: str | Path | None = None) -> Path | None:
    """The local training file of a registered fine-tuned model, if it is on this machine (a hosted job's
    training file is an upload id, not a file here)."""
    name = getattr(model, "training_file", "") or ""
    if not name:
        return None
    path = Path(name)
    if not path.is_absolute():
        path = Path(root or Path(__file__).resolve().parent.parent) / path
    return path if path.is_file() else None


def overlap_with_training(questions: list[Any], training: list[str]) -> list[tuple[str, str, str, float]]:
    """Questions of a set that the fine-tuned model was trained on: (question id, training question,
    'exact' | 'near', similarity ratio), the most similar training question for each flagged one."""
    import difflib

    trained = [(normalise(t), t) for t in training]
    exact = {n: t for n, t in trained}
    out = []
    for q in questions:
        qid, text = (q.id, q.question) if hasattr(q, "question") else (str(q.get("id", "")), str(q["question"]))
        n = normalise(text)
        if n in exact:
            out.append((qid, exact[n], "exact", 1.0))
            continue
        best, best_ratio = "", 0.0
        for tn, t in trained:
            m = difflib.SequenceMatcher(None, n, tn)
            if m.real_quick_ratio() < NEAR_COPY_RATIO or m.quick_ratio() < NEAR_COPY_RATIO:
                continue
            ratio = m.ratio()
            if ratio > best_ratio:
                best, best_ratio = t, ratio
        if best_ratio >= NEAR_COPY_RATIO:
            out.append((qid, best, "near", round(best_ratio, 3)))
    return out


def training_questions_for(finetuned: Any, models: list[Any], root: str | Path | None = None
                           ) -> tuple[str, list[str]] | None:
    """(model name, its training questions) for the active fine-tuned model, when it is a registered model
    whose training file is on this machine; None otherwise (nothing to check against)."""
    if finetuned is None:
        return None
    model = next((m for m in models if getattr(m, "spec", None) == finetuned), None)
    path = training_file_of(model, root) if model is not None else None
    if path is None:
        return None
    return model.name, training_questions(path)


def editor_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as the review table shows them: keywords as one ';'-separated text."""
    return [{"id": r.get("id", ""), "question": r.get("question", ""), "reference": r.get("reference", ""),
             "keywords": "; ".join(r.get("keywords") or []), "source": r.get("source", ""),
             "answerable": bool(r.get("answerable", True))} for r in rows]


def check_rows(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Edited table rows back into checked question-set rows: (good rows, bad rows with 'line' and 'error')."""
    good, bad = [], []
    for n, item in enumerate(items, 1):
        if not any(str(v or "").strip() for k, v in item.items() if k != "answerable"):
            continue  # an empty row the editor added
        row = _row(n, {k: (None if v != v else v) for k, v in item.items()}, need_answer=False)  # NaN -> None
        (bad if "error" in row else good).append(row)
    seen: set[str] = set()
    for r in good:
        r.pop("answer", None)
        r.pop("line", None)
        if r["id"] in seen:  # a row added in the table may take a number already used: give it a free one
            r["id"] = next(f"q{n:03d}" for n in range(1, len(items) + len(seen) + 2) if f"q{n:03d}" not in seen)
        seen.add(r["id"])
    return good, bad
