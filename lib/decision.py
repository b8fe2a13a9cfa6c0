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

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from lib.errors import UserError

LABELS = {"baseline": "Baseline", "rag": "RAG", "finetuned": "Fine-tuned", "hybrid": "Hybrid",
          "longcontext": "Long context"}
CANDIDATES = ("rag", "finetuned", "hybrid", "longcontext")
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


def _interval(s: dict[str, Any]) -> tuple[float, float]:
    acc = float(s["accuracy"])
    ci = s.get("accuracy_ci95") or [acc, acc]
    return float(ci[0]), float(ci[1])


def paired(summary: dict[str, dict[str, Any]], a: str, b: str) -> tuple[int, int, float] | None:
    """Arms `a` and `b` on the answerable questions both answered: (questions `a` got right and `b` wrong, the
    reverse, and the exact two-sided p of that split under "equally good": McNemar's exact test, the sign test on
    the questions where they differ). Both arms answered the same questions, so this sees a lead that two
    overlapping intervals hide. None for summaries without per-question results."""
    sa, sb = summary.get(a) or {}, summary.get(b) or {}
    if "correct_ids" not in sa or "correct_ids" not in sb:
        return None
    both = set(sa.get("answered_ids") or ()) & set(sb.get("answered_ids") or ())
    right_a, right_b = set(sa["correct_ids"]) & both, set(sb["correct_ids"]) & both
    wins, losses = len(right_a - right_b), len(right_b - right_a)
    n = wins + losses
    if n == 0:
        return wins, losses, 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return wins, losses, min(1.0, 2 * tail)


def _paired_lead(summary: dict[str, dict[str, Any]], best: str, other: str) -> tuple[int, int, float] | None:
    """(wins, losses, p) when `best` is ahead of `other` on the same questions beyond chance (p < 0.05)."""
    t = paired(summary, best, other)
    return t if t is not None and t[0] > t[1] and t[2] < 0.05 else None


def _within_noise(summary: dict[str, dict[str, Any]], best: str, other: str) -> bool:
    """`other` cannot be told from `best` on accuracy: their 95% intervals overlap, and on the questions both
    answered `best` is not ahead beyond chance either."""
    if _interval(summary[other])[1] < _interval(summary[best])[0]:
        return False
    return _paired_lead(summary, best, other) is None


def accuracy_reason(summary: dict[str, dict[str, Any]], arms: list[str]) -> str:
    """What the accuracies support, and nothing more: an arm is "ahead beyond the noise" of another when their
    95% intervals do not overlap, or, on the questions both answered, it was right where the other was wrong more
    often than chance allows (`paired`); the baseline is included."""
    evaluated = [a for a, s in summary.items() if s.get("accuracy") is not None]
    acc = {a: float(summary[a]["accuracy"]) for a in evaluated}
    ci = {a: _interval(summary[a]) for a in evaluated}
    best = max(arms, key=lambda a: acc[a])
    n = summary[best].get("answerable") or 0
    listed = ", ".join(f"{LABELS.get(a, a)} {acc[a]:.0%}" for a in evaluated)
    if all(v == 0 for v in acc.values()):
        return (f"Accuracy: {listed} on {n} questions: no arm answered a question correctly, so accuracy cannot "
                "separate the arms here; the choice rests on the other rules")
    others = [a for a in evaluated if a != best]
    if not others:
        return f"Accuracy: {listed} on {n} questions; only {LABELS[best]} was evaluated, so nothing to compare it with"
    overlapping = [a for a in others if _within_noise(summary, best, a)]
    if not overlapping:
        by_pairs = [a for a in others if ci[a][1] >= ci[best][0]]  # told apart on the same questions only
        if not by_pairs:
            return (f"Accuracy: {listed} on {n} questions; {LABELS[best]} is ahead beyond the noise (its 95% "
                    f"interval, {ci[best][0]:.0%}-{ci[best][1]:.0%}, overlaps no other arm's)")
        splits = []
        for a in by_pairs:
            wins, losses, p = _paired_lead(summary, best, a) or (0, 0, 1.0)
            splits.append(f"{LABELS.get(a, a)}: right where it was wrong {wins} times, wrong where it was right "
                          f"{losses}, p = {p:.3f}")
        return (f"Accuracy: {listed} on {n} questions; {LABELS[best]} is ahead beyond the noise: its 95% interval "
                f"overlaps {', '.join(LABELS.get(a, a) for a in by_pairs)}'s, but on the same questions it won far "
                f"more often than it lost ({'; '.join(splits)}; exact paired test)")
    return (f"Accuracy: {listed} on {n} questions; {', '.join(LABELS.get(a, a) for a in overlapping)} within noise "
            f"of {LABELS[best]} (their 95% intervals overlap, and on the questions both answered neither won beyond "
            "chance)")


