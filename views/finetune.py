import dataclasses
import json
import os
import time

import pandas as pd
import streamlit as st

from lib import engine, finetune
from lib.errors import ConfigError, explain
from lib.format import escape_markdown, usd, when
from lib.providers import make_provider, openai_client

settings = st.session_state.settings
registry = finetune.Registry(settings.data_dir)
st.title("Fine-tune")
st.caption("Build a training set from your documents, train a model locally or on OpenAI, "
           "then pick it for the Fine-tuned and Hybrid arms.")
st.session_state.setdefault("ft_examples", [])
try:
    kb = engine.open_kb(settings)
except ConfigError as exc:  # training from an upload still works without a usable knowledge base
    kb = None
    st.warning(f"{exc} Generating pairs from documents is unavailable until then.")

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
                        chunks, make_provider(settings.base, settings), per_chunk,
                        on_progress=lambda i, n: bar.progress(i / n, text=f"Chunk {i} of {n}"))
                    st.session_state.ft_examples = examples
                    st.session_state.ft_parse_problems = [(0, p) for p in gen_problems]
                except Exception as exc:
                    st.error(explain(exc, settings.base.name))

    for row, problem in st.session_state.get("ft_parse_problems", []):
        st.warning(f"Line {row}: {problem}" if row else problem)
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
trained_on = tuple({"document": d.name, "sha256": d.sha256} for d in (kb.documents() if kb else []))

with local_tab:
    missing = finetune.missing_training_deps()
    if missing:
        st.info(f"Local training needs {', '.join(missing)}. Install them with  \n"
                "`.venv/bin/pip install -r requirements-train.txt`  \n(CPU-only PyTorch), then reload this page.")
    job = st.session_state.get("ft_local_job")
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
    if recipe.get("seconds_per_step"):
        per_step = float(recipe["seconds_per_step"])
        minutes = steps * per_step / 60
        st.info(f"Estimated training time: about **{minutes:.0f} min** for {steps} steps, at the "
                f"{per_step:.1f} s per step measured for the shipped adapter on {recipe.get('threads', '?')} CPU cores "
                f"(batch {recipe.get('batch')}, examples up to {recipe.get('max_len')} tokens). This machine has "
                f"{os.cpu_count()} cores; longer examples or a busy machine take longer.", icon="⏱️")
    blockers = finetune.validate(ready, "local") if ready else [(0, "load training data first (tab 1)")]
    reasons = ([f"install {', '.join(missing)} (see above)"] if missing else []) + [p for _, p in blockers[:3]] \
        + (["a training is running"] if job and job.running else [])
    if st.button("Start local training", type="primary", key="ft_local_start", disabled=bool(reasons)):
        try:
            st.session_state.ft_local_job = finetune.LocalTraining(
                settings.data_dir, ready, name, int(steps), int(rank), float(lr), trained_on).start()
            st.rerun()
        except ConfigError as exc:
            st.error(str(exc))
    if reasons:
        st.caption("Training cannot start yet: " + "; ".join(escape_markdown(r) for r in reasons)
                   + (f" (and {len(blockers) - 3} more problems in tab 1)" if len(blockers) > 3 else "") + ".")
    if job is not None:
        status = job.progress()
        total = max(1, int(status.get("total_steps") or job.steps))
        step = int(status.get("step") or 0)
        st.progress(min(1.0, step / total), text=f"{status.get('status')}: step {step} of {total}"
                    + (f" · about {status['eta_s']:.0f} s left" if status.get("eta_s") else ""))
        if status.get("losses"):
            st.line_chart(pd.DataFrame({"loss": status["losses"]}), x_label="step", y_label="loss", height=200)
        elif status.get("loss") is not None:
            st.caption(f"loss {status['loss']:.3f}")
        if job.running:
            if st.button("Cancel training", key="ft_local_cancel"):
                job.cancel()
                st.rerun()
            time.sleep(1.0)
            st.rerun()
        elif status.get("status") == "done" and not st.session_state.get("ft_local_registered") == job.id:
            model = job.register(registry)
            st.session_state.ft_local_registered = job.id
            st.success(f"Trained and registered {model.name}; it is now the active fine-tuned model.")
        elif status.get("status") in ("failed", "cancelled"):
            st.error(f"Training {status['status']}. {status.get('error', '')} Your existing models are unchanged.")

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
            st.session_state.ft_oai_job = finetune.start_openai_job(openai_client(settings), ready, base_model,
                                                                    epochs, suffix or None).id
        except Exception as exc:
            st.error(explain(exc, base_model))
    job_id = st.session_state.get("ft_oai_job")
    if job_id:
        try:
            client = openai_client(settings)
            oai_job, events = finetune.poll_openai_job(client, job_id)
        except Exception as exc:
            st.error(explain(exc, base_model))
        else:
            order = ["validating_files", "queued", "running", "succeeded"]
            done = order.index(oai_job.status) + 1 if oai_job.status in order else len(order)
            st.progress(done / len(order), text=f"Job {job_id}: {oai_job.status}")
            with st.expander("Events", expanded=True):
                st.text("\n".join(events[-15:]) or "no events yet")
            if oai_job.status in ("validating_files", "queued", "running"):
                if st.button("Cancel job", key="ft_oai_cancel"):
                    client.fine_tuning.jobs.cancel(job_id)
                    st.rerun()
                if st.button("Refresh", key="ft_oai_refresh"):
                    st.rerun()
            elif oai_job.status == "succeeded" and st.session_state.get("ft_oai_registered") != job_id:
                model = finetune.register_openai_job(registry, oai_job, ready, trained_on)
                st.session_state.ft_oai_registered = job_id
                st.success(f"Registered {model.model}; it is now the active fine-tuned model.")
            elif oai_job.status == "failed":
                err = getattr(oai_job, "error", None)
                st.error(f"The job failed: {getattr(err, 'message', None) or 'no reason given'}")
            elif oai_job.status == "cancelled":
                st.warning("The job was cancelled.")

with models_tab:
    models = registry.models()
    active = registry.active()
    if not models:
        st.info("No fine-tuned models yet.")
    else:
        st.dataframe([{"active": "✓" if active and m.id == active.id else "", "name": m.name,
                       "provider": m.provider, "base model": m.base_model, "examples": m.examples,
                       "training cost": usd(m.training_cost_usd), "created": when(m.created_at) if m.created_at else "",
                       "trained on": ", ".join(d["document"] for d in m.trained_on) or m.training_file}
                      for m in models], hide_index=True, width="stretch")
        pick = st.selectbox("Use for the Fine-tuned and Hybrid arms", [m.id for m in models],
                            index=[m.id for m in models].index(active.id) if active else 0,
                            format_func=lambda i: next(m.name for m in models if m.id == i), key="ft_pick")
        if st.button("Make active", key="ft_activate"):
            registry.activate(pick)
            spec = next(m for m in models if m.id == pick).spec
            st.session_state.settings_overrides["finetuned"] = spec
            st.session_state.settings = dataclasses.replace(settings, finetuned=spec)
            st.toast("Active fine-tuned model changed.")
            st.rerun()
