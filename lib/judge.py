"""An optional LLM judge (a hosted model), and how often it agrees with the offline grader.

The judge sees the question, the reference answer and the candidate answer, and replies with JSON
{"correct": true|false, "reason": "..."}. The reference and the candidate are shown in a random
order (seeded per question, so a run is repeatable) and labelled, so a preference for the first
or second text cannot bias the verdict. Its agreement with the offline rules is reported as the
share of answers where both say the same, and Cohen's kappa (agreement beyond chance).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from typing import Any

from lib.grading import Grade

PROMPT = """You grade an answer against a reference answer. Say whether the CANDIDATE answer is correct: it must
state the same facts as the REFERENCE (numbers, names, yes/no) without contradicting it or hedging between
several values. Wording, length and extra harmless detail do not matter. {unanswerable}

QUESTION: {question}

{first_label}: {first}

{second_label}: {second}

Reply with JSON only: {{"correct": true or false, "reason": "one short sentence"}}"""

UNANSWERABLE = ("The documents do not answer this question: the CANDIDATE is correct only if it says it does not "
                "know or that the documents do not say; any other answer is a fabrication.")


def judge(question: str, reference: str, answer: str, provider: Any, answerable: bool = True,
          seed: int = 0) -> Grade:
    """The hosted judge's verdict on one answer (method 'llm-judge'); a reply that is not the JSON asked for
    is an error, never a guess."""
    from lib.providers import Delta
    from lib.records import GenParams

    rng = random.Random(f"{seed}:{question}")
    pair = [("REFERENCE", reference if answerable else "(none: the documents do not answer this)"),
            ("CANDIDATE", answer)]
    rng.shuffle(pair)
    prompt = PROMPT.format(unanswerable="" if answerable else UNANSWERABLE, question=question,
                           first_label=pair[0][0], first=pair[0][1], second_label=pair[1][0], second=pair[1][1])
    text = "".join(e.text for e in provider.stream([{"role": "user", "content": prompt}],
                                                   GenParams(temperature=0.0, max_tokens=120, stop=()))
                   if isinstance(e, Delta))
    match = re.search(r"\{.*\}", text, re.S)
    try:
        verdict = json.loads(match.group(0)) if match else None
        correct = verdict["correct"]
        if not isinstance(correct, bool):
            raise TypeError
    except (json.JSONDecodeError, TypeError, KeyError):
        raise ValueError(f"the judge's reply was not the JSON asked for: {text[:120]!r}") from None
    return Grade(correct, 1.0 if correct else 0.0, False, str(verdict.get("reason") or ""), method="llm-judge")


def agreement(pairs: Sequence[tuple[bool, bool]]) -> dict[str, Any]:
    """How often two graders agree (share and Cohen's kappa) over (offline, judge) verdicts."""
    n = len(pairs)
    if n == 0:
        return {"n": 0, "agreement": None, "kappa": None}
    same = sum(a == b for a, b in pairs) / n
    pa = sum(a for a, _ in pairs) / n
    pb = sum(b for _, b in pairs) / n
    chance = pa * pb + (1 - pa) * (1 - pb)
    kappa = None if chance == 1 else (same - chance) / (1 - chance)
    return {"n": n, "agreement": same, "kappa": kappa}
