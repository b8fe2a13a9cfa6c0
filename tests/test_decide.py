"""Cost projection arithmetic (against hand-computed figures) and the decision rules on constructed measurements."""

import dataclasses

import pytest

from lib.decision import Situation, decide
from lib.projection import Assumptions, arm_usage, crossings, cumulative, project, sensitivity_per_day
from tests import records


def _answer(arm, model, provider, prompt, completion, cost, ms=1000.0, system=20, overhead=10, context=0, qid="q1"):
    return records.answer(arm, {
        "model": model, "provider": provider, "error": None, "cost_usd": cost, "total_ms": ms,
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "system_tokens": system,
                  "overhead_tokens": overhead, "context_tokens": context, "question_tokens": 10}}, qid=qid)


GPT = "gpt-4o-mini"  # $0.15 / $0.60 per million tokens in / out, cached input $0.075 (genai-prices)
FT = "ft:gpt-4o-mini-2024-07-18:acme::x"  # $0.30 / $1.20 per million (fine-tuned price)


def _run():
    answers = []
    for prompt in (1000, 1200):  # RAG: mean prompt 1100, completion 50
        cost = (prompt * 0.15 + 50 * 0.60) / 1e6
        answers.append(_answer("rag", GPT, "openai", prompt, 50, cost, context=800))
    for prompt in (100, 140):  # fine-tuned: mean prompt 120, completion 40
        cost = (prompt * 0.30 + 40 * 1.20) / 1e6
        answers.append(_answer("finetuned", FT, "openai", prompt, 40, cost))
    answers.append(_answer("baseline", "smollm2-135m-instruct", "local", 60, 30, 0.0, ms=1800.0))
    return answers


def test_monthly_cost_is_cost_per_question_times_volume():
    usages = {u.arm: u for u in arm_usage(_run())}
    assert usages["rag"].prompt_mean == 1100 and usages["rag"].completion_mean == 50
    out = {p.arm: p for p in project(list(usages.values()), Assumptions(per_day=10_000,
                                                                          training_usd={"finetuned": 12.0}))}
    rag_cpq = (1100 * 0.15 + 50 * 0.60) / 1e6  # 0.000195
    assert out["rag"].cost_per_question_usd == pytest.approx(rag_cpq)
    assert out["rag"].monthly_inference_usd == pytest.approx(rag_cpq * 10_000 * 30)  # $58.50
    assert out["rag"].monthly_total_usd == pytest.approx(58.5) and out["rag"].training_usd == 0.0
    ft_cpq = (120 * 0.30 + 40 * 1.20) / 1e6  # 0.000084
    assert out["finetuned"].monthly_inference_usd == pytest.approx(25.2)
    # $12 of training amortised over 12 months, no retraining when documents change rarely
    assert out["finetuned"].monthly_training_usd == pytest.approx(1.0)
    assert out["finetuned"].monthly_total_usd == pytest.approx(ft_cpq * 300_000 + 1.0)
    assert out["rag"].priced and out["finetuned"].priced


def test_local_models_cost_is_unknown_until_the_hardware_cost_is_given():
    usages = arm_usage(_run())
    local = {p.arm: p for p in project(usages, Assumptions())}["baseline"]
    assert local.cost_per_question_usd is None and local.monthly_total_usd is None and not local.priced
    assert "unknown" in local.note
    priced = {p.arm: p for p in project(usages, Assumptions(hardware_usd_per_hour=0.72))}["baseline"]
    # No capacity measurement: the run's own answers, one at a time: 1.8 s a question = 2,000 an hour per machine.
    # Peak: 10,000 a day / 24 x 3 = 1,250 an hour -> 1 machine, running all month: $0.72 x 730 h = $525.60,
    # i.e. $525.60 / 300,000 questions = $0.001752 a question (not $0.72/h x 1.8 s: nobody rents 1.8 s).
    assert priced.machines == 1 and priced.questions_per_hour_per_machine == pytest.approx(2000)
    assert priced.monthly_total_usd == pytest.approx(525.6) and priced.cost_per_question_usd == pytest.approx(0.001752)
    assert "run's own answers" in priced.capacity_source


def test_cached_input_discount_applies_to_the_repeated_prefix_of_long_prompts():
    usages = {u.arm: u for u in arm_usage(_run())}
    cached = {p.arm: p for p in project(list(usages.values()), Assumptions(cached_input=True))}
    # RAG prompt 1100 >= 1024: the 30-token prefix (system 20 + template 10) at $0.075 instead of $0.15
    expected = ((1100 - 30) * 0.15 + 30 * 0.075 + 50 * 0.60) / 1e6
    assert cached["rag"].cost_per_question_usd == pytest.approx(expected)
    assert "cached-input" in cached["rag"].note
    # fine-tuned prompt 120 < 1024: not cached
    assert cached["finetuned"].cost_per_question_usd == pytest.approx((120 * 0.30 + 40 * 1.20) / 1e6)
    assert "not cached" in cached["finetuned"].note


