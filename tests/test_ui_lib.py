"""lib modules behind the pages: formatting, charts, background jobs, history."""

import dataclasses
import json
import threading
import time

import pytest

from lib import charts
from lib.format import ARM_COLORS, citations, escape_markdown, link_citations, ms, usd
from lib.history import rows
from lib.jobs import Job
from lib.records import ArmResult, Comparison, GenParams, RetrievalParams, Source, Usage

SOURCES = (Source("refund_policy.md", 2, 0.81, "45 days"), Source("faq.md", 0, 0.52, "FAQ"),
           Source("refund_policy.md", 3, 0.40, "more"))


def _result(arm="rag", label="RAG", cost=0.0, source="provider", error=None):
    usage = Usage(100, 20, 30, 50, 10, 10)
    return ArmResult(arm, label, "m", "local", "It is 45 days [1].", SOURCES if arm in ("rag", "hybrid") else (),
                     usage, source, cost, "note", 12.0, 300.0, 900.0, 0.0, "stop", error)


def _comparison(question="q?", results=None):
    return Comparison("abc123", question, 1_700_000_000.0, "kb", RetrievalParams(3, 0.1), GenParams(),
                      SOURCES, 12.0, tuple(results or [_result(), _result("baseline", "Baseline", cost=0.001)]))


@pytest.mark.parametrize(("value", "text"), [(None, "–"), (12.3, "12 ms"), (1234, "1.23 s"), (12345, "12.3 s")])
def test_ms(value, text):
    assert ms(value) == text


@pytest.mark.parametrize(("value", "text"), [(None, "unknown"), (0, "$0"), (0.0000421, "$0.000042"),
                                             (0.01234, "$0.0123"), (1234.5, "$1,234.50")])
def test_usd(value, text):
    assert usd(value) == text


def test_estimated_cost_is_labelled():
    assert usd(0.002, estimated=True) == "~$0.00200 (estimated)"


def test_citations_link_only_to_real_sources_and_text_is_escaped():
    assert citations("a [2] b [1] c [2]") == [2, 1]
    md = link_citations("<b>45</b> days [1], see [9]", SOURCES, "sources-rag")
    assert '[\\[1\\]](#sources-rag-1 "refund_policy.md, chunk 2, score 0.81")' in md
    assert "\\[9\\]" in md and "(#sources-rag-1" in md and md.count("](#") == 1
    assert "\\<b\\>" in md  # raw HTML is shown as text, never rendered
    assert escape_markdown("*x*") == "\\*x\\*"


def test_per_question_charts_use_the_arm_colours():
    results = [_result(), _result("baseline", "Baseline", cost=None), _result("hybrid", "Hybrid", error="boom")]
    lat = charts.latency(results)
    assert [t.name for t in lat.data] == ["retrieval", "time to first token", "generation"]
    assert list(lat.data[0].y) == ["RAG", "Baseline"]  # the failed arm is left out
    assert list(lat.data[2].x) == [0.6, 0.6]  # seconds
    assert charts.cost(results).data[0].marker.color[0] == ARM_COLORS["rag"]
    tok = charts.tokens(results)
    assert [t.name for t in tok.data] == ["system", "context", "question", "chat template", "completion"]
    assert list(tok.data[1].y) == [50, 50]
    cost = charts.cost(results)
    assert list(cost.data[0].x) == ["RAG"] and "no price known for Baseline" in cost.layout.title.text
    src = charts.source_scores(SOURCES)
    assert [t.name for t in src.data] == ["refund_policy.md", "faq.md"]
    assert list(src.data[0].x) == ["[1] refund_policy.md<br>#2", "[3] refund_policy.md<br>#3"]  # names, not only [n]


def test_estimated_usage_is_marked_in_the_token_chart():
    tok = charts.tokens([_result(source="estimate")])
    assert list(tok.data[0].x) == ["RAG (est.)"]


def test_history_round_trip_rows_and_charts(tmp_path):
    import sqlite3

    from lib.workspace import Workspace

    h = Workspace(tmp_path, "default")
    h.add_comparison(_comparison("first?"))
    h.add_comparison(dataclasses.replace(_comparison("second?"), id="def456", created_at=1_700_000_001.0))
    with sqlite3.connect(h.db_path) as con:
        con.execute("""INSERT INTO comparisons VALUES ('x', 9e9, 'kb', 'q', 1, '{"half-written": ')""")
    saved, bad = h.comparisons("kb")
    assert [c.question for c in saved] == ["first?", "second?"] and bad == 1
    table = rows(saved)
    assert len(table) == 4 and table[0]["arm"] == "rag" and table[0]["context_tokens"] == 50
    assert table[0]["sources"].startswith("refund_policy.md#2 (0.81)")
    json.dumps(table)
    assert len(charts.cost_vs_latency(table).data) == 2
    assert len(charts.latency_distribution(table).data) == 2
    cum = charts.cumulative_cost(table)
    baseline = next(t for t in cum.data if t.name == "Baseline")
    assert list(baseline.y) == pytest.approx([0.001, 0.002])
    h.clear_history("kb")
    assert h.comparisons("kb") == ([], 0)


