import dataclasses

import streamlit as st

from lib import engine
from lib.format import escape_markdown
from lib.providers import PROVIDERS as PROVIDER_REGISTRY
from lib.settings import (
    DEFAULT_HOSTED_MODEL,
    LOCAL_BASE_MODEL,
    ModelSpec,
    mask_key,
    model_problem,
    proposed_model,
    typed_credentials,
    withheld_key,
)

settings = st.session_state.settings


def connection_tests() -> None:
    """A test button per role; each result stays under its button (role -> (ok, message) in the session)."""
    tests = st.session_state.setdefault("settings_tests", {})
    t1, t2 = st.columns(2)
    for col, role, label in ((t1, "base", "Test the base model"), (t2, "finetuned", "Test the fine-tuned model")):
        if col.button(label, key=f"settings_test_{role}"):
            with col, st.spinner("Asking the model for one word…"):
                tests[role] = engine.connection_test(settings, role)
        if role in tests:
            ok, message = tests[role]
            (col.success if ok else col.error)(escape_markdown(message))


overrides = st.session_state.settings_overrides
st.title("Settings")
if settings.workshop.enabled:  # a participant's providers are the host's: shown, not changed
    from lib import gateway
    from lib.format import usd

    st.info("Workshop mode: the workshop host chose the providers, the endpoint, the key and the models; they "
            "cannot be changed here. Every hosted request is capped.")
    for role, label, spec in (("base", "Base model", settings.base), ("finetuned", "Fine-tuned model",
                                                                      settings.finetuned)):
        allowed = gateway.allowed_models(settings, role)
        st.markdown(f"**{label}:** {escape_markdown(spec.label if spec else 'the workspace active model')}"
                    f" ({escape_markdown(spec.provider if spec else 'local')}). Hosted models the host allows: "
                    + (", ".join(escape_markdown(m.name) for m in allowed) or "none")
                    + ("; and the models this workspace trains." if role == "finetuned" else "."))
        if len(allowed) > 1 or (allowed and spec not in allowed):
            options = list(dict.fromkeys([*([spec] if spec is not None and spec.provider == "local" else []),
                                          *allowed]))
            pick = st.selectbox(f"Use for the {label.lower()}", options, format_func=lambda m: m.label,
                                index=options.index(spec) if spec in options else 0, key=f"settings_ws_{role}")
            if pick != spec and st.button("Use this model", key=f"settings_ws_use_{role}"):
                overrides[role] = pick
                st.rerun()
    caps = gateway.left(settings)
    rows = [{"cap": "per participant" if scope == "participant" else "everyone together",
             "limit": usd(c["cap"]), "spent": usd(c["settled"]), "reserved now": usd(c["reserved"]),
             "left": usd(c["left"])} for scope, c in caps.items() if c["cap"] is not None]
    if rows:
        st.subheader("Spend caps")
        st.dataframe(rows, hide_index=True, key="settings_ws_caps")
    else:
        st.caption("No spend caps are set.")
    connection_tests()
    st.stop()
st.caption("Changes here last for this browser session. For a permanent setup use environment variables or "
           ".streamlit/secrets.toml (see secrets.toml.example).")

PROVIDERS = list(PROVIDER_REGISTRY)
LABELS = {"local": "Local (llama.cpp, offline)", "openai": "OpenAI or OpenAI-compatible URL", "azure": "Azure OpenAI"}

# The form shows what is in force: its widgets start from the settings whenever they have no state of their own
# (first visit, after another page, after Reset).
ft = settings.finetuned
IN_FORCE = {
    "settings_base_provider": settings.base.provider, "settings_base_name": settings.base.name,
    "settings_ft_provider": ft.provider if ft else "none", "settings_ft_name": ft.name if ft else "",
    "settings_ft_lora": (ft.lora or "") if ft else "", "settings_key": "",
    "settings_base_url": settings.openai_base_url or "", "settings_azure_endpoint": settings.azure_endpoint or "",
    "settings_azure_version": settings.azure_api_version,
}
if st.session_state.pop("settings_clear_key", False):
    st.session_state.pop("settings_key", None)
if st.session_state.pop("settings_discard", False):  # Discard: the form shows what is in force again
    for key in IN_FORCE:
        st.session_state.pop(key, None)
    st.session_state.pop("settings_error", None)
for key, value in IN_FORCE.items():
    st.session_state.setdefault(key, value)
st.markdown("**In force now** (the sidebar and every page use these): base model "
            f"{escape_markdown(settings.base.label)} ({settings.base.provider}); fine-tuned model "
            + (f"{escape_markdown(ft.label)} ({ft.provider})" if ft else "the workspace's active model"))


