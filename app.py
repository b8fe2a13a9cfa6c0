"""Router and frame: page config, the shared sidebar (workspace, knowledge base, models), navigation."""

import dataclasses

import streamlit as st

from lib import engine
from lib.errors import ConfigError, report_bug
from lib.format import escape_markdown, one_line
from lib.settings import load_settings, mask_key
from lib.store import list_knowledge_bases
from lib.workshop import HIDE_COOKIE, TOKEN_COOKIE, Workshop, locked_settings, remember_link_script, text
from lib.workspace import NAME_RULE, list_workspaces

st.set_page_config(page_title="RAG vs Fine-tuning Workbench", page_icon="⚖️", layout="wide")

st.session_state.setdefault("settings_overrides", {})
try:
    secrets = st.secrets.to_dict()
except FileNotFoundError:  # no .streamlit/secrets.toml: environment variables only
    secrets = {}
try:  # the same reader and key rules as the CLI: environment first, then secrets
    base_settings = load_settings(secrets=secrets)
    settings = dataclasses.replace(base_settings, **st.session_state.settings_overrides)
    if "base" in st.session_state.settings_overrides:  # a base applied in this session's Settings form wins
        settings = dataclasses.replace(settings, base_explicit=True)
except ValueError as exc:
    st.error(f"Configuration problem: {exc}")
    st.stop()

workshop = base_settings.workshop
participant = None
if workshop.enabled:  # each participant works in their own workspace, opened by the token in their link only
    shop = Workshop(settings.data_dir)
    cookie = text(st.context.cookies.get(TOKEN_COOKIE))  # kept by the browser since joining: survives a restart
    token = st.query_params.get("t") or st.session_state.get("workshop_token") or cookie
    participant = shop.participant(token)
    if participant is None and cookie and cookie != token:
        token, participant = cookie, shop.participant(cookie)
    if participant is None:
        st.session_state.settings = base_settings
        st.navigation([st.Page("views/join.py", title="Join", icon="👋", default=True),
                       st.Page("views/host.py", title="Host", icon="🧑‍🏫")]).run()
        st.stop()
    st.session_state.workshop_token = token
    hide = st.session_state.get("workshop_hide_link", text(st.context.cookies.get(HIDE_COOKIE)) == "1")
    if hide:
        st.query_params.pop("t", None)  # screen sharing: the link is kept by the browser, not shown
    elif st.query_params.get("t") != token:
        st.query_params["t"] = token  # the personal link stays in the address bar on every page
    if st.session_state.get("workshop_cookie") != (token, hide):  # once per session (and on a change)
        st.session_state.workshop_cookie = (token, hide)
        st.sidebar.html(remember_link_script(token, hide, text(st.context.url).startswith("https")),
                        unsafe_allow_javascript=True)
    st.session_state.workspace = participant.workspace
    st.session_state.pop("workspace_switch", None)
    # The host's providers, endpoint and key; only a role's model may be picked among those the host allows.
    settings = locked_settings(base_settings, st.session_state.settings_overrides)

# The workspace is kept per browser session; a page or the sidebar may ask to switch.
st.session_state.setdefault("workspace", settings.workspace)
if "workspace_switch" in st.session_state:
    st.session_state.workspace = st.session_state.pop("workspace_switch")
    st.session_state.kb_switch = settings.collection  # knowledge bases belong to a workspace
settings = dataclasses.replace(settings, workspace=st.session_state.workspace)
try:
    workspace = engine.workspace_for(settings, create=False)
except ConfigError as exc:
    st.error(escape_markdown(str(exc)))
    if settings.workspace != "default" and st.button("Open the default workspace", key="ws_fallback"):
        st.session_state.workspace_switch = "default"
        st.rerun()
    st.stop()
settings = engine.resolve_models(settings, workspace)  # the workspace's models, unless configured

st.session_state.setdefault("kb_name", settings.collection)
if "kb_switch" in st.session_state:  # a page asked to switch; widgets' state may only change before they exist
    st.session_state.kb_name = st.session_state.pop("kb_switch")
