import json

import pandas as pd
import streamlit as st

from lib import charts, engine, evalrun, evalsets, gateway
from lib.arms import ARMS, DEFAULT_ARMS
from lib.errors import ConfigError, explain
from lib.evaluate import noise_sentence
from lib.failures import LABELS as FAILURE_LABELS
from lib.failures import MODES
from lib.format import escape_markdown, ms, one_line, usd, when

settings = st.session_state.settings
st.title("Evaluate")
st.caption("Each arm over a whole question set: accuracy with its uncertainty, refusals, fabrication, citations, "
           "latency and cost. Runs are kept in this workspace.")

try:
    kb = engine.open_kb(settings)
except ConfigError as exc:
    st.error(escape_markdown(str(exc)))
    st.stop()
ws = engine.workspace_for(settings)
st.session_state.setdefault("eval_draft", None)  # rows uploaded or generated, under review
# Streamlit forgets the state of widgets a run does not draw (another page): the choices are also kept under keys
# of their own and put back when Evaluate is opened again (as on Compare).
KEPT = {"eval_set": evalrun.SAMPLE_SET, "eval_arms": ["baseline", *DEFAULT_ARMS], "eval_top_k": settings.default_top_k,
        "eval_max_tokens": settings.default_max_tokens, "eval_concurrency": 8, "eval_limit": 0, "eval_run_name": "",
        "eval_columns": None}
for key, default in KEPT.items():
    if key not in st.session_state and (f"kept_{key}" in st.session_state or default is not None):
        st.session_state[key] = st.session_state.get(f"kept_{key}", default)
if "eval_set_switch" in st.session_state:  # a set was just saved: select it (before its widget exists)
    st.session_state.eval_set = st.session_state.pop("eval_set_switch")


def new_draft(rows, source, name):
    """A fresh draft gets fresh review widgets (edits to an earlier draft must not carry over)."""
    st.session_state.eval_draft_n = st.session_state.get("eval_draft_n", 0) + 1
    return {"rows": rows, "source": source, "name": name, "n": st.session_state.eval_draft_n} if rows else None


refused = st.session_state.get("eval_models_problem")  # a Resume refused: the run's models changed since
if refused:
    st.error(escape_markdown(refused["text"]))
    if st.button("Answer the rest in a new run with the current models", key="eval_rerun_rest"):
        new_id = evalrun.rerun_rest(settings, ws, refused["run"])
        evalrun.run_in_background(settings, ws, kb, new_id)
        st.session_state.eval_result_run = new_id
        st.session_state.eval_models_problem = None
        st.rerun()

tab_set, tab_run, tab_results = st.tabs(["Question set", "Run", "Results"])