def propose(role: str) -> None:
    """A provider switch proposes that provider's default model for the role."""
    provider = st.session_state[f"settings_{role}_provider"]
    st.session_state[f"settings_{role}_name"] = "" if provider == "none" else proposed_model(provider, role)


st.subheader("Models")
b1, b2 = st.columns(2)
base_provider = b1.selectbox("Base model provider", PROVIDERS, format_func=lambda p: LABELS.get(p, p),
                             key="settings_base_provider", on_change=propose, args=("base",))
base_name = b2.text_input("Base model", key="settings_base_name",
                          help=f"'{LOCAL_BASE_MODEL}' (bundled) or a .gguf path for local; a model id such as "
                               f"'{DEFAULT_HOSTED_MODEL}' for OpenAI; the deployment name for Azure.")
f1, f2, f3 = st.columns(3)
ft_provider = f1.selectbox("Fine-tuned model provider", ["none", *PROVIDERS],
                           format_func=lambda p: "The workspace's active model" if p == "none" else LABELS.get(p, p),
                           key="settings_ft_provider", on_change=propose, args=("ft",))
ft_name = f2.text_input("Fine-tuned model", key="settings_ft_name",
                        help="An ft:... id for OpenAI, a deployment for Azure, or the base .gguf for local.")
ft_lora = f3.text_input("LoRA adapter (local only)", key="settings_ft_lora",
                        help="Path of a GGUF LoRA adapter applied on top of the local model.")

st.subheader("Hosted API")
h1, h2 = st.columns(2)
key = h1.text_input("API key (this session only)", type="password", key="settings_key",
                    help="Never shown, logged or written to disk, and only sent to the endpoint typed with it. Leave "
                         "empty to keep the current key: " + mask_key(settings.key_in_use()))
base_url = h2.text_input("OpenAI-compatible base URL", key="settings_base_url",
                         placeholder="https://api.openai.com/v1 · http://localhost:11434/v1 (Ollama)")
a1, a2 = st.columns(2)
azure_endpoint = a1.text_input("Azure endpoint", key="settings_azure_endpoint",
                               placeholder="https://YOUR-RESOURCE.openai.azure.com")
azure_version = a2.text_input("Azure API version", key="settings_azure_version")

if st.button("Apply", type="primary", key="settings_apply"):
    base = ModelSpec(base_provider, base_name.strip() or LOCAL_BASE_MODEL)
    tuned = None if ft_provider == "none" else ModelSpec(
        ft_provider, ft_name.strip() or (LOCAL_BASE_MODEL if ft_provider == "local" else ""),
        ft_lora.strip() or None if ft_provider == "local" else None)
    problems = [f"{role}: {problem}" for role, spec in (("Base model", base), ("Fine-tuned model", tuned))
                if spec is not None
                for problem in [model_problem(spec, base_url.strip() or None, azure_endpoint.strip() or None)]
                if problem]
    if problems:
        st.session_state.settings_error = "Not applied. " + " ".join(escape_markdown(p) for p in problems)
    else:
        overrides["base"] = base
        overrides["finetuned"] = tuned
        overrides["azure_api_version"] = azure_version.strip() or settings.azure_api_version
        # A typed key is bound to the endpoint typed with it; a typed endpoint never gets the configured key.
        overrides.update(typed_credentials(key, base_url, azure_endpoint))
        st.session_state.settings = dataclasses.replace(settings, **overrides)
        st.session_state.settings_clear_key = True  # the key field is emptied on the next run
        st.session_state.settings_tests = {}
        st.session_state.pop("settings_error", None)
        st.toast("Settings applied for this session.")
        st.rerun()

# The form and what is in force never disagree silently: while they differ, the page says so until Apply or Discard.
pending = [key for key, value in IN_FORCE.items() if key != "settings_key" and st.session_state.get(key) != value]
if pending:
    if st.session_state.get("settings_error"):
        st.error(st.session_state.settings_error)
    st.warning("The form has changes that are not applied: what is in force is shown above, and the sidebar and every "
               "page use it. Apply the changes, or discard them.", icon="✋")
    if st.button("Discard changes", key="settings_discard_button"):
        st.session_state.settings_discard = True
        st.rerun()
else:
    st.session_state.pop("settings_error", None)

st.subheader("Connection test")
st.caption(f"Key in use: {mask_key(settings.key_in_use())} · base URL: "
           f"{escape_markdown(settings.openai_base_url or settings.azure_endpoint or 'OpenAI default')}")
if withheld_key(settings):
    st.info(escape_markdown(withheld_key(settings) or ""))
connection_tests()

if overrides and st.button("Reset to the defaults", key="settings_reset"):
    overrides.clear()
    for key in (*IN_FORCE, "settings_tests"):  # the form then starts again from the defaults
        st.session_state.pop(key, None)
    st.rerun()