def test_retraining_follows_how_often_documents_change_and_break_even_is_found():
    usages = [u for u in arm_usage(_run()) if u.arm != "baseline"]
    a = Assumptions(per_day=10_000, training_usd={"finetuned": 100.0}, changes="monthly", amortise_months=12)
    out = {p.arm: p for p in project(usages, a)}
    assert out["finetuned"].monthly_training_usd == pytest.approx(100 / 12 + 100)
    flat = Assumptions(per_day=10_000, training_usd={"finetuned": 100.0}, changes="rarely")
    projections = project(usages, flat)
    ft = next(p for p in projections if p.arm == "finetuned")
    assert cumulative(ft, 3, flat) == pytest.approx([100, 125.2, 150.4, 175.6])
    [cross] = crossings(projections, 12, flat)
    # 100 + 25.2 m = 58.5 m  =>  m = 100 / 33.3 = 3.0 months; fine-tuned is cheaper after that
    assert cross["month"] == pytest.approx(100 / 33.3, abs=0.01) and cross["cheaper_after"] == "finetuned"
    sens = sensitivity_per_day(usages, flat, [1000, 10_000])
    assert sens["rag"] == pytest.approx([5.85, 58.5])


def _summary(**arms):
    base = {"answerable": 30, "accuracy_ci95": None, "citation_accuracy": None, "house_style": 0.0,
            "p95_total_ms": 1000.0, "retrieval_hit_rate": 0.9}
    out = {}
    for arm, values in arms.items():
        row = {**base, **values}
        if row["accuracy_ci95"] is None:
            row["accuracy_ci95"] = [max(0, row["accuracy"] - 0.05), min(1, row["accuracy"] + 0.05)]
        out[arm] = row
    return out


def test_frequent_changes_and_citations_favour_retrieval():
    s = _summary(rag={"accuracy": 0.6, "citation_accuracy": 0.9}, finetuned={"accuracy": 0.65},
                 hybrid={"accuracy": 0.62, "citation_accuracy": 0.5})
    r = decide(s, Situation(changes="daily", citations=True),
               freshness={"rag": {"follows_change": True}, "finetuned": {"keeps_old": True},
                          "hybrid": {"follows_change": True}})
    assert r.choice == "rag"
    assert any("citations" in x for x in r.reasons) and any("daily" in x for x in r.reasons)
    assert any("not needing citations" in x for x in r.would_change)
    # the reason names the measured citation figures; hybrid, whose citations are mostly wrong, is said to be
    cites = next(x for x in r.reasons if x.startswith("Answers need citations"))
    assert "RAG 90%" in cites and "Hybrid 50%" in cites and "supports the answer's own claim" in cites
    assert [q.source for q in r.matrix][:2] == ["you", "you"] and len(r.matrix) == 6


def test_citation_reasons_use_the_claim_checked_shares():
    s = _summary(rag={"accuracy": 0.6, "citation_accuracy": 0.3, "citations_correct": 0.25,
                      "citations_wrong": 0.6, "citations_none": 0.15},
                 finetuned={"accuracy": 0.55})
    r = decide(s, Situation(citations=True))
    row = next(q for q in r.matrix if q.question == "Are citations needed?")
    assert "RAG 30% of cited answers correct (25% cite a supporting source, 60% a wrong one, 15% none)" in row.answer
    assert any("RAG cite(s) a source that does not support the claim" in x for x in r.reasons)


def test_latency_target_and_format_favour_fine_tuning():
    s = _summary(rag={"accuracy": 0.55, "p95_total_ms": 9000.0, "house_style": 0.0},
                 finetuned={"accuracy": 0.6, "p95_total_ms": 900.0, "house_style": 0.97},
                 hybrid={"accuracy": 0.62, "p95_total_ms": 9500.0, "house_style": 1.0})
    r = decide(s, Situation(changes="rarely", citations=False, latency_ms=2000), small_model=True)
    assert r.choice == "finetuned"
    assert any("latency target" in x for x in r.reasons) and any("format" in x for x in r.reasons)
    assert r.caveat and "135M" in r.caveat


def test_ahead_beyond_the_noise_only_when_no_interval_overlaps_the_baseline_included():
    # RAG alone among the candidates, at 0% like the baseline: neither "ahead" nor anything but "no arm answered".
    zero = _summary(baseline={"accuracy": 0.0, "accuracy_ci95": [0.0, 0.11]},
                    rag={"accuracy": 0.0, "accuracy_ci95": [0.0, 0.11]})
    text = decide(zero, Situation()).reasons[0]
    assert "ahead" not in text and "no arm answered a question correctly" in text
    # RAG 20% against a baseline at 10% with overlapping intervals: within noise, not ahead.
    close = _summary(baseline={"accuracy": 0.1, "accuracy_ci95": [0.03, 0.26]},
                     rag={"accuracy": 0.2, "accuracy_ci95": [0.1, 0.37]})
    text = decide(close, Situation()).reasons[0]
    assert "ahead" not in text and "Baseline within noise of RAG" in text
    clear = _summary(baseline={"accuracy": 0.0, "accuracy_ci95": [0.0, 0.11]},
                     rag={"accuracy": 0.8, "accuracy_ci95": [0.63, 0.9]},
                     hybrid={"accuracy": 0.3, "accuracy_ci95": [0.17, 0.48]})
    assert "RAG is ahead beyond the noise" in decide(clear, Situation()).reasons[0]


