"""Plotly figures from results: pure functions, no Streamlit."""

from __future__ import annotations

import html
import math
from typing import Any

import plotly.graph_objects as go

from lib.format import ARM_COLORS, PART_COLORS, usd
from lib.records import ArmResult

# The legend sits under the plot, so it never runs into the title however many entries it has.
_LAYOUT: dict[str, Any] = {"margin": {"l": 10, "r": 10, "t": 50, "b": 10}, "height": 340,
                           "legend": {"orientation": "h", "y": -0.18, "yanchor": "top", "x": 0},
                           "template": "plotly_white"}
# Dollars as $0.0003 or $1.25 (never "100µ"): up to 6 decimals, trailing zeros trimmed.
_USD_AXIS: dict[str, Any] = {"tickformat": "$,.6~f", "rangemode": "tozero"}
LOCAL_ZERO = "$0: local models have no per-token charge"


def _all_zero(fig: go.Figure, message: str = LOCAL_ZERO) -> go.Figure:
    """A cost chart whose every value is $0: the message instead of empty axes."""
    fig.update_traces(visible=False)
    fig.update_layout(xaxis={"visible": False}, yaxis={"visible": False}, showlegend=False)
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 15})
    return fig


def _count_axis(n: int, start: int = 1) -> dict[str, Any]:
    """An axis of whole counts start..n: integer ticks only (from 0 for bar lengths, from 1 for a numbering)."""
    return {"tickmode": "linear", "tick0": start, "dtick": max(1, -(-n // 10)), "tickformat": "d"}


def _ok(results: list[ArmResult] | tuple[ArmResult, ...]) -> list[ArmResult]:
    return [r for r in results if r.error is None]


def latency(results: list[ArmResult] | tuple[ArmResult, ...]) -> go.Figure:
    """Per arm: retrieval, then wait for the first token, then generation (stacked, ms)."""
    ok = _ok(results)
    labels = [r.label for r in ok]
    retrieval = [r.retrieval_ms / 1000 for r in ok]
    first = [((r.ttft_ms or 0) - r.retrieval_ms) / 1000 for r in ok]
    gen = [((r.total_ms or 0) - (r.ttft_ms or 0)) / 1000 for r in ok]
    fig = go.Figure([
        go.Bar(name="retrieval", y=labels, x=retrieval, orientation="h", marker_color="#bdbdbd"),
        go.Bar(name="time to first token", y=labels, x=first, orientation="h", marker_color="#6baed6"),
        go.Bar(name="generation", y=labels, x=gen, orientation="h", marker_color="#08519c"),
    ])
    fig.update_layout(barmode="stack", title="Latency per arm (seconds)", xaxis={"title": "seconds",
                                                                                 "ticksuffix": " s"}, **_LAYOUT)
    return fig


def tokens(results: list[ArmResult] | tuple[ArmResult, ...]) -> go.Figure:
    """Per arm: prompt tokens by part (system, context, question, template) and completion."""
    ok = [r for r in _ok(results) if r.usage]
    labels = [r.label + (" (est.)" if r.usage_source == "estimate" else " (parts est.)"
                         if r.usage.parts_estimated else "") for r in ok]  # type: ignore[union-attr]
    parts = {k: [r.usage.parts[k] for r in ok] for k in ("system", "context", "question", "overhead")}  # type: ignore[union-attr]
    parts["completion"] = [r.usage.completion_tokens for r in ok]  # type: ignore[union-attr]
    names = {"overhead": "chat template", "completion": "completion"}
    fig = go.Figure([go.Bar(name=names.get(k, k), x=labels, y=v, marker_color=PART_COLORS[k])
                     for k, v in parts.items()])
    fig.update_layout(barmode="stack", title="Tokens per arm (prompt by part, then completion)",
                      yaxis={"title": "tokens", "tickformat": ",d"}, **_LAYOUT)
    return fig


def cost(results: list[ArmResult] | tuple[ArmResult, ...]) -> go.Figure:
    """Per arm: cost in USD; unknown prices are left out and said so."""
    ok = [r for r in _ok(results) if r.cost_usd is not None]
    text = [("$0 (local)" if r.cost_usd == 0 else usd(r.cost_usd)) +
            (" est." if r.usage_source == "estimate" else "") for r in ok]
    fig = go.Figure(go.Bar(x=[r.label for r in ok], y=[r.cost_usd for r in ok], text=text, textposition="outside",
                           cliponaxis=False, marker_color=[ARM_COLORS[r.arm] for r in ok]))
    missing = [r.label for r in _ok(results) if r.cost_usd is None]
    title = "Cost per arm (USD)" + (f" — no price known for {', '.join(missing)}" if missing else "")
    top = max((r.cost_usd or 0.0 for r in ok), default=0.0)
    fig.update_layout(title=title, yaxis={"title": "USD", **_USD_AXIS, "range": [0, top * 1.25 if top else 1]},
                      **_LAYOUT)
    if ok and top == 0:
        _all_zero(fig)
    return fig


def source_scores(sources: Any) -> go.Figure:
    """Retrieved sources [1..k] by similarity score, coloured by document."""
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    docs = list(dict.fromkeys(s.document for s in sources))
    names = [source_label(n, s) for n, s in enumerate(sources, 1)]
    fig = go.Figure()
    for i, doc in enumerate(docs):
        idx = [n for n, s in enumerate(sources, 1) if s.document == doc]
        fig.add_bar(name=_short(doc, 40), x=[names[n - 1] for n in idx], y=[sources[n - 1].score for n in idx],
                    marker_color=palette[i % len(palette)],
                    hovertext=[f"{_plain(doc)} · chunk {sources[n - 1].chunk}" for n in idx])
    fig.update_layout(title="Retrieved sources by score", yaxis_title="cosine similarity", yaxis_range=[0, 1],
                      xaxis={"categoryorder": "array", "categoryarray": names}, **_LAYOUT)
    return fig


def _plain(text: str) -> str:
    """Untrusted text for a Plotly label: Plotly reads <a href>, <b>, <br>... in labels, so < > & are entities."""
    return html.escape(" ".join(str(text).split()), quote=False)


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return _plain(text if len(text) <= width else text[:width - 1] + "…")


def source_label(n: int, source: Any) -> str:
    """An axis label for source n: its number and (the start of) its document's name, over two lines."""
    return f"[{n}] {_short(source.document, 20)}<br>#{source.chunk}"


# ---------------------------------------------------------------- across questions (history rows)

def cost_vs_latency(rows: list[dict[str, Any]]) -> go.Figure:
    fig = go.Figure()
    for arm, color in ARM_COLORS.items():
        pts = [r for r in rows if r["arm"] == arm and r["total_ms"] is not None and r["cost_usd"] is not None]
        if pts:
            fig.add_scatter(name=pts[0]["label"], x=[p["total_ms"] / 1000 for p in pts], y=[p["cost_usd"] for p in pts],
                            mode="markers", marker={"color": color, "size": 10},
                            hovertext=[_plain(p["question"][:80]) for p in pts])
    fig.update_layout(title="Cost vs latency, every question", xaxis={"title": "total seconds", "ticksuffix": " s"},
                      yaxis={"title": "USD", **_USD_AXIS}, **_LAYOUT)
    costs = [r["cost_usd"] for r in rows if r["cost_usd"] is not None]
    if costs and not any(costs):
        _all_zero(fig, LOCAL_ZERO + " (latency per arm: see the chart beside)")
    return fig


def latency_distribution(rows: list[dict[str, Any]]) -> go.Figure:
    fig = go.Figure()
    for arm, color in ARM_COLORS.items():
        values = [r["total_ms"] / 1000 for r in rows if r["arm"] == arm and r["total_ms"] is not None]
        if values:
            label = next(r["label"] for r in rows if r["arm"] == arm)
            fig.add_box(name=label, y=values, marker_color=color, boxpoints="all")
    fig.update_layout(title="Latency distribution per arm", yaxis={"title": "total seconds", "ticksuffix": " s"},
                      showlegend=False,
                      **{k: v for k, v in _LAYOUT.items() if k != "legend"})
    return fig


def cumulative_cost(rows: list[dict[str, Any]]) -> go.Figure:
    fig = go.Figure()
    longest = 0
    for arm, color in ARM_COLORS.items():
        pts = sorted((r for r in rows if r["arm"] == arm and r["cost_usd"] is not None),
                     key=lambda r: r["created_at"])
        longest = max(longest, len(pts))
        if pts:
            total, ys = 0.0, []
            for p in pts:
                total += p["cost_usd"]
                ys.append(total)
            fig.add_scatter(name=pts[0]["label"], x=list(range(1, len(ys) + 1)), y=ys, mode="lines+markers",
                            line={"color": color})
    fig.update_layout(title="Cumulative cost", xaxis={"title": "questions asked", **_count_axis(longest)},
                      yaxis={"title": "USD", **_USD_AXIS}, **_LAYOUT)
    costs = [r["cost_usd"] for r in rows if r["cost_usd"] is not None]
    if costs and not any(costs):
        _all_zero(fig)
    return fig


# ---------------------------------------------------------------- decide: cost at scale

_ARM_NAMES = {"baseline": "Baseline", "rag": "RAG", "finetuned": "Fine-tuned", "hybrid": "Hybrid",
              "longcontext": "Long context"}
UNKNOWN_COST = "Cost unknown: give the hardware's cost per hour for local models"


# Each arm has its own dash and marker as well as its colour, so curves that coincide stay distinguishable.
ARM_DASH = {"baseline": "dashdot", "rag": "solid", "finetuned": "dash", "hybrid": "dot", "longcontext": "longdash"}
ARM_SYMBOL = {"baseline": "triangle-up", "rag": "circle", "finetuned": "square", "hybrid": "diamond",
              "longcontext": "x"}
LABEL_GAP = 0.09  # break-even labels closer than this share of the x range go on separate rows


def break_even_labels(crossings: list[dict[str, Any]], months: int) -> list[dict[str, Any]]:
    """Where each crossing's label goes: its letter at the top of the plot (paper y inside [0, 1]), above its
    month, in rows so that labels closer than LABEL_GAP of the x range never share a row (no overlaps)."""
    placed: list[dict[str, Any]] = []
    span = max(1, months)
    for i, c in enumerate(sorted(crossings, key=lambda c: c["month"])):
        row = 0
        while any(p["row"] == row and abs(p["x"] - c["month"]) / span < LABEL_GAP for p in placed):
            row += 1
        placed.append({"letter": chr(ord("A") + i % 26), "x": c["month"], "row": row, "y": 0.97 - 0.08 * row,
                       "crossing": c})
    return placed


def break_even(curves: dict[str, list[float | None]], crossings: list[dict[str, Any]]) -> go.Figure:
    """Cumulative cost per arm over the months (training up front), with the crossings marked by a lettered
    dotted line (the letters are explained in the text beside the chart and on hover)."""
    fig = go.Figure()
    known = {arm: ys for arm, ys in curves.items() if ys and ys[0] is not None}
    months = max((len(ys) - 1 for ys in known.values()), default=12)
    for arm, ys in known.items():
        fig.add_trace(go.Scatter(x=list(range(len(ys))), y=ys, mode="lines+markers", name=_ARM_NAMES.get(arm, arm),
                                 line={"color": ARM_COLORS.get(arm, "#888"), "dash": ARM_DASH.get(arm, "solid"),
                                       "width": 2},
                                 marker={"symbol": ARM_SYMBOL.get(arm, "circle"), "size": 7}, opacity=0.9))
    for p in break_even_labels(crossings, months):
        c = p["crossing"]
        a, b = c["arms"]
        text = f"{_ARM_NAMES.get(a, a)} = {_ARM_NAMES.get(b, b)} at month {c['month']:.1f}"
        fig.add_vline(x=c["month"], line={"dash": "dot", "color": "#d62728", "width": 1})
        fig.add_trace(go.Scatter(x=[c["month"]], y=[c["usd"]], mode="markers", showlegend=False,
                                 marker={"size": 11, "symbol": "x", "color": "#d62728"},
                                 hovertemplate=f"{p['letter']}: {text}<extra></extra>"))
        fig.add_annotation(x=c["month"], y=p["y"], xref="x", yref="paper", text=f"<b>{p['letter']}</b>",
                           showarrow=False, font={"color": "#d62728", "size": 12}, bgcolor="rgba(255,255,255,0.8)",
                           hovertext=text)
    fig.update_layout(title="Cumulative cost (training paid up front)", xaxis_title="month",
                      yaxis_title="cost to date", **_LAYOUT)
    fig.update_xaxes(tickmode="linear", dtick=1 if months <= 18 else 3, tickformat="d", range=[-0.3, months + 0.3])
    fig.update_yaxes(tickformat="$,.2f", rangemode="tozero")
    if not known:
        return _all_zero(fig, UNKNOWN_COST)
    if all(v == 0 for ys in known.values() for v in ys if v is not None):
        return _all_zero(fig)
    return fig


def sensitivity(xs: list[int | float], series: dict[str, list[float | None]], x_title: str,
                title: str, mark: float | None = None, mark_label: str = "", log_x: bool = False) -> go.Figure:
    """Monthly cost per arm against one assumption (questions a day, or top-k); `mark` draws the user's own
    value as a line inside the axis range."""
    fig = go.Figure()
    shown = 0
    for arm, ys in series.items():
        if all(y is None for y in ys):
            continue
        shown += 1
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=_ARM_NAMES.get(arm, arm),
                                 line={"color": ARM_COLORS.get(arm, "#888"), "dash": ARM_DASH.get(arm, "solid")},
                                 marker={"symbol": ARM_SYMBOL.get(arm, "circle")}))
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title="per month", **_LAYOUT)
    fig.update_yaxes(tickformat="$,.2f")
    if log_x:
        fig.update_xaxes(type="log", tickformat="~s")
    if mark is not None and xs and shown:  # (no line across the "cost unknown" message)
        fig.add_vline(x=mark, line={"dash": "dot", "color": "#444", "width": 1})
        fig.add_annotation(x=math.log10(mark) if log_x else mark, y=0.98, xref="x", yref="paper",
                           text=mark_label or "yours", showarrow=False, xanchor="left", yanchor="top",
                           font={"size": 11, "color": "#444"}, bgcolor="rgba(255,255,255,0.8)")
    if not shown:
        return _all_zero(fig, UNKNOWN_COST)
    return fig


