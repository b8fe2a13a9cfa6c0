"""Build the LoRA training set for the bundled local model from the sample corpus.

Reads training/data/facts.jsonl (hand-written questions, answers and reasons, one
line per training question) and writes training/data/train.jsonl in OpenAI chat
format, with two kinds of examples:

- no retrieval: the prompt of the fine-tuned arm, `build_prompt(question, None)`;
- retrieval: the prompt of the hybrid arm, `build_prompt(question, sources)` with the
  top 2 chunks the real retriever returns for the question from sample_docs/.

Every assistant message is in the house style: one line with the short answer (with
the citation [n] of the source that holds the fact when the prompt has sources), then
one line "Reason: ..." that names the document. The output is deterministic.

Run from the repository root:  .venv/bin/python -m training.build_dataset
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import random
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "training" / "data"
FACTS = DATA / "facts.jsonl"
TRAIN = DATA / "train.jsonl"
DOCS = ROOT / "sample_docs"
EVAL = DOCS / "questions.jsonl"

SEED = 20250301
TOP_K = 2  # sources per retrieval example: keeps examples short for CPU training
RETRIEVAL_TARGET = 48  # retrieval examples whose sources hold the fact
RETRIEVAL_NOT_FOUND_MAX = 5  # "the sources do not say" examples; at most 10% of the retrieval kind
MAX_ASSISTANT_TOKENS = 45
MAX_EXAMPLE_TOKENS = 512  # the local trainer's window
NEAR_COPY_RATIO = 0.75  # a training question this similar to an eval question is a near-copy
NOT_FOUND = "The sources do not say."

# How a reason refers to each document: every reason must name its source this way.
DOC_NAMES = {
    "company_overview.txt": "company overview",
    "employee_travel_policy.docx": "travel policy",
    "faq.md": "FAQ",
    "loyalty_programme.md": "Campfire Rewards terms",
    "privacy_data_retention.md": "privacy notice",
    "product_fjordlite_tent.txt": "Fjordlite 2P spec sheet",
    "product_kestrel_k3.txt": "Kestrel K3 spec sheet",
    "product_ridgeline_e7.md": "Ridgeline E7 spec sheet",
    "refund_policy.md": "refund policy",
    "ride_app_release_notes.md": "Ride app release notes",
    "security_incident_process.md": "security incident process",
    "shipping_policy.md": "shipping policy",
    "support.html": "Trail Desk support page",
    "trailpass_plans.md": "Trailpass plans page",
    "warranty.pdf": "warranty",
}


@dataclass(frozen=True)
class Fact:
    line: int
    question: str
    answer_line: str
    reason: str
    keywords: tuple[str, ...]
    source: str


def _ensure_importable() -> None:
    """`python training/build_dataset.py` puts training/ first on sys.path; the engine lives in lib/."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def normalise(question: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed: how questions are compared."""
    return " ".join(re.sub(r"[^\w\s]", " ", question.lower()).split())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_facts(path: Path = FACTS) -> list[Fact]:
    facts = []
    for n, item in enumerate(read_jsonl(path), 1):
        assert set(item) == {"question", "answer_line", "reason", "keywords", "source"}, f"facts line {n}: fields {sorted(item)}"
        keywords = item["keywords"]
        assert isinstance(keywords, list) and 1 <= len(keywords) <= 3, f"facts line {n}: 1-3 keywords needed"
        assert all(isinstance(k, str) and k.strip() for k in keywords), f"facts line {n}: keywords must be strings"
        facts.append(Fact(n, item["question"].strip(), item["answer_line"].strip(), item["reason"].strip(),
                          tuple(keywords), item["source"]))
    return facts


def load_documents() -> dict[str, str]:
    _ensure_importable()
    from lib.documents import expand_paths, load_path

    files, _ = expand_paths([DOCS])
    return {name: load_path(path, name=name).text for path, name in files}


# ---------------------------------------------------------------- house style

def house_style(answer_line: str, reason: str) -> str:
    return f"{answer_line}\nReason: {reason}"


def cite(answer_line: str, n: int) -> str:
    """'45 days from delivery.' -> '45 days from delivery [2].'"""
    assert answer_line.endswith("."), answer_line
    return f"{answer_line[:-1]} [{n}]."


def check_house_style(message: str, sources: int | None) -> None:
    """Two lines; the second starts with 'Reason: '; with sources, the first ends with a valid citation."""
    lines = message.split("\n")
    assert len(lines) == 2, f"not two lines: {message!r}"
    answer, reason = lines
    assert answer.strip() and answer == answer.strip() and not answer.startswith("Reason"), f"bad answer line: {message!r}"
    assert reason.startswith("Reason: ") and len(reason) > len("Reason: ") + 10, f"bad reason line: {message!r}"
    assert answer.endswith(".") and reason.endswith("."), f"lines must end with a full stop: {message!r}"
    cited = re.findall(r"\[(\d+)\]", answer)
    if sources is None:
        assert not cited, f"citation without sources: {message!r}"
    elif answer != NOT_FOUND:
        assert re.search(r" \[\d+\]\.$", answer) and len(cited) == 1, f"answer must end with one citation: {message!r}"
        assert 1 <= int(cited[0]) <= sources, f"citation out of range: {message!r}"


