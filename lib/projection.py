"""Cost at scale, from an evaluation run's measured tokens per question: monthly cost per arm at
N questions a day, training amortised, retraining as often as the documents change, and the
break-even between arms. Pure functions: run records in, numbers out.

Hosted arms are priced from their tokens by the price library (lib.pricing): the fine-tuned
price for fine-tuned models, and, as an option, the provider's cached-input price for the part
of the prompt every question repeats (see `cached_prefix_tokens`). Local or self-hosted models
cost what their hardware costs: `hardware_usd_per_hour` x the measured seconds per question.
Until the user gives that figure their cost is unknown, never $0.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lib.records import AnswerRecord, ArmResult, RunRecord, Usage

DAYS_PER_MONTH = 30
RETRAINS_PER_MONTH = {"daily": 30.0, "weekly": 52 / 12, "monthly": 1.0, "quarterly": 1 / 3, "rarely": 0.0}
# OpenAI caches a prompt prefix automatically once the prompt reaches 1,024 tokens (in steps of 128).
CACHE_MIN_PROMPT = 1024


@dataclass(frozen=True)
class ArmUsage:
    """What one arm used per question in a run (answered questions only)."""

    arm: str
    model: str
    provider: str
    questions: int
    prompt_mean: float
    prompt_p95: float
    completion_mean: float
    completion_p95: float
    context_mean: float
    prefix_mean: float  # system prompt + chat template: the part every question repeats
    seconds_mean: float  # the arm's own time per question (retrieval + generation, no queue)
    cost_per_question_usd: float | None  # mean measured cost; None when a price was unknown
    top_k: int
    prefill_seconds_mean: float = 0.0  # of seconds_mean: reading the prompt (time to first token, less retrieval)
    seconds_p95: float = 0.0  # the arm's own time per question, 95th percentile


def _p95(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    i = 0.95 * (len(ordered) - 1)
    lo = int(i)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (i - lo)


def arm_usage(answers: list[AnswerRecord], top_k: int = 4) -> list[ArmUsage]:
    """Per arm, from a run's stored answers (answered questions only), in the order the arms first answered."""
    by_arm: dict[str, list[tuple[ArmResult, Usage]]] = {}
    for a in answers:
        if a.result.error or not a.result.usage:
            continue
        by_arm.setdefault(a.arm, []).append((a.result, a.result.usage))
    out = []
    for arm, rows in by_arm.items():
        results, usages = [r for r, _ in rows], [u for _, u in rows]
        costs = [r.cost_usd for r in results]
        known = [c for c in costs if c is not None]
        out.append(ArmUsage(
            arm=arm, model=results[0].model, provider=results[0].provider, questions=len(rows),
            prompt_mean=statistics.fmean(u.prompt_tokens for u in usages),
            prompt_p95=_p95([u.prompt_tokens for u in usages]),
            completion_mean=statistics.fmean(u.completion_tokens for u in usages),
            completion_p95=_p95([u.completion_tokens for u in usages]),
            context_mean=statistics.fmean(u.context_tokens for u in usages),
            prefix_mean=statistics.fmean(u.system_tokens + u.overhead_tokens for u in usages),
            seconds_mean=statistics.fmean((r.total_ms or 0) / 1000 for r in results),
            cost_per_question_usd=statistics.fmean(known) if known and len(known) == len(costs) else None,
            top_k=top_k,
            prefill_seconds_mean=statistics.fmean(max(0.0, ((r.ttft_ms or 0) - (r.retrieval_ms or 0)) / 1000)
                                                  for r in results),
            seconds_p95=_p95([(r.total_ms or 0) / 1000 for r in results])))
    return out


SELF_HOSTED = ("local", "ollama")  # providers whose cost is the machines that serve them


@dataclass(frozen=True)
class CapacityCurve:
    """What one machine serves of an arm's model at each concurrency, and where that comes from."""

    points: tuple[Any, ...]  # lib.serving_cost.CapacityPoint
    source: str


@dataclass(frozen=True)
class Assumptions:
    per_day: int = 10_000
    months: int = 12
    cached_input: bool = False  # price the repeated prompt prefix at the provider's cached-input rate
    hardware_usd_per_hour: float | None = None  # for local / self-hosted models; None = unknown
    amortise_months: int = 12  # training cost spread over this many months
    changes: str = "rarely"  # how often the documents change: daily | weekly | monthly | quarterly | rarely
    training_usd: dict[str, float | None] | None = None  # per arm (fine-tuned arms): one training run
    top_k: int | None = None  # re-price with this many sources (None: as measured)
    training_note: str = ""  # where the training time or cost comes from (measured, or estimated for this KB)
    # Self-hosting (local models, or a hosted model with no per-token price): machines sized for the peak.
    peak_factor: float = 3.0  # peak hour / average hour
    latency_target_ms: float | None = None  # p95 the serving concurrency must meet (None: the best throughput)
    capacity_qph: float | None = None  # questions an hour one machine serves, as the user enters it (overrides)
    capacities: tuple[tuple[str, CapacityCurve], ...] = ()  # arm -> its capacity curve (capacity_curves)


