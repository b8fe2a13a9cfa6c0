import json

import pandas as pd
import streamlit as st

from lib import charts, engine
from lib.format import escape_markdown
from lib.history import ROW_COLUMNS, export_csv, export_json, rows

settings = st.session_state.settings
st.title("History")
st.caption(f"Every question asked in knowledge base **{escape_markdown(settings.collection)}** of workspace "
           f"**{escape_markdown(settings.workspace)}**, kept on disk across restarts.")

workspace = engine.workspace_for(settings)
comparisons, damaged = workspace.comparisons(settings.collection)
if damaged:
    st.warning(f"{damaged} damaged record(s), or record(s) written by a newer version, were skipped; "
               "the rest is shown. They are kept in the workspace database.")
if not comparisons:
    st.info("No questions asked yet in this knowledge base. Ask one on the Compare page.")
    st.stop()

table = rows(comparisons)
frame = pd.DataFrame(table, columns=ROW_COLUMNS)
frame["asked"] = pd.to_datetime(frame["created_at"], unit="s").dt.strftime("%Y-%m-%d %H:%M")
m1, m2, m3 = st.columns(3)
m1.metric("Questions", len(comparisons))
m2.metric("Answers", int(frame["error"].isna().sum()))
m3.metric("Total cost", f"${frame['cost_usd'].fillna(0).sum():.4f}")

st.dataframe(
    frame[["asked", "question", "label", "model", "answer", "ttft_ms", "total_ms", "prompt_tokens",
           "completion_tokens", "cost_usd", "usage_source", "error"]],
    hide_index=True, width="stretch",
    column_config={
        "label": "arm",
        "ttft_ms": st.column_config.NumberColumn("first token (ms)", format="%.0f"),
        "total_ms": st.column_config.NumberColumn("total (ms)", format="%.0f"),
        "cost_usd": st.column_config.NumberColumn("cost ($)", format="%.6f"),
        "usage_source": "usage",
    },
)

c1, c2 = st.columns(2)
c1.plotly_chart(charts.cost_vs_latency(table), key="history_chart_scatter")
c2.plotly_chart(charts.latency_distribution(table), key="history_chart_latency")
st.plotly_chart(charts.cumulative_cost(table), key="history_chart_cost")

d1, d2, d3 = st.columns(3)
d1.download_button("Download CSV", export_csv(comparisons), file_name=f"history-{settings.collection}.csv",
                   mime="text/csv", key="history_csv")
d2.download_button("Download JSON", json.dumps(export_json(comparisons), indent=2), file_name=f"history-{settings.collection}.json",
                   mime="application/json", key="history_json")
if d3.button("Clear history", key="history_clear"):
    st.session_state.history_clear_pending = settings.collection
if st.session_state.get("history_clear_pending") == settings.collection:
    st.warning(f"Delete all {len(comparisons)} questions asked in **{escape_markdown(settings.collection)}** from the "
               "history? Download them first if you may need them; this cannot be undone.")
    y, n = st.columns([1, 4])
    if y.button("Yes, clear the history", type="primary", key="history_clear_confirm"):
        workspace.clear_history(settings.collection)
        st.session_state.pop("history_clear_pending", None)
        st.rerun()
    if n.button("Cancel", key="history_clear_cancel"):
        st.session_state.pop("history_clear_pending", None)
        st.rerun()
