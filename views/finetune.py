import json
import os

import pandas as pd
import streamlit as st

from lib import engine, finetune, gateway, provenance
from lib.errors import ConfigError, explain
from lib.finetune import from_kb
from lib.finetune.local import training_base_for
from lib.format import escape_markdown, one_line, usd, when


def _rerun_fragment() -> None:
    """Rerun the job's fragment after a click there; a click replayed in a full run (as AppTest replays it) reruns
    the page instead of failing."""
    from streamlit.errors import StreamlitInvalidLayoutContextError

    try:
        st.rerun(scope="fragment")
    except StreamlitInvalidLayoutContextError:
        st.rerun()


settings = st.session_state.settings
workspace = engine.workspace_for(settings)
st.title("Fine-tune")
st.caption("Build a training set from your documents, train a model locally or on OpenAI, "
           f"then pick it for the Fine-tuned and Hybrid arms. Jobs and models belong to workspace "
           f"**{escape_markdown(settings.workspace)}**: they keep running, and are registered, when you leave this "
           "page.")
st.session_state.setdefault("ft_examples", [])
try:
    kb = engine.open_kb(settings)
except ConfigError as exc:  # training from an upload still works without a usable knowledge base
    kb = None
    st.warning(f"{escape_markdown(str(exc))} Generating pairs from documents is unavailable until then.")

data_tab, local_tab, openai_tab, models_tab = st.tabs(["1. Training data", "2a. Train locally",
                                                       "2b. Train on OpenAI", "3. Models"])

with data_tab:
    source = st.radio("Start from", ["Upload a file", "The sample training set", "Generate from my documents"],
                      horizontal=True, key="ft_source")
    if source == "Upload a file":
        upload = st.file_uploader("JSONL (OpenAI chat format) or CSV with question,answer columns",
                                  type=["jsonl", "json", "csv"], key="ft_upload")
        if upload is not None and st.button("Load this file", key="ft_load_upload"):
            examples, parse_problems = finetune.parse_upload(upload.name, upload.getvalue())
            st.session_state.ft_examples = examples
            st.session_state.ft_parse_problems = parse_problems
    elif source == "The sample training set":
        st.write("Question/answer pairs written for the sample corpus in the house style (one-line answer, "
                 "then a reason), the set the shipped adapter was trained on.")
        if st.button("Load the sample training set", key="ft_load_sample"):
            examples, parse_problems = finetune.parse_jsonl(finetune.SAMPLE_TRAINING_SET.read_bytes())
            st.session_state.ft_examples = examples
            st.session_state.ft_parse_problems = parse_problems
    else:
        if not settings.hosted_configured:
            st.warning("Writing training data needs a capable hosted model, and none is configured. The bundled "
                       "local model (135M parameters) is too small to write good question/answer pairs. "
                       "Add an API key in Settings, or upload your own pairs, or start from the sample set.")
        elif kb is not None:
            docs = [d.name for d in kb.documents()]
            chosen = st.multiselect("Documents", docs, default=docs[:3], key="ft_gen_docs")
            per_chunk = st.slider("Pairs per chunk", 1, 5, 2, key="ft_gen_per_chunk")
            if st.button("Generate", disabled=not chosen, key="ft_generate"):
                chunks = [c for d in chosen for c in kb.chunks_of(d)]
                bar = st.progress(0.0, text="Writing question/answer pairs…")
                try:
                    examples, gen_problems = finetune.generate_pairs(
                        chunks, gateway.provider(settings, settings.base, "base"), per_chunk,
                        on_progress=lambda i, n: bar.progress(i / n, text=f"Chunk {i} of {n}"))
                    st.session_state.ft_examples = examples
                    st.session_state.ft_parse_problems = [(0, p) for p in gen_problems]
                except Exception as exc:
                    st.error(escape_markdown(explain(exc, settings.base.name)))

    for row, problem in st.session_state.get("ft_parse_problems", []):
        st.warning(escape_markdown(f"Line {row}: {problem}" if row else problem))
    if st.session_state.ft_examples:
        st.subheader(f"Review ({len(st.session_state.ft_examples)} examples)")
        edited = st.data_editor(pd.DataFrame(finetune.table_rows(st.session_state.ft_examples)),
                                num_rows="dynamic", width="stretch", key="ft_editor",
                                column_config={"system": st.column_config.TextColumn(width="small"),
                                               "question": st.column_config.TextColumn(width="medium"),
                                               "answer": st.column_config.TextColumn(width="large")})
        examples = finetune.from_table(edited.to_dict("records"))
        st.session_state.ft_ready = examples
        target = st.radio("Check for", ["local", "openai"], horizontal=True, key="ft_check_target",
                          format_func={"local": "Local LoRA", "openai": "OpenAI"}.get)
        problems = finetune.validate(examples, target)
        if problems:
            st.error(f"{len(problems)} problem(s) to fix before training:")
            st.dataframe([{"row": r or "file", "problem": p} for r, p in problems], hide_index=True)
        else:
            st.success(f"{len(examples)} examples pass the checks.")
        st.download_button("Export as JSONL", finetune.to_jsonl(examples), file_name="training.jsonl",
                           mime="application/jsonl", key="ft_export")

