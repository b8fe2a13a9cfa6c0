"""Plotly figures from results: pure functions, no Streamlit."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from lib.arms import ArmResult
from lib.format import ARM_COLORS, PART_COLORS

_LAYOUT: dict[str, Any] = {"margin": {"l": 10, "r": 10, "t": 60, "b": 10}, "height": 320,
                           "legend": {"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0},
                           "template": "plotly_white"}


def _ok(results: list[ArmResult] | tuple[ArmResult, ...]) -> list[ArmResult]:
    return [r for r in results if r.error is None]


def latency(results: list[ArmResult] | tuple[ArmResult, ...]) -> go.Figure:
    """Per arm: retrieval, then wait for the first token, then generation (stacked, ms)."""
    ok = _ok(results)
    labels = [r.label for r in ok]
    retrieval = [r.retrieval_ms for r in ok]
    first = [(r.ttft_ms or 0) - r.retrieval_ms for r in ok]
    gen = [(r.total_ms or 0) - (r.ttft_ms or 0) for r in ok]
    fig = go.Figure([
        go.Bar(name="retrieval", y=labels, x=retrieval, orientation="h", marker_color="#bdbdbd"),
        go.Bar(name="time to first token", y=labels, x=first, orientation="h", marker_color="#6baed6"),
        go.Bar(name="generation", y=labels, x=gen, orientation="h", marker_color="#08519c"),
    ])
    fig.update_layout(barmode="stack", title="Latency per arm (ms)", **_LAYOUT)
    return fig


def tokens(results: list[ArmResult] | tuple[ArmResult, ...]) -> go.Figure:
    """Per arm: prompt tokens by part (system, context, question, template) and completion."""
    ok = [r for r in _ok(results) if r.usage]
    labels = [r.label + (" (est.)" if r.usage_source == "estimate" else "") for r in ok]
    parts = {
        "system": [r.usage.system_tokens for r in ok],  # type: ignore[union-attr]
        "context": [r.usage.context_tokens for r in ok],  # type: ignore[union-attr]
        "question": [r.usage.question_tokens for r in ok],  # type: ignore[union-attr]
        "overhead": [max(0, r.usage.overhead_tokens) for r in ok],  # type: ignore[union-attr]
        "completion": [r.usage.completion_tokens for r in ok],  # type: ignore[union-attr]
    }
    names = {"overhead": "chat template", "completion": "completion"}
    fig = go.Figure([go.Bar(name=names.get(k, k), x=labels, y=v, marker_color=PART_COLORS[k])
                     for k, v in parts.items()])
    fig.update_layout(barmode="stack", title="Tokens per arm", yaxis_title="tokens", **_LAYOUT)
    return fig


def cost(results: list[ArmResult] | tuple[ArmResult, ...]) -> go.Figure:
    """Per arm: cost in USD; unknown prices are left out and said so."""
    ok = [r for r in _ok(results) if r.cost_usd is not None]
    text = [("$0 (local)" if r.cost_usd == 0 else f"${r.cost_usd:.6f}") +
            (" est." if r.usage_source == "estimate" else "") for r in ok]
    fig = go.Figure(go.Bar(x=[r.label for r in ok], y=[r.cost_usd for r in ok], text=text, textposition="auto",
                           marker_color=[ARM_COLORS[r.arm] for r in ok]))
    missing = [r.label for r in _ok(results) if r.cost_usd is None]
    title = "Cost per arm (USD)" + (f" — no price known for {', '.join(missing)}" if missing else "")
    top = max((r.cost_usd or 0.0 for r in ok), default=0.0)
    fig.update_layout(title=title, yaxis_title="USD", yaxis_range=[0, top * 1.25 if top > 0 else 1], **_LAYOUT)
    if ok and top == 0:
        fig.add_annotation(text="$0 for every arm: local models have no per-token charge", showarrow=False,
                           x=0.5, y=0.5, xref="paper", yref="paper", font={"size": 14})
    return fig


def source_scores(sources: Any) -> go.Figure:
    """Retrieved sources [1..k] by similarity score, coloured by document."""
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    docs = list(dict.fromkeys(s.document for s in sources))
    fig = go.Figure()
    for i, doc in enumerate(docs):
        idx = [n for n, s in enumerate(sources, 1) if s.document == doc]
        fig.add_bar(name=doc, x=[f"[{n}]" for n in idx], y=[sources[n - 1].score for n in idx],
                    marker_color=palette[i % len(palette)],
                    hovertext=[f"{doc} · chunk {sources[n - 1].chunk}" for n in idx])
    fig.update_layout(title="Retrieved sources by score", yaxis_title="cosine similarity", yaxis_range=[0, 1],
                      xaxis={"categoryorder": "array", "categoryarray": [f"[{n}]" for n in range(1, len(sources) + 1)]},
                      **_LAYOUT)
    return fig


# ---------------------------------------------------------------- across questions (history rows)

def cost_vs_latency(rows: list[dict[str, Any]]) -> go.Figure:
    fig = go.Figure()
    for arm, color in ARM_COLORS.items():
        pts = [r for r in rows if r["arm"] == arm and r["total_ms"] is not None and r["cost_usd"] is not None]
        if pts:
            fig.add_scatter(name=pts[0]["label"], x=[p["total_ms"] for p in pts], y=[p["cost_usd"] for p in pts],
                            mode="markers", marker={"color": color, "size": 10},
                            hovertext=[p["question"][:80] for p in pts])
    fig.update_layout(title="Cost vs latency, every question", xaxis_title="total ms", yaxis_title="USD", **_LAYOUT)
    return fig


def latency_distribution(rows: list[dict[str, Any]]) -> go.Figure:
    fig = go.Figure()
    for arm, color in ARM_COLORS.items():
        values = [r["total_ms"] for r in rows if r["arm"] == arm and r["total_ms"] is not None]
        if values:
            label = next(r["label"] for r in rows if r["arm"] == arm)
            fig.add_box(name=label, y=values, marker_color=color, boxpoints="all")
    fig.update_layout(title="Latency distribution per arm", yaxis_title="total ms", showlegend=False,
                      **{k: v for k, v in _LAYOUT.items() if k != "legend"})
    return fig


def cumulative_cost(rows: list[dict[str, Any]]) -> go.Figure:
    fig = go.Figure()
    for arm, color in ARM_COLORS.items():
        pts = sorted((r for r in rows if r["arm"] == arm and r["cost_usd"] is not None),
                     key=lambda r: r["created_at"])
        if pts:
            total, ys = 0.0, []
            for p in pts:
                total += p["cost_usd"]
                ys.append(total)
            fig.add_scatter(name=pts[0]["label"], x=list(range(1, len(ys) + 1)), y=ys, mode="lines+markers",
                            line={"color": color})
    fig.update_layout(title="Cumulative cost", xaxis_title="questions asked", yaxis_title="USD", **_LAYOUT)
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
    for arm, s in known.items():
        c = s["cost_per_question_usd"]
        fig.add_scatter(name=_arm_label(arm), x=[c], y=[s["accuracy"] * 100], mode="markers+text",
                        marker={"color": ARM_COLORS.get(arm, "#888888"), "size": 14},
                        text=["$0 (local)" if c == 0 else ""], textposition="top center",
                        hovertemplate=f"{_arm_label(arm)}: %{{y:.0f}}% correct at "
                                      + ("$0 (local)" if c == 0 else f"${c:.6f}") + " per question<extra></extra>")
    missing = [_arm_label(a) for a, s in summary.items() if s.get("cost_per_question_usd") is None]
    top = max((s["cost_per_question_usd"] for s in known.values()), default=0.0)
    title = "Accuracy vs cost per question" + (f" — no price known for {', '.join(missing)}" if missing else "")
    fig.update_layout(title=title, xaxis_title="USD per question", yaxis_title="% correct", yaxis_range=[0, 105],
                      xaxis_range=[0, top * 1.3 if top > 0 else 1], xaxis_tickprefix="$", xaxis_tickformat=".6~f",
                      **_LAYOUT)
    if known and top == 0:
        fig.add_annotation(text="$0 for every arm: local models have no per-token charge", showarrow=False,
                           x=0.5, y=0.5, xref="paper", yref="paper", font={"size": 14})
    return fig


def eval_latency(graded: list[Any]) -> go.Figure:
    """Total time per answer, per arm (box with every point)."""
    fig = go.Figure()
    for arm in dict.fromkeys(g.arm for g in graded):
        values = [g.total_ms for g in graded if g.arm == arm and g.total_ms is not None]
        if values:
            fig.add_box(name=_arm_label(arm), y=values, marker_color=ARM_COLORS.get(arm, "#888888"),
                        boxpoints="all", hovertext=[g.question.id for g in graded if g.arm == arm
                                                    and g.total_ms is not None])
    fig.update_layout(title="Latency per answer", yaxis_title="total ms", yaxis_rangemode="tozero", showlegend=False,
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
