"""The capacity measurement's progress, shared by the Decide and Host pages (a widget helper, not a page)."""

import streamlit as st

from lib import capacity
from lib.format import escape_markdown


def progress(workspace, prefix: str) -> None:
    """The running measurement's progress and Cancel, refreshed every second; the whole page reruns once it
    has finished, so that what is priced or forecast from it shows at once. `prefix` keeps the widget keys apart."""

    @st.fragment(run_every=1.0)
    def show() -> None:
        handle = capacity.running(workspace)
        if handle is None:
            return
        if handle.alive:
            p = handle.progress
            st.progress(p.done / p.total if p.total else 0.0,
                        text=f"Measuring the {handle.role} model: {p.done} of {p.total or '?'} questions"
                             + (f" ({escape_markdown(p.message)})" if p.message else ""))
            if st.button("Cancel", key=f"{prefix}_cap_cancel"):
                handle.cancel.set()
            st.session_state[f"{prefix}_cap_watching"] = True
        else:
            if handle.error:
                st.warning(escape_markdown(handle.error))
            if st.session_state.pop(f"{prefix}_cap_watching", False):
                st.rerun(scope="app")

    show()
