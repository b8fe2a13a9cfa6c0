"""Self-hosting priced from measured capacity, and a workshop sized for its server. Pure functions: a capacity
curve and assumptions in, numbers and the sentence that explains them out.

Nobody pays for one request's seconds: a self-hosted model costs the machines that serve the peak, running
all month. From a capacity curve (per concurrency: questions per hour one machine answers, and the p95
latency of a question), `serving_cost` picks the concurrency to run at (the best throughput whose p95 meets
the latency target; the best throughput when there is no target), and then:

    peak questions per hour  = questions a day / 24 x peak-to-average factor (default 3)
    machines                 = ceil(peak questions per hour / questions per hour of one machine), at least 1
    monthly cost             = machines x hardware price per hour x 730 hours
    cost per question        = monthly cost / (questions a day x 30)

(30 days of questions a month, as lib.projection counts them, so the projection's monthly inference cost of
the arm is exactly the machines' cost.) A capacity the user enters (questions per hour per machine, say a GPU
server's) replaces the measured curve.

`workshop_forecast` turns the same curve into what a workshop host needs to know: how many local questions a
minute this server answers, and how long N participants who ask the default arms at the same moment wait.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lib.errors import UserError
from lib.format import usd

HOURS_PER_MONTH = 730
DAYS_PER_MONTH = 30  # as lib.projection counts a month's questions
DEFAULT_PEAK_FACTOR = 3.0
GPU_NOTE = ("A GPU server running vLLM serves far more questions an hour than this CPU measurement shows: "
            "measure that server, or enter its capacity.")


@dataclass(frozen=True)
class CapacityPoint:
    """One machine at one concurrency."""

    concurrency: int
    questions_per_hour: float
    latency_p95_ms: float | None = None
    latency_p50_ms: float | None = None



def _the(measurement: str) -> str:
    """'the capacity measured on ...', but 'this run's own answers' as it is."""
    return measurement if measurement.split(" ", 1)[0].lower() in ("the", "this", "a", "an") else f"the {measurement}"

def points_from(capacity: Any) -> list[CapacityPoint]:
    """The curve of a lib.capacity.Capacity, or of its stored dict (`levels`), or of dicts / points given."""
    levels = capacity.get("levels") if isinstance(capacity, dict) else getattr(capacity, "levels", capacity)
    out = []
    for lv in levels or ():
        if isinstance(lv, CapacityPoint):
            out.append(lv)
            continue
        get = lv.get if isinstance(lv, dict) else (lambda k, _lv=lv: getattr(_lv, k, None))
        out.append(CapacityPoint(int(get("concurrency")), float(get("questions_per_hour")),
                                 None if get("latency_p95_ms") is None else float(get("latency_p95_ms")),
                                 None if get("latency_p50_ms") is None else float(get("latency_p50_ms"))))
    return sorted(out, key=lambda p: p.concurrency)


def choose_point(points: Sequence[CapacityPoint], latency_target_ms: float | None = None
                 ) -> tuple[CapacityPoint, bool | None]:
    """(the point to run at, whether it meets the target: None without a target). The best throughput among the
    points whose p95 meets the target (the lower concurrency on a tie); when none does, the point with the
    lowest p95, flagged False."""
    usable = [p for p in points if p.questions_per_hour > 0]
    if not usable:
        raise ValueError("The capacity has no concurrency that answered any question.")

    def best(ps: Sequence[CapacityPoint]) -> CapacityPoint:
        return max(ps, key=lambda p: (p.questions_per_hour, -p.concurrency))

    if latency_target_ms is None:
        return best(usable), None
    meeting = [p for p in usable if p.latency_p95_ms is not None and p.latency_p95_ms <= latency_target_ms]
    if meeting:
        return best(meeting), True
    return min(usable, key=lambda p: (math.inf if p.latency_p95_ms is None else p.latency_p95_ms,
                                      p.concurrency)), False