def _retrieval_misses(summary: dict[str, dict[str, Any]]) -> tuple[int, int, int]:
    """(wrong answers whose right source retrieval missed, wrong answers, of the missed those in the top 20) over
    the retrieval arms, from their failure modes (lib.failures)."""
    from lib.failures import RETRIEVAL_MODES

    missed = wrong = in_top = 0
    for arm in ("rag", "hybrid"):
        modes = (summary.get(arm) or {}).get("failure_modes") or {}
        wrong += sum(v for k, v in modes.items() if k != "request_failed")
        missed += sum(modes.get(k, 0) for k in RETRIEVAL_MODES)
        in_top += modes.get("missed_top_ranked", 0)
    return missed, wrong, in_top


def _fixable_by_fine_tuning(summary: dict[str, dict[str, Any]]) -> str | None:
    """Which of the retrieval arms' failures fine-tuning could address, and which it cannot, in a sentence."""
    from lib.failures import FINE_TUNING_CAN_FIX, FINE_TUNING_CANNOT_FIX
    from lib.failures import LABELS as MODE_LABELS

    modes: dict[str, int] = {}
    for arm in ("rag", "hybrid"):
        for k, v in ((summary.get(arm) or {}).get("failure_modes") or {}).items():
            modes[k] = modes.get(k, 0) + v
    can = {k: v for k, v in modes.items() if k in FINE_TUNING_CAN_FIX}
    cannot = {k: v for k, v in modes.items() if k in FINE_TUNING_CANNOT_FIX}
    if not can and not cannot:
        return None

    def words(d: dict[str, int]) -> str:
        return ", ".join(f"{v} {MODE_LABELS.get(k, k)}" for k, v in d.items())

    parts = []
    if can:
        parts.append(f"fine-tuning could address {words(can)} (a model trained to read its sources and keep the "
                     "format)")
    if cannot:
        parts.append(f"it cannot address {words(cannot)} (missing or unretrieved content is fixed by the documents "
                     "and retrieval, not the model)")
    return "Why the retrieval arms were wrong: " + "; ".join(parts)


def _long_context_note(summary: dict[str, dict[str, Any]], arms: list[str]) -> str | None:
    """Why the long-context arm is not a candidate (None when it is): it did not fit the model's context window, or
    its accuracy is below RAG's beyond the noise."""
    s = summary.get("longcontext")
    if not s:
        return None
    if s.get("accuracy") is None or (s.get("errors") and s.get("errors") >= s.get("n", 0)):
        return ("Long context is not an option with this model: the knowledge base does not fit its context window "
                "(see the arm's error)")
    rag = summary.get("rag")
    if rag and rag.get("accuracy") is not None and _interval(s)[1] < _interval(rag)[0]:
        return (f"Long context answered {float(s['accuracy']):.0%} against RAG's {float(rag['accuracy']):.0%}, below "
                "it beyond the noise: putting the whole knowledge base in the prompt is not an option here")
    return None


