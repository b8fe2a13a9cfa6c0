"""Training data: parse uploads, validate like OpenAI does, edit as a table, export,
and generate question/answer pairs from chunks with a hosted model."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from typing import Any

from lib.settings import PROJECT_ROOT

SAMPLE_TRAINING_SET = PROJECT_ROOT / "training" / "data" / "train.jsonl"
MIN_EXAMPLES = 10  # OpenAI refuses fewer
# Tokens per training example: OpenAI's limit for current models; the local trainer's window.
EXAMPLE_TOKEN_LIMIT = {"openai": 65_536, "local": 512}
ROLES = {"system", "user", "assistant"}

Example = dict[str, Any]


# ---------------------------------------------------------------- training data

def parse_jsonl(data: bytes | str) -> tuple[list[Example], list[tuple[int, str]]]:
    """Examples from OpenAI chat JSONL, and (row, problem) for lines that are not JSON objects (or nest too
    deeply); bytes that are not UTF-8 are refused as a document would be."""
    from lib.documents import parse_json

    text, problem = _text(data, "the JSONL file")
    if problem:
        return [], [problem]
    examples: list[Example] = []
    problems: list[tuple[int, str]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = parse_json(line)
        except json.JSONDecodeError as exc:
            problems.append((n, f"not valid JSON ({exc.msg})"))
            continue
        except ValueError as exc:
            problems.append((n, f"not a training example: {exc}"))
            continue
        if not isinstance(item, dict):
            problems.append((n, "each line must be a JSON object with a 'messages' list"))
            continue
        examples.append(item)
    return examples, problems


def from_pairs(pairs: list[tuple[str, str]], system: str | None = None) -> list[Example]:
    """Chat examples from (question, answer) pairs, framed like the fine-tuned arm's prompt."""
    from lib.arms import build_prompt

    out = []
    for question, answer in pairs:
        messages = build_prompt(question, None).messages()
        if system is not None:
            messages[0]["content"] = system
        out.append({"messages": [*messages, {"role": "assistant", "content": answer.strip()}]})
    return out


def parse_csv(data: bytes | str) -> tuple[list[Example], list[tuple[int, str]]]:
    """Examples from a CSV with `question` and `answer` columns (a header row is required)."""
    text, problem = _text(data, "the CSV file")
    if problem:
        return [], [problem]
    reader = csv.DictReader(io.StringIO(text))
    fields = {f.strip().lower(): f for f in reader.fieldnames or []}
    if "question" not in fields or "answer" not in fields:
        return [], [(1, "the CSV needs a header row with 'question' and 'answer' columns")]
    pairs, problems = [], []
    for n, row in enumerate(reader, 2):
        q, a = (row.get(fields["question"]) or "").strip(), (row.get(fields["answer"]) or "").strip()
        if not q or not a:
            problems.append((n, "empty question or answer"))
            continue
        pairs.append((q, a))
    return from_pairs(pairs), problems


def _text(data: bytes | str, name: str) -> tuple[str, tuple[int, str] | None]:
    """An upload's text, decoded as documents are (UTF-8, or the same message as for a document)."""
    from lib.documents import DocumentError, decode_text

    if isinstance(data, str):
        return data, None
    try:
        return decode_text(name, data), None
    except DocumentError as exc:
        return "", (1, str(exc))


def parse_upload(name: str, data: bytes) -> tuple[list[Example], list[tuple[int, str]]]:
    if name.lower().endswith(".csv"):
        return parse_csv(data)
    if name.lower().endswith((".jsonl", ".json")):
        return parse_jsonl(data)
    return [], [(0, f"{name}: upload a .jsonl file (OpenAI chat format) or a .csv with question,answer columns")]


def count_example_tokens(example: Example, model: str) -> int:
    from lib.tokens import count_chat

    return count_chat([{"role": m.get("role", ""), "content": str(m.get("content", ""))}
                       for m in example.get("messages", []) if isinstance(m, dict)], model)