@dataclass(frozen=True)
class Projection:
    arm: str
    model: str
    questions: int
    cost_per_question_usd: float | None
    monthly_inference_usd: float | None
    training_usd: float | None
    monthly_training_usd: float | None  # amortised first training + retraining as often as documents change
    monthly_total_usd: float | None
    priced: bool
    note: str
    machines: int | None = None  # self-hosted arms: machines needed at the peak
    questions_per_hour_per_machine: float | None = None
    capacity_source: str | None = None  # "measured: ...", "entered", or "the run's own answers ..."

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fine_tuned(arm: str) -> bool:
    return arm in ("finetuned", "hybrid")


def per_question(u: ArmUsage, a: Assumptions) -> tuple[float | None, str]:
    """(USD per question, how it was priced) under the assumptions."""
    from lib.pricing import price_tokens

    prompt = u.prompt_mean
    if a.top_k is not None and u.top_k and u.context_mean:
        prompt += u.context_mean * (a.top_k / u.top_k - 1)  # context tokens scale with the number of sources
    if u.provider in SELF_HOSTED:
        cost = self_hosted(u, a)
        return (None, "self-hosted model: cost unknown until you give the hardware's cost per hour") if cost is None \
            else (cost.cost_per_question_usd, cost.note)
    cached = u.prefix_mean if a.cached_input and prompt >= CACHE_MIN_PROMPT else 0.0
    if not a.cached_input and a.top_k is None and u.cost_per_question_usd is not None:
        return u.cost_per_question_usd, "mean measured cost per question"
    usd, note = price_tokens(u.model, round(prompt), round(u.completion_mean), round(cached))
    if cached:
        note += f"; {cached:.0f} repeated prefix tokens at the cached-input price"
    elif a.cached_input:
        note += f"; no caching: prompts under {CACHE_MIN_PROMPT} tokens are not cached"
    return usd, note


def _seconds_at(u: ArmUsage, a: Assumptions) -> float:
    """The arm's seconds per question at the assumed top-k: reading the prompt scales with its length."""
    if a.top_k is None or not u.top_k or not u.context_mean or not u.prompt_mean:
        return u.seconds_mean
    prompt = u.prompt_mean + u.context_mean * (a.top_k / u.top_k - 1)
    return max(0.001, u.seconds_mean + u.prefill_seconds_mean * (prompt / u.prompt_mean - 1))


def self_hosted(u: ArmUsage, a: Assumptions) -> Any:
    """What serving the arm's model costs on machines of `hardware_usd_per_hour` sized for the peak
    (lib.serving_cost.ServingCost), from its capacity curve (a measurement, the capacity entered, or the run's own
    answers one at a time); None without the hardware's price."""
    from lib.serving_cost import CapacityPoint, serving_cost

    if a.hardware_usd_per_hour is None:
        return None
    curve = dict(a.capacities).get(u.arm)
    if curve is None:  # no measurement: the run's own answers, one at a time
        curve = CapacityCurve((CapacityPoint(1, 3600 / max(0.001, u.seconds_mean), u.seconds_p95 * 1000 or None),),
                              f"this run's own answers, one at a time ({u.seconds_mean:.2f} s a question; measure "
                              "the capacity with batching: `python -m lib capacity`)")
    factor = _seconds_at(u, a) / max(0.001, u.seconds_mean)
    points = [CapacityPoint(p.concurrency, p.questions_per_hour / factor,
                            None if p.latency_p95_ms is None else p.latency_p95_ms * factor,
                            None if p.latency_p50_ms is None else p.latency_p50_ms * factor) for p in curve.points]
    source = curve.source + (f", prompt reading scaled to top-k {a.top_k} (an estimate)" if factor != 1 else "")
    return serving_cost(points, a.hardware_usd_per_hour, a.per_day, a.peak_factor, a.latency_target_ms, source,
                        a.capacity_qph)


