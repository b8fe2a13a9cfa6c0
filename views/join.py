"""Workshop mode: join with a name (and the host's join code) and get a personal link to your own workspace."""

import streamlit as st

from lib import engine, workshop
from lib.errors import ConfigError
from lib.format import escape_markdown

settings = st.session_state.settings
config = settings.workshop

st.title("Join the workshop")
if st.query_params.get("t"):
    st.warning("This link does not open a workspace (it may have been removed by the host). Join again below.")
st.write("Type your name to get your own workspace: your knowledge bases, questions, evaluation runs and models, "
         "which nobody else sees. You get a personal link; this browser remembers it, and you can keep a copy to "
         "come back. Do not share it.")
with st.form("join", border=False):
    name = st.text_input("Your name", key="join_name", placeholder=f"at most {workshop.MAX_NAME} characters")
    code = st.text_input("Join code", key="join_code", help="The code the workshop host shows.") \
        if config.join_code else ""
    if st.form_submit_button("Join", type="primary", key="join_submit"):
        try:
            p = engine.join_workshop(settings, name, workshop.text(st.context.ip_address), code)
        except ConfigError as exc:
            st.error(escape_markdown(str(exc)))
        else:
            st.session_state.workshop_token = p.token
            st.query_params["t"] = p.token
            st.rerun()