# ---------------------------------------------------------------- evaluation runs (the Evaluate page)

def _arm_label(arm: str) -> str:
    from lib.arms import ARMS

    return ARMS[arm].label if arm in ARMS else arm


def eval_accuracy(summary: dict[str, dict[str, Any]]) -> go.Figure:
    """Accuracy per arm on answerable questions, with its 95% interval as error bars."""
    arms = [a for a, s in summary.items() if s.get("accuracy") is not None]
    acc = [summary[a]["accuracy"] * 100 for a in arms]
    low = [summary[a]["accuracy_ci95"][0] * 100 for a in arms]
    high = [summary[a]["accuracy_ci95"][1] * 100 for a in arms]
    fig = go.Figure(go.Bar(
        x=[_arm_label(a) for a in arms], y=acc, marker_color=[ARM_COLORS.get(a, "#888888") for a in arms],
        error_y={"type": "data", "symmetric": False, "array": [h - v for h, v in zip(high, acc)],
                 "arrayminus": [v - lo for v, lo in zip(acc, low)]},
        text=[f"{v:.0f}% ({summary[a]['correct']}/{summary[a]['answerable']})" for a, v in zip(arms, acc)],
        textposition="inside", hovertext=[f"95% interval {lo:.0f}–{h:.0f}%" for lo, h in zip(low, high)]))
    fig.update_layout(title="Accuracy per arm (answerable questions, 95% interval)", yaxis_title="% correct",
                      yaxis_range=[0, 100], **_LAYOUT)
    return fig