@dataclass(frozen=True)
class ServingCost:
    concurrency: int | None  # None when the capacity was entered
    questions_per_hour_per_machine: float
    latency_p95_ms: float | None
    latency_target_ms: float | None
    meets_target: bool | None  # None: no target, or an entered capacity
    per_day: float
    peak_factor: float
    peak_questions_per_hour: float
    machines: int
    usd_per_hour: float
    monthly_usd: float
    cost_per_question_usd: float | None  # None at 0 questions a day
    capacity_source: str  # "measured: <which measurement>" or "entered"
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(name: str, value: float, lowest: float) -> float:
    if value is None or not math.isfinite(float(value)) or float(value) < lowest:
        raise UserError(f"{name} must be a number of at least {lowest:g} (got {value!r}).")
    return float(value)


def serving_cost(points: Sequence[CapacityPoint], usd_per_hour: float, per_day: float,
                 peak_factor: float = DEFAULT_PEAK_FACTOR, latency_target_ms: float | None = None,
                 measurement: str = "", entered_questions_per_hour: float | None = None) -> ServingCost:
    """What serving `per_day` questions costs on machines of `usd_per_hour` with this capacity (see the module).
    `measurement` names the capacity measurement for the note (lib.capacity.Capacity.label);
    `entered_questions_per_hour`, when given, replaces the measured curve."""
    usd_per_hour = _check("The hardware price per hour", usd_per_hour, 0)
    per_day = _check("Questions a day", per_day, 0)
    peak_factor = _check("The peak-to-average factor", peak_factor, 1)
    if latency_target_ms is not None:
        latency_target_ms = _check("The latency target", latency_target_ms, 0)
    if entered_questions_per_hour is not None:
        qph = _check("The capacity (questions per hour per machine)", entered_questions_per_hour, 0)
        if qph == 0:
            raise UserError("The capacity (questions per hour per machine) must be more than 0.")
        point, meets, source = None, None, "entered"
    else:
        point, meets = choose_point(points, latency_target_ms)
        qph, source = point.questions_per_hour, f"measured: {measurement}" if measurement else "measured"
    peak = per_day / 24 * peak_factor
    machines = max(1, math.ceil(round(peak / qph, 9)))
    monthly = machines * usd_per_hour * HOURS_PER_MONTH
    per_month = per_day * DAYS_PER_MONTH
    per_question = monthly / per_month if per_month > 0 else None

    if point is None:
        served = f"one machine answers {qph:,.0f} questions an hour (the capacity you entered)"
    else:
        p95 = f", p95 {point.latency_p95_ms / 1000:.1f} s" if point.latency_p95_ms is not None else ""
        if meets is None:
            why = "the best throughput measured"
        elif meets:
            why = f"the best throughput whose p95 meets the {latency_target_ms / 1000:g} s target"
        else:
            why = (f"no concurrency meets the {latency_target_ms / 1000:g} s target; the fastest one is used, "
                   "so answers are slower than the target")
        served = (f"one machine answers {qph:,.0f} questions an hour at {point.concurrency} at a time{p95} "
                  f"({why})")
    note = (f"{machines} machine{'s' if machines != 1 else ''} x {usd(usd_per_hour)}/h x {HOURS_PER_MONTH} h = "
            f"{usd(monthly)} a month, sized for the peak: {per_day:,.0f} questions a day / 24 x {peak_factor:g} "
            f"= {peak:,.0f} an hour, and {served}"
            + (f"; {usd(per_question)} a question at {per_day:,.0f} a day" if per_question is not None else "")
            + (f". From {_the(measurement)}" if measurement and point is not None else "")
            + f". {GPU_NOTE}")
    return ServingCost(None if point is None else point.concurrency, qph,
                       None if point is None else point.latency_p95_ms, latency_target_ms, meets, per_day,
                       peak_factor, peak, machines, usd_per_hour, monthly, per_question, source, note)


# ---------------------------------------------------------------- the workshop forecast

def _interpolate(points: Sequence[CapacityPoint], c: float, attr: str) -> float:
    """A point's value at concurrency c: linear between measured concurrencies; beyond the largest, latency grows
    in proportion (the throughput stays that of the largest); below the smallest, the smallest's value."""
    known = [(p.concurrency, getattr(p, attr)) for p in points if getattr(p, attr) is not None]
    if not known:
        raise ValueError(f"The capacity has no {attr.replace('_', ' ')}.")
    known.sort()
    if c <= known[0][0]:
        return float(known[0][1])
    if c >= known[-1][0]:
        top, value = known[-1]
        return float(value) * (c / top if attr.startswith("latency") else 1.0)
    for (c0, v0), (c1, v1) in zip(known, known[1:]):
        if c0 <= c <= c1:
            return float(v0 + (v1 - v0) * (c - c0) / (c1 - c0))
    return float(known[-1][1])  # not reached