def _citation_figures(label: str, s: dict[str, Any], short: bool = False) -> str:
    """An arm's measured citations in words. Claim-checked runs: correct of cited, and the shares of answers
    citing a supporting source, a wrong one, none. Older runs: how often it cited, and correct of cited."""
    acc = s.get("citation_accuracy")
    if s.get("citations_correct") is not None:
        if acc is None:  # no answer cited anything: there is no "correct of cited" to give
            return f"{label}: no answer cites a source"
        if short:
            return f"{label} {_pct(acc)} of the answers that cite ({_pct(s['citations_correct'])} of all answers)"
        return (f"{label} {_pct(acc)} of cited answers correct ({_pct(s['citations_correct'])} cite a supporting "
                f"source, {_pct(s.get('citations_wrong'))} a wrong one, {_pct(s.get('citations_none'))} none)")
    if s.get("cites") is not None:
        text = f"{label} cited a source in {s['cites']:.0%} of its answers"
        return text + (f", correctly in {acc:.0%} of the answerable ones it cited in" if s["cites"] and acc is not None
                       else "")
    return f"{label} {_pct(acc)} of cited answers correct"


def _cited_well(s: dict[str, Any]) -> float:
    """The share of answers that cite a source supporting their claim (estimated for runs graded before)."""
    if s.get("citations_correct") is not None:
        return float(s["citations_correct"])
    if s.get("cites") is not None:
        return float(s["cites"]) * float(s.get("citation_accuracy") or 0.0)
    return float(s.get("citation_accuracy") or 0.0)


def _never_cites(s: dict[str, Any]) -> bool:
    return s.get("citations_none") == 1 or (s.get("citations_none") is None and s.get("cites") == 0)


@dataclass(frozen=True)
class _Outcome:
    choice: str
    reasons: tuple[str, ...]
    would_change: tuple[str, ...]
    matrix: tuple[Question, ...]
    score: dict[str, float]
    retrieval_first: bool


