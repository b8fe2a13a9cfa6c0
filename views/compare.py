import json
import time

import streamlit as st

from lib import charts, engine, provenance
from lib.arms import ARMS, DEFAULT_ARMS
from lib.compare import ask_and_record
from lib.errors import ConfigError, explain
from lib.format import ARM_BADGES, SOURCES_CSS, escape_markdown, link_citations, ms, one_line, rate, sources_html, usd
from lib.jobs import Job
from lib.records import GenParams

settings = st.session_state.settings
st.title("Compare")

try:
    kb = engine.open_kb(settings)
except ConfigError as exc:
    st.error(escape_markdown(str(exc)))
    st.stop()

# Streamlit forgets the state of widgets that a run does not draw (another page), so the values are also
# kept under keys of their own and put back when Compare is opened again.
KEPT = {"compare_question": "", "compare_arms": list(DEFAULT_ARMS), "compare_baseline": False,
        "compare_top_k": settings.default_top_k,
        "compare_min_score": 0.0, "compare_temperature": 0.0, "compare_max_tokens": settings.default_max_tokens}
for key, default in KEPT.items():
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(f"kept_{key}", default)
if "compare_notice" in st.session_state:
    st.info(st.session_state.pop("compare_notice"), icon="🔀")
if kb.count() == 0:
    st.info("This knowledge base has no documents, so the retrieval arms (RAG, Hybrid) will have no sources. "
            "Add documents on the Documents page, or load the sample documents on the Start page.")
elif engine.has_sample_corpus(kb):
    examples = [q["question"] for q in engine.sample_questions()[:6]]
    picked = st.pills("Example questions", examples, key="compare_example")
    if picked and picked != st.session_state.get("compare_example_used"):
        st.session_state.compare_example_used = picked
        st.session_state.compare_question = picked

question = st.text_input("Question", key="compare_question", placeholder="Ask something your documents answer")
c1, c2 = st.columns([3, 1])
chosen = c1.pills("Arms", [k for k in ARMS if k != "baseline"], selection_mode="multi",
                  format_func=lambda k: ARMS[k].label, key="compare_arms",
                  help="  \n".join(f"**{ARMS[k].label}**: {ARMS[k].blurb}" for k in ARMS if k != "baseline"))
baseline = c2.toggle("Include baseline", key="compare_baseline",
                     help="The base model with no retrieval: shows what retrieval and training each add.")
arms = (["baseline"] if baseline else []) + [k for k in ARMS if k in (chosen or [])]
with st.expander("Settings shared by every arm"):
    s1, s2, s3, s4 = st.columns(4)
    top_k = s1.slider("Top-k sources", 1, 10, key="compare_top_k")
    min_score = s2.slider("Minimum score", 0.0, 1.0, step=0.05, key="compare_min_score",
                          help="Sources less similar than this are left out.")
    temperature = s3.slider("Temperature", 0.0, 1.5, step=0.1, key="compare_temperature")
    max_tokens = s4.slider("Max tokens", 16, 1024, step=16, key="compare_max_tokens")
    st.caption(settings.defaults_note)
for key in KEPT:
    st.session_state[f"kept_{key}"] = st.session_state[key]

ask = st.button("Ask", type="primary", disabled=not (question.strip() and arms), key="compare_ask")
if st.session_state.pop("compare_autorun", False) and question.strip():
    ask = True

if ask:
    params = GenParams(temperature=temperature, max_tokens=max_tokens)
    job = Job(lambda on_delta, on_status: ask_and_record(settings, question, arms, kb, params, top_k, min_score,
                                                         on_delta=on_delta, on_status=on_status),
              statuses=True).start()
    live = st.empty()
    while not job.done:
        texts, waiting = job.texts(), job.statuses()
        with live.container():
            st.caption(f"Answering… {time.monotonic() - job.started_at:.1f} s")
            for col, arm in zip(st.columns(len(arms)), arms):
                col.markdown(f"**:{ARM_BADGES[arm]}[{ARMS[arm].label}]**")
                if waiting.get(arm):
                    col.caption(waiting[arm])
                col.text(texts.get(arm, "") + "▌")
        time.sleep(0.15)
    live.empty()
    if job.error is not None:
        st.error(f"The comparison could not run: {escape_markdown(explain(job.error))}")
    else:
        st.session_state.compare_last = job.result  # asked, saved in the workspace, graded (lib.compare.Asked)