def test_citations_are_claimed_only_as_measured():
    s = _summary(rag={"accuracy": 0.5, "cites": 0.0, "citation_accuracy": None},
                 hybrid={"accuracy": 0.5, "cites": 0.8, "citation_accuracy": 0.55}, finetuned={"accuracy": 0.5})
    r = decide(s, Situation(citations=True))
    text = " ".join(r.reasons)
    assert "RAG cited a source in 0% of its answers" in text and "Hybrid cited a source in 80%" in text
    assert "correctly in 55%" in text and "RAG put no citation in any answer" in text
    assert "only the retrieval arms can point to a source" not in text
    # claim-checked figures: an arm whose answerable answers never cite is said to give no citations
    checked = _summary(rag={"accuracy": 0.5, "citation_accuracy": None, "citations_correct": 0.0,
                            "citations_wrong": 0.0, "citations_none": 1.0},
                       hybrid={"accuracy": 0.5, "citation_accuracy": 0.9, "citations_correct": 0.72,
                               "citations_wrong": 0.08, "citations_none": 0.2})
    r = decide(checked, Situation(citations=True))
    assert any(x.startswith("RAG put no citation in any answer") for x in r.reasons) and r.choice == "hybrid"
    assert r.choice == "hybrid"  # the arm that measurably cites


def test_runner_up_gain_is_the_gain_at_which_the_rules_choose_it_and_is_stable():
    from lib.decision import gain_needed, with_accuracy

    s = _summary(rag={"accuracy": 0.5, "accuracy_ci95": None}, finetuned={"accuracy": 0.3},
                 hybrid={"accuracy": 0.4})
    r = decide(s, Situation())
    assert r.choice == "rag"
    points = gain_needed(s, "hybrid")
    assert points is not None and points > 0
    line = next(x for x in r.would_change if x.startswith("Hybrid is the runner-up"))
    assert f"with {points} more points" in line
    # At that gain the rules choose it, one point less they do not.
    assert decide(with_accuracy(s, "hybrid", 0.4 + points / 100)).choice == "hybrid"
    assert decide(with_accuracy(s, "hybrid", 0.4 + (points - 1) / 100)).choice != "hybrid"
    # Answers that do not bear on hybrid against RAG leave it unchanged.
    for situation in (Situation(training_examples=True), Situation(format_matters=True), Situation(changes="rarely"),
                      Situation(citations=False)):
        assert gain_needed(s, "hybrid", situation) == points
    # Ruled out whatever its accuracy: said so, with no number.
    ruled = decide(s, Situation(citations=True, changes="daily"))
    assert ruled.choice != "finetuned"
    assert gain_needed(s, "finetuned", Situation(citations=True, changes="daily")) is None


def test_a_model_fine_tuned_on_other_documents_is_named_in_the_reasons():
    s = _summary(rag={"accuracy": 0.5}, finetuned={"accuracy": 0.0}, hybrid={"accuracy": 0.2})
    card = "quillmere-smollm2-lora: smollm2 fine-tuned on the sample company (Quillmere Outdoor Co.)"
    r = decide(s, Situation(), provenance={"card": card, "knowledge_base": "licenses", "other_documents": True})
    assert any(card in x and "not fine-tuned on this knowledge base ('licenses')" in x for x in r.reasons)
    assert any("fine-tuning on 'licenses'" in x for x in r.would_change)
    plain = decide(s, Situation(), provenance={"card": card, "knowledge_base": "sample", "other_documents": False})
    assert not any("other documents" in x for x in plain.reasons)


def test_a_missing_source_means_improve_retrieval_first():
    s = _summary(rag={"accuracy": 0.2, "retrieval_hit_rate": 0.35}, finetuned={"accuracy": 0.3},
                 hybrid={"accuracy": 0.25, "retrieval_hit_rate": 0.35})
    r = decide(s, Situation())
    assert r.choice == "improve-retrieval" and "35%" in r.reasons[0]


def test_when_arms_tie_within_noise_the_cheaper_one_wins_and_the_reason_says_so():
    s = _summary(rag={"accuracy": 0.5, "accuracy_ci95": [0.33, 0.67]},
                 hybrid={"accuracy": 0.53, "accuracy_ci95": [0.36, 0.70]})
    r = decide(s, Situation(), monthly_cost={"rag": 50.0, "hybrid": 400.0})
    assert "within noise" in r.reasons[0]
    assert r.choice == "rag" and any("is the choice" in x for x in r.reasons)
    assert decide(s, Situation(), monthly_cost={"rag": 400.0, "hybrid": 50.0}).choice == "hybrid"
    with pytest.raises(ValueError):
        decide({"baseline": {"accuracy": 0.1}}, Situation())