def project(usages: list[ArmUsage], a: Assumptions) -> list[Projection]:
    out = []
    retrains = RETRAINS_PER_MONTH.get(a.changes, 0.0)
    for u in usages:
        cpq, note = per_question(u, a)
        serving = None
        if u.provider in SELF_HOSTED or (cpq is None and a.capacity_qph is not None):
            serving = self_hosted(u, a)  # a hosted model with no known price: a self-hosted server, if capacity given
            if serving is not None and u.provider not in SELF_HOSTED:
                note = f"no per-token price known for {u.model}: priced as a self-hosted server. " + serving.note
                cpq = serving.cost_per_question_usd
        monthly = None if cpq is None else (serving.monthly_usd if serving is not None else
                                            cpq * a.per_day * DAYS_PER_MONTH)
        training = (a.training_usd or {}).get(u.arm) if _fine_tuned(u.arm) else 0.0
        if u.arm == "longcontext":
            note += (f"; its prompt holds the whole knowledge base ({u.context_mean:,.0f} tokens a question): its cost "
                     "per question grows with the knowledge base, and a knowledge base that outgrows the model's "
                     "context window cannot be asked at all")
        if _fine_tuned(u.arm) and a.training_note:
            note += f"; training time {a.training_note}"
        if _fine_tuned(u.arm) and training is None:
            monthly_training = None
            note += "; training cost unknown" + (" until you give the hardware's cost per hour"
                                                 if u.provider == "local" and a.hardware_usd_per_hour is None else "")
        elif _fine_tuned(u.arm):
            monthly_training = (training or 0.0) / max(1, a.amortise_months) + (training or 0.0) * retrains
        else:
            monthly_training = 0.0
        total = None if monthly is None or monthly_training is None else monthly + monthly_training
        out.append(Projection(u.arm, u.model, u.questions, cpq, monthly, training, monthly_training, total,
                              total is not None, note, serving.machines if serving else None,
                              serving.questions_per_hour_per_machine if serving else None,
                              serving.capacity_source if serving else None))
    return out


def cumulative(p: Projection, months: int, a: Assumptions) -> list[float | None]:
    """Cost to date at the end of each month 0..months: training paid up front, then inference and retraining."""
    if p.monthly_inference_usd is None or (_fine_tuned(p.arm) and p.training_usd is None):
        return [None] * (months + 1)
    upfront = p.training_usd or 0.0
    retrain = upfront * RETRAINS_PER_MONTH.get(a.changes, 0.0) if _fine_tuned(p.arm) else 0.0
    return [upfront + m * (p.monthly_inference_usd + retrain) for m in range(months + 1)]


def crossings(projections: list[Projection], months: int, a: Assumptions) -> list[dict[str, Any]]:
    """Where one arm's cumulative cost overtakes another's (the month, linearly interpolated)."""
    curves = {p.arm: cumulative(p, months, a) for p in projections}
    out = []
    arms = [k for k, v in curves.items() if v[0] is not None]
    for i, x in enumerate(arms):
        for y in arms[i + 1:]:
            cx, cy = curves[x], curves[y]
            for m in range(months):
                d0 = cx[m] - cy[m]  # type: ignore[operator]
                d1 = cx[m + 1] - cy[m + 1]  # type: ignore[operator]
                if d0 == 0 or d0 * d1 >= 0:
                    continue
                t = m + d0 / (d0 - d1)
                cost = cx[m] + (cx[m + 1] - cx[m]) * (t - m)  # type: ignore[operator]
                cheaper_after = x if d1 < 0 else y
                out.append({"arms": (x, y), "month": round(t, 2), "usd": cost, "cheaper_after": cheaper_after})
    return out


def sensitivity_per_day(usages: list[ArmUsage], a: Assumptions, per_day: Sequence[int]) -> dict[str, list[float | None]]:
    from dataclasses import replace

    return {u.arm: [project([u], replace(a, per_day=n))[0].monthly_total_usd for n in per_day] for u in usages}


def sensitivity_top_k(usages: list[ArmUsage], a: Assumptions, top_ks: Sequence[int]) -> dict[str, list[float | None]]:
    from dataclasses import replace

    return {u.arm: [project([u], replace(a, top_k=k))[0].monthly_total_usd for k in top_ks]
            for u in usages if u.context_mean > 0}


# ---------------------------------------------------------------- from a stored run

@dataclass(frozen=True)
class TrainingTime:
    """How long one training of the fine-tuned model in question takes, and where the figure comes from."""

    seconds: float | None
    cost_usd: float | None  # a hosted job's recorded cost (None for local training: hardware time prices it)
    measured: bool  # measured when this model was trained on these documents; False: an estimate
    note: str  # says which: "measured ..." or "estimated ..."
    provider: str = "local"


DEFAULT_STEPS = 125  # the shipped adapter's recipe, and the default of `finetune --kb` and the Fine-tune page


