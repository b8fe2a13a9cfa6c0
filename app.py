"""Router and frame: page config, the shared sidebar, navigation."""

import dataclasses
import os

import streamlit as st

from lib import engine
from lib.settings import load_settings, mask_key
from lib.store import list_knowledge_bases

st.set_page_config(page_title="RAG vs Fine-tuning Workbench", page_icon="⚖️", layout="wide")

st.session_state.setdefault("settings_overrides", {})
try:
    secrets = {k: str(v) for k, v in st.secrets.items() if not isinstance(v, dict)}
except FileNotFoundError:  # no .streamlit/secrets.toml: environment variables only
    secrets = {}
try:
    base_settings = load_settings(env={**secrets, **os.environ}, secrets_file=None)
    settings = dataclasses.replace(base_settings, **st.session_state.settings_overrides)
except ValueError as exc:
    st.error(f"Configuration problem: {exc}")
    st.stop()
st.session_state.setdefault("kb_name", settings.collection)
if "kb_switch" in st.session_state:  # a page asked to switch; widgets' state may only change before they exist
    st.session_state.kb_name = st.session_state.pop("kb_switch")
settings = dataclasses.replace(settings, collection=st.session_state.kb_name)
st.session_state.settings = settings

with st.sidebar:
    st.markdown("### ⚖️ RAG vs Fine-tuning")
    try:
        names = list_knowledge_bases(engine.client_for(settings))
    except Exception as exc:  # a broken store must not take the whole app down
        names = []
        st.error(f"The document store could not be opened: {exc}")
    if settings.collection not in names:
        names = [settings.collection, *names]
    st.selectbox("Knowledge base", names, index=names.index(settings.collection), key="kb_name",
                 help="Create and delete knowledge bases on the Documents page.")
    base = settings.base
    ft = settings.finetuned
    st.caption(
        f"**Base model:** {base.label} ({base.provider})  \n"
        f"**Fine-tuned:** {ft.label + ' (' + ft.provider + ')' if ft else 'not configured'}  \n"
        f"**API key:** {mask_key(settings.openai_api_key or settings.azure_api_key)}"
    )
    if not settings.hosted_configured:
        st.caption("Offline mode: everything runs on this machine.")

pages = [
    st.Page("views/home.py", title="Start", icon="🏠", default=True),
    st.Page("views/documents.py", title="Documents", icon="📄"),
    st.Page("views/compare.py", title="Compare", icon="⚖️"),
    st.Page("views/finetune.py", title="Fine-tune", icon="🎯"),
    st.Page("views/history.py", title="History", icon="📈"),
    st.Page("views/settings.py", title="Settings", icon="⚙️"),
]
st.navigation(pages).run()