# ================================================================ Local models: the catalogue (issue 23)
# A separate block: downloads, the workspace's chosen local models and Ollama. Logic in lib.catalogue and
# lib.modelhub; downloads run in a process of their own (they outlive the page) and are followed here.
import pandas as pd  # noqa: E402

from lib import catalogue, modelhub  # noqa: E402
from lib import ollama as ollama_lib  # noqa: E402

st.divider()
st.subheader("Local models")
models_ws = engine.workspace_for(settings)
models_cat = catalogue.catalogue()
st.caption(f"Catalogue of {models_cat.date}: small open models (Apache-2.0) in GGUF, run offline by llama.cpp once "
           f"downloaded (into {modelhub.models_dir(settings.data_dir)}, shared by every workspace; each file is "
           "checked against the hub's SHA-256 before it is offered). Sizes marked 'about' and parameters marked "
           "'card' are the model cards' figures until the file is here. Tokens/s: measured on this machine, or "
           "estimated ('est.') from the bundled model's measured speed and the parameter ratio.")
models_rows = catalogue.rows(settings)
st.dataframe(pd.DataFrame(catalogue.table(models_rows)), hide_index=True, width="stretch")
if models_rows[0]["speed"]["source"] == "unknown" and st.button(
        "Measure the bundled model's speed, for the estimates (a few seconds)", key="settings_models_measure_bundled"):
    with st.spinner("Measuring…"):
        try:
            catalogue.measure_speed(settings, catalogue.BUNDLED)
            st.rerun()
        except Exception as exc:
            st.error(escape_markdown(str(exc)))
chosen_base = catalogue.chosen(models_ws) or catalogue.BUNDLED
st.caption(f"Workspace **{escape_markdown(models_ws.name)}**: base role **{escape_markdown(settings.base.label)}**"
           + (f" (chosen: {escape_markdown(chosen_base)}, but the configuration names the base model)"
              if settings.base_explicit and catalogue.chosen(models_ws) else "")
           + f"; fine-tuned role **{escape_markdown(settings.finetuned.label) if settings.finetuned else 'none'}**.")

by_name = {r["name"]: r for r in models_rows}
pick = st.selectbox("Model", list(by_name), key="settings_models_pick",
                    format_func=lambda n: f"{by_name[n]['label']} ({n})")
row = by_name[pick]


def _follow_session(role: str) -> None:
    """After a choice in this section, the session follows the workspace (the form above shows what is in force)."""
    overrides.pop(role, None)
    for form_key in (*IN_FORCE, "settings_tests"):
        st.session_state.pop(form_key, None)


def _download_view(key: str) -> None:
    state = modelhub.status(settings.data_dir, key)
    if state is None or state.status == "done":
        st.rerun(scope="app")  # finished: the table shows it downloaded
    st.progress(state.fraction, text=escape_markdown(state.line()))
    if state.active:
        st.button("Cancel the download", key=f"settings_models_cancel_{key}",
                  on_click=modelhub.cancel, args=(settings.data_dir, key))
    else:
        st.rerun(scope="app")


for key, what in ((pick, "the model"), (f"{pick}.train", "its training weights")):
    state = modelhub.status(settings.data_dir, key)
    if state is not None and state.active:
        st.fragment(_download_view, run_every=1.0)(key)
    elif state is not None and state.status in ("interrupted", "cancelled", "failed"):
        told = {"interrupted": "stopped (the process ended)", "cancelled": "was cancelled", "failed": "failed"}
        (st.error if state.status == "failed" else st.warning)(
            f"The download of {what} {told[state.status]} at {state.done_bytes / 1e6:,.0f} MB"
            + (f": {escape_markdown(state.error or '')}" if state.error else "") + " Downloading again resumes "
            "from there (a file that failed its checksum starts over).")
        if st.button("Discard what arrived", key=f"settings_models_discard_{key}"):
            modelhub.discard(settings.data_dir, key)
            st.rerun()

busy = any((s := modelhub.status(settings.data_dir, k)) is not None and s.active for k in (pick, f"{pick}.train"))
m1, m2, m3, m4, m5 = st.columns(5)
if not row["downloaded"]:
    if m1.button(f"Download ({catalogue.size_text(row['size_bytes'], row['size_exact'])})",
                 key="settings_models_pull", type="primary",
                 disabled=busy, help=f"From {row['repo']} ({row['file']}) at {settings.hf_endpoint}."):
        try:
            modelhub.start_pull(settings, pick)
            st.rerun()
        except Exception as exc:
            st.error(escape_markdown(str(exc)))
