"""Workshop mode: the host's view of the participants (protected by the host code set at start)."""

import datetime
import hmac
import os

import streamlit as st

from lib import workshop
from lib.errors import ConfigError
from lib.format import escape_markdown

settings = st.session_state.settings
config = workshop.workshop_config(os.environ)

st.title("Host")
if not st.session_state.get("host_ok"):
    with st.form("host_login", border=False):
        code = st.text_input("Host code", type="password", key="host_code",
                             help="The code set with WORKBENCH_HOST_CODE when the server was started.")
        if st.form_submit_button("Open", key="host_open"):
            if config.host_code and hmac.compare_digest(code.encode(), config.host_code.encode()):
                st.session_state.host_ok = True
                st.rerun()
            st.error("That is not the host code.")
    st.stop()

if "host_notice" in st.session_state:
    st.success(escape_markdown(st.session_state.pop("host_notice")))
rows = workshop.participant_rows(settings.data_dir)
shop = workshop.Workshop(settings.data_dir)
caps = []
if config.cap_participant_usd is not None:
    caps.append(f"per participant ${config.cap_participant_usd:.2f}")
if config.cap_total_usd is not None:
    caps.append(f"total ${config.cap_total_usd:.2f}")
st.caption(f"{len(rows)} participant(s). Hosted spend so far: ${shop.spent():.4f}. "
           + (f"Caps: {', '.join(caps)} (set with WORKBENCH_CAP_PARTICIPANT_USD / WORKBENCH_CAP_TOTAL_USD; "
              "restart with a higher value to raise them)." if caps else "No spend caps are set."))
if not rows:
    st.info("Nobody has joined yet. Participants open this server's address and type their name.")
    st.stop()
st.dataframe([{"Name": r.name, "Workspace": r.workspace,
               "Joined": datetime.datetime.fromtimestamp(r.joined_at).strftime("%H:%M"),
               "Questions asked": r.questions, "Evaluation runs": r.runs, "Spend (USD)": round(r.spent_usd, 6)}
              for r in rows], hide_index=True, key="host_table")
labels = {r.token: f"{r.name} ({r.workspace})" for r in rows}
who = st.selectbox("Participant", list(labels), format_func=labels.__getitem__, key="host_pick")
left, right = st.columns(2)
try:
    if left.button("Reset: empty their workspace", key="host_reset"):
        p = workshop.reset_participant(settings, who)
        st.session_state.host_notice = f"{p.name}'s workspace is empty again; their link still works."
        st.rerun()
    if right.button("Remove: delete their workspace and link", key="host_remove"):
        p = workshop.remove_participant(settings, who)
        st.session_state.host_notice = f"{p.name} was removed; their link no longer opens anything."
        st.rerun()
except ConfigError as exc:
    st.error(escape_markdown(str(exc)))