# ------------------------------------------------------------------ question sets
with tab_set:
    sets = [evalrun.SAMPLE_SET, *ws.question_sets()]
    if st.session_state.get("eval_set") not in sets:
        st.session_state.eval_set = evalrun.SAMPLE_SET
    chosen_set = st.selectbox("Question set", sets, key="eval_set",
                              format_func=lambda s: "sample (shipped, about the sample documents)" if s == "sample"
                              else s)
    st.caption("A set is a table of questions with a reference answer each. Upload CSV (a header row) or JSONL "
               "(one object a line) with `question`, `reference`, optional `keywords` (a list, or `;`-separated in "
               "CSV), optional `source` (the document that answers it) and optional `answerable`: set "
               "`answerable: false` for a question the documents do not answer (the reference stays empty); an "
               "arm that answers it anyway is counted as fabricating.")
    try:
        questions = evalrun.load_set(ws, chosen_set)
    except ConfigError as exc:
        st.error(escape_markdown(str(exc)))
        questions = []
    trained = evalsets.training_questions_for(settings.finetuned, ws.models())

    def show_overlap(qs, where):
        if trained is None:
            st.caption("No training file of the active fine-tuned model on this machine to check the set against.")
            return
        flagged = evalsets.overlap_with_training(qs, trained[1])
        if flagged:
            st.warning(f"{len(flagged)} question(s) of {where} are in, or nearly copy, the training data of the "
                       f"fine-tuned model **{escape_markdown(trained[0])}**: the fine-tuned arms may have memorised "
                       "them, so their accuracy there says little.")
            st.dataframe(pd.DataFrame(flagged, columns=["question id", "training question", "match", "similarity"]),
                         hide_index=True, width="stretch", key=f"eval_overlap_{where}")
        else:
            st.caption(f"No question of {where} is in, or nearly copies, the training data of "
                       f"**{escape_markdown(trained[0])}**.")

    st.dataframe(pd.DataFrame(evalsets.editor_rows(evalrun.rows_from_questions(questions))), hide_index=True,
                 width="stretch", key="eval_set_table")
    show_overlap(questions, "this set")
    c1, c2 = st.columns(2)
    if c1.button("Edit a copy", key="eval_edit_copy", disabled=not questions):
        st.session_state.eval_draft = new_draft(evalrun.rows_from_questions(questions), chosen_set,
                                                f"{chosen_set}-copy")
    if chosen_set != evalrun.SAMPLE_SET and c2.button("Delete this set", key="eval_delete_set"):
        ws.delete_question_set(chosen_set)
        st.rerun()

    st.subheader("Add a set")
    up, gen = st.columns(2)
    with up:
        upload = st.file_uploader("Upload CSV or JSONL", type=["csv", "jsonl", "json"], key="eval_upload")
        if upload is not None and st.session_state.get("eval_upload_seen") != upload.file_id:
            st.session_state.eval_upload_seen = upload.file_id
            rows, problems = evalsets.read_rows(upload.getvalue(), upload.name)
            bad = [r for r in rows if "error" in r] + [{"line": n, "error": m} for n, m in problems]
            good = [{k: v for k, v in r.items() if k not in ("line", "answer")} for r in rows if "error" not in r]
            st.session_state.eval_upload_bad = bad
            st.session_state.eval_draft = new_draft(good, upload.name, upload.name.rsplit(".", 1)[0])
        for b in st.session_state.get("eval_upload_bad", []) if upload is not None else []:
            st.error(escape_markdown(f"Line {b['line']}: {b['error']} (left out)"))
    with gen:
        offline = not settings.hosted_configured
        docs = [d.name for d in kb.documents()]
        chosen_docs = st.multiselect("Documents to write questions about", docs, default=docs[:3],
                                     key="eval_gen_docs", disabled=offline)
        per_chunk = st.slider("Questions per chunk", 1, 3, 1, key="eval_gen_per_chunk", disabled=offline)
        if st.button("Generate from the knowledge base", key="eval_generate", disabled=offline or not chosen_docs,
                     help="needs a hosted model: set an API key in Settings" if offline else
                     f"{settings.base.label} writes a question and a reference answer for each chunk"):
            chunks = [c for d in chosen_docs for c in kb.chunks_of(d)]
            bar = st.progress(0.0, text="Writing questions…")
            try:
                rows, gen_problems = evalsets.generate_from_chunks(
                    chunks, gateway.provider(settings, settings.base, "base"), per_chunk,
                    on_progress=lambda i, n: bar.progress(i / n, text=f"Chunk {i} of {n}"))
                st.session_state.eval_gen_problems = gen_problems
                st.session_state.eval_draft = new_draft(rows, f"generated by {settings.base.label}",
                                                        f"generated-{kb.name}")
            except Exception as exc:
                st.error(escape_markdown(explain(exc, settings.base.name)))
        if offline:
            st.caption("Generating needs a hosted model: set an API key in Settings.")
        for p in st.session_state.get("eval_gen_problems", []):
            st.warning(escape_markdown(p))

    draft = st.session_state.eval_draft
    if draft:
        st.subheader(f"Review ({len(draft['rows'])} questions, from {escape_markdown(draft['source'])})")
        edited = st.data_editor(pd.DataFrame(evalsets.editor_rows(draft["rows"])), num_rows="dynamic",
                                width="stretch", key=f"eval_editor_{draft['n']}",
                                column_config={"question": st.column_config.TextColumn(width="large"),
                                               "reference": st.column_config.TextColumn(width="medium"),
                                               "keywords": st.column_config.TextColumn(help="; between keywords"),
                                               "answerable": st.column_config.CheckboxColumn(default=True)})
        good, bad = evalsets.check_rows(edited.to_dict("records"))
        for b in bad:
            st.error(escape_markdown(f"Row {b['line']}: {b['error']}"))
        show_overlap(evalrun.questions_from_rows(good), "the draft")
        n1, n2 = st.columns([3, 1])
        name = n1.text_input("Save as", value=draft["name"], key=f"eval_draft_name_{draft['n']}")
        exists = name.strip() in ws.question_sets()
        replace = exists and n1.checkbox(f"Replace the stored set {escape_markdown(repr(name.strip()))}",
                                         key="eval_replace")
        if exists and not replace:
            n1.caption(f"A set named {escape_markdown(repr(name.strip()))} exists: choose another name, or tick "
                       "Replace.")
        if n2.button("Save set", type="primary", key="eval_save",
                     disabled=bool(bad) or not good or not name.strip() or (exists and not replace)):
            if name.strip() == evalrun.SAMPLE_SET:
                st.error("'sample' is the shipped set: choose another name.")
            else:
                try:
                    ws.save_question_set(name.strip(), good, draft["source"])
                    st.session_state.eval_draft = None
                    st.session_state.eval_saved = name.strip()
                    st.session_state.eval_set_switch = name.strip()
                    st.rerun()
                except Exception as exc:
                    st.error(escape_markdown(str(exc)))
    if "eval_saved" in st.session_state:
        st.success(f"Saved question set {escape_markdown(repr(st.session_state.pop('eval_saved')))}.")