def training_time(workspace: Any, model_label: str, collection: str, steps: int = DEFAULT_STEPS) -> TrainingTime:
    """The training time of the fine-tuned model in question: its measured time when it was trained on this
    knowledge base; otherwise (it was trained on other documents, e.g. the shipped adapter on the sample company)
    the estimate for fine-tuning on this knowledge base on this machine, naming its source."""
    from lib.finetune.from_kb import estimate

    model = next((m for m in workspace.models() if m.spec.label == model_label), None) if model_label else None
    if model is None:
        return TrainingTime(None, None, False, "the fine-tuned model is not in this workspace's registry: its "
                                               "training time is unknown", "")
    trained_kb = model.knowledge_base or ("sample" if model.builtin else "")
    if model.provider != "local":
        here = trained_kb == collection
        return TrainingTime(model.train_seconds, model.training_cost_usd, here,
                            f"{'recorded' if here else 'recorded for training on ' + repr(trained_kb or 'other data')}"
                            f" cost of {model.name}" + ("" if here else ": fine-tuning on this knowledge base would "
                                                         "cost differently"), model.provider)
    if trained_kb == collection and model.train_seconds:
        return TrainingTime(float(model.train_seconds), None, True,
                            f"measured: {model.train_seconds / 60:.0f} min when {model.name} was trained on "
                            f"'{collection}'")
    est = estimate(workspace, steps)
    why = f"{model.name} was trained on {repr(trained_kb) if trained_kb else 'other documents'}, not on " \
          f"'{collection}'" if trained_kb != collection else f"{model.name}'s training time was not recorded"
    return TrainingTime(float(est["seconds"]), None, False,
                        f"estimated: about {est['seconds'] / 60:.0f} min to fine-tune on '{collection}' on this "
                        f"machine ({steps} steps x {est['seconds_per_step']:.1f} s per step, from "
                        f"{est['source']}); {why}")


def training_costs(workspace: Any, run: RunRecord, hardware_usd_per_hour: float | None) -> dict[str, float | None]:
    """One training run's cost for the fine-tuned arms of a run (see `training_time` for which time is used): a
    hosted job's recorded cost; a local LoRA's training time x the hardware's cost per hour (unknown without it)."""
    t = run_training_time(workspace, run)
    if t.provider and t.provider != "local":
        cost = t.cost_usd
    else:
        cost = None if hardware_usd_per_hour is None or t.seconds is None else hardware_usd_per_hour * t.seconds / 3600
    return {"finetuned": cost, "hybrid": cost}


def run_training_time(workspace: Any, run: RunRecord) -> TrainingTime:
    return training_time(workspace, run.spec.models.get("finetuned", ""), run.spec.collection)


def capacity_curves(workspace: Any, usages: list[ArmUsage]) -> tuple[tuple[str, CapacityCurve], ...]:
    """arm -> the capacity measurement (lib.capacity) of its model on this machine, for the self-hosted arms whose
    model was measured (the newest measurement of that model and role); arms left out price from the run's own
    answers, one at a time."""
    from lib.arms import ARMS
    from lib.capacity import latest
    from lib.serving_cost import points_from

    out = []
    for u in usages:
        if u.provider not in SELF_HOSTED or u.arm not in ARMS:
            continue
        try:
            measured = latest(workspace, ARMS[u.arm].role)
        except Exception:  # a store without measurements (or of an older shape): the run's own answers
            measured = None
        if measured is not None and measured.model == u.model:
            out.append((u.arm, CapacityCurve(tuple(points_from(measured)), measured.label)))
    return tuple(out)


def usages_of(record: RunRecord, answers: list[AnswerRecord]) -> list[ArmUsage]:
    """Per-arm usage of a loaded run, in the run's arm order."""
    order = {arm: i for i, arm in enumerate(record.spec.arms)}
    return sorted(arm_usage(answers, int(record.spec.top_k or 0)), key=lambda u: order.get(u.arm, 99))


def volume_axis(per_day: int) -> list[int]:
    """Volumes for the sensitivity chart: two decades either side of the user's volume, the volume itself
    included, so it is never lost at one end of the axis."""
    points = {max(1, round(per_day * f)) for f in (0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100)}
    return sorted(points)


def from_run(workspace: Any, run: str, a: Assumptions) -> tuple[RunRecord, list[ArmUsage], list[Projection]]:
    """(the run record, per-arm usage, projections) for a stored run, by id or name."""
    from dataclasses import replace

    from lib.evalrun import load

    record, answers = load(workspace, run)
    usages = usages_of(record, answers)
    if a.training_usd is None:
        a = replace(a, training_usd=training_costs(workspace, record, a.hardware_usd_per_hour),
                    training_note=a.training_note or run_training_time(workspace, record).note)
    if not a.capacities:
        a = replace(a, capacities=capacity_curves(workspace, usages))
    return record, usages, project(usages, a)