def eval_accuracy_vs_cost(summary: dict[str, dict[str, Any]]) -> go.Figure:
    """Accuracy against cost per question; local arms sit at $0 and are said to; unknown prices left out."""
    fig = go.Figure()
    known = {a: s for a, s in summary.items() if s.get("accuracy") is not None and s.get("cost_per_question_usd")
             is not None}
    all_free = bool(known) and all(s["cost_per_question_usd"] == 0 for s in known.values())
    for arm, s in known.items():
        c = s["cost_per_question_usd"]
        y = s["accuracy"] * 100
        # every arm at $0: the points stand in one column, so each is named beside it (the note says why $0)
        fig.add_scatter(name=_arm_label(arm), x=[c], y=[y], mode="markers+text",
                        marker={"color": ARM_COLORS.get(arm, "#888888"), "size": 14},
                        text=[_arm_label(arm) if all_free else "$0 (local)" if c == 0 else ""],
                        textposition="middle right" if all_free else "bottom center" if y > 80 else "top center",
                        cliponaxis=False,
                        hovertemplate=f"{_arm_label(arm)}: %{{y:.0f}}% correct at "
                                      + ("$0 (local)" if c == 0 else f"${c:.6f}") + " per question<extra></extra>")
    missing = [_arm_label(a) for a, s in summary.items() if s.get("cost_per_question_usd") is None]
    top = max((s["cost_per_question_usd"] for s in known.values()), default=0.0)
    title = "Accuracy vs cost per question" + (f" — no price known for {', '.join(missing)}" if missing else "")
    fig.update_layout(title=title, xaxis_title="USD per question", yaxis_title="% correct", yaxis_range=[0, 110],
                      xaxis_range=[0, top * 1.3 if top > 0 else 1], xaxis_tickprefix="$", xaxis_tickformat=".6~f",
                      **{**_LAYOUT, "margin": {"l": 10, "r": 30, "t": 50, "b": 10}})
    if all_free:
        fig.add_annotation(text="$0 for every arm: local models have no per-token charge", showarrow=False,
                           x=0.98, y=0.98, xref="paper", yref="paper", xanchor="right", yanchor="top",
                           font={"size": 12, "color": "#555"})
    return fig