def test_job_streams_and_reports_errors():
    gate = threading.Event()

    def work(on_delta):
        on_delta("rag", "4")
        on_delta("rag", "5")
        gate.wait(5)
        return "done"

    job = Job(work).start()
    while job.texts().get("rag") != "45":
        pass
    assert not job.done
    gate.set()
    assert job.wait(5) and job.result == "done" and job.error is None

    failing = Job(lambda on_delta: 1 / 0).start()
    failing.wait(5)
    assert isinstance(failing.error, ZeroDivisionError)


def test_all_local_costs_say_why_they_are_zero():
    fig = charts.cost([_result(), _result("baseline", "Baseline")])
    assert "no per-token charge" in fig.layout.annotations[0].text
    priced = charts.cost([_result(cost=0.002)])
    assert not priced.layout.annotations and priced.layout.yaxis.range[1] > 0.002


def test_job_reports_what_each_arm_waits_for():
    """The Compare page shows a waiting arm's place in the local queue until its turn starts."""
    import threading

    release = threading.Event()

    def work(on_delta, on_status):
        on_status("rag", "Waiting for the shared local model: 1 request ahead")
        on_delta("hybrid", "first ")
        release.wait(5)
        on_status("rag", "")
        on_delta("rag", "now answering")
        return "ok"

    job = Job(work, statuses=True).start()
    deadline = time.monotonic() + 5
    while "hybrid" not in job.texts() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.statuses() == {"rag": "Waiting for the shared local model: 1 request ahead"}
    release.set()
    assert job.wait(5) and job.result == "ok"
    assert job.statuses() == {} and job.texts()["rag"] == "now answering"
def test_untrusted_text_is_inert_markdown():
    text = "a\n\n![x](http://h/x.png) <img src=x> www.evil.example https://e.example a@b.org :red[x]\n==="
    md = escape_markdown(text)
    assert "\\!\\[x\\]\\(" in md and "\\<img" in md and "\\=\\=\\=" in md and "\\:red\\[x\\]" in md
    assert "www\u2060\\." in md and "https\\:\u2060//" in md and "@\u2060b" in md  # no autolink can form
    assert md.replace("\u2060", "").replace("\\", "") == text  # shown exactly as written


def test_a_document_name_cannot_break_out_of_a_citation_link():
    evil = Source('x"\n\n[a](http://e.example) \\', 0, 0.5, "t")
    md = link_citations("See [1].", (evil,), "sources-rag")
    link = md[md.index("](#"):]
    assert "\n" not in md and link.startswith('](#sources-rag-1 "x\\" [a](http://e.example) \\\\, chunk 0')


def test_sources_html_escapes_everything_and_anchors_each_source():
    from lib.format import sources_html

    html = sources_html((Source("<b>a</b>.md", 1, 0.5, "<img src=x onerror=y>\n\nline"),) + SOURCES[:1], "s-rag")
    assert "<img" not in html and "<b>" not in html and "&lt;img src=x onerror=y&gt;" in html
    assert html.count("<details") == 2 and 'id="s-rag-1"' in html and 'id="s-rag-2"' in html


def test_charts_are_readable():
    results = [_result(cost=0.0003), _result("baseline", "Baseline", cost=0.0001)]
    cost = charts.cost(results)
    assert cost.layout.yaxis.tickformat == "$,.6~f" and list(cost.data[0].text) == ["$0.00030", "$0.00010"]
    for fig in (cost, charts.tokens(results), charts.latency(results), charts.source_scores(SOURCES)):
        assert fig.layout.legend.yanchor == "top" and fig.layout.legend.y < 0  # under the plot, not the title
    zero = charts.cost([_result(cost=0.0)])
    assert zero.layout.annotations[0].text.startswith("$0: local models") and zero.layout.yaxis.visible is False
    assert charts.tokens(results).layout.yaxis.tickformat == ",d"


def test_token_chart_stacks_to_the_prompt_total():
    usage = Usage(673, 20, 30, 600, 10, 33, parts_estimated=True, counted_prompt_tokens=918)
    r = dataclasses.replace(_result(), usage=usage)
    fig = charts.tokens([r])
    assert list(fig.data[0].x) == ["RAG (parts est.)"]
    assert sum(t.y[0] for t in fig.data if t.name != "completion") == 673


def test_chart_labels_cannot_form_links():
    evil = (Source('<a href="http://e.example">x</a>\n\nname.md', 0, 0.5, "t"),)
    fig = charts.source_scores(evil)
    shown = [fig.data[0].name, *fig.data[0].x, *fig.data[0].hovertext]
    assert all("<a" not in t and "&lt;a href" in t for t in shown), shown
