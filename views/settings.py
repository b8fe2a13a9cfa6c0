import dataclasses

import streamlit as st

from lib import engine
from lib.providers import PROVIDERS as PROVIDER_REGISTRY
from lib.settings import DEFAULT_HOSTED_MODEL, LOCAL_BASE_MODEL, ModelSpec, mask_key

settings = st.session_state.settings
overrides = st.session_state.settings_overrides
st.title("Settings")
st.caption("Changes here last for this browser session. For a permanent setup use environment variables or "
           ".streamlit/secrets.toml (see secrets.toml.example).")

PROVIDERS = list(PROVIDER_REGISTRY)
LABELS = {"local": "Local (llama.cpp, offline)", "openai": "OpenAI or OpenAI-compatible URL", "azure": "Azure OpenAI"}

with st.form("settings_models"):
    st.subheader("Models")
    b1, b2 = st.columns(2)
    base_provider = b1.selectbox("Base model provider", PROVIDERS, PROVIDERS.index(settings.base.provider),
                                 format_func=lambda p: LABELS.get(p, p), key="settings_base_provider")
    base_name = b2.text_input("Base model", settings.base.name, key="settings_base_name",
                              help=f"'{LOCAL_BASE_MODEL}' (bundled) or a .gguf path for local; a model id such as "
                                   f"'{DEFAULT_HOSTED_MODEL}' for OpenAI; the deployment name for Azure.")
    ft = settings.finetuned
    f1, f2, f3 = st.columns(3)
    ft_provider = f1.selectbox("Fine-tuned model provider", ["none", *PROVIDERS],
                               (["none", *PROVIDERS]).index(ft.provider if ft else "none"),
                               format_func=lambda p: "The workspace's active model" if p == "none"
                               else LABELS.get(p, p),
                               key="settings_ft_provider")
    ft_name = f2.text_input("Fine-tuned model", ft.name if ft else "", key="settings_ft_name",
                            help="An ft:... id for OpenAI, a deployment for Azure, or the base .gguf for local.")
    ft_lora = f3.text_input("LoRA adapter (local only)", (ft.lora or "") if ft else "", key="settings_ft_lora",
                            help="Path of a GGUF LoRA adapter applied on top of the local model.")

    st.subheader("Hosted API")
    h1, h2 = st.columns(2)
    key = h1.text_input("API key (this session only)", type="password", key="settings_key",
                        help="Never shown, logged or written to disk. Leave empty to keep the current key: "
                             + mask_key(settings.openai_api_key or settings.azure_api_key))
    base_url = h2.text_input("OpenAI-compatible base URL", settings.openai_base_url or "", key="settings_base_url",
                             placeholder="https://api.openai.com/v1 · http://localhost:11434/v1 (Ollama)")
    a1, a2 = st.columns(2)
    azure_endpoint = a1.text_input("Azure endpoint", settings.azure_endpoint or "", key="settings_azure_endpoint",
                                   placeholder="https://YOUR-RESOURCE.openai.azure.com")
    azure_version = a2.text_input("Azure API version", settings.azure_api_version, key="settings_azure_version")
    saved = st.form_submit_button("Apply", type="primary")

if saved:
    overrides["base"] = ModelSpec(base_provider, base_name.strip() or LOCAL_BASE_MODEL)
    overrides["finetuned"] = None if ft_provider == "none" else ModelSpec(
        ft_provider, ft_name.strip() or (LOCAL_BASE_MODEL if ft_provider == "local" else ""),
        ft_lora.strip() or None if ft_provider == "local" else None)
    overrides["openai_base_url"] = base_url.strip() or None
    overrides["azure_endpoint"] = azure_endpoint.strip() or None
    overrides["azure_api_version"] = azure_version.strip() or settings.azure_api_version
    if key.strip():
        overrides["azure_api_key" if azure_endpoint.strip() else "openai_api_key"] = key.strip()
    st.session_state.settings = dataclasses.replace(settings, **overrides)
    st.toast("Settings applied for this session.")
    st.rerun()

st.subheader("Connection test")
st.caption(f"Key in use: {mask_key(settings.openai_api_key or settings.azure_api_key)} · "
           f"base URL: {settings.openai_base_url or settings.azure_endpoint or 'OpenAI default'}")
t1, t2 = st.columns(2)
for col, role, label in ((t1, "base", "Test the base model"), (t2, "finetuned", "Test the fine-tuned model")):
    if col.button(label, key=f"settings_test_{role}"):
        with col, st.spinner("Asking the model for one word…"):
            ok, message = engine.connection_test(settings, role)
        (col.success if ok else col.error)(message)

if overrides and st.button("Reset to the defaults", key="settings_reset"):
    overrides.clear()
    st.rerun()
