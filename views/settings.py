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
    tests = st.session_state.setdefault("settings_tests", {})
    t1, t2 = st.columns(2)
    for col, role, label in ((t1, "base", "Test the base model"), (t2, "finetuned", "Test the fine-tuned model")):
        if col.button(label, key=f"settings_test_{role}"):
            with col, st.spinner("Asking the model for one word…"):
                tests[role] = engine.connection_test(settings, role)
        if role in tests:
            ok, message = tests[role]
            (col.success if ok else col.error)(escape_markdown(message))
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
for key, value in IN_FORCE.items():
    st.session_state.setdefault(key, value)


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
        st.error("Not applied. " + " ".join(escape_markdown(p) for p in problems))
    else:
        overrides["base"] = base
        overrides["finetuned"] = tuned
        overrides["azure_api_version"] = azure_version.strip() or settings.azure_api_version
        # A typed key is bound to the endpoint typed with it; a typed endpoint never gets the configured key.
        overrides.update(typed_credentials(key, base_url, azure_endpoint))
        st.session_state.settings = dataclasses.replace(settings, **overrides)
        st.session_state.settings_clear_key = True  # the key field is emptied on the next run
        st.session_state.settings_tests = {}
        st.toast("Settings applied for this session.")
        st.rerun()

st.subheader("Connection test")
st.caption(f"Key in use: {mask_key(settings.key_in_use())} · base URL: "
           f"{escape_markdown(settings.openai_base_url or settings.azure_endpoint or 'OpenAI default')}")
if withheld_key(settings):
    st.info(escape_markdown(withheld_key(settings) or ""))
tests = st.session_state.setdefault("settings_tests", {})  # role -> (ok, message): each stays under its button
t1, t2 = st.columns(2)
for col, role, label in ((t1, "base", "Test the base model"), (t2, "finetuned", "Test the fine-tuned model")):
    if col.button(label, key=f"settings_test_{role}"):
        with col, st.spinner("Asking the model for one word…"):
            tests[role] = engine.connection_test(settings, role)
    if role in tests:
        ok, message = tests[role]
        (col.success if ok else col.error)(escape_markdown(message))

if overrides and st.button("Reset to the defaults", key="settings_reset"):
    overrides.clear()
    for key in (*IN_FORCE, "settings_tests"):  # the form then starts again from the defaults
        st.session_state.pop(key, None)
    st.rerun()
