"""The decision guide: RAG, fine-tuned, hybrid, or "improve retrieval first", with the reasons
that drove it and what would change it.

The six questions of the decision matrix are answered by the user where they are facts about
their situation (how often the documents change, whether answers need citations, a latency
target, whether they have quality training examples) and by measurement where the app can
measure them (accuracy with its uncertainty, citation accuracy, house-style adherence, latency
p95 against the target, the freshness result, retrieval hit rate against answer accuracy).
Pure rules over numbers: no model is asked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

LABELS = {"baseline": "Baseline", "rag": "RAG", "finetuned": "Fine-tuned", "hybrid": "Hybrid"}
CANDIDATES = ("rag", "finetuned", "hybrid")
SMALL_MODEL_CAVEAT = ("These measurements come from the 135M-parameter offline demo model. At this size results "
                      "can invert: decide on the model you will ship, with its own evaluation run.")


@dataclass(frozen=True)
class Situation:
    """What the user says about their use case (None: not answered)."""

    changes: str | None = None  # daily | weekly | monthly | quarterly | rarely
    citations: bool | None = None
    latency_ms: float | None = None  # p95 target
    format_matters: bool | None = None  # a specific task with a predictable format
    training_examples: bool | None = None  # quality training examples are available


@dataclass(frozen=True)
class Question:
    """One row of the decision matrix: the question, the answer, and where the answer came from."""

    question: str
    answer: str
    source: str  # "you" | "measured" | "not answered"
    favours: str  # which arms it favours, in words


@dataclass(frozen=True)
class Recommendation:
    choice: str  # "rag" | "finetuned" | "hybrid" | "improve-retrieval"
    label: str
    reasons: tuple[str, ...]
    would_change: tuple[str, ...]
    matrix: tuple[Question, ...]
    caveat: str | None
    scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["matrix"] = [asdict(q) for q in self.matrix]
        return d


def _pct(x: float | None) -> str:
    return "unknown" if x is None else f"{x:.0%}"


def _citation_figures(label: str, s: dict[str, Any], short: bool = False) -> str:
    """An arm's measured citations: correct of cited, and the shares citing a supporting source, a wrong one,
    none (claim-checked; runs graded before that have only the first figure)."""
    acc = s.get("citation_accuracy")
    if s.get("citations_correct") is None:
        return f"{label} {_pct(acc)} of cited answers correct"
    if short:
        return f"{label} {_pct(acc)} of the answers that cite ({_pct(s['citations_correct'])} of all answers)"
    return (f"{label} {_pct(acc)} of cited answers correct ({_pct(s['citations_correct'])} cite a supporting "
            f"source, {_pct(s.get('citations_wrong'))} a wrong one, {_pct(s.get('citations_none'))} none)")


def decide(summary: dict[str, dict[str, Any]], situation: Situation = Situation(),
           freshness: dict[str, dict[str, Any]] | None = None, monthly_cost: dict[str, float | None] | None = None,
           small_model: bool = False) -> Recommendation:
    """A recommendation from an evaluation run's per-arm summary (lib.evaluate.summarise), the user's
    situation, an optional freshness result ({arm: {"follows_change": bool, "keeps_old": bool}}) and the
    projected monthly cost per arm."""
    arms = [a for a in CANDIDATES if a in summary and summary[a].get("accuracy") is not None]
    if not arms:
        raise ValueError("The run has no graded answers for RAG, fine-tuned or hybrid: evaluate at least one "
                         "of them first.")
    acc = {a: float(summary[a]["accuracy"]) for a in arms}
    ci = {a: summary[a].get("accuracy_ci95") or [acc[a], acc[a]] for a in arms}
    score = dict(acc)
    reasons: list[str] = []
    changes: list[str] = []
    matrix: list[Question] = []

    best = max(arms, key=lambda a: acc[a])
    tied = [a for a in arms if ci[a][1] >= ci[best][0]]  # intervals overlap the best one's: within noise
    n = summary[best].get("answerable") or 0
    reasons.append(f"Accuracy: {', '.join(f'{LABELS[a]} {acc[a]:.0%}' for a in arms)} on {n} questions"
                   + (f"; {', '.join(LABELS[a] for a in tied if a != best)} within noise of {LABELS[best]}"
                      if len(tied) > 1 else f"; {LABELS[best]} is ahead beyond the noise of {n} questions"))

    # 1. Does the knowledge change frequently?
    frequent = situation.changes in ("daily", "weekly")
    fresh_note = ""
    if freshness:
        follows = [a for a in arms if freshness.get(a, {}).get("follows_change")]
        stale = [a for a in arms if freshness.get(a, {}).get("keeps_old")]
        fresh_note = (f"; freshness test: {', '.join(LABELS[a] for a in follows) or 'no arm'} followed the edit"
                      + (f", {', '.join(LABELS[a] for a in stale)} kept the old value" if stale else ""))
        for a in stale:
            score[a] -= 0.15 if frequent else 0.05
    if situation.changes is None:
        matrix.append(Question("Does the knowledge change frequently?", "not answered" + fresh_note,
                               "measured" if freshness else "not answered", "RAG and hybrid when it does"))
    else:
        matrix.append(Question("Does the knowledge change frequently?", f"{situation.changes}{fresh_note}", "you",
                               "RAG and hybrid" if frequent else "any arm"))
        if frequent:
            score["finetuned"] = score.get("finetuned", 0) - 0.2
            reasons.append(f"Documents change {situation.changes}: a fine-tuned model alone is stale between "
                           "retrainings, while retrieval picks up a re-indexed document at once")
            changes.append("documents that change rarely would make fine-tuning alone viable")

    # 2. Are citations needed? (measured: a citation counts only when the cited source supports the answer's claim)
    cites = {a: summary[a].get("citation_accuracy") for a in arms if a in ("rag", "hybrid")}
    if situation.citations:
        matrix.append(Question("Are citations needed?", "yes; claim-checked citations: "
                               + "; ".join(_citation_figures(LABELS[a], summary[a]) for a in cites), "you",
                               "RAG and hybrid"))
        score["finetuned"] = score.get("finetuned", 0) - 0.5
        for a, v in cites.items():
            score[a] += 0.1 * (v or 0)
        reasons.append("Answers need citations: only the retrieval arms can point to a source"
                       + ("; measured, a cited source supports the answer's own claim in "
                          + ", ".join(_citation_figures(LABELS[a], summary[a], short=True) for a in cites)
                          if cites else ""))
        poor = [a for a, v in cites.items() if v is not None and v < 0.5]
        if poor:
            reasons.append(f"{', '.join(LABELS[a] for a in poor)} cite(s) a source that does not support the "
                           "claim more often than one that does: citations alone do not make those answers "
                           "checkable")
        changes.append("not needing citations would bring the fine-tuned arm back into the choice")
    else:
        matrix.append(Question("Are citations needed?", "no" if situation.citations is False else "not answered",
                               "you" if situation.citations is not None else "not answered", "any arm"))

    # 3. Is the task specific, with a predictable format? (house-style adherence, measured)
    style = {a: summary[a].get("house_style") for a in arms}
    base_style = summary.get("rag", summary.get("baseline", {})).get("house_style")
    ft_style = max((style.get(a) or 0) for a in ("finetuned", "hybrid") if a in style) if any(
        a in style for a in ("finetuned", "hybrid")) else None
    if ft_style is not None and base_style is not None and ft_style - base_style >= 0.3:
        matrix.append(Question("Is the task specific, with a predictable format?",
                               f"measured house style: fine-tuned arms {ft_style:.0%}, base model {base_style:.0%}",
                               "measured", "fine-tuned and hybrid"))
        if situation.format_matters is not False:
            for a in ("finetuned", "hybrid"):
                if a in score:
                    score[a] += 0.05
            reasons.append(f"The fine-tuned model keeps the format ({ft_style:.0%} vs {base_style:.0%} for the "
                           "base model)")
    else:
        matrix.append(Question("Is the task specific, with a predictable format?",
                               "no clear format gain measured" if ft_style is not None else "not measured",
                               "measured" if ft_style is not None else "not answered", "fine-tuning when it is"))

    # 4. Is latency critical?
    p95 = {a: summary[a].get("p95_total_ms") for a in arms}
    if situation.latency_ms:
        slow = [a for a in arms if p95[a] is not None and p95[a] > situation.latency_ms]
        matrix.append(Question("Is latency critical?", f"target p95 {situation.latency_ms:.0f} ms; measured "
                               + ", ".join(f"{LABELS[a]} {p95[a]:.0f} ms" for a in arms if p95[a] is not None),
                               "you", "the arms under the target"))
        for a in slow:
            score[a] -= 0.3
        if slow:
            reasons.append(f"{', '.join(LABELS[a] for a in slow)} miss(es) the p95 latency target of "
                           f"{situation.latency_ms:.0f} ms")
            changes.append("a looser latency target, or a faster model or server, would readmit "
                           + ", ".join(LABELS[a] for a in slow))
    else:
        matrix.append(Question("Is latency critical?", "no target given", "not answered",
                               "fine-tuned (no retrieval, shorter prompts) when it is"))

    # 5. Are there quality training examples?
    if situation.training_examples is False:
        score["finetuned"] = score.get("finetuned", 0) - 0.2
        score["hybrid"] = score.get("hybrid", 0) - 0.1
        reasons.append("No quality training examples: fine-tuning would learn little that retrieval does not give")
        changes.append("a few hundred good examples of the answers you want would make fine-tuning worth trying")
    matrix.append(Question("Are there quality training examples?",
                           {True: "yes", False: "no", None: "not answered"}[situation.training_examples],
                           "you" if situation.training_examples is not None else "not answered",
                           "fine-tuning when there are"))

    # 6. Is retrieval the hard part? (retrieval hit rate vs answer accuracy)
    hit = summary.get("rag", summary.get("hybrid", {})).get("retrieval_hit_rate")
    retrieval_hard = hit is not None and hit < 0.6
    matrix.append(Question("Is retrieval the hard part?",
                           f"the right source was retrieved for {_pct(hit)} of questions" if hit is not None
                           else "not measured (the set names no source documents)",
                           "measured" if hit is not None else "not answered",
                           "improving retrieval first when it is"))
    rag_acc = acc.get("rag", acc.get("hybrid"))
    if retrieval_hard and rag_acc is not None and rag_acc < 0.5:
        reasons.insert(0, f"The right source was retrieved for only {hit:.0%} of questions, and the retrieval arms "
                          f"answered {rag_acc:.0%}: neither RAG nor fine-tuning is the fix until retrieval finds "
                          "the passage (chunk size, top-k, the embedder, hybrid search)")
        changes.append("a retrieval hit rate above 60% would let the arms be compared on their answers")
        return Recommendation("improve-retrieval", "Improve retrieval first", tuple(reasons), tuple(changes),
                              tuple(matrix), SMALL_MODEL_CAVEAT if small_model else None,
                              {a: round(v, 3) for a, v in score.items() if a in arms})
    if hit is not None and rag_acc is not None and hit - rag_acc > 0.3:
        reasons.append(f"Retrieval finds the right source {hit:.0%} of the time but the retrieval arms answer "
                       f"{rag_acc:.0%}: the model, not retrieval, is the weak part")

    choice = max(arms, key=lambda a: (score[a], acc[a]))
    # Among arms that the situation does not separate and whose accuracy is within noise, the cheaper one wins.
    if monthly_cost:
        known = {a: c for a, c in monthly_cost.items() if a in arms and c is not None}
        if len(known) > 1:
            reasons.append("Projected monthly cost: " + ", ".join(f"{LABELS[a]} ${c:,.2f}" for a, c in known.items()))
            level = [a for a in arms if a in known and score[choice] - score[a] <= (acc[choice] - acc[a]) + 1e-9
                     and ci[a][1] >= ci[choice][0]]
            cheapest = min(level, key=lambda a: known[a], default=choice)
            if cheapest != choice and choice in known:
                reasons.append(f"{LABELS[cheapest]} is within noise of {LABELS[choice]} on accuracy and costs "
                               f"${known[cheapest]:,.2f} a month against ${known[choice]:,.2f}: it is the choice")
                changes.append(f"a clear accuracy lead for {LABELS[choice]} (beyond the noise of {n} questions) "
                               "would be worth its cost")
                choice = cheapest
    runner_up = max((a for a in arms if a != choice), key=lambda a: score[a], default=None)
    if runner_up is not None:
        changes.append(f"{LABELS[runner_up]} is the runner-up: it would win if it gained about "
                       f"{max(0.0, score[choice] - score[runner_up]) * 100:.0f} points of accuracy")
    return Recommendation(choice, LABELS[choice], tuple(reasons), tuple(changes), tuple(matrix),
                          SMALL_MODEL_CAVEAT if small_model else None,
                          {a: round(v, 3) for a, v in score.items() if a in arms})