CITATION_COLORS = {"correct": "#2ca02c", "wrong": "#d62728", "none": "#c7c7c7"}


def eval_citations(summary: dict[str, dict[str, Any]]) -> go.Figure:
    """Per arm, the answers (answerable questions) citing a source that supports their claim, one that does not,
    or none: stacked to 100%. Arms graded before citations were claim-checked are left out, and said to be."""
    arms = [a for a, s in summary.items() if s.get("citations_correct") is not None]
    fig = go.Figure()
    for key, label in (("correct", "cites a supporting source"), ("wrong", "cites a wrong source"),
                       ("none", "cites none")):
        values = [summary[a][f"citations_{key}"] * 100 for a in arms]
        fig.add_bar(name=label, x=[_arm_label(a) for a in arms], y=values, marker_color=CITATION_COLORS[key],
                    text=[f"{v:.0f}%" if v else "" for v in values], textposition="inside",
                    hovertemplate=f"%{{x}}: %{{y:.0f}}% {label}<extra></extra>")
    # arms with answers but no claim-checked citations were graded before citations were checked; an arm
    # whose every request failed has nothing to grade and is simply not drawn
    missing = [_arm_label(a) for a, s in summary.items() if a not in arms and s.get("errors", 0) < s.get("n", 0)]
    fig.update_layout(barmode="stack", yaxis_title="% of answers", yaxis_range=[0, 100],
                      title="Citations, checked against each answer's claim"
                            + (f" — not graded for {', '.join(missing)} (regrade the run)" if missing else ""),
                      **_LAYOUT)
    return fig


