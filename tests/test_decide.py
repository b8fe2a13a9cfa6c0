"""Cost projection arithmetic (against hand-computed figures) and the decision rules on constructed measurements."""

import pytest

from lib.decision import Situation, decide
from lib.projection import Assumptions, arm_usage, crossings, cumulative, project, sensitivity_per_day


def _answer(arm, model, provider, prompt, completion, cost, ms=1000.0, system=20, overhead=10, context=0):
    return {"arm": arm, "result": {
        "model": model, "provider": provider, "error": None, "cost_usd": cost, "total_ms": ms,
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "system_tokens": system,
                  "overhead_tokens": overhead, "context_tokens": context, "question_tokens": 10}}}


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
    # $0.72/h x 1.8 s = $0.00036 per question; x 10,000 x 30 = $108 a month
    assert priced.cost_per_question_usd == pytest.approx(0.00036) and priced.monthly_total_usd == pytest.approx(108)


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
    assert [q.source for q in r.matrix][:2] == ["you", "you"] and len(r.matrix) == 6


def test_latency_target_and_format_favour_fine_tuning():
    s = _summary(rag={"accuracy": 0.55, "p95_total_ms": 9000.0, "house_style": 0.0},
                 finetuned={"accuracy": 0.6, "p95_total_ms": 900.0, "house_style": 0.97},
                 hybrid={"accuracy": 0.62, "p95_total_ms": 9500.0, "house_style": 1.0})
    r = decide(s, Situation(changes="rarely", citations=False, latency_ms=2000), small_model=True)
    assert r.choice == "finetuned"
    assert any("latency target" in x for x in r.reasons) and any("format" in x for x in r.reasons)
    assert r.caveat and "135M" in r.caveat


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