ready = st.session_state.get("ft_ready", [])
trained_on = tuple({"name": d.name, "sha256": d.sha256} for d in (kb.documents() if kb else []))

kb_name = kb.name if kb else ""


def local_job_view(job_id: str, was_running: bool) -> None:
    """The job's progress, read from the workspace; the training process registers the model itself."""
    job = workspace.job(job_id)
    if job is None:
        return
    status = finetune.local_status(workspace, job)
    total = max(1, int(status.get("total_steps") or 1))
    step = int(status.get("step") or 0)
    phase = status.get("phase", job.status)
    st.progress(min(1.0, step / total), text=f"{escape_markdown(one_line(job.name))}: {phase}, step {step} of {total}"
                + (f" · about {status['eta_s']:.0f} s left" if status.get("eta_s") and not job.finished else ""))
    if status.get("losses"):
        st.line_chart(pd.DataFrame({"loss": status["losses"]}), x_label="step", y_label="loss", height=200)
    if not job.finished:
        if st.button("Cancel training", key="ft_local_cancel"):
            finetune.cancel_local_training(workspace, job.id)
            _rerun_fragment()
    elif job.status == "succeeded":
        st.success(f"Trained and registered {escape_markdown(one_line(job.name))}; it became the active fine-tuned "
                   "model when it finished.")
    elif job.status == "cancelled":
        st.info("Training was cancelled: no adapter was written, and your existing models are unchanged.")
    else:
        st.error(f"Training failed: {escape_markdown(job.error or 'no reason was recorded')}. Your existing models "
                 "are unchanged.")
    if was_running and job.finished:
        st.rerun()  # the whole page: the Models tab and the sidebar show the new model


