"""A report to take to a meeting: one self-contained HTML file (charts embedded, plotly.js inline,
opens offline) and the same content as Markdown. Built from a stored evaluation run."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field, replace
from typing import Any

from lib import charts, projection
from lib.decision import LABELS, Recommendation, Situation, decide
from lib.format import escape_markdown, one_line
from lib.records import AnswerRecord, RunRecord


@dataclass(frozen=True)
class Decision:
    """Everything the Decide page and the report show for one run, computed once: every figure printed twice
    (measurements and cost tables, page and report) comes from here."""

    run: RunRecord
    summary: dict[str, dict[str, Any]]
    assumptions: projection.Assumptions
    projections: list[projection.Projection]
    curves: dict[str, list[float | None]]
    crossings: list[dict[str, Any]]
    per_day_axis: list[int]
    per_day: dict[str, list[float | None]]
    top_k_axis: list[int]
    top_k: dict[str, list[float | None]]
    freshness: dict[str, dict[str, Any]] | None
    recommendation: Recommendation
    small_model: bool
    situation: Situation = Situation()
    models: dict[str, tuple[str, str]] = field(default_factory=dict)  # arm -> (model, provider) as answered
    provenance: dict[str, Any] | None = None  # the fine-tuned model's card and warnings, as on Compare
    training: projection.TrainingTime | None = None
    prices: list[dict[str, Any]] = field(default_factory=list)  # per-token prices used, with their source and date


def run_models(answers: list[AnswerRecord]) -> dict[str, tuple[str, str]]:
    """arm -> (model, provider) of the answers the run actually got (failed requests left out)."""
    out: dict[str, tuple[str, str]] = {}
    for a in answers:
        if a.result.error or not a.result.model or a.arm in out:
            continue
        out[a.arm] = (a.result.model, a.result.provider)
    return out


def run_provenance(answers: list[AnswerRecord], collection: str) -> dict[str, Any] | None:
    """The fine-tuned model's provenance as its answers carried it (the model card and the warnings shown on
    Compare), and whether it was trained on other documents than this knowledge base."""
    from lib.provenance import card_line

    tuned = [a.result for a in answers if a.arm in ("finetuned", "hybrid")]
    info = next((r.trained_on for r in tuned if r.trained_on), None)
    warnings = list(dict.fromkeys(w for r in tuned for w in r.warnings if "finish reason" not in w))
    if info is None and not warnings:
        return None
    trained_kb = (info or {}).get("knowledge_base") or ""
    return {"card": card_line(info) if info else "", "knowledge_base": collection, "trained_on_kb": trained_kb,
            "other_documents": bool(info) and trained_kb != collection, "warnings": warnings,
            "description": (info or {}).get("description") or ""}


def build(workspace: Any, run: str, a: projection.Assumptions, situation: Situation = Situation()) -> Decision:
    """The one decision flow (Decide page, `decide`, `report`): the run loaded once, projected, decided."""
    from lib import evalrun, freshness

    record, answers = evalrun.load(workspace, run)
    summary = evalrun.summarise_answers(record, answers)
    usages = projection.usages_of(record, answers)
    training = projection.run_training_time(workspace, record)
    if a.training_usd is None:
        a = replace(a, training_usd=projection.training_costs(workspace, record, a.hardware_usd_per_hour),
                    training_note=training.note)
    if not a.capacities:
        a = replace(a, capacities=projection.capacity_curves(workspace, usages))
    projections = projection.project(usages, a)
    curves = {p.arm: projection.cumulative(p, a.months, a) for p in projections}
    crossings = projection.crossings(projections, a.months, a)
    per_day_axis = projection.volume_axis(a.per_day)
    top_k_axis = [1, 2, 4, 6, 8, 10]
    fresh = freshness.stored(workspace, record.spec.collection)
    models = run_models(answers)
    caveat = evalrun.caveat(summary, record.spec)
    prov = run_provenance(answers, record.spec.collection)
    rec = decide(summary, situation, fresh, {p.arm: p.monthly_total_usd for p in projections},
                 provenance=prov, caveat=caveat)
    from lib.pricing import price_card

    prices = [{"arm": arm, **price_card(model, provider)} for arm, (model, provider) in models.items()]
    return Decision(record, summary, a, projections, curves, crossings, per_day_axis,
                    projection.sensitivity_per_day(usages, a, per_day_axis), top_k_axis,
                    projection.sensitivity_top_k(usages, a, top_k_axis), fresh, rec, caveat is not None,
                    situation, models, prov, training, prices)


def break_even_sentences(d: Decision) -> list[str]:
    """The break-even in words, from the one computation: where curves cross within the horizon, and when none
    does, that it does not (never "month 0.0")."""
    out = []
    months = max((len(ys) - 1 for ys in d.curves.values() if ys), default=d.assumptions.months)
    for label in charts.break_even_labels(d.crossings, months):
        c = label["crossing"]
        a, b = LABELS.get(c["arms"][0], c["arms"][0]), LABELS.get(c["arms"][1], c["arms"][1])
        when = (f"within the first month (about day {max(1, round(c['month'] * 30))})" if c["month"] < 1
                else f"at month {c['month']:.1f}")
        out.append(f"Break-even {label['letter']}: {a} and {b} cross {when}; {LABELS.get(c['cheaper_after'])} is "
                   "cheaper after.")
    priced = {arm: ys for arm, ys in d.curves.items() if ys and ys[0] is not None}
    if not d.crossings and len(priced) > 1:
        cheapest = min(priced, key=lambda arm: priced[arm][-1] or 0.0)
        out.append(f"No break-even within {d.assumptions.months} months: {LABELS.get(cheapest, cheapest)} stays the "
                   "cheapest throughout.")
    return out


def price_rows(d: Decision) -> list[list[str]]:
    """The per-token prices each arm was priced with, their source and date (USD per million tokens)."""
    def per_m(x: float | None) -> str:
        return "–" if x is None else f"${x:g}"

    return [[LABELS.get(p["arm"], p["arm"]), p["model"], per_m(p["input_mtok"]), per_m(p["cached_input_mtok"]),
             per_m(p["output_mtok"]), p["source"] + (f" ({p['as_of']})" if p["as_of"] else "")] for p in d.prices]


PRICE_HEADER = ["arm", "model", "input per 1M tokens", "cached input per 1M", "output per 1M", "source and date"]


def situation_rows(d: Decision) -> list[list[str]]:
    s = d.situation

    def yes_no(x: bool | None) -> str:
        return {True: "yes", False: "no", None: "not answered"}[x]

    return [["How often do the documents change?", s.changes or "not answered"],
            ["Do answers need citations?", yes_no(s.citations)],
            ["p95 latency target", f"{s.latency_ms / 1000:g} s" if s.latency_ms else "none given"],
            ["Must answers follow a fixed format?", yes_no(s.format_matters)],
            ["Quality training examples available?", yes_no(s.training_examples)],
            ["Questions a day", f"{d.assumptions.per_day:,}"]]


def figures(d: Decision) -> list[Any]:
    top_k = d.run.spec.top_k
    return [charts.break_even(d.curves, d.crossings),
            charts.sensitivity(d.per_day_axis, d.per_day, "questions a day (log scale)", "Monthly cost by volume",
                               mark=d.assumptions.per_day, mark_label=f"yours: {d.assumptions.per_day:,} a day",
                               log_x=True),
            charts.sensitivity(d.top_k_axis, d.top_k, "sources per question (top-k)", "Monthly cost by top-k",
                               mark=top_k, mark_label=f"measured: top-k {top_k}" if top_k else "")]


def _money(x: float | None) -> str:
    return "unknown" if x is None else f"${x:,.2f}" if x >= 0.01 or x == 0 else f"${x:.6f}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.0%}"


def arm_rows(d: Decision) -> list[list[str]]:
    cost = {p.arm: p.cost_per_question_usd for p in d.projections}
    rows = []
    for arm, s in d.summary.items():
        low, high = s.get("accuracy_ci95") or (0, 0)
        rows.append([LABELS.get(arm, arm), f"{s['correct']}/{s['answerable']} ({_pct(s['accuracy'])}, "
                     f"95% CI {low:.0%}-{high:.0%})", _pct(s.get("refusal_rate")), _pct(s.get("fabrication_rate")),
                     _pct(s.get("citation_accuracy")), _pct(s.get("retrieval_hit_rate")),
                     f"{(s.get('median_total_ms') or 0) / 1000:.2f} / {(s.get('p95_total_ms') or 0) / 1000:.2f} s",
                     _money(cost.get(arm))])
    return rows


ARM_HEADER = ["arm", "accuracy", "refused", "fabricated", "citations correct", "retrieval hit", "latency p50 / p95",
              "cost per question"]
COST_HEADER = ["arm", "model", "cost per question", "inference per month", "training (one run)",
               "training per month", "total per month", "how it is priced"]


def cost_rows(d: Decision) -> list[list[str]]:
    return [[LABELS.get(p.arm, p.arm), p.model, _money(p.cost_per_question_usd), _money(p.monthly_inference_usd),
             _money(p.training_usd), _money(p.monthly_training_usd), _money(p.monthly_total_usd), p.note]
            for p in d.projections]


def _settings_line(d: Decision, markdown: bool = True) -> str:
    """The run's settings in a sentence; names the user gave (run, set, knowledge base, models) are escaped for
    Markdown, so they are shown as written and cannot form a link or load an image."""
    s = d.run.spec

    def esc(x: Any) -> str:
        return escape_markdown(one_line(str(x))) if markdown else str(x)

    models = ", ".join(f"{role}: {esc(m)}" for role, m in s.models.items() if m)
    bold = "**" if markdown else ""
    return (f"Run {bold}{esc(d.run.name)}{bold} ({d.run.id}), question set {esc(s.question_set)}, "
            f"{s.questions} questions, arms {esc(', '.join(s.arms))}; knowledge base "
            f"{esc(s.collection)}; top-k {s.top_k}, temperature {s.temperature}, max tokens "
            f"{s.max_tokens}; models {models}.")


def _assumptions_line(d: Decision) -> str:
    a = d.assumptions
    hw = f"${a.hardware_usd_per_hour:g} an hour" if a.hardware_usd_per_hour is not None else "not given (unknown)"
    return (f"{a.per_day:,} questions a day, 30-day months; training amortised over {a.amortise_months} months; "
            f"documents change {a.changes} (retraining that often); cached input "
            f"{'on (repeated prompt prefix at the cached price, prompts of 1,024+ tokens)' if a.cached_input else 'off'}"
            f"; local hardware {hw}.")


def provenance_lines(d: Decision) -> list[str]:
    """What the fine-tuned model was trained on, and the warnings its answers carried (as on Compare)."""
    p = d.provenance
    if not p:
        return []
    lines = [f"Model card: {p['card']}"] if p.get("card") else []
    return lines + list(p.get("warnings") or [])


def freshness_lines(d: Decision) -> list[str]:
    if not d.freshness:
        return ["Not run for this knowledge base yet (Decide page, or `python -m lib freshness`)."]
    return [f"{LABELS.get(arm, arm)}: " + ("follows the edited fact" if v.get("follows_change") else
                                          "keeps the old value" if v.get("keeps_old") else "gives neither value")
            for arm, v in d.freshness.items()]


@dataclass(frozen=True)
class _Para:
    """A paragraph written for Markdown (names in it already escaped) and the same as plain text."""

    markdown: str
    plain: str


def _sections(d: Decision) -> list[tuple[str, list[Any]]]:
    """The report's content once, as (heading, blocks); a block is a string (a paragraph), a list of strings
    (bullets) or a (header, rows) table. Markdown and HTML render the same sections."""
    r = d.recommendation
    out: list[tuple[str, list[Any]]] = [
        ("Recommendation", [_Para(f"**{r.label}**", r.label), "Why:", list(r.reasons), "What would change it:",
                            list(r.would_change)]),
        ("Your situation", [(["question", "your answer"], situation_rows(d))]),
        ("The decision matrix", [(["question", "answer", "answered by", "favours"],
                                  [[q.question, q.answer, q.source, q.favours] for q in r.matrix])]),
        ("Measurements", [_Para(_settings_line(d), _settings_line(d, markdown=False)), (ARM_HEADER, arm_rows(d))]),
    ]
    if d.provenance:
        out.append(("What the fine-tuned model was trained on", [provenance_lines(d)]))
    cost: list[Any] = ["Assumptions: " + _assumptions_line(d), (COST_HEADER, cost_rows(d))]
    if d.training is not None and d.training.note:
        cost.append(f"Training time: {d.training.note}.")
    cost += [break_even_sentences(d)]
    hosted_self = [p for p in d.projections if p.capacity_source]
    if hosted_self:
        a = d.assumptions
        cost += ["Self-hosted arms are priced from capacity, not from one request's seconds: peak questions an hour "
                 f"= questions a day / 24 x {a.peak_factor:g} (the peak-to-average factor); machines = the peak / the "
                 "questions an hour one machine serves at the concurrency that meets the latency target (the best "
                 "throughput without one), rounded up; monthly cost = machines x the hardware's price an hour x 730 "
                 "hours (running all month); cost per question = monthly cost / (questions a day x 30). Assumed: the "
                 "measured machine is the one you would rent, load spreads evenly within the peak hour, and the "
                 "capacity holds for your prompts and answer lengths. A GPU server with vLLM serves far more.",
                 [f"{LABELS.get(p.arm, p.arm)}: {p.machines} machine(s) at {p.questions_per_hour_per_machine:,.0f} "
                  f"questions an hour each; capacity {p.capacity_source}" for p in hosted_self]]
    if d.prices:
        cost += ["Prices used (USD per million tokens):", (PRICE_HEADER, price_rows(d))]
    out.append(("Cost at scale", cost))
    out.append(("Freshness", [freshness_lines(d)]))
    return out


def markdown(d: Decision) -> str:
    from lib.format import escape_markdown

    def table(header: list[str], rows: list[list[str]]) -> str:
        def cell(x: str) -> str:
            return escape_markdown(" ".join(str(x).split()))

        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
        return "\n".join(lines)

    r = d.recommendation
    parts = [f"# RAG, fine-tuning or both: {r.label}", "",
             f"_Generated {time.strftime('%Y-%m-%d %H:%M')} by the RAG vs Fine-tuning Workbench._", ""]
    if r.caveat:
        parts += [f"> **Caveat:** {r.caveat}", ""]
    for heading, blocks in _sections(d):
        parts += [f"## {heading}", ""]
        for block in blocks:
            if isinstance(block, tuple):
                parts += [table(*block), ""]
            elif isinstance(block, list):
                parts += [f"- {escape_markdown(x)}" for x in block] + [""]
            elif isinstance(block, _Para):
                parts += [block.markdown, ""]
            else:
                parts += [escape_markdown(block), ""]
    return "\n".join(parts)


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;width:100%;margin:1em 0;font-size:14px}th,td{border:1px solid #ddd;
padding:6px 8px;text-align:left;vertical-align:top}th{background:#f4f4f4}.caveat{background:#fff4e5;border-left:4px
solid #f0a202;padding:.6em 1em}.choice{font-size:1.6em;font-weight:700}"""


