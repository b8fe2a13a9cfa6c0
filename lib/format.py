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
    "longcontext": "#9467bd",
}
# The same colours by Streamlit's Markdown colour names, for column headers.
ARM_BADGES: dict[str, str] = {"baseline": "gray", "rag": "blue", "finetuned": "orange", "hybrid": "green",
                              "longcontext": "violet"}
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


# U+2060 WORD JOINER: invisible, and it keeps GFM's autolink-literal pass (which runs on the text after
# backslash escapes are resolved) from turning www.x, http://x or a@b.c into a link.
_JOINER = "\u2060"
_AUTOLINK = re.compile(r"(?i)(?<=www)(?=\.)|(?<=:)(?=//)|(?<=@)(?=\w)")


def escape_markdown(text: str) -> str:
    """Untrusted text (document names, answers, errors, questions) for a Markdown renderer: shown exactly as
    written, and unable to form a link, load an image or any remote content, or break out of its place.
    Markdown and HTML characters are backslash-escaped; bare URLs, www. addresses and e-mail addresses get an
    invisible word joiner so that no autolink forms."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$=&:])", r"\\\1", _AUTOLINK.sub(_JOINER, text))


def one_line(text: str) -> str:
    """Text for a place that holds a single line (a link title, a heading, a label): whitespace runs,
    blank lines included, become one space."""
    return " ".join(str(text).split())


def link_citations(answer: str, sources: Any, anchor: str) -> str:
    """Markdown for an answer: its text escaped, each valid [n] a link to source n (`#{anchor}-{n}`) whose
    tooltip names the document, chunk and score of source n (on one line, quotes and backslashes escaped,
    so a document name cannot break out of the link)."""
    out, last = [], 0
    for m in _CITATION.finditer(answer):
        n = int(m.group(1))
        out.append(escape_markdown(answer[last:m.start()]))
        if 1 <= n <= len(sources):
            s = sources[n - 1]
            title = one_line(f"{s.document}, chunk {s.chunk}, score {s.score:.2f}")
            title = title.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'[\\[{n}\\]](#{anchor}-{n} "{title}")')
        else:
            out.append(escape_markdown(m.group(0)))
        last = m.end()
    out.append(escape_markdown(answer[last:]))
    return "".join(out)


# Sources as HTML <details> (for st.html, which sanitises with DOMPurify; every value here is escaped too).
# A citation link [n] points at `#{anchor}-{n}`, an element inside source n's <details>: following it opens
# the <details> (the browser's ancestor-revealing step of fragment navigation) and `:target` highlights it.
SOURCES_CSS = """<style>
details.wb-source { border: 1px solid rgba(49, 51, 63, 0.2); border-radius: 0.5rem; margin: 0 0 0.5rem 0;
  padding: 0.4rem 0.75rem; }
details.wb-source > summary { cursor: pointer; }
details.wb-source .wb-source-text { white-space: pre-wrap; font-family: monospace; font-size: 0.85rem;
  margin-top: 0.4rem; scroll-margin-top: 6rem; }
details.wb-source:has(.wb-source-text:target) { outline: 3px solid #f0b400; background: rgba(255, 214, 0, 0.15); }
</style>"""


def sources_html(sources: Any, anchor: str) -> str:
    """Retrieved sources as collapsible blocks, source n's text under the id `{anchor}-{n}`."""
    import html

    blocks = []
    for n, s in enumerate(sources, 1):
        label = html.escape(f"[{n}] {one_line(s.document)} #{s.chunk} ({s.score:.2f})")
        blocks.append(f'<details class="wb-source" data-source="{n}"><summary>{label}</summary>'
                      f'<div class="wb-source-text" id="{html.escape(anchor)}-{n}">{html.escape(s.text)}</div>'
                      "</details>")
    return "".join(blocks)


# OWASP's CSV-injection rule: a cell that starts with one of these is read as a formula by spreadsheets.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value for a CSV cell that a spreadsheet opens as text, never as a formula: a string starting with
    =, +, -, @, tab or carriage return gets a leading apostrophe (OWASP). Numbers and None are left as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_csv(rows: list[dict[str, Any]], columns: list[str] | tuple[str, ...]) -> str:
    """Rows as CSV text (a header row, then one line per row), every cell made safe by `csv_cell`."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: csv_cell(r.get(k)) for k in columns} for r in rows)
    return out.getvalue()
