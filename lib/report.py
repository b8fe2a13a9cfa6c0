"""A report to take to a meeting: one self-contained HTML file (charts embedded, plotly.js inline,
opens offline) and the same content as Markdown. Built from a stored evaluation run."""

from __future__ import annotations

import html
import json
import re
import time
from dataclasses import dataclass, replace
from typing import Any

from lib import charts, projection
from lib.decision import LABELS, Recommendation, Situation, decide
from lib.format import escape_markdown, one_line


@dataclass(frozen=True)
class Decision:
    """Everything the Decide page and the report show for one run."""

    run: dict[str, Any]
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


def build(workspace: Any, run: str, a: projection.Assumptions, situation: Situation = Situation()) -> Decision:
    from lib import evalrun

    record, summary, _ = evalrun.summary(workspace, run)
    record, usages, projections = projection.from_run(workspace, record["id"], a)
    if a.training_usd is None:
        a = replace(a, training_usd=projection.training_costs(workspace, record, a.hardware_usd_per_hour))
    curves = {p.arm: projection.cumulative(p, a.months, a) for p in projections}
    crossings = projection.crossings(projections, a.months, a)
    per_day_axis = [100, 1_000, 10_000, 100_000, 1_000_000]
    top_k_axis = [1, 2, 4, 6, 8, 10]
    stored = workspace.meta(f"freshness:{record['spec'].get('collection', '')}")
    fresh = json.loads(stored) if stored else None
    small = "local" in (record["spec"].get("providers") or {}).values()
    rec = decide(summary, situation, fresh, {p.arm: p.monthly_total_usd for p in projections}, small_model=small)
    return Decision(record, summary, a, projections, curves, crossings, per_day_axis,
                    projection.sensitivity_per_day(usages, a, per_day_axis), top_k_axis,
                    projection.sensitivity_top_k(usages, a, top_k_axis), fresh, rec, small)


def figures(d: Decision) -> list[Any]:
    return [charts.break_even(d.curves, d.crossings),
            charts.sensitivity(d.per_day_axis, d.per_day, "questions a day", "Monthly cost by volume"),
            charts.sensitivity(d.top_k_axis, d.top_k, "sources per question (top-k)", "Monthly cost by top-k")]


def _money(x: float | None) -> str:
    return "unknown" if x is None else f"${x:,.2f}" if x >= 0.01 or x == 0 else f"${x:.6f}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.0%}"


def arm_rows(d: Decision) -> list[list[str]]:
    rows = []
    for arm, s in d.summary.items():
        low, high = s.get("accuracy_ci95") or (0, 0)
        rows.append([LABELS.get(arm, arm), f"{s['correct']}/{s['answerable']} ({_pct(s['accuracy'])}, "
                     f"95% CI {low:.0%}-{high:.0%})", _pct(s.get("refusal_rate")), _pct(s.get("fabrication_rate")),
                     _pct(s.get("citation_accuracy")), _pct(s.get("retrieval_hit_rate")),
                     f"{(s.get('median_total_ms') or 0):,.0f} / {(s.get('p95_total_ms') or 0):,.0f} ms",
                     _money(s.get("cost_per_question_usd"))])
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
    s = d.run["spec"]

    def esc(x: Any) -> str:
        return escape_markdown(one_line(str(x))) if markdown else str(x)

    models = ", ".join(f"{role}: {esc(m)}" for role, m in (s.get("models") or {}).items() if m)
    bold = "**" if markdown else ""
    return (f"Run {bold}{esc(d.run['name'])}{bold} ({d.run['id']}), question set {esc(s.get('question_set'))}, "
            f"{s.get('questions')} questions, arms {esc(', '.join(s.get('arms', [])))}; knowledge base "
            f"{esc(s.get('collection'))}; top-k {s.get('top_k')}, temperature {s.get('temperature')}, max tokens "
            f"{s.get('max_tokens')}; models {models}.")


def _assumptions_line(d: Decision) -> str:
    a = d.assumptions
    hw = f"${a.hardware_usd_per_hour:g} an hour" if a.hardware_usd_per_hour is not None else "not given (unknown)"
    return (f"{a.per_day:,} questions a day, 30-day months; training amortised over {a.amortise_months} months; "
            f"documents change {a.changes} (retraining that often); cached input "
            f"{'on (repeated prompt prefix at the cached price, prompts of 1,024+ tokens)' if a.cached_input else 'off'}"
            f"; local hardware {hw}.")