def _rules(summary: dict[str, dict[str, Any]], situation: Situation,
           freshness: dict[str, dict[str, Any]] | None, monthly_cost: dict[str, float | None] | None,
           provenance: dict[str, Any] | None) -> _Outcome:
    arms = [a for a in CANDIDATES if a in summary and summary[a].get("accuracy") is not None]
    long_note = _long_context_note(summary, arms)
    if long_note is not None and "longcontext" in arms:
        arms.remove("longcontext")
    if not arms:
        raise UserError("The run has no graded answers for RAG, fine-tuned or hybrid: evaluate at least one "
                         "of them first.")
    acc = {a: float(summary[a]["accuracy"]) for a in arms}
    score = dict(acc)
    reasons: list[str] = [accuracy_reason(summary, arms)]
    if long_note:
        reasons.append(long_note)
    changes: list[str] = []
    matrix: list[Question] = []
    n = summary[max(arms, key=lambda a: acc[a])].get("answerable") or 0

    tuned = [a for a in arms if a in ("finetuned", "hybrid")]
    if provenance and provenance.get("other_documents") and tuned:
        reasons.append(f"The fine-tuned arms use {provenance.get('card') or 'a model'}: it was not fine-tuned on "
                       f"this knowledge base ('{provenance.get('knowledge_base') or '?'}'), so their figures measure "
                       "a model trained on other documents, not fine-tuning on yours")
        changes.append(f"fine-tuning on '{provenance.get('knowledge_base') or 'this knowledge base'}' (Fine-tune "
                       "page, or `python -m lib finetune --kb NAME`) and evaluating again would measure fine-tuning "
                       "on your own documents")

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
            if "finetuned" in score:
                score["finetuned"] -= 0.2
            reasons.append(f"Documents change {situation.changes}: a fine-tuned model alone is stale between "
                           "retrainings, while retrieval picks up a re-indexed document at once")
            changes.append("documents that change rarely would make fine-tuning alone viable")

    # 2. Are citations needed? Only what was measured is claimed (a citation counts when the cited source supports
    # the answer's own claim).
    retrieval_arms = [a for a in arms if a in ("rag", "hybrid", "longcontext")]  # arms with sources to cite
    measured = "; ".join(_citation_figures(LABELS[a], summary[a]) for a in retrieval_arms)
    if situation.citations:
        matrix.append(Question("Are citations needed?", "yes" + (f"; claim-checked citations: {measured}"
                                                                 if measured else ""), "you", "RAG and hybrid"))
        if "finetuned" in score:
            score["finetuned"] -= 0.5
        for a in retrieval_arms:
            score[a] += 0.1 * _cited_well(summary[a])
        never = [a for a in retrieval_arms if _never_cites(summary[a])]
        reasons.append("Answers need citations: the fine-tuned arm without retrieval has no source to point to"
                       + ("; measured, a cited source supports the answer's own claim in "
                          + ", ".join(_citation_figures(LABELS[a], summary[a], short=True) for a in retrieval_arms)
                          if retrieval_arms else ""))
        if never:
            reasons.append(f"{', '.join(LABELS[a] for a in never)} put no citation in any answer: as measured it "
                           "does not give citations either (a model that follows the citation instruction, or "
                           "showing the retrieved sources beside each answer, would)")
        poor = [a for a in retrieval_arms if a not in never and summary[a].get("citation_accuracy") is not None
                and summary[a]["citation_accuracy"] < 0.5]
        if poor:
            reasons.append(f"{', '.join(LABELS[a] for a in poor)} cite(s) a source that does not support the "
                           "claim more often than one that does: citations alone do not make those answers "
                           "checkable")
        changes.append("not needing citations would bring the fine-tuned arm back into the choice")
    else:
        matrix.append(Question("Are citations needed?", ("no" if situation.citations is False else "not answered")
                               + (f"; measured: {measured}" if measured else ""),
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
        matrix.append(Question("Is latency critical?", f"target p95 {situation.latency_ms / 1000:g} s; measured "
                               + ", ".join(f"{LABELS[a]} {p95[a] / 1000:.1f} s" for a in arms if p95[a] is not None),
                               "you", "the arms under the target"))
        for a in slow:
            score[a] -= 0.3
        if slow:
            reasons.append(f"{', '.join(LABELS[a] for a in slow)} miss(es) the p95 latency target of "
                           f"{situation.latency_ms / 1000:g} s")
            changes.append("a looser latency target, or a faster model or server, would readmit "
                           + ", ".join(LABELS[a] for a in slow))
    else:
        matrix.append(Question("Is latency critical?", "no target given", "not answered",
                               "fine-tuned (no retrieval, shorter prompts) when it is"))

    # 5. Are there quality training examples?
    if situation.training_examples is False:
        for a, penalty in (("finetuned", 0.2), ("hybrid", 0.1)):
            if a in score:
                score[a] -= penalty
        reasons.append("No quality training examples: fine-tuning would learn little that retrieval does not give")
        changes.append("a few hundred good examples of the answers you want would make fine-tuning worth trying")
    matrix.append(Question("Are there quality training examples?",
                           {True: "yes", False: "no", None: "not answered"}[situation.training_examples],
                           "you" if situation.training_examples is not None else "not answered",
                           "fine-tuning when there are"))

    # 6. Is retrieval the hard part? Measured from why the retrieval arms' answers were wrong (failure modes);
    # runs graded before failure modes fall back on the retrieval hit rate against accuracy.
    rag_acc = acc.get("rag", acc.get("hybrid"))
    missed, wrong, in_top = _retrieval_misses(summary)
    if wrong:
        share = missed / wrong
        asked = sum(int((summary.get(a) or {}).get("answerable") or 0) for a in ("rag", "hybrid"))
        # hard: retrieval caused most wrong answers, and missed the source for 40%+ of the questions (as a hit rate
        # under 60% did before failure modes were measured)
        retrieval_hard = share >= 0.5 and asked > 0 and missed / asked >= 0.4 and rag_acc is not None \
            and rag_acc < 0.5
        answer = (f"retrieval missed the right source in {missed} of the {wrong} wrong answers of the retrieval arms "
                  f"({share:.0%}); {in_top} of those were in the top 20")
        matrix.append(Question("Is retrieval the hard part?", answer, "measured",
                               "improving retrieval first when it is"))
        if retrieval_hard:
            what = ("raise top-k or add a reranker: most missed sources were in the retriever's top 20"
                    if in_top * 2 >= missed else
                    "change the chunking or the embedder: most missed sources were not even in the top 20")
            reasons.insert(0, f"Retrieval is the hard part: it missed the right source in {missed} of the {wrong} "
                              f"wrong answers of the retrieval arms, which answered {rag_acc:.0%}; neither RAG nor "
                              f"fine-tuning is the fix until retrieval finds the passage: {what}")
            changes.append("retrieval that finds the right source for most questions would let the arms be compared "
                           "on their answers")
            return _Outcome("improve-retrieval", tuple(reasons), tuple(changes), tuple(matrix),
                            {a: round(v, 3) for a, v in score.items() if a in arms}, True)
        fixable = _fixable_by_fine_tuning(summary)
        if fixable:
            reasons.append(fixable)
    else:
        hit = summary.get("rag", summary.get("hybrid", {})).get("retrieval_hit_rate")
        retrieval_hard = hit is not None and hit < 0.6
        matrix.append(Question("Is retrieval the hard part?",
                               f"the right source was retrieved for {_pct(hit)} of questions" if hit is not None
                               else "not measured (no wrong answers of the retrieval arms, or no source documents)",
                               "measured" if hit is not None else "not answered",
                               "improving retrieval first when it is"))
        if retrieval_hard and rag_acc is not None and rag_acc < 0.5:
            reasons.insert(0, f"The right source was retrieved for only {hit:.0%} of questions, and the retrieval arms "
                              f"answered {rag_acc:.0%}: neither RAG nor fine-tuning is the fix until retrieval finds "
                              "the passage (chunk size, top-k, the embedder, hybrid search)")
            changes.append("a retrieval hit rate above 60% would let the arms be compared on their answers")
            return _Outcome("improve-retrieval", tuple(reasons), tuple(changes), tuple(matrix),
                            {a: round(v, 3) for a, v in score.items() if a in arms}, True)
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
                     and (a == choice or _within_noise(summary, choice, a))]
            cheapest = min(level, key=lambda a: known[a], default=choice)
            if cheapest != choice and choice in known:
                reasons.append(f"{LABELS[cheapest]} is within noise of {LABELS[choice]} on accuracy and costs "
                               f"${known[cheapest]:,.2f} a month against ${known[choice]:,.2f}: it is the choice")
                changes.append(f"a clear accuracy lead for {LABELS[choice]} (beyond the noise of {n} questions) "
                               "would be worth its cost")
                choice = cheapest
    return _Outcome(choice, tuple(reasons), tuple(changes), tuple(matrix),
                    {a: round(v, 3) for a, v in score.items() if a in arms}, False)


def _wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    if n <= 0:
        return (0.0, 1.0)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def with_accuracy(summary: dict[str, dict[str, Any]], arm: str, accuracy: float) -> dict[str, dict[str, Any]]:
    """The summary with one arm's accuracy set to `accuracy` (its 95% interval recomputed for the same number of
    questions), everything else as measured."""
    s = dict(summary[arm])
    n = int(s.get("answerable") or 0)
    s.pop("correct_ids", None)  # a hypothetical accuracy has no per-question results: intervals only
    s.pop("answered_ids", None)
    s["accuracy"] = accuracy
    s["correct"] = round(accuracy * n)
    s["accuracy_ci95"] = list(_wilson(accuracy, n)) if n else [accuracy, accuracy]
    return {**summary, arm: s}


def gain_needed(summary: dict[str, dict[str, Any]], arm: str, situation: Situation = Situation(),
                freshness: dict[str, dict[str, Any]] | None = None,
                monthly_cost: dict[str, float | None] | None = None,
                provenance: dict[str, Any] | None = None) -> int | None:
    """The accuracy gain, in whole points, at which the rules would choose `arm`, all else fixed (its interval
    recomputed for the same number of questions); None if no gain up to 100% accuracy would."""
    base = float(summary[arm]["accuracy"])
    for points in range(1, 101):
        accuracy = base + points / 100
        if accuracy > 1 + 1e-9:
            return None
        if _rules(with_accuracy(summary, arm, min(1.0, accuracy)), situation, freshness, monthly_cost,
                  provenance).choice == arm:
            return points
    return None


def decide(summary: dict[str, dict[str, Any]], situation: Situation = Situation(),
           freshness: dict[str, dict[str, Any]] | None = None, monthly_cost: dict[str, float | None] | None = None,
           small_model: bool = False, provenance: dict[str, Any] | None = None,
           caveat: str | None = None) -> Recommendation:
    """A recommendation from an evaluation run's per-arm summary (lib.evaluate.summarise), the user's
    situation, an optional freshness result ({arm: {"follows_change": bool, "keeps_old": bool}}), the
    projected monthly cost per arm, and the fine-tuned model's provenance ({"card", "knowledge_base",
    "other_documents"}: whether it was trained on other documents than the run's knowledge base)."""
    out = _rules(summary, situation, freshness, monthly_cost, provenance)
    changes = list(out.would_change)
    if not out.retrieval_first:
        arms = [a for a in CANDIDATES if a in out.score]
        runner_up = max((a for a in arms if a != out.choice), key=lambda a: out.score[a], default=None)
        if runner_up is not None:
            points = gain_needed(summary, runner_up, situation, freshness, monthly_cost, provenance)
            if points is None:
                changes.append(f"{LABELS[runner_up]} is the runner-up, but no accuracy gain would make it the choice "
                               "under your answers above: those, not accuracy, rule it out")
            else:
                changes.append(f"{LABELS[runner_up]} is the runner-up: it would be the choice with {points} more "
                               f"points of accuracy ({float(summary[runner_up]['accuracy']):.0%} -> "
                               f"{min(1.0, float(summary[runner_up]['accuracy']) + points / 100):.0%}), all else "
                               "as measured")
    label = "Improve retrieval first" if out.choice == "improve-retrieval" else LABELS[out.choice]
    return Recommendation(out.choice, label, out.reasons, tuple(changes), out.matrix,
                          caveat or (SMALL_MODEL_CAVEAT if small_model else None), out.score)


# ---------------------------------------------------------------- the user's answers, kept in the workspace

SITUATION_KEY = "decide:situation"
SITUATION_DEFAULTS: dict[str, Any] = {
    "per_day": 10_000, "months": 12, "amortise_months": 12, "changes": None, "citations": None, "latency_s": 0.0,
    "format_matters": None, "training_examples": None, "hardware_usd_per_hour": None, "cached_input": False,
    "peak_factor": 3.0, "capacity_qph": None,
}


def load_situation(workspace: Any) -> dict[str, Any]:
    """The answers last given on the Decide page in this workspace (defaults for what was never answered)."""
    import json

    try:
        stored = json.loads(workspace.meta(SITUATION_KEY) or "{}")
    except ValueError:
        stored = {}
    if not isinstance(stored, dict):
        stored = {}
    return {k: stored.get(k, v) for k, v in SITUATION_DEFAULTS.items()}


def save_situation(workspace: Any, values: dict[str, Any]) -> None:
    """Keep the Decide page's answers in the workspace, across pages and restarts (only known keys)."""
    import json

    clean = {k: values.get(k, v) for k, v in SITUATION_DEFAULTS.items()}
    if clean != load_situation(workspace):
        workspace.set_meta(SITUATION_KEY, json.dumps(clean))


def situation_of(values: dict[str, Any]) -> Situation:
    latency = float(values.get("latency_s") or 0)
    return Situation(changes=values.get("changes"), citations=values.get("citations"),
                     latency_ms=latency * 1000 or None, format_matters=values.get("format_matters"),
                     training_examples=values.get("training_examples"))
