"""Workshop mode: join with a name and get a personal link to your own workspace."""

import streamlit as st

from lib import workshop
from lib.errors import ConfigError
from lib.format import escape_markdown

settings = st.session_state.settings

st.title("Join the workshop")
if st.query_params.get("t"):
    st.warning("This link does not open a workspace (it may have been removed by the host). Join again below.")
st.write("Type your name to get your own workspace: your knowledge bases, questions, evaluation runs and models, "
         "which nobody else sees. You get a personal link; keep it to come back, and do not share it.")
with st.form("join", border=False):
    name = st.text_input("Your name", key="join_name", max_chars=60)
    if st.form_submit_button("Join", type="primary", key="join_submit"):
        try:
            p = workshop.join(settings, name)
        except ConfigError as exc:
            st.error(escape_markdown(str(exc)))
        else:
            st.session_state.workshop_token = p.token
            st.query_params["t"] = p.token
            st.rerun()