# ------------------------------------------------------------------ runs
with tab_run:
    for r in ws.runs():  # answered by another app process (it holds the run's lease): followed there
        if r.status == "running" and evalrun.running(ws, r.id) is None and evalrun.owner(ws, r.id):
            st.info(f"Run **{escape_markdown(r.name)}** is being answered by another app process "
                    f"({r.answered} answers so far).")
    for r in evalrun.interrupted(ws):  # only runs that no live process owns (their lease has expired)
        st.warning(f"Run **{escape_markdown(r.name)}** stopped at {r.answered} of "
                   f"{r.spec.questions * len(r.spec.arms)} answers (the app restarted).")
        if st.button("Resume", key=f"eval_resume_{r.id}"):
            problem = evalrun.models_problem(r, settings)  # a run never mixes two models
            st.session_state.eval_models_problem = {"run": r.id, "text": problem} if problem else None
            if not problem:
                try:
                    evalrun.run_in_background(settings, ws, kb, r.id)
                    st.session_state.eval_result_run = r.id
                except evalrun.RunBusy as exc:
                    st.error(escape_markdown(str(exc)))
                    st.stop()
            st.rerun()

    st.markdown(f"Question set: **{escape_markdown(chosen_set)}** ({len(questions)} questions) · knowledge base "
                f"**{escape_markdown(kb.name)}** · change them on the *Question set* tab and in the sidebar")
    if chosen_set == evalrun.SAMPLE_SET and not engine.has_sample_corpus(kb):
        st.warning("The sample set asks about the sample company, whose documents are not in this knowledge base: "
                   "pick or upload a set about your own documents on the Question set tab.")
    arms = st.pills("Arms", list(ARMS), selection_mode="multi",
                    format_func=lambda k: f"{ARMS[k].label}: {ARMS[k].blurb}", key="eval_arms")
    s1, s2, s3, s4 = st.columns(4)
    top_k = s1.slider("Top-k sources", 1, 10, key="eval_top_k")
    max_tokens = s2.slider("Max tokens", 16, 1024, step=16, key="eval_max_tokens")
    concurrency = s3.slider("Concurrency (hosted)", 1, 16, key="eval_concurrency",
                            help="Requests sent at once to a hosted model; the local model answers one at a time.")
    limit = s4.number_input("First N questions (0 = all)", 0, 10_000, key="eval_limit")
    run_name = st.text_input("Run name", key="eval_run_name", placeholder=f"{chosen_set} (optional)")
    st.caption(settings.defaults_note)
    for key in KEPT:
        if key in st.session_state:
            st.session_state[f"kept_{key}"] = st.session_state[key]
    n_questions = min(len(questions), int(limit)) if limit else len(questions)
    _, expected = evalrun.expected_duration(ws, settings, list(arms or []), n_questions, int(concurrency))
    if expected:
        st.caption(expected)
    if st.button("Run", type="primary", key="eval_run", disabled=not (arms and questions)):
        try:
            run_id, spec, _ = evalrun.start(settings, ws, kb, chosen_set, list(arms), run_name.strip() or None,
                                            top_k=top_k, max_tokens=max_tokens, concurrency=concurrency,
                                            limit=int(limit) or None)
            evalrun.run_in_background(settings, ws, kb, run_id)
            st.session_state.eval_result_run = run_id
        except ConfigError as exc:
            st.error(escape_markdown(str(exc)))

    @st.fragment(run_every=1)
    def live_runs():
        live = [(r, evalrun.running(ws, r.id)) for r in ws.runs() if r.status == "running"]
        live = [(r, h) for r, h in live if h is not None]
        watched = st.session_state.get("eval_watching", set())
        if watched - {r.id for r, _ in live}:  # a run this session followed has ended: show its results
            st.session_state.eval_watching = {r.id for r, _ in live}
            st.rerun(scope="app")
        st.session_state.eval_watching = {r.id for r, _ in live}
        for r, h in live:
            p = h.progress
            done, total = (p.done, p.total) if p else (r.answered, 0)
            left = p.seconds_left if p else None
            st.progress(done / total if total else 0.0,
                        text=f"{escape_markdown(one_line(r.name))}: {done} of {total or '?'} answers"
                             + (f", about {ms(left * 1000)} left" if left is not None else ""))
            if st.button("Cancel", key=f"eval_cancel_{r.id}"):
                h.cancel.set()
                st.caption("Cancelling: answers already given are kept; Resume finishes the run later.")

    live_runs()