def markdown(d: Decision) -> str:
    def table(header: list[str], rows: list[list[str]]) -> str:
        def cell(x: str) -> str:  # a "|" not yet escaped would end the cell
            return re.sub(r"(?<!\\)\|", r"\\|", str(x)).replace("\n", " ")

        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
        return "\n".join(lines)

    r = d.recommendation
    parts = [f"# RAG, fine-tuning or both: {r.label}", "",
             f"_Generated {time.strftime('%Y-%m-%d %H:%M')} by the RAG vs Fine-tuning Workbench._", ""]
    if r.caveat:
        parts += [f"> **Caveat:** {r.caveat}", ""]
    parts += ["## Recommendation", "", f"**{r.label}**", "", "Why:", ""]
    parts += [f"- {x}" for x in r.reasons] + ["", "What would change it:", ""]
    parts += [f"- {x}" for x in r.would_change] + ["", "## The decision matrix", ""]
    parts += [table(["question", "answer", "answered by", "favours"],
                    [[q.question, q.answer, q.source, q.favours] for q in r.matrix]), ""]
    parts += ["## Measurements", "", _settings_line(d), "", table(ARM_HEADER, arm_rows(d)), ""]
    costs = [[row[0], escape_markdown(one_line(row[1])), *row[2:]] for row in cost_rows(d)]  # model names as written
    parts += ["## Cost at scale", "", "Assumptions: " + _assumptions_line(d), "", table(COST_HEADER, costs), ""]
    if d.crossings:
        parts += [f"- Break-even: {LABELS.get(c['arms'][0])} and {LABELS.get(c['arms'][1])} cross at month "
                  f"{c['month']:.1f}; {LABELS.get(c['cheaper_after'])} is cheaper after." for c in d.crossings] + [""]
    parts += ["## Freshness", ""]
    if d.freshness:
        parts += [f"- {LABELS.get(arm, arm)}: " + ("follows the edited fact" if v.get("follows_change") else
                                                 "keeps the old value" if v.get("keeps_old") else "gives neither value")
                  for arm, v in d.freshness.items()] + [""]
    else:
        parts += ["Not run for this knowledge base yet (Decide page, or `python -m lib freshness`).", ""]
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

    figs = figures(d)
    chart_html = "".join(
        fig.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False, "responsive": True})
        for i, fig in enumerate(figs))
    fresh = ("<ul>" + "".join(
        f"<li>{e(LABELS.get(arm, arm))}: "
        f"{'follows the edited fact' if v.get('follows_change') else 'keeps the old value' if v.get('keeps_old') else 'gives neither value'}</li>"
        for arm, v in d.freshness.items()) + "</ul>") if d.freshness else \
        "<p>Not run for this knowledge base yet.</p>"
    crossings = "".join(f"<li>Break-even: {e(LABELS.get(c['arms'][0], ''))} and {e(LABELS.get(c['arms'][1], ''))} "
                        f"cross at month {c['month']:.1f}; {e(LABELS.get(c['cheaper_after'], ''))} is cheaper after."
                        "</li>" for c in d.crossings)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; font-src data:">
<title>RAG, fine-tuning or both: {e(r.label)}</title><style>{_CSS}</style></head><body>
<h1>RAG, fine-tuning or both?</h1>
<p class="choice">Recommendation: {e(r.label)}</p>
{f'<p class="caveat"><b>Caveat:</b> {e(r.caveat)}</p>' if r.caveat else ''}
<h2>Why</h2><ul>{''.join(f'<li>{e(x)}</li>' for x in r.reasons)}</ul>
<h2>What would change it</h2><ul>{''.join(f'<li>{e(x)}</li>' for x in r.would_change)}</ul>
<h2>The decision matrix</h2>{table(['question', 'answer', 'answered by', 'favours'],
                                   [[q.question, q.answer, q.source, q.favours] for q in r.matrix])}
<h2>Measurements</h2><p>{e(_settings_line(d, markdown=False))}</p>{table(ARM_HEADER, arm_rows(d))}
<h2>Cost at scale</h2><p>Assumptions: {e(_assumptions_line(d))}</p>{table(COST_HEADER, cost_rows(d))}
<ul>{crossings}</ul>
<div class="charts">{chart_html}</div>
<h2>Freshness</h2>{fresh}
<p><small>Generated {e(time.strftime('%Y-%m-%d %H:%M'))} by the RAG vs Fine-tuning Workbench.</small></p>
</body></html>"""