# ---------------------------------------------------------------- checks on facts.jsonl

def check_facts(facts: list[Fact], documents: dict[str, str], eval_items: list[dict[str, Any]]) -> None:
    eval_norm = {normalise(str(e["question"])): str(e["id"]) for e in eval_items}
    seen: dict[str, int] = {}
    for f in facts:
        where = f"facts line {f.line} ({f.question!r})"
        q = normalise(f.question)
        assert q not in eval_norm, f"{where} is the eval question {eval_norm[q]}"
        for e, eid in eval_norm.items():
            ratio = difflib.SequenceMatcher(None, q, e).ratio()
            assert ratio < NEAR_COPY_RATIO, f"{where} is a near-copy of eval question {eid} ({ratio:.2f})"
        assert q not in seen, f"{where} repeats facts line {seen.get(q)}"
        seen[q] = f.line
        assert f.source in documents, f"{where}: unknown source {f.source!r}"
        for k in f.keywords:
            assert k in documents[f.source], f"{where}: keyword {k!r} is not in {f.source}"
            assert k.lower() in f.answer_line.lower(), f"{where}: keyword {k!r} is not in the answer line"
        assert "\n" not in f.answer_line + f.reason, f"{where}: answer and reason must be single lines"
        assert f.answer_line.endswith("."), f"{where}: the answer line must end with a full stop"
        assert not re.search(r"\[\d+\]", f.answer_line), f"{where}: citations are added by the builder"
        assert not f.reason.lower().startswith("reason"), f"{where}: the builder adds 'Reason: '"
        assert DOC_NAMES[f.source].lower() in f.reason.lower(), f"{where}: the reason must name the {DOC_NAMES[f.source]}"
    # every eval fact is taught through 3 or more different questions
    for e in eval_items:
        n = sum(1 for f in facts if f.source == e["source"] and set(e["keywords"]) <= set(f.keywords))
        assert n >= 3, f"eval fact {e['id']} has only {n} training questions"


# ---------------------------------------------------------------- token counting

@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def token_counter() -> tuple[Callable[[str], int], str]:
    """The bundled SmolLM2 tokenizer (exact), or a rough estimate where llama.cpp is missing."""
    _ensure_importable()
    try:
        from llama_cpp import Llama

        from lib.providers import bundled_model_path

        with _quiet_stderr():  # llama.cpp warns about the context of a vocabulary-only model
            vocab = Llama(model_path=str(bundled_model_path()), vocab_only=True, verbose=False)
        return (lambda text: len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))), "SmolLM2"
    except Exception:
        from lib.tokens import rough_count

        return rough_count, "estimate"


def example_tokens(messages: list[dict[str, str]], count: Callable[[str], int]) -> int:
    # ChatML framing: "<|im_start|>role\n ... <|im_end|>\n" is about 5 tokens a message
    return sum(count(m["content"]) + 5 for m in messages)


# ---------------------------------------------------------------- examples

def plain_example(f: Fact) -> dict[str, Any]:
    from lib.arms import build_prompt

    messages = build_prompt(f.question, None).messages()
    return {"messages": [*messages, {"role": "assistant", "content": house_style(f.answer_line, f.reason)}]}


def retrieval_example(f: Fact, sources: list[Any]) -> tuple[str, dict[str, Any]] | None:
    """('found' | 'not_found', example), or None when the retrieved sources are ambiguous about the fact.

    Found: a source from the fact's document holds every keyword; the answer cites the first such source.
    Not found: no source comes from the fact's document and none holds any keyword. Anything in between
    (the right document but another part of it, or a keyword turning up elsewhere) is left out."""
    from lib.arms import build_prompt

    holding = [i for i, s in enumerate(sources, 1)
               if s.document == f.source and all(k in s.text for k in f.keywords)]
    if holding:
        kind, answer = "found", house_style(cite(f.answer_line, holding[0]), f.reason)
    elif sources and all(s.document != f.source for s in sources) and not any(
            k.lower() in s.text.lower() for s in sources for k in f.keywords):
        docs = list(dict.fromkeys(s.document for s in sources))
        where = " and ".join(docs)
        kind = "not_found"
        answer = house_style(NOT_FOUND, f"the retrieved passages from {where} do not mention this.")
    else:
        return None
    messages = build_prompt(f.question, sources).messages()
    return kind, {"messages": [*messages, {"role": "assistant", "content": answer}]}