def html_report(d: Decision) -> str:
    """One HTML file with everything inline: no request leaves it when it is opened."""
    e = html.escape
    r = d.recommendation

    def table(header: list[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{e(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def block(b: Any) -> str:
        if isinstance(b, tuple):
            return table(*b)
        if isinstance(b, list):
            return "<ul>" + "".join(f"<li>{e(x)}</li>" for x in b) + "</ul>" if b else ""
        return f"<p>{e(b.plain if isinstance(b, _Para) else b)}</p>"

    figs = figures(d)
    chart_html = "".join(
        fig.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False, "responsive": True})
        for i, fig in enumerate(figs))
    body = ""
    for heading, blocks in _sections(d):
        if heading == "Recommendation":
            body += (f'<p class="choice">Recommendation: {e(r.label)}</p>'
                     + (f'<p class="caveat"><b>Caveat:</b> {e(r.caveat)}</p>' if r.caveat else "")
                     + f"<h2>Why</h2>{block(list(r.reasons))}<h2>What would change it</h2>{block(list(r.would_change))}")
            continue
        body += f"<h2>{e(heading)}</h2>" + "".join(block(b) for b in blocks)
        if heading == "Cost at scale":
            body += f'<div class="charts">{chart_html}</div>'
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; font-src data:">
<title>RAG, fine-tuning or both: {e(r.label)}</title><style>{_CSS}</style></head><body>
<h1>RAG, fine-tuning or both?</h1>
{body}
<p><small>Generated {e(time.strftime('%Y-%m-%d %H:%M'))} by the RAG vs Fine-tuning Workbench.</small></p>
</body></html>"""
