"""Readable numbers and text for every surface (pages, CLI, exports)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

# One colour per arm, used by every chart and column.
ARM_COLORS: dict[str, str] = {
    "baseline": "#8c8c8c",
    "rag": "#1f77b4",
    "finetuned": "#ff7f0e",
    "hybrid": "#2ca02c",
}
# The same colours by Streamlit's Markdown colour names, for column headers.
ARM_BADGES: dict[str, str] = {"baseline": "gray", "rag": "blue", "finetuned": "orange", "hybrid": "green"}
PART_COLORS: dict[str, str] = {
    "system": "#9ecae1", "context": "#3182bd", "question": "#fdae6b", "overhead": "#d9d9d9", "completion": "#e6550d",
}


def ms(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.0f} ms"


def usd(value: float | None, estimated: bool = False) -> str:
    """$ with precision that suits the size: $0, $0.000042, $0.0123, $1.23."""
    if value is None:
        return "unknown"
    if value == 0:
        text = "$0"
    elif value < 0.0001:
        text = f"${value:.6f}"
    elif value < 0.01:
        text = f"${value:.5f}"
    elif value < 1:
        text = f"${value:.4f}"
    else:
        text = f"${value:,.2f}"
    return f"~{text} (estimated)" if estimated else text


def rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} tok/s"


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


_CITATION = re.compile(r"\[(\d{1,2})\]")


def citations(answer: str) -> list[int]:
    """The source numbers an answer cites, in order of first mention."""
    seen: list[int] = []
    for n in (int(m) for m in _CITATION.findall(answer)):
        if n not in seen:
            seen.append(n)
    return seen


def escape_markdown(text: str) -> str:
    """Text shown through a Markdown renderer exactly as written."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$])", r"\\\1", text)


def link_citations(answer: str, sources: Any, anchor: str) -> str:
    """Markdown for an answer: its text escaped, each valid [n] a link to the
    sources (`#anchor`) whose tooltip names the document, chunk and score of source n."""
    out, last = [], 0
    for m in _CITATION.finditer(answer):
        n = int(m.group(1))
        out.append(escape_markdown(answer[last:m.start()]))
        if 1 <= n <= len(sources):
            s = sources[n - 1]
            title = f"{s.document}, chunk {s.chunk}, score {s.score:.2f}".replace('"', "'")
            out.append(f'[\\[{n}\\]](#{anchor} "{title}")')
        else:
            out.append(escape_markdown(m.group(0)))
        last = m.end()
    out.append(escape_markdown(answer[last:]))
    return "".join(out)