def round_seconds(points: Sequence[CapacityPoint], concurrency: int) -> float:
    """How long a round of `concurrency` answers started together lasts: as long as its slowest answer, the
    expected largest of n answer times, taken as their n/(n+1) quantile, interpolated between the p50 and the
    p95 latency measured at that concurrency (one answer alone: the p50)."""
    p50 = _interpolate(points, concurrency, "latency_p50_ms")
    try:
        p95 = _interpolate(points, concurrency, "latency_p95_ms")
    except ValueError:
        p95 = p50
    share = min(1.0, max(0.0, (concurrency / (concurrency + 1) - 0.5) / 0.45))
    return (p50 + (max(p95, p50) - p50) * share) / 1000


@dataclass(frozen=True)
class WorkshopForecast:
    participants: int
    arms: int  # local answers per participant's question (asked one after another)
    served_at_once: int  # requests the server decodes together
    answer_s: float  # one round of answers at that concurrency (see round_seconds)
    questions_per_minute: float  # what the server answers at that concurrency
    best_questions_per_minute: float  # the most at any measured concurrency
    wait_p50_s: float  # from asking to having every answer: the median participant
    wait_max_s: float  # and the last one
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def workshop_forecast(points: Sequence[CapacityPoint], participants: int, arms: int = 3,
                      max_batch: int | None = None, measurement: str = "") -> WorkshopForecast:
    """N participants ask a question on `arms` local arms at the same moment. A participant's arms are answered
    one after another (the arms of one comparison never share a batch) and the server decodes up to `max_batch`
    requests at once (worker processes x batch size; default: the largest measured concurrency), so
    n = min(N, max_batch) answers run at a time, in rounds that last as long as their slowest answer
    (`round_seconds`). With more participants than that, they are served in waves: participant i (in order of
    asking) has every answer after ceil(i / n) x arms rounds."""
    if participants < 1 or arms < 1:
        raise UserError("A forecast needs at least one participant and one arm.")
    points = sorted(points, key=lambda p: p.concurrency)
    if not points:
        raise UserError("A forecast needs a capacity measurement.")
    limit = max(1, int(max_batch) if max_batch else max(p.concurrency for p in points))
    at_once = min(participants, limit)
    answer_s = round_seconds(points, at_once)
    per_minute = _interpolate(points, at_once, "questions_per_hour") / 60
    best = max(p.questions_per_hour for p in points) / 60
    rounds = [math.ceil(i / at_once) * arms * answer_s for i in range(1, participants + 1)]
    p50, last = float(statistics.median(rounds)), rounds[-1]
    note = (f"{participants} participant{'s' if participants != 1 else ''} asking {arms} local arm"
            f"{'s' if arms != 1 else ''} each: {at_once} answer{'s' if at_once != 1 else ''} at a time, a "
            f"participant's arms one after another, each round of answers about {answer_s:.1f} s (as long as its "
            f"slowest, from the latencies measured at that concurrency); the median participant has every answer "
            f"after about {p50:.0f} s, the last after {last:.0f} s. This server answers about {per_minute:.1f} "
            f"local questions a minute at that load (at most {best:.1f})."
            + (f" From {_the(measurement)}." if measurement else ""))
    return WorkshopForecast(participants, arms, at_once, answer_s, per_minute, best, p50, last, note)


def local_default_arms(settings: Any) -> int:
    """How many of the default arms (RAG, fine-tuned, hybrid) run on the local model under these settings."""
    from lib.arms import ARMS, DEFAULT_ARMS

    specs = {"base": settings.base, "finetuned": settings.finetuned}
    return sum(1 for a in DEFAULT_ARMS if (spec := specs.get(ARMS[a].role)) is not None and spec.provider == "local")