with local_tab:
    missing = finetune.missing_training_deps()
    if missing:
        st.info(f"Local training needs {', '.join(missing)}. Install them with  \n"
                "`.venv/bin/pip install -r requirements-train.txt`  \n(CPU-only PyTorch), then reload this page.")
    local_jobs = workspace.jobs("local")
    current = local_jobs[0] if local_jobs else None
    running = current is not None and not current.finished
    train_base, base_note = training_base_for(settings)  # the base role's model, when it is a catalogue model
    st.caption(base_note)
    kb_section = kb is not None and kb.count() > 0
    kb_job = kb_section and current is not None and current.params.get("origin") == "knowledge_base"
    if kb_section:
        st.markdown(f"#### Fine-tune on knowledge base **{escape_markdown(kb.name)}** in one click")
        st.caption(from_kb.CAN_AND_CANNOT)
        k1, k2 = st.columns([1, 2])
        kb_steps = k1.number_input("Steps", 5, 2000, 125, 5, key="ft_kb_steps",
                                   help="125 is the shipped adapter's recipe; fewer steps finish sooner and learn less.")
        kb_examples, _, kb_method = from_kb.training_set(settings, kb, offline=True)
        guess = from_kb.estimate(workspace, int(kb_steps), kb_examples, base=train_base)
        k2.info(f"Expected duration: about **{guess['seconds'] / 60:.0f} min** ({guess['seconds_per_step']:.1f} s per "
                f"step, from {escape_markdown(guess['source'])}; {guess['note']}).", icon="⏱️")
        if st.button("Measure the speed on this machine (about a minute)", key="ft_kb_probe",
                     disabled=bool(missing or running),
                     help="A 3-step training run on this knowledge base's examples; nothing is registered."):
            with st.spinner("Training 3 steps to measure the speed…"):
                try:
                    from_kb.probe(workspace, kb_examples, base=train_base)
                    st.rerun()
                except ConfigError as exc:
                    st.error(escape_markdown(str(exc)))
        if st.button(f"Fine-tune on {escape_markdown(kb.name)}", key="ft_kb_start", disabled=bool(missing or running),
                     help="Builds a training set from this knowledge base's own text (no model needed) and trains a "
                          "LoRA adapter; it is registered with what it was trained on and becomes the active model."):
            try:
                from_kb.start(workspace, kb, kb_examples, kb_method, int(kb_steps), base=train_base)
                st.rerun()
            except ConfigError as exc:
                st.error(escape_markdown(str(exc)))
        if kb_job:
            st.fragment(local_job_view, run_every=2.0 if running else None)(current.id, running)
        if current is not None and current.status == "succeeded":
            st.page_link("views/evaluate.py", icon="📊",
                         label="Did it help? Run this knowledge base's question set on the new model (Evaluate)")
        st.divider()
        st.markdown("#### Or train on the training set from tab 1")
    try:  # the shipped adapter's recipe and measured speed, from its provenance sidecar
        recipe = json.loads(finetune.SHIPPED_ADAPTER.with_name(finetune.SHIPPED_ADAPTER.name + ".json").read_text())
    except (OSError, ValueError):
        recipe = {}
    rates = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3]
    l1, l2, l3 = st.columns(3)
    steps = l1.number_input("Steps", 5, 2000, int(recipe.get("steps", 125)), 5, key="ft_local_steps")
    rank = l2.select_slider("LoRA rank", [4, 8, 16, 32], int(recipe.get("rank", 16)), key="ft_local_rank")
    lr = l3.select_slider("Learning rate", rates, recipe.get("lr") if recipe.get("lr") in rates else 3e-3,
                          key="ft_local_lr")
    if recipe:
        st.caption(f"Defaults: the shipped adapter's recipe ({recipe.get('steps')} steps, learning rate "
                   f"{recipe.get('lr')}, rank {recipe.get('rank')}, batch {recipe.get('batch')}; see the README).")
    name = st.text_input("Name", "my-adapter", key="ft_local_name")
    if train_base is not None:  # a downloaded model: its own measured speed, or a labelled rough estimate
        guess = from_kb.estimate(workspace, int(steps), base=train_base)
        st.info(f"Estimated training time: about **{guess['seconds'] / 60:.0f} min** for {steps} steps "
                f"({guess['seconds_per_step']:.1f} s per step: {guess['source']}).", icon="⏱️")
    elif recipe.get("seconds_per_step"):
        per_step = float(recipe["seconds_per_step"])
        minutes = steps * per_step / 60
        st.info(f"Estimated training time: about **{minutes:.0f} min** for {steps} steps, at the "
                f"{per_step:.1f} s per step measured for the shipped adapter on {recipe.get('threads', '?')} CPU cores "
                f"(batch {recipe.get('batch')}, examples up to {recipe.get('max_len')} tokens). This machine has "
                f"{os.cpu_count()} cores; longer examples or a busy machine take longer.", icon="⏱️")
    blockers = finetune.validate(ready, "local") if ready else [(0, "load training data first (tab 1)")]
    reasons = ([f"install {', '.join(missing)} (see above)"] if missing else []) + [p for _, p in blockers[:3]] \
        + (["a training is running"] if running else [])
    if st.button("Start local training", type="primary", key="ft_local_start", disabled=bool(reasons)):
        try:
            finetune.start_local_training(workspace, ready, name, int(steps), int(rank), float(lr), trained_on,
                                          kb_name, base=train_base)
            st.rerun()
        except ConfigError as exc:
            st.error(escape_markdown(str(exc)))
    if reasons:
        st.caption("Training cannot start yet: " + "; ".join(escape_markdown(r) for r in reasons)
                   + (f" (and {len(blockers) - 3} more problems in tab 1)" if len(blockers) > 3 else "") + ".")
    if current is not None and not kb_job:
        st.fragment(local_job_view, run_every=2.0 if running else None)(current.id, running)


def openai_job_view(job_id: str, was_running: bool) -> None:
    """Follow a hosted job from any session: its state is refreshed from OpenAI and stored in the workspace."""
    record = workspace.job(job_id)
    if record is None:
        return
    events: list[str] = []
    client = None
    if settings.hosted_configured and not record.finished:
        try:
            client = gateway.fine_tuning(settings)
            _, events = client.refresh(workspace, record)
            record = workspace.job(job_id) or record
        except Exception as exc:
            st.error(escape_markdown(explain(exc, str(record.params.get("base_model", "")))))
    elif not record.finished:
        st.info("Add the API key in Settings to follow this job.")
    order = ["validating_files", "queued", "running", "succeeded"]
    done = order.index(record.status) + 1 if record.status in order else len(order)
    st.progress(done / len(order), text=f"Job {escape_markdown(job_id)}: {escape_markdown(record.status)}")
    if events:
        with st.expander("Events", expanded=True):
            st.text("\n".join(events[-15:]))
    if not record.finished:
        c1, c2 = st.columns(2)
        if c1.button("Cancel job", key="ft_oai_cancel", disabled=client is None):
            try:
                client.cancel(job_id)  # type: ignore[union-attr]
            except Exception as exc:
                st.error(escape_markdown(explain(exc)))
            _rerun_fragment()
        if c2.button("Refresh", key="ft_oai_refresh"):
            _rerun_fragment()
    elif record.status == "succeeded":
        st.success(f"Registered {escape_markdown(str((record.result or {}).get('model', '')))}; it became the active "
                   "fine-tuned model when the job succeeded.")
    elif record.status == "failed":
        st.error(f"The job failed: {escape_markdown(record.error or 'no reason given')}")
    elif record.status == "cancelled":
        st.warning("The job was cancelled.")
    if was_running and record.finished:
        st.rerun()