def eval_latency(graded: list[Any]) -> go.Figure:
    """Total time per answer, per arm (box with every point)."""
    fig = go.Figure()
    for arm in dict.fromkeys(g.arm for g in graded):
        values = [g.total_ms / 1000 for g in graded if g.arm == arm and g.total_ms is not None]
        if values:
            fig.add_box(name=_arm_label(arm), y=values, marker_color=ARM_COLORS.get(arm, "#888888"),
                        boxpoints="all", hovertext=[g.question.id for g in graded if g.arm == arm
                                                    and g.total_ms is not None])
    fig.update_layout(title="Latency per answer (seconds)", yaxis={"title": "total seconds", "ticksuffix": " s",
                                                                   "rangemode": "tozero"}, showlegend=False,
                      **{k: v for k, v in _LAYOUT.items() if k != "legend"})
    return fig


GRID_COLORS = {"pass": "#2ca02c", "fail": "#d62728", "refused": "#ffbb78", "error": "#7f7f7f"}


def grid_cell(g: Any) -> str:
    """One answer's cell in the pass/fail grid: pass, fail, refused (answerable, declined) or error."""
    if g.error is not None:
        return "error"
    if g.correct:
        return "pass"
    return "refused" if g.refused and g.question.answerable else "fail"


def eval_grid(graded: list[Any]) -> go.Figure:
    """Question x arm: pass / fail / refused / error squares (one trace per kind, so the legend explains the
    colours), the grade's reason on hover; customdata carries (question id, arm) so a click opens that answer.
    Squares on a scatter rather than a heatmap: Streamlit reports clicks on scatter points."""
    arms = list(dict.fromkeys(g.arm for g in graded))
    qids = list(dict.fromkeys(g.question.id for g in graded))
    fig = go.Figure()
    for kind, color in GRID_COLORS.items():
        cells = [g for g in graded if grid_cell(g) == kind]
        if cells:
            fig.add_scatter(name=kind, x=[_arm_label(g.arm) for g in cells], y=[g.question.id for g in cells],
                            mode="markers", marker={"symbol": "square", "size": 18, "color": color},
                            customdata=[[g.question.id, g.arm] for g in cells],
                            text=[g.reason for g in cells],
                            hovertemplate="%{y} · %{x}<br>" + kind + ": %{text}<extra></extra>")
    fig.update_layout(title="Every answer: click a square to open it",
                      xaxis={"side": "top", "type": "category", "categoryorder": "array",
                             "categoryarray": [_arm_label(a) for a in arms]},
                      yaxis={"type": "category", "categoryorder": "array", "categoryarray": qids,
                             "autorange": "reversed"},
                      **{**_LAYOUT, "height": max(320, 140 + 24 * len(qids)),
                         "legend": {"orientation": "h", "y": 0, "yanchor": "top", "x": 0},
                         "margin": {"l": 10, "r": 10, "t": 90, "b": 40}})
    return fig


