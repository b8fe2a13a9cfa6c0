"""Ask and record: the one use case behind the Compare page and `python -m lib ask`. Every chosen arm answers
the question (lib.engine.ask), the comparison is saved in the workspace's history, and, when the question is one
of a question set's (the shipped sample set, then the workspace's sets), each answer is graded against its
reference answer as an evaluation run grades it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lib.records import Comparison, GenParams, Graded, Question
from lib.settings import Settings


@dataclass(frozen=True)
class Asked:
    comparison: Comparison
    reference: Question | None = None  # the question set's question it matched, with its reference answer
    grades: dict[str, Graded] = field(default_factory=dict)  # arm -> its grade (none without a reference)


def grade_against_reference(comparison: Comparison, workspace: Any = None) -> Asked:
    """The comparison with its reference (when its question is a question set's) and each arm's grade."""
    from lib.evalrun import reference_for
    from lib.evaluate import grade_result

    reference = reference_for(comparison.question, workspace)
    if reference is None:
        return Asked(comparison)
    return Asked(comparison, reference, {r.arm: grade_result(reference, r) for r in comparison.results})


def ask_and_record(settings: Settings, question: str, arms: list[str] | tuple[str, ...], kb: Any = None,
                   params: GenParams = GenParams(), top_k: int = 4, min_score: float = 0.0, workspace: Any = None,
                   on_delta: Callable[[str, str], None] | None = None,
                   on_status: Callable[[str, str], None] | None = None) -> Asked:
    """Ask every arm, save the comparison in the workspace (the settings' one unless given), and grade the answers
    against a reference answer when there is one."""
    from lib import engine

    comparison = engine.ask(settings, question, arms, kb, params, top_k, min_score, on_delta=on_delta,
                            on_status=on_status)
    ws = workspace if workspace is not None else engine.workspace_for(settings)
    ws.add_comparison(comparison)
    return grade_against_reference(comparison, ws)