with openai_tab:
    if not settings.hosted_configured:
        st.info("Add an OpenAI API key in Settings to fine-tune on OpenAI.")
    base_model = st.selectbox("Base model", ["gpt-4.1-mini-2025-04-14", "gpt-4.1-nano-2025-04-14",
                                             "gpt-4.1-2025-04-14", "gpt-4o-mini-2024-07-18"], key="ft_oai_model")
    epochs = st.slider("Epochs", 1, 10, 3, key="ft_oai_epochs")
    suffix = st.text_input("Suffix", "workbench", max_chars=18, key="ft_oai_suffix")
    if ready:
        estimate = finetune.estimate_training_cost(ready, base_model, epochs)
        st.metric("Estimated training cost", usd(estimate["usd"], estimated=True),
                  help=f"{estimate['tokens']:,} tokens x {epochs} epochs x ${estimate['price_per_mtok']}/M "
                       f"training tokens; prices from {estimate['source']}.")
    blockers = finetune.validate(ready, "openai", base_model) if ready else [(0, "load training data first")]
    if st.button("Upload and start the job", type="primary", key="ft_oai_start",
                 disabled=bool(blockers or not settings.hosted_configured)):
        try:
            started = finetune.start_openai_job(gateway.fine_tuning(settings), ready, base_model, epochs, suffix or None,
                                                ws=workspace, trained_on=trained_on, knowledge_base=kb_name)
            st.session_state.ft_oai_pick = started.id
        except Exception as exc:
            st.error(escape_markdown(explain(exc, base_model)))
    oai_jobs = workspace.jobs("openai")
    if oai_jobs:
        ids = [j.id for j in oai_jobs]
        if st.session_state.get("ft_oai_pick") not in ids:
            st.session_state.ft_oai_pick = ids[0]
        picked = st.selectbox("Job", ids, key="ft_oai_pick",
                              format_func=lambda i: next(f"{j.id} · {j.name} · {j.status}" for j in oai_jobs
                                                         if j.id == i))
        unfinished = not next(j for j in oai_jobs if j.id == picked).finished
        st.fragment(openai_job_view, run_every=10.0 if unfinished else None)(picked, unfinished)

with models_tab:
    models, skipped = workspace.models_report()
    active = workspace.active_model()
    if skipped:
        st.warning(f"{skipped} model record(s) of another version or damaged were skipped; they are kept in the "
                   "workspace database.")
    if not models:
        st.info("No fine-tuned models yet.")
    else:
        st.dataframe([{"active": "✓" if active and m.id == active.id else "", "name": m.name,
                       "provider": m.provider, "base model": m.base_model, "method": m.method, "examples": m.examples,
                       "training cost": usd(m.training_cost_usd), "created": when(m.created_at) if m.created_at else "",
                       "trained on": provenance.card_line(provenance.trained_on(m))}
                      for m in models], hide_index=True, width="stretch", key="ft_models_table")
        pick = st.selectbox("Use for the Fine-tuned and Hybrid arms", [m.id for m in models],
                            index=[m.id for m in models].index(active.id) if active else 0,
                            format_func=lambda i: next(m.name for m in models if m.id == i), key="ft_pick")
        if settings.finetuned and active and settings.finetuned != active.spec:
            st.caption("A model set in Settings or by WORKBENCH_FT_MODEL / WORKBENCH_FT_LORA is in use instead of "
                       "the workspace's active model.")
        if st.button("Make active", key="ft_activate"):
            workspace.activate(pick)
            st.session_state.settings_overrides.pop("finetuned", None)
            st.toast("Active fine-tuned model changed for this workspace.")
            st.rerun()
    jobs = workspace.jobs()
    if jobs:
        st.subheader("Jobs in this workspace")
        st.dataframe([{"job": j.id, "kind": j.kind, "name": j.name, "status": j.status,
                       "started": when(j.created_at), "model": (j.result or {}).get("model_id", ""),
                       "error": j.error or ""} for j in jobs], hide_index=True, width="stretch",
                     key="ft_jobs_table")