# ---------------------------------------------------------------- why answers were wrong (failure modes)

FAILURE_COLORS = {"missing_content": "#d62728", "missed_top_ranked": "#ff7f0e", "missed_retrieval": "#8c564b",
                  "not_retrieved": "#c49c94", "not_extracted": "#1f77b4", "wrong_format": "#9467bd",
                  "incomplete": "#17becf", "not_known": "#7f7f7f", "request_failed": "#bcbd22",
                  "unclassified": "#c7c7c7"}


def eval_failure_modes(summary: dict[str, dict[str, Any]]) -> go.Figure:
    """Per arm, its wrong answers by failure mode (stacked); customdata carries (mode, arm) so a click opens the
    questions of that mode."""
    from lib.failures import LABELS as MODE_LABELS
    from lib.failures import MODES

    arms = [a for a, s in summary.items() if s.get("failure_modes")]
    fig = go.Figure()
    for mode in MODES:
        counts = [summary[a]["failure_modes"].get(mode, 0) for a in arms]
        if not any(counts):
            continue
        fig.add_bar(name=MODE_LABELS[mode], y=[_arm_label(a) for a in arms], x=counts, orientation="h",
                    marker_color=FAILURE_COLORS.get(mode, "#888888"), customdata=[[mode, a] for a in arms],
                    hovertemplate="%{y}: %{x} answer(s) " + html.escape(MODE_LABELS[mode]) + "<br>"
                                  + html.escape(MODES[mode]) + "<extra></extra>")
    fig.update_layout(barmode="stack", title="Why answers were wrong (failure modes; click a bar for its questions)",
                      xaxis={"title": "answers", **_count_axis(max((sum(summary[a]["failure_modes"].values())
                                                                    for a in arms), default=1), start=0)},
                      yaxis={"autorange": "reversed"}, **_LAYOUT)
    if not arms:
        fig.add_annotation(text="No wrong answer to explain", showarrow=False, x=0.5, y=0.5, xref="paper",
                           yref="paper", font={"size": 15})
    return fig


# ---------------------------------------------------------------- capacity (the Host and Decide pages)

def capacity_curve(levels: list[Any], title: str = "Capacity of this machine") -> go.Figure:
    """Questions per hour (bars, left axis) and p95 latency (line, right axis) against concurrency, from a
    capacity measurement's levels (lib.capacity.Level or their dicts)."""
    def get(lv: Any, key: str) -> Any:
        return lv.get(key) if isinstance(lv, dict) else getattr(lv, key)

    rows = sorted(levels, key=lambda lv: get(lv, "concurrency"))
    xs = [str(get(lv, "concurrency")) for lv in rows]
    fig = go.Figure([
        go.Bar(x=xs, y=[get(lv, "questions_per_hour") for lv in rows], name="questions per hour",
               marker_color="#6baed6", yaxis="y"),
        go.Scatter(x=xs, y=[get(lv, "latency_p95_ms") / 1000 for lv in rows], name="p95 latency (s)",
                   mode="lines+markers", line={"color": "#d94801"}, yaxis="y2"),
    ])
    fig.update_layout(title=title, **_LAYOUT)
    fig.update_layout(xaxis={"title": "questions asked at once (concurrency)", "type": "category"},
                      yaxis={"title": "questions per hour", "rangemode": "tozero"},
                      yaxis2={"title": "p95 latency (s)", "overlaying": "y", "side": "right", "rangemode": "tozero",
                              "showgrid": False})
    return fig