else:
    if m1.button("Use for the base role", key="settings_models_use_base", type="primary", disabled=busy,
                 help="The workspace's base model from now on (Baseline and RAG arms), unless the configuration "
                      "(WORKBENCH_BASE_MODEL or a hosted provider) names one."):
        catalogue.use(settings, models_ws, pick, "base")
        _follow_session("base")
        st.rerun()
    loras = catalogue.loras_for(settings, models_ws, pick)
    if m2.button("Use for the fine-tuned role", key="settings_models_use_ft", disabled=not loras or busy,
                 help="The newest LoRA trained for this model in this workspace becomes the fine-tuned model."
                      if loras else "No LoRA trained for this model yet: make it the base model, then fine-tune it "
                                    "on the Fine-tune page."):
        catalogue.use(settings, models_ws, pick, "finetuned")
        _follow_session("finetuned")
        st.rerun()
    if m3.button("Measure its speed", key="settings_models_measure", disabled=busy,
                 help="Generates 32 tokens from a fixed prompt in the local worker (a few seconds to a minute)."):
        with st.spinner("Measuring…"):
            try:
                speed = catalogue.measure_speed(settings, pick)
                st.success(f"{pick}: {speed['tokens_per_s']} tokens/s generating, {speed['prompt_tokens_per_s']} "
                           "tokens/s reading the prompt.")
            except Exception as exc:
                st.error(escape_markdown(str(exc)))
    if not row["bundled"] and m4.button("Remove", key="settings_models_remove", disabled=busy):
        modelhub.remove(settings.data_dir, pick)
        st.rerun()
    if row["can_finetune"] and not row["training_downloaded"] and m5.button(
            f"Download its training weights ({catalogue.size_text(row['training_bytes'], False)})",
            key="settings_models_pull_training", disabled=busy,
            help="Safetensors for LoRA training on this machine (same checks as the model). Training needs about "
                 f"{(row['training_memory_bytes'] or 0) / 1e9:.0f} GB of memory."):
        try:
            modelhub.start_pull(settings, pick, training=True)
            st.rerun()
        except Exception as exc:
            st.error(escape_markdown(str(exc)))
st.caption(escape_markdown(row["notes"]) + (f" Memory: {escape_markdown(row['memory_note'])}."
                                            if row["memory_note"] else "")
           + (" To fine-tune it: make it the base model, download its training weights, then Fine-tune > 2a."
              if row["can_finetune"] and not row["bundled"] else ""))

with st.expander("No internet? Add a GGUF file by hand"):
    st.caption(modelhub.by_hand(settings) + " Browsers cannot upload files this large through the app, so give the "
               "path of the file on the machine the app runs on.")
    a1, a2 = st.columns([3, 1])
    gguf_path = a1.text_input("Path of a .gguf file", key="settings_models_add_path",
                              placeholder="/home/me/Downloads/qwen2.5-0.5b-instruct-q4_k_m.gguf")
    gguf_name = a2.text_input("Name (optional)", key="settings_models_add_name")
    if st.button("Check and add", key="settings_models_add", disabled=not gguf_path.strip()):
        with st.spinner("Copying and loading it in the local model worker…"):
            try:
                added = modelhub.add_file(settings, gguf_path.strip(), gguf_name.strip() or None)
                st.success(f"Added {added.name}: choose it above.")
            except Exception as exc:
                st.error(escape_markdown(str(exc)))


@st.cache_data(ttl=30, show_spinner=False)
def _ollama_models(url: str) -> ollama_lib.OllamaStatus:
    return ollama_lib.list_models(settings)


ollama_status = _ollama_models(ollama_lib.ollama_base(settings))
st.markdown("**Ollama**")
if not ollama_status.reachable:
    st.caption(f"{escape_markdown(ollama_status.error or '')}. With Ollama running (OLLAMA_HOST, or "
               "localhost:11434), its models are listed here and can play either role through its "
               "OpenAI-compatible endpoint; `ollama pull MODEL` downloads them.")
elif not ollama_status.models:
    st.caption(f"Ollama at {escape_markdown(ollama_status.url)} has no models yet: `ollama pull llama3.2:1b`.")
else:
    o1, o2, o3 = st.columns([2, 1, 1])
    tag = o1.selectbox("Ollama model", [m.name for m in ollama_status.models], key="settings_models_ollama",
                       format_func=lambda n: next(f"{m.name} ({m.parameter_size}, {m.quantization})"
                                                  for m in ollama_status.models if m.name == n))
    for col, role, label in ((o2, "base", "Use for the base role"), (o3, "finetuned", "Use for the fine-tuned role")):
        if col.button(label, key=f"settings_models_ollama_{role}"):
            catalogue.use(settings, models_ws, f"ollama:{tag}", role)
            _follow_session(role)
            st.rerun()
