import pandas as pd
import streamlit as st

from lib import capacity, charts, decision, engine, freshness, projection, report
from lib.arms import ARMS
from lib.decision import LABELS
from lib.errors import ConfigError, explain
from lib.format import escape_markdown
from views import _capacity as capacity_widgets

settings = st.session_state.settings
st.title("Decide")
st.caption("From an evaluation run: what each arm costs a month at your volume, when fine-tuning pays back, which "
           "arm keeps up when documents change, and a recommendation with the reasons that drove it.")

try:
    workspace = engine.workspace_for(settings)
    runs = [r for r in workspace.runs() if r.answered]
except ConfigError as exc:
    st.error(escape_markdown(str(exc)))
    st.stop()
if not runs:
    st.info("No evaluation run in this workspace yet. Run one on the Evaluate page (or `python -m lib eval "
            "--run-name NAME`), then come back.")
    st.stop()

labels = {r.id: f"{r.name} · {r.spec.question_set} · {r.answered} answers · {r.status}" for r in runs}
run_id = st.selectbox("Evaluation run", list(labels), format_func=lambda k: labels[k], key="decide_run")

# The answers below are kept in the workspace (they come back on the next visit, and after a restart).
kept = decision.load_situation(workspace)
CHOICES = {"changes": ["not sure", "daily", "weekly", "monthly", "quarterly", "rarely"]}
YES_NO = {"yes": True, "no": False, "not sure": None}
WORDS = {True: "yes", False: "no", None: "not sure"}
for key, value in {"decide_per_day": int(kept["per_day"]), "decide_months": int(kept["months"]),
                   "decide_amortise": int(kept["amortise_months"]), "decide_changes": kept["changes"] or "not sure",
                   "decide_citations": WORDS[kept["citations"]], "decide_latency": float(kept["latency_s"] or 0),
                   "decide_format": WORDS[kept["format_matters"]], "decide_examples": WORDS[kept["training_examples"]],
                   "decide_hw": "" if kept["hardware_usd_per_hour"] is None else f"{kept['hardware_usd_per_hour']:g}",
                   "decide_cached": bool(kept["cached_input"]), "decide_peak": float(kept["peak_factor"] or 3.0),
                   "decide_capacity": "" if kept["capacity_qph"] is None else f"{kept['capacity_qph']:g}"}.items():
    st.session_state.setdefault(key, value)

with st.expander("Your situation and cost assumptions", expanded=True):
    c1, c2, c3 = st.columns(3)
    per_day = c1.number_input("Questions a day", 1, 100_000_000, step=1000, key="decide_per_day")
    months = c2.slider("Months for the break-even", 3, 36, key="decide_months")
    amortise = c3.slider("Spread one training's cost over (months)", 1, 36, key="decide_amortise")
    d1, d2, d3 = st.columns(3)
    changes = d1.selectbox("How often do the documents change?", CHOICES["changes"], key="decide_changes")
    citations = d2.selectbox("Do answers need citations?", list(YES_NO), key="decide_citations")
    latency = d3.number_input("p95 latency target (seconds, 0 = none)", 0.0, 600.0, step=0.5, key="decide_latency")
    e1, e2, e3 = st.columns(3)
    fmt = e1.selectbox("Must answers follow a fixed format?", list(YES_NO), key="decide_format")
    examples = e2.selectbox("Do you have quality training examples?", list(YES_NO), key="decide_examples")
    hw = e3.text_input("Hardware cost per hour for local models ($)", key="decide_hw",
                       help="What the machine that runs the local model costs you an hour. There is no default: "
                            "until you give it, local models' cost is shown as unknown, never $0.")
    cached = st.toggle("Price the repeated prompt prefix at the cached-input rate", key="decide_cached",
                       help="OpenAI caches a repeated prompt prefix (system prompt and template) once a prompt "
                            "reaches 1,024 tokens; shorter prompts are never cached.")
    g1, g2 = st.columns(2)
    peak = g1.number_input("Peak-to-average factor (self-hosting)", 1.0, 100.0, step=0.5, key="decide_peak",
                           help="How much busier the busiest hour is than the average one. Self-hosted machines are "
                                "sized for the peak and run all month.")
    entered = g2.text_input("Questions an hour one machine serves (optional)", key="decide_capacity",
                            help="Your own server's capacity (e.g. a GPU server with vLLM): overrides the capacity "
                                 "measured on this machine for self-hosted arms.")
    st.caption("Your answers are kept in this workspace and recorded in the report.")