def validate(examples: list[Example], target: str = "openai", model: str = "gpt-4.1-mini") -> list[tuple[int, str]]:
    """Problems per row (1-based), checked the way OpenAI checks a file before a job."""
    problems: list[tuple[int, str]] = []
    limit = EXAMPLE_TOKEN_LIMIT.get(target, EXAMPLE_TOKEN_LIMIT["openai"])
    for n, ex in enumerate(examples, 1):
        messages = ex.get("messages") if isinstance(ex, dict) else None
        if not isinstance(messages, list) or not messages:
            problems.append((n, "missing 'messages' list"))
            continue
        bad = False
        for i, m in enumerate(messages, 1):
            if not isinstance(m, dict):
                problems.append((n, f"message {i} is not an object"))
                bad = True
            elif m.get("role") not in ROLES:
                problems.append((n, f"message {i} has role {m.get('role')!r}; use system, user or assistant"))
                bad = True
            elif not isinstance(m.get("content"), str) or not m["content"].strip():
                problems.append((n, f"message {i} ({m['role']}) has no text content"))
                bad = True
            elif set(m) - {"role", "content", "name", "weight"}:
                problems.append((n, f"message {i} has unknown keys: {', '.join(sorted(set(m) - {'role', 'content', 'name', 'weight'}))}"))
                bad = True
        if bad:
            continue
        roles = [m["role"] for m in messages]
        if "user" not in roles:
            problems.append((n, "no user message"))
        if roles[-1] != "assistant":
            problems.append((n, "the last message must be the assistant's answer"))
        tokens = count_example_tokens(ex, model)
        if tokens > limit:
            problems.append((n, f"{tokens} tokens; the limit per example is {limit}"))
    if len(examples) < MIN_EXAMPLES:
        problems.append((0, f"{len(examples)} examples; at least {MIN_EXAMPLES} are needed"))
    return problems


def to_jsonl(examples: list[Example]) -> str:
    return "".join(json.dumps(ex, ensure_ascii=False) + "\n" for ex in examples)


def table_rows(examples: list[Example]) -> list[dict[str, str]]:
    """(system, question, answer) per example, for an editable table."""
    rows = []
    for ex in examples:
        msgs = ex.get("messages", []) if isinstance(ex, dict) else []
        by = {m.get("role"): m.get("content", "") for m in msgs if isinstance(m, dict)}
        rows.append({"system": by.get("system", ""), "question": by.get("user", ""),
                     "answer": by.get("assistant", "")})
    return rows


def from_table(rows: list[dict[str, Any]]) -> list[Example]:
    out = []
    for r in rows:
        msgs = []
        if str(r.get("system") or "").strip():
            msgs.append({"role": "system", "content": str(r["system"])})
        msgs.append({"role": "user", "content": str(r.get("question") or "")})
        msgs.append({"role": "assistant", "content": str(r.get("answer") or "")})
        out.append({"messages": msgs})
    return out


_PAIR_PROMPT = (
    "Write {n} question and answer pairs that a customer or employee could ask about the passage below, "
    "answerable from it alone. Answer in one line, then a line starting with 'Reason: '. Reply with JSON only: "
    '[{{"question": "...", "answer": "..."}}]\n\nPassage (from {doc}):\n{text}'
)


def generate_pairs(chunks: list[Any], provider: Any, per_chunk: int = 2,
                   on_progress: Callable[[int, int], None] | None = None) -> tuple[list[Example], list[str]]:
    """Question/answer pairs written by a (hosted) model from chunks; (examples, problems)."""
    from lib.providers import Delta
    from lib.records import GenParams

    pairs: list[tuple[str, str]] = []
    problems: list[str] = []
    for i, chunk in enumerate(chunks, 1):
        prompt = _PAIR_PROMPT.format(n=per_chunk, doc=chunk.document, text=chunk.text)
        try:
            text = "".join(e.text for e in provider.stream([{"role": "user", "content": prompt}],
                                                           GenParams(temperature=0.3, max_tokens=600, stop=()))
                           if isinstance(e, Delta))
        except Exception as exc:
            from lib.errors import CapReached, explain

            if not isinstance(exc, CapReached) or not pairs:
                raise
            problems.append(f"Stopped at {chunk.document} chunk {chunk.chunk}: {explain(exc)}")
            break  # the rest would be refused too: keep the pairs already written
        match = re.search(r"\[.*\]", text, re.S)
        try:
            from lib.documents import parse_json

            items = parse_json(match.group(0)) if match else None
            pairs += [(str(x["question"]), str(x["answer"])) for x in items if x.get("question") and x.get("answer")]
        except (ValueError, TypeError, KeyError, AttributeError):  # not JSON, or nested too deeply
            problems.append(f"{chunk.document} chunk {chunk.chunk}: the model's reply was not the JSON asked for")
        if on_progress:
            on_progress(i, len(chunks))
    return from_pairs(pairs), problems