# ------------------------------------------------------------------ results
with tab_results:
    runs = ws.runs()
    if not runs:
        st.info("No evaluation runs in this workspace yet: pick a set and arms on the Run tab.")
        st.stop()
    ids = [r.id for r in runs]
    labels = {r.id: f"{r.name} · {when(r.created_at)}" for r in runs}
    if st.session_state.get("eval_result_run") not in ids:
        st.session_state.eval_result_run = ids[0]
    run_id = st.selectbox("Run", ids, key="eval_result_run", format_func=labels.get)
    record, summ, graded = evalrun.summary(ws, run_id)
    spec = record.spec
    position = {q.id: i for i, q in enumerate(record.questions)}
    arm_order = {a: i for i, a in enumerate(spec.arms)}
    graded.sort(key=lambda g: (position.get(g.question.id, len(position)), arm_order.get(g.arm, 99)))
    if record.error and record.status == "failed":
        st.error(f"The run stopped with an error: {escape_markdown(record.error)}")
    capped = sum(s.get("capped", 0) for s in summ.values())
    if capped:  # refused by the spend cap: not asked, not graded, and left out of every accuracy below
        st.warning(f"**Stopped at the spend cap:** {capped} answer(s) were refused by the cap before anything was "
                   f"sent; the accuracy below is over the {record.answered - capped} real answers only. Ask the "
                   "workshop host to raise the cap, then Resume asks the refused ones.")
    if record.status != "finished" and evalrun.resumable(ws, record) and record.status != "running":
        if st.button("Resume this run", key="eval_resume_result",
                     help="Answers what the run has not answered yet; answers already stored are kept."):
            problem = evalrun.models_problem(record, settings)  # a run never mixes two models
            st.session_state.eval_models_problem = {"run": record.id, "text": problem} if problem else None
            if not problem:
                try:
                    evalrun.run_in_background(settings, ws, kb, record.id)
                except evalrun.RunBusy as exc:
                    st.error(escape_markdown(str(exc)))
                    st.stop()
            st.rerun()
    st.caption(f"**{record.status}**, {record.answered - capped} of {spec.questions * len(spec.arms)} "
               f"answers · set **{escape_markdown(spec.question_set)}** · {spec.questions} questions · "
               f"top-k {spec.top_k} · max tokens {spec.max_tokens} · models: "
               + escape_markdown(", ".join(f"{k} {v}" for k, v in spec.models.items() if v)))
    caveat = evalrun.caveat(summ, spec)  # from the run's local models' parameter counts (GGUF), not their names
    if caveat:
        st.warning(caveat, icon="⚠️")
    if not graded:
        st.info("No answers stored for this run yet.")
        st.stop()

    table = pd.DataFrame([{
        "arm": ARMS[a].label if a in ARMS else a, "answered": s["n"], "correct": f"{s['correct']}/{s['answerable']}",
        "accuracy": s["accuracy"], "95% interval": f"{s['accuracy_ci95'][0]:.0%}–{s['accuracy_ci95'][1]:.0%}",
        "refusal rate": s["refusal_rate"], "fabrication rate": s["fabrication_rate"],
        "citation accuracy": s["citation_accuracy"], "cites supporting": s.get("citations_correct"),
        "cites wrong": s.get("citations_wrong"), "cites none": s.get("citations_none"),
        "retrieval hit rate": s["retrieval_hit_rate"],
        "p50 (s)": None if s["median_total_ms"] is None else s["median_total_ms"] / 1000,
        "p95 (s)": None if s["p95_total_ms"] is None else s["p95_total_ms"] / 1000,
        "prompt tokens": s["mean_prompt_tokens"], "completion tokens": s["mean_completion_tokens"],
        "cost / question": "–" if s["errors"] >= s["n"] else  # nothing answered: nothing to cost
        usd(s["cost_per_question_usd"]) + (" (local)" if s["cost_per_question_usd"] == 0 else ""),
        "errors": s["errors"] - s.get("capped", 0), **({"refused by the cap": s.get("capped", 0)} if capped else {})}
        for a, s in summ.items()])
    pct = {"format": "percent"}
    compact = ["arm", "correct", "accuracy", "95% interval", "fabrication rate", "cites supporting", "cites wrong",
               "p95 (s)", "cost / question"] + (["errors"] if any(s["errors"] for s in summ.values()) else [])
    if st.session_state.get("eval_columns") is None:
        st.session_state.eval_columns = compact
    shown = st.multiselect("Columns", list(table.columns), key="eval_columns",
                           help="Pick the figures to show; the table fits the page.")
    st.session_state.kept_eval_columns = shown
    st.dataframe(table[[c for c in table.columns if c in shown] or ["arm"]], hide_index=True, width="stretch",
                 key="eval_summary", column_config={
        "accuracy": st.column_config.NumberColumn("accuracy", help="correct / answerable questions", **pct),
        "95% interval": st.column_config.TextColumn(help="Wilson 95% interval of the accuracy"),
        "refusal rate": st.column_config.NumberColumn(help="answerable questions the arm declined", **pct),
        "fabrication rate": st.column_config.NumberColumn(help="unanswerable questions answered anyway", **pct),
        "citation accuracy": st.column_config.NumberColumn(
            help="of the answers that cite, those whose cited source supports the answer's own claim", **pct),
        "cites supporting": st.column_config.NumberColumn(
            help="answers citing a source that states what the answer claims (claim-checked)", **pct),
        "cites wrong": st.column_config.NumberColumn(
            help="answers citing a source that does not support their claim, or a number beyond the sources "
                 "retrieved", **pct),
        "cites none": st.column_config.NumberColumn(help="answers that cite no source", **pct),
        "retrieval hit rate": st.column_config.NumberColumn(help="the reference's document was retrieved", **pct),
        "p50 (s)": st.column_config.NumberColumn(format="%.2f s"), "p95 (s)": st.column_config.NumberColumn(format="%.2f s"),
        "prompt tokens": st.column_config.NumberColumn(format="%.0f"),
        "completion tokens": st.column_config.NumberColumn(format="%.0f"),
    })
    st.caption("*None*: no question of that kind in this run (fabrication needs unanswerable questions; citation "
               "accuracy, answers that cite; retrieval hit rate, retrieval arms and questions with a source; the "
               "three citation shares, a run graded before citations were checked against claims: regrade it).")
    st.caption(noise_sentence(min((s["answerable"] for s in summ.values() if s["answerable"]), default=0)))
    judged = {a: s for a, s in summ.items() if s.get("judge_agreement") is not None}
    if judged:
        st.markdown("**LLM judge** (" + escape_markdown(str(spec.judge)) + "), against the offline "
                    "grader: " + "; ".join(
                        f"{a}: judge accuracy {s['judge_accuracy']:.0%}, agreement {s['judge_agreement']:.0%}"
                        + (f", kappa {s['judge_kappa']:.2f}" if s.get("judge_kappa") is not None else "")
                        + (f", {s['judge_errors']} judge errors" if s.get("judge_errors") else "")
                        for a, s in judged.items()))
        disagree = evalrun.judge_disagreements(ws, record.id)
        if disagree:
            st.caption(f"{len(disagree)} answer(s) where the judge and the offline grader disagree: check these "
                       "by hand first (open one below).")
            st.dataframe(pd.DataFrame(disagree, columns=["question_id", "arm", "question", "answer", "offline",
                                                         "offline_reason", "judge", "judge_reason"]),
                         hide_index=True, width="stretch", key="eval_judge_disagree")
        else:
            st.caption("The judge and the offline grader agree on every answer.")
    st.caption("How each grade is made, offline with no API key: the claim the answer makes is compared with the "
               "reference's. Values are compared after unit conversion (\"36 months\" = \"three years\"; "
               "\"16384 kilobytes\" is not 16384 bytes) and role by role (a swapped default and maximum is wrong); "
               "identifiers exactly (\"/usr/bin/sync\" is not \"/bin/sync\"); numbers from the question, section "
               "numbers and contrasts (\"not 60 but 30 days\") are no claims; several values for one claim are a "
               "hedge. Refusals are recognised by meaning, so a refused answerable question is wrong and an answered "
               "unanswerable one is a fabrication. A citation is correct only when the cited source supports the "
               "answer's own claim; a number beyond the sources retrieved is wrong. Every grade carries its one-line "
               "reason.")

    c1, c2 = st.columns(2)
    c1.plotly_chart(charts.eval_accuracy(summ), key="eval_chart_accuracy")
    c2.plotly_chart(charts.eval_accuracy_vs_cost(summ), key="eval_chart_cost")
    c3, c4 = st.columns(2)
    c3.plotly_chart(charts.eval_citations(summ), key="eval_chart_citations")
    c4.plotly_chart(charts.eval_latency(graded), key="eval_chart_latency")

    st.subheader("Why answers were wrong")
    st.caption("Each wrong answer's failure mode (after Barnett et al. 2024, *Seven Failure Points When Engineering "
               "a RAG System*): whether retrieval missed the right source (and whether it was in the top 20), the "
               "model did not read it out, the documents do not answer the question, or the format was broken. "
               "Click a bar, or pick a mode, for its questions.")
    modes_chart = st.plotly_chart(charts.eval_failure_modes(summ), key="eval_chart_failures", on_select="rerun",
                                  selection_mode="points")
    present = sorted({(g.failure_mode, g.arm) for g in graded if g.failure_mode},
                     key=lambda x: (list(MODES).index(x[0]) if x[0] in MODES else 99, x[1]))
    clicked = ((modes_chart or {}).get("selection", {}).get("points") or [{}])[0].get("customdata")
    if clicked and tuple(clicked[:2]) in present and tuple(clicked[:2]) != st.session_state.get("eval_mode_clicked"):
        st.session_state.eval_mode_clicked = tuple(clicked[:2])
        st.session_state.eval_mode = tuple(clicked[:2])
    if present:
        mode, mode_arm = st.selectbox(
            "Failure mode", present, key="eval_mode",
            format_func=lambda x: f"{FAILURE_LABELS.get(x[0], x[0])} · {ARMS[x[1]].label if x[1] in ARMS else x[1]} "
                                  f"({sum(1 for g in graded if (g.failure_mode, g.arm) == x)})")
        st.caption(escape_markdown(MODES.get(mode, "")))
        st.dataframe(pd.DataFrame([{"question id": g.question.id, "question": g.question.question,
                                    "answer": one_line(g.answer or g.error or "")[:160], "reason": g.reason,
                                    "expected source": (g.expected or {}).get("source", ""),
                                    "rank in the top 20": (g.expected or {}).get("rank")}
                                   for g in graded if (g.failure_mode, g.arm) == (mode, mode_arm)]),
                     hide_index=True, width="stretch", key="eval_mode_table")
        if st.button("Open the first of these answers below", key="eval_mode_open"):
            first = next(g for g in graded if (g.failure_mode, g.arm) == (mode, mode_arm))
            st.session_state.eval_open = (first.question.id, first.arm)
    sourced = {(g.expected or {}).get("from") for g in graded if g.expected}
    if "best-supporting chunk" in sourced:
        st.caption("Where the question set names no source document, the expected source is the document of the "
                   "chunk that best supports the reference answer.")

    st.subheader("Every answer")
    st.caption("Pass, fail, refused (an answerable question declined) or error, per question and arm; hover for the "
               "grade's reason.")
    grid = st.plotly_chart(charts.eval_grid(graded), key="eval_chart_grid", on_select="rerun",
                           selection_mode="points")
    cells = [(g.question.id, g.arm) for g in graded]
    picked = None
    points = (grid or {}).get("selection", {}).get("points", []) if grid else []
    if points:  # a clicked cell: its (question id, arm), from customdata or from its axis labels
        by_label = {ARMS[a].label: a for a in ARMS}
        custom = points[0].get("customdata")
        picked = tuple(custom[:2]) if custom else (points[0].get("y"), by_label.get(points[0].get("x")))
    if picked in cells and picked != st.session_state.get("eval_open_clicked"):
        st.session_state.eval_open_clicked = picked  # a new click: the chooser below follows it
        st.session_state.eval_open = picked
    choice = st.selectbox("Open an answer (or click a cell)", cells, key="eval_open",
                          format_func=lambda c: f"{c[0]} · {ARMS[c[1]].label if c[1] in ARMS else c[1]} · "
                          f"{charts.grid_cell(next(g for g in graded if (g.question.id, g.arm) == c))}")
    cell = choice
    record_of = evalrun.answer_of(ws, record.id, *cell)
    if record_of:
        g, res = record_of.graded, record_of.result
        verdict = "correct" if g.correct else ("refused" if g.refused else "wrong")
        st.markdown(f"**{escape_markdown(record_of.question.question)}**  \n"
                    f"Reference: {escape_markdown(record_of.question.answer or '(unanswerable)')}")
        st.markdown(f"**{ARMS[cell[1]].label if cell[1] in ARMS else cell[1]}** — {verdict}, score "
                    f"{g.score:.2f}: {escape_markdown(g.reason)}")
        if g.failure_mode:
            expected_src = g.expected or {}
            st.caption(f"Failure mode: **{FAILURE_LABELS.get(g.failure_mode, g.failure_mode)}**"
                       f" ({escape_markdown(MODES.get(g.failure_mode, ''))})"
                       + (f" · expected source {escape_markdown(expected_src['source'])} (from the "
                          f"{expected_src.get('from', 'question set')}), rank in the top 20: "
                          f"{expected_src.get('rank') or 'not there'}" if expected_src.get("source") else ""))
        if g.citations:
            st.caption(f"Citations: {g.citations}" + (f" ({escape_markdown(g.citation_reason)})"
                                                       if g.citation_reason else ""))
        if "correct" in (record_of.judge or {}):
            st.caption(f"LLM judge: {'correct' if record_of.judge['correct'] else 'wrong'}: "
                       f"{escape_markdown(record_of.judge.get('reason', ''))}")
        st.text(res.answer or res.error or "")
        for i, s in enumerate(res.sources, 1):
            with st.expander(f"\\[{i}\\] {escape_markdown(one_line(s.document))} · chunk {s.chunk} · "
                             f"score {s.score:.2f}"):
                st.text(s.text)

    st.subheader("Compare with another run")
    same = {r.id for r in runs if (r.spec.question_set, r.spec.collection) == (spec.question_set, spec.collection)}
    others = [i for i in ids if i != record.id and i in same]  # the same questions on the same documents
    if not others:
        st.caption(f"No other run of question set **{escape_markdown(spec.question_set)}** on knowledge base "
                   f"**{escape_markdown(spec.collection)}**: run the set again (other arms, settings or models) to "
                   "see which questions changed.")
    else:
        other = st.selectbox("Earlier run", others, key="eval_other_run", format_func=labels.get)
        _, _, before = evalrun.summary(ws, other)
        changed = evalrun.changed_questions(before, graded)
        if changed:
            st.dataframe(pd.DataFrame(changed).replace({True: "correct", False: "wrong"}), hide_index=True,
                         width="stretch", key="eval_changed")
        else:
            st.caption("No question changed its grade between these runs (for the arms both have).")

    d1, d2 = st.columns(2)
    d1.download_button("Download CSV", evalrun.export_csv(graded), file_name=f"eval-{record.name}.csv",
                       mime="text/csv", key="eval_csv")
    d2.download_button("Download JSON", json.dumps(evalrun.export_json(ws, record.id), indent=2),
                       file_name=f"eval-{record.name}.json", mime="application/json", key="eval_json")