try:
    capacity_qph = float(entered) if entered.strip() else None
    if capacity_qph is not None and not 0 < capacity_qph <= 1e12:
        raise ValueError
except ValueError:
    st.error("The capacity must be a number of questions an hour above 0, e.g. 2500.")
    st.stop()
try:
    hardware = float(hw) if hw.strip() else None
    if hardware is not None and not 0 <= hardware <= 10_000:  # NaN fails this too
        raise ValueError
except ValueError:
    st.error("The hardware cost must be a number of dollars per hour from 0 to 10,000, e.g. 0.45.")
    st.stop()
values = {"per_day": int(per_day), "months": int(months), "amortise_months": int(amortise),
          "changes": None if changes == "not sure" else changes, "citations": YES_NO[citations],
          "latency_s": float(latency), "format_matters": YES_NO[fmt], "training_examples": YES_NO[examples],
          "hardware_usd_per_hour": hardware, "cached_input": bool(cached), "peak_factor": float(peak),
          "capacity_qph": capacity_qph}
decision.save_situation(workspace, values)
situation = decision.situation_of(values)
assumptions = projection.Assumptions(per_day=int(per_day), months=int(months), cached_input=cached,
                                     hardware_usd_per_hour=hardware, amortise_months=int(amortise),
                                     changes=situation.changes or "rarely", peak_factor=float(peak),
                                     latency_target_ms=situation.latency_ms, capacity_qph=capacity_qph)
try:
    d = report.build(workspace, run_id, assumptions, situation)
except (ValueError, ConfigError) as exc:
    st.error(escape_markdown(str(exc)))
    st.stop()

r = d.recommendation
st.subheader(f"Recommendation: {r.label}")
if r.caveat:
    st.warning(r.caveat, icon="⚠️")
for line in report.provenance_lines(d):
    (st.caption if line.startswith("Model card:") else st.warning)(escape_markdown(line))
st.markdown("**Why**\n" + "\n".join(f"- {escape_markdown(x)}" for x in r.reasons))
st.markdown("**What would change it**\n" + "\n".join(f"- {escape_markdown(x)}" for x in r.would_change))
st.dataframe(pd.DataFrame([{"question": q.question, "answer": q.answer, "answered by": q.source,
                            "favours": q.favours} for q in r.matrix]), hide_index=True, width="stretch")

st.subheader("Cost at scale")
st.dataframe(pd.DataFrame(report.cost_rows(d), columns=report.COST_HEADER), hide_index=True, width="stretch")
if d.training is not None and d.training.note:
    st.caption(escape_markdown(f"Training time: {d.training.note}."))
for line in report.break_even_sentences(d):
    st.caption(escape_markdown(line))
if d.prices:
    st.caption("Prices used (USD per million tokens), with their source and date:")
    st.dataframe(pd.DataFrame(report.price_rows(d), columns=report.PRICE_HEADER), hide_index=True, width="stretch")
figs = report.figures(d)
st.plotly_chart(figs[0], key="decide_chart_break_even")
s1, s2 = st.columns(2)
s1.plotly_chart(figs[1], key="decide_chart_per_day")
s2.plotly_chart(figs[2], key="decide_chart_top_k")
self_hosted = [p for p in d.projections if p.capacity_source]
if self_hosted:
    st.caption("Self-hosted arms cost whole machines sized for the peak and running all month: their cost is flat "
               "until the volume (or a longer prompt) needs another machine.")

st.subheader("Self-hosting: what this machine serves")
st.caption("A self-hosted model is priced from its capacity: how many questions an hour one machine answers at the "
           "concurrency that meets your latency target (the best throughput without one). Measure it here for the "
           "run's local models (a few minutes; the app's own RAG and no-context prompts, up to 96 tokens each), or "
           "enter your own server's capacity above.")