asked = st.session_state.get("compare_last")
if asked is None or asked.comparison.collection != kb.name:  # an answer is shown only with its knowledge base
    st.stop()
comparison, reference, grades = asked.comparison, asked.reference, asked.grades

st.divider()
st.markdown(f"#### {escape_markdown(one_line(comparison.question))}")
if reference is not None:
    st.caption("Reference answer (from the question set): " + (escape_markdown(reference.answer) if reference.answerable
               else "_the documents do not answer this; the right answer is to say so_")
               + " · graded offline: numbers and units normalised, conflicting values, negation and refusals checked")
st.html(SOURCES_CSS)
for col, r in zip(st.columns(len(comparison.results)), comparison.results):
    with col:
        st.markdown(f"### :{ARM_BADGES[r.arm]}[{r.label}]")
        st.caption(f"{escape_markdown(r.model) or 'no model'} · {ARMS[r.arm].blurb}")
        if r.trained_on:
            st.caption("Model card: " + escape_markdown(provenance.card_line(r.trained_on)))
        for note in r.warnings:
            st.warning(escape_markdown(note), icon="⚠️")
        if r.error:
            st.error(escape_markdown(r.error), icon="⚠️")
            continue
        with st.container(key=f"compare_answer_{r.arm}"):
            st.markdown(link_citations(r.answer, r.sources if ARMS[r.arm].retrieval else (), f"sources-{r.arm}")
                        or "_(empty answer)_")
        if r.arm in grades:
            g = grades[r.arm]
            verdict = "correct" if g.correct else ("refused" if g.refused else "wrong")
            icon = "✅" if g.correct else "❌"
            st.markdown(f"{icon} **Grade: {verdict}** ({g.score:.2f}) · {escape_markdown(g.reason)}")
        u = r.usage
        est = " (estimated)" if r.usage_source == "estimate" else ""
        if u and u.parts_estimated:
            split = (f"parts estimated{' and' if est else ','} scaled to the {'estimated' if est else 'reported'} "
                     f"total (our tokenizer counted {u.counted_prompt_tokens}): ~")
        else:
            split = ""
        st.markdown(
            f"First token **{ms(r.ttft_ms)}** · total **{ms(r.total_ms)}** · {rate(r.tokens_per_s)}  \n"
            + (f"Prompt **{u.prompt_tokens}** tokens{est}: {split}system {u.system_tokens} · context "
               f"{u.context_tokens} · question {u.question_tokens} · template {u.overhead_tokens}  \n"
               f"Completion **{u.completion_tokens}** tokens{est}  \n" if u else "")
            + f"Cost **{usd(r.cost_usd, r.usage_source == 'estimate')}**"
        )
        st.caption(escape_markdown(r.cost_note) + (f" · waited {ms(r.queued_ms)} for the shared local model"
                                                   if r.queued_ms > 50 else "")
                   + (f" · decoded in a batch with up to {r.batch_size - 1} other request"
                      f"{'s' if r.batch_size > 2 else ''} (its times include sharing the machine)"
                      if r.batch_size and r.batch_size > 1 else ""))
        if ARMS[r.arm].whole_kb:
            st.caption("In the prompt, the whole knowledge base: " + "; ".join(
                f"\\[{i}\\] {escape_markdown(one_line(d.document))}" for i, d in enumerate(r.sources, 1)))
        if ARMS[r.arm].retrieval:
            st.subheader("Sources", anchor=f"sources-{r.arm}", divider=ARM_BADGES[r.arm])
            if not r.sources:
                st.caption("No source scored above the minimum.")
            else:
                st.html(sources_html(r.sources, f"sources-{r.arm}"))

ok = [r for r in comparison.results if r.error is None]
if ok:
    g1, g2 = st.columns(2)
    g1.plotly_chart(charts.latency(ok), key="compare_chart_latency")
    g2.plotly_chart(charts.tokens(ok), key="compare_chart_tokens")
    g3, g4 = st.columns(2)
    g3.plotly_chart(charts.cost(ok), key="compare_chart_cost")
    if comparison.sources:
        g4.plotly_chart(charts.source_scores(comparison.sources), key="compare_chart_sources")
st.download_button("Download this comparison (JSON)", json.dumps(comparison.to_dict(), indent=2),
                   file_name=f"comparison-{comparison.id}.json", mime="application/json", key="compare_download")