def retrieval_order(facts: list[Fact], rng: random.Random) -> list[Fact]:
    """Questions round-robin over facts (same source and keywords), so retrieval examples cover many facts."""
    groups: dict[tuple[str, tuple[str, ...]], list[Fact]] = {}
    for f in facts:
        groups.setdefault((f.source, f.keywords), []).append(f)
    keys = list(groups)
    rng.shuffle(keys)
    for k in keys:
        rng.shuffle(groups[k])
    order = []
    for i in range(max(len(g) for g in groups.values())):
        order.extend(groups[k][i] for k in keys if i < len(groups[k]))
    return order


def open_retriever(data_dir: Path) -> Any:
    _ensure_importable()
    from lib import engine
    from lib.settings import load_settings

    settings = load_settings(env={}, secrets_file=None, data_dir=data_dir)
    kb = engine.open_kb(settings)
    results = engine.ingest_paths(kb, [DOCS])
    failed = [r for r in results if r.status == "error"]
    assert not failed, f"ingest failed: {failed}"
    assert {r.file for r in results if r.status == "ingested"} == set(DOC_NAMES), "not every document was ingested"
    return kb


def build(facts: list[Fact], count: Callable[[str], int]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    rng = random.Random(SEED)
    stats = {"no_retrieval": 0, "retrieval_found": 0, "retrieval_not_found": 0, "retrieval_ambiguous": 0,
             "too_long": 0}
    examples = [plain_example(f) for f in facts]
    stats["no_retrieval"] = len(examples)
    with tempfile.TemporaryDirectory(prefix="build_dataset_") as tmp:
        kb = open_retriever(Path(tmp))
        for f in retrieval_order(facts, rng):
            if stats["retrieval_found"] >= RETRIEVAL_TARGET:
                break
            made = retrieval_example(f, kb.query(f.question, k=TOP_K))
            if made is None:
                stats["retrieval_ambiguous"] += 1
                continue
            kind, example = made
            if kind == "not_found" and stats["retrieval_not_found"] >= RETRIEVAL_NOT_FOUND_MAX:
                continue
            if example_tokens(example["messages"], count) > MAX_EXAMPLE_TOKENS:
                stats["too_long"] += 1
                continue
            stats[f"retrieval_{kind}"] += 1
            examples.append(example)
    rng.shuffle(examples)
    return examples, stats


def check_examples(examples: list[dict[str, Any]], count: Callable[[str], int]) -> dict[str, int]:
    longest_answer = longest_example = 0
    for ex in examples:
        messages = ex["messages"]
        assert [m["role"] for m in messages] == ["system", "user", "assistant"], messages
        with_sources = messages[1]["content"].startswith("Sources:")
        sources = len(re.findall(r"^\[\d+\] \(from ", messages[1]["content"], flags=re.M)) if with_sources else None
        check_house_style(messages[2]["content"], sources)
        answer_tokens = count(messages[2]["content"])
        assert answer_tokens <= MAX_ASSISTANT_TOKENS, f"assistant message of {answer_tokens} tokens: {messages[2]}"
        longest_answer = max(longest_answer, answer_tokens)
        longest_example = max(longest_example, example_tokens(messages, count))
    return {"longest_assistant_tokens": longest_answer, "longest_example_tokens": longest_example}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--facts", type=Path, default=FACTS)
    parser.add_argument("--out", type=Path, default=TRAIN)
    args = parser.parse_args(argv)

    _ensure_importable()
    facts = load_facts(args.facts)
    documents = load_documents()
    assert set(documents) == set(DOC_NAMES), f"documents changed: {sorted(documents)}"
    eval_items = read_jsonl(EVAL)
    check_facts(facts, documents, eval_items)
    count, counter = token_counter()

    examples, stats = build(facts, count)
    lengths = check_examples(examples, count)
    retrieval = stats["retrieval_found"] + stats["retrieval_not_found"]
    assert stats["retrieval_not_found"] <= 0.1 * retrieval, "too many 'sources do not say' examples"
    eval_norm = {normalise(str(e["question"])) for e in eval_items}
    for ex in examples:  # belt and braces: no eval question reaches the file
        question = ex["messages"][1]["content"].rsplit("Question: ", 1)[-1]
        assert normalise(question) not in eval_norm, question

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(ex, ensure_ascii=False) + "\n" for ex in examples), encoding="utf-8")
    facts_about_eval = sum(1 for f in facts if any(
        f.source == e["source"] and set(e["keywords"]) <= set(f.keywords) for e in eval_items))
    print(f"facts.jsonl: {len(facts)} questions ({facts_about_eval} on the {len(eval_items)} eval facts, "
          f"{len(facts) - facts_about_eval} on other facts)")
    print(f"no-retrieval examples: {stats['no_retrieval']}")
    print(f"retrieval examples: {retrieval} ({stats['retrieval_found']} cite a source, "
          f"{stats['retrieval_not_found']} 'sources do not say'; skipped: {stats['retrieval_ambiguous']} ambiguous, "
          f"{stats['too_long']} too long)")
    print(f"total: {len(examples)} -> {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    print(f"tokens ({counter}): longest assistant message {lengths['longest_assistant_tokens']}, "
          f"longest example {lengths['longest_example_tokens']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