for p in self_hosted:
    st.markdown(f"- **{LABELS.get(p.arm, p.arm)}**: {p.machines} machine(s) at "
                f"{p.questions_per_hour_per_machine:,.0f} questions an hour each; capacity "
                f"{escape_markdown(p.capacity_source or '')}")
run_roles = sorted({ARMS[a].role for a in d.run.spec.arms if a in ARMS
                    and d.run.spec.providers.get(ARMS[a].role) == "local"})
if run_roles:
    c1, c2 = st.columns([1, 1])
    cap_role = c1.selectbox("Model to measure", run_roles, key="decide_cap_role",
                            format_func=lambda r: "base model" if r == "base" else "fine-tuned model")
    if c2.button("Measure capacity", key="decide_cap_start"):
        try:
            capacity.start(settings, workspace, cap_role)
        except (ConfigError, ValueError) as exc:
            st.error(escape_markdown(str(exc)))

    capacity_widgets.progress(workspace, "decide")
    for role in run_roles:
        measured = capacity.latest(workspace, role)
        if measured is not None:
            st.plotly_chart(charts.capacity_curve(list(measured.levels), f"Capacity: {measured.model}"),
                            key=f"decide_cap_chart_{role}")
            st.caption(escape_markdown(measured.label[:1].upper() + measured.label[1:] + "."))
else:
    st.caption("The run's arms use no local model: nothing to measure on this machine.")

st.subheader("Freshness test")
st.caption("Change one fact in one document, in a temporary copy of the knowledge base (yours is never touched), "
           "and see which arms follow. Retrieval follows as soon as the document is re-indexed; a fine-tuned model "
           "only after retraining.")
try:
    kb = engine.open_kb(settings, d.run.spec.collection or None, create=False)
    docs = [doc.name for doc in kb.documents()]
except ConfigError as exc:
    kb, docs = None, []
    st.info(f"The run's knowledge base cannot be opened: {escape_markdown(str(exc))}")
if kb is not None and docs:
    guess = freshness.suggest(list(d.run.questions), docs)
    f1, f2, f3 = st.columns([2, 1, 1])
    document = f1.selectbox("Document", docs, index=docs.index(guess[0].source) if guess else 0,
                            key=f"decide_fresh_doc_{run_id}")
    find = f2.text_input("Find", guess[1] if guess else "", key=f"decide_fresh_find_{run_id}")
    new = f3.text_input("Replace with", guess[2] if guess else "", key=f"decide_fresh_replace_{run_id}")
    question = st.text_input("Question", guess[0].question if guess else "", key=f"decide_fresh_question_{run_id}")
    arms = [a for a in d.run.spec.arms if a in ("rag", "finetuned", "hybrid")] or ["rag"]
    if st.button("Run the freshness test", key="decide_fresh_run", disabled=not (find and new and question)):
        with st.spinner("Copying the knowledge base, re-indexing the edited document and asking the arms…"):
            try:
                result = freshness.run_and_record(settings, workspace, kb, document, find, new, question, arms)
                st.session_state.decide_fresh_result = (run_id, result)
                st.rerun()
            except (ValueError, ConfigError, RuntimeError) as exc:
                st.error(escape_markdown(explain(exc)))
    kept_result = st.session_state.get("decide_fresh_result")
    result = kept_result[1] if kept_result and kept_result[0] == run_id else None
    if result is not None:
        st.dataframe(pd.DataFrame([{"arm": LABELS.get(a.arm, a.arm), "follows the change": a.follows_change,
                                    "keeps the old value": a.keeps_old, "answer": a.error or a.answer}
                                   for a in result.arms]), hide_index=True, width="stretch")
        st.caption(escape_markdown(freshness.retrain_sentence(result)))

st.subheader("Take it to the meeting")
r1, r2 = st.columns(2)
r1.download_button("Download the report (HTML, opens offline)", report.html_report(d),
                   file_name=f"decision-{d.run.name}.html", mime="text/html", key="decide_download_html")
r2.download_button("Download the report (Markdown)", report.markdown(d), file_name=f"decision-{d.run.name}.md",
                   mime="text/markdown", key="decide_download_md")