settings = dataclasses.replace(settings, collection=st.session_state.kb_name)
st.session_state.settings = settings

with st.sidebar:
    st.markdown("### ⚖️ RAG vs Fine-tuning")
    if participant is not None:
        st.markdown(f"**{escape_markdown(one_line(participant.name))}**, this is your own workspace.")
        st.caption("This browser remembers your personal link (this page's address, with `?t=`), also after the "
                   "app restarts; keep a copy to come back from another device, and do not share it: it opens "
                   "your workspace.")
        hidden = st.session_state.get("workshop_hide_link", text(st.context.cookies.get(HIDE_COOKIE)) == "1")
        if st.toggle("Hide my link from the address bar", value=hidden, key="workshop_hide_toggle",
                     help="For screen sharing: this browser keeps the link, so pages and restarts still open "
                          "your workspace.") != hidden:
            st.session_state.workshop_hide_link = not hidden
            st.rerun()
    else:
        workspaces = list_workspaces(settings.data_dir)
        if settings.workspace not in workspaces:
            workspaces = [settings.workspace, *workspaces]
        st.selectbox("Workspace", workspaces, key="workspace",
                     help="A workspace holds its own knowledge bases, history, fine-tuned models and jobs.",
                     on_change=lambda: st.session_state.update(kb_switch=base_settings.collection))
        with st.popover("New workspace", width="stretch"), st.form("ws_new", clear_on_submit=True, border=False):
            new_name = st.text_input("Name", key="ws_new_name", help=NAME_RULE)
            if st.form_submit_button("Create and switch", key="ws_create"):
                try:
                    engine.create_workspace(settings, new_name.strip())
                    st.session_state.workspace_switch = new_name.strip()
                    st.rerun()
                except ConfigError as exc:
                    st.error(escape_markdown(str(exc)))
    try:
        names = list_knowledge_bases(engine.client_for(settings))
    except Exception as exc:  # a broken store must not take the whole app down
        names = []
        st.error(f"The document store could not be opened: {escape_markdown(str(exc))}")
    if settings.collection not in names:
        names = [settings.collection, *names]
    st.selectbox("Knowledge base", names, index=names.index(settings.collection), key="kb_name",
                 help="Create and delete knowledge bases on the Documents page.")
    base = settings.base
    ft = settings.finetuned
    st.caption(
        f"**Workspace:** {settings.workspace}  \n"
        f"**Base model:** {escape_markdown(base.label)} ({base.provider})  \n"
        f"**Fine-tuned:** {escape_markdown(ft.label) + ' (' + ft.provider + ')' if ft else 'not configured'}  \n"
        f"**API key:** {mask_key(settings.key_in_use())}"
    )
    if not settings.hosted_configured:
        st.caption("Offline mode: everything runs on this machine.")

pages = [
    st.Page("views/home.py", title="Start", icon="🏠", default=True),
    st.Page("views/documents.py", title="Documents", icon="📄"),
    st.Page("views/compare.py", title="Compare", icon="⚖️"),
    st.Page("views/evaluate.py", title="Evaluate", icon="📊"),
    st.Page("views/decide.py", title="Decide", icon="🧭"),
    st.Page("views/finetune.py", title="Fine-tune", icon="🎯"),
    st.Page("views/history.py", title="History", icon="📈"),
    st.Page("views/settings.py", title="Settings", icon="⚙️"),
]
if workshop.enabled:
    pages.append(st.Page("views/host.py", title="Host", icon="🧑‍🏫"))
try:
    st.navigation(pages).run()
except ConfigError as exc:  # e.g. a workspace database damaged while in use: say so, never a traceback
    st.error(escape_markdown(str(exc)))
except Exception as exc:  # a bug: logged with its traceback; the page says so plainly, and where the log is
    st.error(escape_markdown(report_bug(exc, settings.data_dir)))