def test_project_and_decide_cli_from_a_stored_run(settings, openai_server, sample_kb_dir, monkeypatch, capsys):
    import json

    from lib.__main__ import main

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-decide")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("WORKBENCH_FT_MODEL", FT)
    openai_server.reply_fn = lambda body: "45 days [1]."
    common = ["--data-dir", str(sample_kb_dir), "--json"]
    assert main(["eval", "--limit", "3", "--arms", "rag,finetuned", "--run-name", "for-decide", *common]) == 0
    capsys.readouterr()
    assert main(["project", "--run", "for-decide", "--per-day", "1000", *common]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["arm"] for r in rows] == ["rag", "finetuned"]
    for r in rows:
        assert set(r) >= {"arm", "model", "questions", "cost_per_question_usd", "monthly_inference_usd",
                          "training_usd", "monthly_total_usd", "priced"}
        assert r["questions"] == 3 and r["priced"] is (r["arm"] == "rag")  # the ft model's training cost is unknown
        assert r["monthly_inference_usd"] == pytest.approx(r["cost_per_question_usd"] * 1000 * 30)
    assert main(["decide", "--run", "for-decide", "--changes", "daily", "--citations", "yes", *common]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["choice"] == "rag" and out["reasons"] and len(out["matrix"]) == 6
    assert main(["project", "--run", "no-such-run", *common]) == 2
    assert "No evaluation run" in capsys.readouterr().out


@pytest.fixture
def stored_run(openai_server, sample_kb_dir, monkeypatch, capsys):
    from lib.__main__ import main

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-report")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("WORKBENCH_FT_MODEL", FT)
    openai_server.reply_fn = lambda body: "45 days [1]."
    assert main(["eval", "--limit", "3", "--arms", "rag,finetuned,hybrid", "--run-name", "for-report",
                 "--data-dir", str(sample_kb_dir), "--json"]) == 0
    capsys.readouterr()
    return sample_kb_dir


def test_report_cli_writes_markdown_and_self_contained_html(stored_run, tmp_path, capsys):
    import json

    from lib.__main__ import main

    md, page = tmp_path / "r.md", tmp_path / "r.html"
    for out in (md, page):
        assert main(["report", "--run", "for-report", "--per-day", "5000", "--out", str(out), "--citations", "yes",
                     "--data-dir", str(stored_run), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["recommendation"] in ("rag", "hybrid")
    text = md.read_text()
    assert "## Recommendation" in text and "| RAG |" in text and "5,000 questions a day" in text
    assert "not needing citations" in text
    doc = page.read_text()
    assert doc.count('class="plotly-graph-div"') == 3 and "Cumulative cost" in doc
    from html.parser import HTMLParser

    class Tags(HTMLParser):
        external: list = []

        def handle_starttag(self, tag, attrs):
            if any(k in ("src", "href") and v and not v.startswith(("data:", "#")) for k, v in attrs):
                self.external.append((tag, attrs))

    Tags().feed(doc)
    assert Tags.external == []  # plotly.js and everything else inline: it opens offline
    assert "Content-Security-Policy" in doc and "default-src 'none'" in doc
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.browser
def test_report_opens_offline_in_the_browser_with_its_charts(stored_run, tmp_path, capsys):
    from playwright.sync_api import sync_playwright

    from lib.__main__ import main
    from tests.test_e2e_browser import CHROMIUM_ARGS, chromium_path

    page_file = tmp_path / "report.html"
    assert main(["report", "--run", "for-report", "--out", str(page_file), "--data-dir", str(stored_run)]) == 0
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.goto(page_file.as_uri())
        page.wait_for_selector(".plotly-graph-div .main-svg", timeout=30_000)
        assert page.locator(".plotly-graph-div").count() == 3
        assert page.locator(".plotly-graph-div .main-svg").count() >= 3
        assert "Recommendation" in page.inner_text("body")
        browser.close()
    assert all(u.startswith(("file:", "data:", "blob:", "about:")) for u in requests), requests


# ---------------------------------------------------------------- charts: layout checks (issue 21 item 12)

def test_break_even_labels_never_overlap_and_stay_inside_the_plot():
    from lib import charts

    crossings = [{"arms": ("rag", "hybrid"), "month": m, "usd": 10.0 * m, "cheaper_after": "rag"}
                 for m in (0.2, 0.4, 0.5, 3.0, 3.3, 11.9)]
    labels = charts.break_even_labels(crossings, 12)
    assert [p["letter"] for p in labels] == list("ABCDEF")
    for i, a in enumerate(labels):
        assert 0 <= a["y"] <= 1 and 0 <= a["x"] <= 12
        for b in labels[i + 1:]:
            assert a["row"] != b["row"] or abs(a["x"] - b["x"]) / 12 >= charts.LABEL_GAP
    curves = {"rag": [10.0 * m for m in range(13)], "hybrid": [5 + 9.0 * m for m in range(13)]}
    fig = charts.break_even(curves, crossings)
    lo, hi = fig.layout.xaxis.range
    assert all(lo <= a.x <= hi and 0 <= a.y <= 1 and a.yref == "paper" for a in fig.layout.annotations)
    # Coinciding curves stay distinguishable: each arm its own dash and marker.
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert len({t.line.dash for t in lines}) == 2 and len({t.marker.symbol for t in lines}) == 2


def test_the_users_volume_is_inside_the_volume_axis_and_marked():
    from lib import charts
    from lib.projection import volume_axis

    for per_day in (1, 37, 5_000, 10_000, 2_000_000):
        axis = volume_axis(per_day)
        assert axis[0] <= per_day <= axis[-1] and per_day in axis and axis[-1] / axis[0] >= 100
    axis = volume_axis(5_000)
    fig = charts.sensitivity(axis, {"rag": [x * 0.01 for x in axis]}, "questions a day", "t", mark=5_000,
                             mark_label="yours: 5,000 a day", log_x=True)
    assert fig.layout.xaxis.type == "log"
    [note] = fig.layout.annotations
    assert note.text == "yours: 5,000 a day" and 0 <= note.y <= 1
    import math
    assert math.log10(axis[0]) <= note.x <= math.log10(axis[-1])


def test_cost_by_top_k_moves_for_local_arms_with_the_prompt_length():
    from lib.projection import Assumptions, arm_usage, sensitivity_top_k

    answers = [records.answer("rag", {"model": "smollm2-135m-instruct", "provider": "local", "error": None,
                                      "cost_usd": 0.0, "total_ms": 3000.0, "ttft_ms": 2100.0, "retrieval_ms": 100.0,
                                      "usage": {"prompt_tokens": 500, "completion_tokens": 40, "system_tokens": 30,
                                                "overhead_tokens": 10, "context_tokens": 400,
                                                "question_tokens": 10}})]
    usages = arm_usage(answers, top_k=2)
    # prompt reading (2.0 s for 500 tokens) scales with the prompt: top-k 1 -> 300 tokens, 4 -> 900 tokens, so a
    # question takes 2.2 s, 3.0 s, 4.6 s: one machine serves 1,636, 1,200 or 783 an hour. At 8,000 a day the peak
    # is 8,000 / 24 x 3 = 1,000 an hour: one machine up to top-k 2, two at top-k 4 (self-hosted arms cost machines).
    series = sensitivity_top_k(usages, Assumptions(per_day=8000, hardware_usd_per_hour=1.0), [1, 2, 4])["rag"]
    assert series == pytest.approx([730.0, 730.0, 1460.0])


def test_accuracy_vs_cost_labels_stay_inside_the_plot():
    from lib import charts

    summary = {"rag": {"accuracy": 1.0, "cost_per_question_usd": 0.0}, "finetuned": {"accuracy": 0.3,
                                                                                      "cost_per_question_usd": 0.0}}
    fig = charts.eval_accuracy_vs_cost(summary)
    top = fig.layout.yaxis.range[1]
    for t in fig.data:  # every arm at $0: one column of points, each named beside it, none labelled over another
        assert t.y[0] <= top and t.textposition == "middle right" and t.text[0] == t.name
    [note] = fig.layout.annotations
    assert "$0 for every arm" in note.text and note.y >= 0.9  # above the points, not across them
    priced = {**summary, "finetuned": {"accuracy": 0.9, "cost_per_question_usd": 0.002}}
    for t in charts.eval_accuracy_vs_cost(priced).data:
        assert t.y[0] <= top
        assert t.textposition == ("bottom center" if t.y[0] > 80 else "top center")
    assert not charts.eval_accuracy_vs_cost(priced).layout.annotations


def test_cost_charts_draw_the_users_mark_only_over_costs():
    from lib import charts

    unknown = charts.sensitivity([100, 1000, 10000], {"rag": [None, None, None]}, "questions a day", "t", mark=5000,
                                 mark_label="yours", log_x=True)
    assert not unknown.layout.shapes and all("yours" not in (a.text or "") for a in unknown.layout.annotations)
    known = charts.sensitivity([100, 1000, 10000], {"rag": [1.0, 10.0, 100.0]}, "questions a day", "t", mark=5000,
                               mark_label="yours", log_x=True)
    assert len(known.layout.shapes) == 1 and any(a.text == "yours" for a in known.layout.annotations)


def test_an_arm_whose_every_request_failed_is_not_called_ungraded_in_the_citation_chart():
    from lib import charts

    summary = {"rag": {"n": 4, "errors": 0, "citations_correct": 0.5, "citations_wrong": 0.25, "citations_none": 0.25},
               "longcontext": {"n": 4, "errors": 4, "citations_correct": None},
               "hybrid": {"n": 4, "errors": 0, "citations_correct": None}}
    title = charts.eval_citations(summary).layout.title.text
    assert "not graded for Hybrid (regrade the run)" in title and "Long context" not in title


def _stored(ws, arm, model, provider, correct, ms=2000.0, cost=0.0, trained_on=None, warnings=()):
    q = {"id": f"q{len(ws.answers('r1')):02d}", "question": "How long?", "reference": "45 days", "keywords": ["45"],
         "answerable": True, "source": "refund_policy.md"}
    result = {"arm": arm, "label": arm, "model": model, "provider": provider, "answer": "45 days" if correct else "x",
              "sources": [], "usage": {"prompt_tokens": 300, "completion_tokens": 20, "system_tokens": 30,
                                       "context_tokens": 200, "question_tokens": 10, "overhead_tokens": 60},
              "usage_source": "provider", "cost_usd": cost, "cost_note": "", "retrieval_ms": 50.0, "ttft_ms": 900.0,
              "total_ms": ms, "queued_ms": 0.0, "finish_reason": "stop", "error": None,
              "warnings": list(warnings), "trained_on": trained_on}
    grade = {"correct": correct, "score": float(correct), "refused": False, "fabricated": False, "reason": "",
             "cites": False, "citation_ok": None, "grounded": None, "retrieval_hit": True, "house_style": False}
    ws.save_answer("r1", records.answer(arm, result, grade, qid=q["id"], question=q["question"],
                                        reference=q["reference"], keywords=tuple(q["keywords"]), source=q["source"]))


def test_report_carries_provenance_one_set_of_figures_and_an_estimated_training_time(tmp_path):
    from lib import report
    from lib.workspace import Workspace

    ws = Workspace(tmp_path / "data", "default")
    spec = {"name": "licences", "question_set": "lic", "arms": ["rag", "finetuned"], "collection": "licenses",
            "top_k": 1, "max_tokens": 96, "models": {"base": "smollm2-135m-instruct",
                                                      "finetuned": "smollm2-135m-instruct + LoRA quillmere-smollm2-lora"},
            "providers": {"base": "local", "finetuned": "local"}, "questions": 4}
    ws.create_run("r1", records.spec(**spec), [])
    card = {"name": "Quillmere house style (shipped LoRA)", "base_model": "SmolLM2-135M-Instruct",
            "knowledge_base": "sample", "description": "the sample company (Quillmere Outdoor Co.)",
            "documents": [{"name": "refund_policy.md", "sha256": "x"}], "method": "LoRA r=16, 125 steps",
            "created_at": 1_700_000_000, "train_seconds": 810.0}
    warn = "Fine-tuned on the sample company (Quillmere Outdoor Co.), not on knowledge base 'licenses': ..."
    for correct in (True, False, False, False):
        _stored(ws, "rag", "smollm2-135m-instruct", "local", correct)
        _stored(ws, "finetuned", "smollm2-135m-instruct + LoRA quillmere-smollm2-lora", "local", False,
                trained_on=card, warnings=[warn])
    d = report.build(ws, "r1", Assumptions(per_day=5000, hardware_usd_per_hour=0.5))
    # 1. provenance on the page and in the report
    assert d.provenance["other_documents"] and "sample company" in d.provenance["card"]
    assert any("not fine-tuned on this knowledge base ('licenses')" in r for r in d.recommendation.reasons)
    md = report.markdown(d)
    assert "## What the fine-tuned model was trained on" in md
    assert "Quillmere" in md
    # 2. the caveat comes from the models the answers came from
    assert d.recommendation.caveat and "135M" in d.recommendation.caveat
    # 5. one figure per arm: the measurements table shows the cost table's cost per question
    cost = {p.arm: p.cost_per_question_usd for p in d.projections}
    rows = {r[0]: r for r in report.arm_rows(d)}
    # (self-hosted: 2 s a question = 1,800 an hour; 5,000 a day peaks at 625 an hour: one machine, $0.50 x 730 h,
    # over 150,000 questions a month)
    assert rows["RAG"][-1] == report._money(cost["rag"]) and cost["rag"] == pytest.approx(0.5 * 730 / 150_000)
    # 6. the shipped adapter was trained on the sample company: the training time is estimated for 'licenses'
    assert d.training is not None and not d.training.measured and "estimated" in d.training.note
    assert "licenses" in d.training.note
    ft = next(p for p in d.projections if p.arm == "finetuned")
    assert "estimated" in ft.note
    from lib.finetune.from_kb import seconds_per_step

    assert d.training.seconds == pytest.approx(125 * seconds_per_step(ws)[0])
    # 9. the situation is recorded in the report
    assert "## Your situation" in md and "5,000" in md


def test_break_even_is_never_month_zero_and_its_absence_is_said():
    from lib import report
    from lib.decision import Recommendation

    def decision(curves, crossings):
        rec = Recommendation("rag", "RAG", (), (), (), None)
        return report.Decision({"spec": {}}, {}, Assumptions(months=12), [], curves, crossings, [], {}, [], {},
                               None, rec, False)

    early = decision({"rag": [0.0, 10.0], "hybrid": [1.0, 5.0]},
                     [{"arms": ("rag", "hybrid"), "month": 0.04, "usd": 0.4, "cheaper_after": "hybrid"}])
    [line] = report.break_even_sentences(early)
    assert "within the first month (about day 1)" in line and "month 0.0" not in line
    none = decision({"rag": [0.0, 10.0, 20.0], "hybrid": [50.0, 60.0, 70.0]}, [])
    [line] = report.break_even_sentences(none)
    assert line == "No break-even within 12 months: RAG stays the cheapest throughout."
def test_report_out_goes_into_an_existing_folder_only_and_leaves_nothing_stray(stored_run, tmp_path, capsys,
                                                                            monkeypatch):
    """Issue 18: `--out` a folder, or into a folder that does not exist, is refused before anything is written;
    a write that fails leaves no partial file."""
    from pathlib import Path

    from lib.__main__ import main

    common = ["--run", "for-report", "--data-dir", str(stored_run)]
    folder = tmp_path / "reports"
    folder.mkdir()
    assert main(["report", *common, "--out", str(folder)]) == 2
    assert "is a folder: give the report's file name" in capsys.readouterr().err
    missing = tmp_path / "not-made" / "r.html"
    assert main(["report", *common, "--out", str(missing)]) == 2
    assert "does not exist: create it first" in capsys.readouterr().err and not missing.parent.exists()

    def disk_full(self, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "replace", disk_full)
    assert main(["report", *common, "--out", str(folder / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "could not be written" in err and "No space left" in err and "Traceback" not in err
    assert list(folder.iterdir()) == []  # no report, no .part


# ---------------------------------------------------------------- failure modes and the long-context arm (issue 22)

def test_retrieval_row_is_answered_from_failure_modes_and_names_what_to_try():
    s = _summary(rag={"accuracy": 0.3, "failure_modes": {"missed_top_ranked": 12, "missed_retrieval": 2,
                                                         "not_extracted": 4, "incomplete": 2}},
                 finetuned={"accuracy": 0.2})
    r = decide(s, Situation())
    row = next(q for q in r.matrix if q.question == "Is retrieval the hard part?")
    assert row.source == "measured" and "14 of the 20 wrong answers" in row.answer and "12 of those were in" in row.answer
    assert r.choice == "improve-retrieval" and "raise top-k or add a reranker" in r.reasons[0]
    deep = _summary(rag={"accuracy": 0.3, "failure_modes": {"missed_retrieval": 12, "not_extracted": 4}},
                    finetuned={"accuracy": 0.2})
    assert "change the chunking or the embedder" in decide(deep, Situation()).reasons[0]
    # the model, not retrieval, is the weak part: the reasons say what fine-tuning could and could not address
    reading = _summary(rag={"accuracy": 0.4, "failure_modes": {"not_extracted": 9, "wrong_format": 3,
                                                               "missing_content": 2, "missed_top_ranked": 1}},
                       finetuned={"accuracy": 0.2})
    r = decide(reading, Situation())
    assert r.choice != "improve-retrieval"
    why = next(x for x in r.reasons if x.startswith("Why the retrieval arms were wrong"))
    assert "could address 9 not extracted, 3 wrong format" in why and "cannot address" in why
    assert "2 missing content" in why


def test_long_context_is_a_candidate_only_when_it_fits_and_keeps_up_with_rag():
    fits = _summary(rag={"accuracy": 0.5, "accuracy_ci95": [0.33, 0.67]},
                    longcontext={"accuracy": 0.55, "accuracy_ci95": [0.38, 0.71]})
    r = decide(fits, Situation(), monthly_cost={"rag": 100.0, "longcontext": 40.0})
    assert "longcontext" in r.scores and r.choice == "longcontext"  # within noise of RAG and cheaper
    behind = _summary(rag={"accuracy": 0.8, "accuracy_ci95": [0.65, 0.9]},
                      longcontext={"accuracy": 0.2, "accuracy_ci95": [0.1, 0.35]})
    r = decide(behind, Situation())
    assert "longcontext" not in r.scores and any("below it beyond the noise" in x for x in r.reasons)
    no_fit = _summary(rag={"accuracy": 0.5})
    no_fit["longcontext"] = {"accuracy": None, "answerable": 0, "n": 30, "errors": 30}
    r = decide(no_fit, Situation())
    assert "longcontext" not in r.scores and any("does not fit its context window" in x for x in r.reasons)


def test_the_long_context_arms_cost_note_says_it_grows_with_the_knowledge_base():
    answers = [_answer("longcontext", GPT, "openai", 9000, 40, (9000 * 0.15 + 40 * 0.6) / 1e6, context=8800)]
    [p] = project(arm_usage(answers), Assumptions(per_day=1000))
    assert "whole knowledge base (8,800 tokens a question)" in p.note and "grows with the knowledge base" in p.note
    assert p.monthly_inference_usd == pytest.approx((9000 * 0.15 + 40 * 0.6) / 1e6 * 1000 * 30)



# ---------------------------------------------------------------- self-hosting priced from capacity (issue 24)

def _curve():
    from lib.projection import CapacityCurve
    from lib.serving_cost import CapacityPoint

    return CapacityCurve((CapacityPoint(1, 500, 4000), CapacityPoint(2, 900, 6000), CapacityPoint(4, 1500, 9500),
                          CapacityPoint(8, 2600, 14000)), "capacity measured on 30 Nov 2026 on test CPU")


def test_self_hosting_is_priced_from_the_measured_capacity_curve():
    usages = [u for u in arm_usage(_run()) if u.arm == "baseline"]
    base = Assumptions(per_day=50_000, hardware_usd_per_hour=1.0, capacities=(("baseline", _curve()),))
    [p] = project(usages, base)
    # no latency target: the best throughput, 2,600 an hour at 8; peak 50,000 / 24 x 3 = 6,250 an hour
    # -> ceil(6,250 / 2,600) = 3 machines x $1 x 730 h = $2,190 a month; / 1,500,000 questions = $0.00146
    assert (p.machines, p.questions_per_hour_per_machine) == (3, 2600)
    assert p.monthly_inference_usd == pytest.approx(2190) and p.cost_per_question_usd == pytest.approx(0.00146)
    assert "capacity measured on 30 Nov 2026" in p.capacity_source
    # a 10 s p95 target: concurrency 4 (9.5 s) at 1,500 an hour -> ceil(6,250 / 1,500) = 5 machines = $3,650
    [t] = project(usages, dataclasses.replace(base, latency_target_ms=10_000))
    assert (t.machines, t.questions_per_hour_per_machine) == (5, 1500) and t.monthly_inference_usd == pytest.approx(3650)
    # a capacity the user enters overrides the measurement: 10,000 an hour -> 1 machine
    [e] = project(usages, dataclasses.replace(base, capacity_qph=10_000))
    assert e.machines == 1 and e.capacity_source == "entered" and e.monthly_inference_usd == pytest.approx(730)
    # a peak-to-average factor of 1: 2,083 an hour fits one machine at 2,600
    [flat] = project(usages, dataclasses.replace(base, peak_factor=1.0))
    assert flat.machines == 1


def test_project_json_gives_machines_and_capacity_for_self_hosted_arms(tmp_path, capsys):
    import json

    from lib.__main__ import main
    from lib.workspace import Workspace

    ws = Workspace(tmp_path / "data", "default")
    ws.create_run("r1", records.spec(name="cap", arms=["baseline", "rag"], top_k=4, collection="x"), [])
    for i, a in enumerate(_run()):
        ws.save_answer("r1", dataclasses.replace(a, graded=dataclasses.replace(
            a.graded, question=dataclasses.replace(a.question, id=f"q{i}"))))
    assert main(["project", "--run", "cap", "--per-day", "1000", "--hardware-usd-per-hour", "0.5",
                 "--peak-factor", "2", "--data-dir", str(tmp_path / "data"), "--json"]) == 0
    rows = {r["arm"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    local = rows["baseline"]
    assert local["machines"] == 1 and local["questions_per_hour_per_machine"] == pytest.approx(2000)
    assert local["capacity_source"] and local["monthly_inference_usd"] == pytest.approx(0.5 * 730)
    assert "From this run's own answers, one at a time" in local["note"]  # (not "From the this run's")
    assert rows["rag"]["machines"] is None and rows["rag"]["capacity_source"] is None  # priced per token


# ---------------------------------------------------------------- paired comparison on the same questions

def _paired_summary(a_right, b_right, n=30, a="hybrid", b="rag"):
    from lib.decision import _wilson

    ids = [f"q{i:02d}" for i in range(n)]
    out = {}
    for arm, right in ((a, a_right), (b, b_right)):
        low, high = _wilson(len(right) / n, n)
        out[arm] = {"accuracy": len(right) / n, "accuracy_ci95": [low, high], "answerable": n, "n": n,
                    "correct": len(right), "answered_ids": ids, "correct_ids": sorted(ids[i] for i in right)}
    return out


def test_a_lead_on_the_same_questions_counts_even_when_the_intervals_overlap():
    from lib.decision import accuracy_reason, paired

    # hybrid right on 0-20, RAG right on 0-9 and 21: 11 wins to 1 loss; 70% (52-83%) vs 37% (22-54%) overlap
    s = _paired_summary(range(21), [*range(10), 21])
    wins, losses, p = paired(s, "hybrid", "rag")
    assert (wins, losses) == (11, 1) and p == pytest.approx(2 * 13 / 4096)  # exact: 2 x P(X <= 1), X ~ B(12, 1/2)
    assert s["rag"]["accuracy_ci95"][1] >= s["hybrid"]["accuracy_ci95"][0]  # the intervals do overlap
    reason = accuracy_reason(s, ["rag", "hybrid"])
    assert "Hybrid is ahead beyond the noise" in reason and "RAG: right where it was wrong 11 times" in reason
    # 12 wins to 4 losses is not beyond chance (p = 0.077): within noise, as the intervals say
    close = _paired_summary(range(21), [*range(9), *range(21, 25)])
    assert paired(close, "hybrid", "rag")[:2] == (12, 4)
    assert "RAG within noise of Hybrid" in accuracy_reason(close, ["rag", "hybrid"])
    # summaries without per-question results fall back to the intervals alone
    bare = {a: {k: v for k, v in x.items() if not k.endswith("_ids")} for a, x in s.items()}
    assert paired(bare, "hybrid", "rag") is None and "within noise" in accuracy_reason(bare, ["rag", "hybrid"])


def test_a_cheaper_arm_does_not_win_on_cost_when_it_lost_on_the_same_questions():
    s = _paired_summary(range(21), [*range(10), 21])  # hybrid 11 wins to 1 on the same questions
    r = decide(s, Situation(), monthly_cost={"hybrid": 900.0, "rag": 300.0})
    assert r.choice == "hybrid" and not any("is within noise of" in x for x in r.reasons)
    close = _paired_summary(range(21), [*range(9), *range(21, 25)])  # 12 to 4: within noise, the cheaper wins
    assert decide(close, Situation(), monthly_cost={"hybrid": 900.0, "rag": 300.0}).choice == "rag"
