"""Paired timing (ours and the reference alternate, so load drift hits both alike)
and the result record every benchmark returns."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

Trial = Callable[[], float]  # runs once and returns the seconds it measured (set-up excluded)


def timed(fn: Callable[[], object], setup: Callable[[], object] | None = None) -> Trial:
    def trial() -> float:
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return trial


@dataclass(frozen=True)
class Paired:
    ours: list[float]  # seconds per repetition
    reference: list[float]

    def ratios(self) -> list[float]:
        """ours / reference per repetition (a time ratio: below 1 means ours is faster)."""
        return [o / r for o, r in zip(self.ours, self.reference, strict=True)]


@dataclass(frozen=True)
class Reps:
    """Up to `most` timed rounds after `warmup` untimed ones; with budget_s, stop early (at an even
    count, at least `least`) once the timed rounds have taken that long: a slow machine gets fewer
    repetitions rather than a longer run."""

    most: int
    least: int = 2
    budget_s: float | None = None
    warmup: int = 1


def alternate(ours: Trial, reference: Trial, reps: Reps) -> Paired:
    """Time both, swapping which goes first each round."""
    for _ in range(reps.warmup):
        ours()
        reference()
    o: list[float] = []
    r: list[float] = []
    start = time.perf_counter()
    for i in range(reps.most):
        over = reps.budget_s is not None and time.perf_counter() - start > reps.budget_s
        if over and i >= reps.least and i % 2 == 0:
            break
        if i % 2 == 0:
            o.append(ours())
            r.append(reference())
        else:
            r.append(reference())
            o.append(ours())
    return Paired(o, r)


@dataclass(frozen=True)
class Measurement:
    key: str
    name: str
    ours: float  # median, in `unit`
    reference: float
    unit: str
    ratio: float  # median over repetitions of the per-repetition ratio, oriented like the target
    target: float
    higher_is_better: bool  # ratio >= target passes, else ratio <= target passes
    ours_label: str
    reference_label: str
    reps: int
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    @property
    def target_text(self) -> str:
        return f"{'>=' if self.higher_is_better else '<='} {self.target:g}x"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed, "target_text": self.target_text}


def throughput(key: str, name: str, runs: Paired, items: int, target: float, ours_label: str,
               reference_label: str, unit: str = "items/s", **details: Any) -> Measurement:
    """Items per second; the ratio is ours / reference (reference time over ours, per repetition)."""
    ratios = [1 / x for x in runs.ratios()]
    return Measurement(key, name, items / statistics.median(runs.ours), items / statistics.median(runs.reference),
                       unit, statistics.median(ratios), target, True, ours_label, reference_label, len(ratios),
                       {**details, "items": items, "ratios": ratios, "seconds": asdict(runs)})


def slowdown(key: str, name: str, runs: Paired, target: float, ours_label: str, reference_label: str,
             unit: str = "s", **details: Any) -> Measurement:
    """Elapsed time; the ratio is ours / reference (time over time, per repetition)."""
    scale = 1000.0 if unit == "ms" else 1.0
    ratios = runs.ratios()
    return Measurement(key, name, statistics.median(runs.ours) * scale, statistics.median(runs.reference) * scale,
                       unit, statistics.median(ratios), target, False, ours_label, reference_label, len(ratios),
                       {**details, "ratios": ratios, "seconds": asdict(runs)})
