"""Workshop mode: the host's view of the participants (protected by the host code set at start)."""

import datetime

import streamlit as st

from lib import capacity, charts, engine, gateway, serving_cost, workshop
from lib.errors import ConfigError
from lib.format import escape_markdown, usd
from views import _capacity as capacity_widgets

settings = st.session_state.settings
config = settings.workshop
shop = workshop.Workshop(settings.data_dir)

st.title("Host")
if not st.session_state.get("host_ok"):
    with st.form("host_login", border=False):
        code = st.text_input("Host code", type="password", key="host_code",
                             help="The code set with WORKBENCH_HOST_CODE when the server was started.")
        if st.form_submit_button("Open", key="host_open"):
            try:
                if shop.check_host_code(code, config, workshop.text(st.context.ip_address)):
                    st.session_state.host_ok = True
                    st.rerun()
                st.error("That is not the host code.")
            except ConfigError as exc:
                st.error(escape_markdown(str(exc)))
    st.stop()

# ---------------------------------------------------------------- capacity of this server and the workshop forecast
with st.expander("Capacity of this server and the workshop forecast", expanded=False):
    host_ws = engine.workspace_for(settings)
    st.caption("Measures how many questions an hour the local model answers on this machine at 1, 2, 4 and 8 "
               "questions at once (the app's own RAG and no-context prompts, up to 96 tokens each), and forecasts "
               "what participants wait. Takes a few minutes; participants' questions slow it down.")
    c1, c2, c3 = st.columns([1, 1, 1])
    cap_role = c1.selectbox("Model", ["base", "finetuned"], key="host_cap_role",
                            format_func=lambda r: "base model" if r == "base" else "fine-tuned model")
    cap_questions = c2.number_input("Questions per level", 2, 64, 8, key="host_cap_questions")
    if c3.button("Measure capacity", key="host_cap_start"):
        try:
            capacity.start(settings, host_ws, cap_role, questions=int(cap_questions))
        except (ConfigError, ValueError) as exc:
            st.error(escape_markdown(str(exc)))

    capacity_widgets.progress(host_ws, "host")
    measured = capacity.latest(host_ws)
    if measured is None:
        st.info("No capacity measurement yet on this server.")
    else:
        st.plotly_chart(charts.capacity_curve(list(measured.levels)), key="host_cap_chart")
        st.caption(escape_markdown(f"{measured.label[:1].upper()}{measured.label[1:]}; {measured.prompts}, up to "
                                   f"{measured.max_tokens} tokens per answer."))
        joined = len(workshop.participant_rows(settings.data_dir))
        people = st.number_input("Participants asking at the same moment", 1, 500, joined or 10, key="host_cap_people")
        local_arms = serving_cost.local_default_arms(engine.resolve_finetuned(settings, host_ws))
        if not local_arms:
            st.caption("The default arms use hosted models: the local model's capacity does not limit them.")
        else:
            f = serving_cost.workshop_forecast(
                serving_cost.points_from(measured), int(people), local_arms,
                int(measured.machine.get("processes", 1)) * int(measured.machine.get("batch", 1)), measured.label)
            m1, m2, m3 = st.columns(3)
            m1.metric("Local questions a minute", f"{f.questions_per_minute:.1f}")
            m2.metric("Median participant waits", f"{f.wait_p50_s:.0f} s")
            m3.metric("Last participant waits", f"{f.wait_max_s:.0f} s")
            st.caption(escape_markdown(f.note))
# ----------------------------------------------------------------

if "host_notice" in st.session_state:
    st.success(st.session_state.pop("host_notice"))
if config.join_code:
    st.markdown("Join code (read it out, or show this screen):")
    st.code(config.join_code, language=None)
rows = workshop.participant_rows(settings.data_dir)
ledger = gateway.Ledger(settings.data_dir)
settled, reserved = ledger.totals()
caps = []
if config.cap_participant_usd is not None:
    caps.append(f"per participant {usd(config.cap_participant_usd)}")
if config.cap_total_usd is not None:
    caps.append(f"total {usd(config.cap_total_usd)}")
limits = [f"at most {config.max_participants} participants" if config.max_participants else "no participant limit",
          f"{config.join_rate} attempts to join per device in 10 minutes"]
st.caption(f"{len(rows)} participant(s) ({', '.join(limits)}). Hosted spend so far: {usd(settled)}"
           + (f", and {usd(reserved)} reserved by requests under way" if reserved else "") + ". "
           + (f"Caps: {', '.join(caps)} (set with WORKBENCH_CAP_PARTICIPANT_USD / WORKBENCH_CAP_TOTAL_USD; "
              "restart with a higher value to raise them). Every hosted request is capped: answers, evaluation "
              "runs, the LLM judge, generated questions and training pairs, connection tests, embeddings and "
              "OpenAI fine-tuning." if caps else "No spend caps are set."))
if not rows:
    st.info("Nobody has joined yet. Participants open this server's address and type their name"
            + (" and the join code." if config.join_code else "."))
st.dataframe([{"Name": r.name, "Workspace": r.workspace,
               "Joined": datetime.datetime.fromtimestamp(r.joined_at).strftime("%H:%M"), "Joins": r.joins,
               "Questions asked": r.questions, "Evaluation runs": r.runs, "Spend (USD)": round(r.spent_usd, 6)}
              for r in rows], hide_index=True, key="host_table")
if rows:
    labels = {r.token: f"{r.name} ({r.workspace})" for r in rows}
    who = st.selectbox("Participant", list(labels), format_func=labels.__getitem__, key="host_pick")
    left, right = st.columns(2)
    try:
        if left.button("Reset: empty their workspace", key="host_reset"):
            p = engine.reset_participant(settings, who)
            st.session_state.host_notice = f"{escape_markdown(p.name)}'s workspace is empty again; their link still works."
            st.rerun()
        if right.button("Remove: delete their workspace and link", key="host_remove"):
            p = engine.remove_participant(settings, who)
            st.session_state.host_notice = f"{escape_markdown(p.name)} was removed; their link no longer opens anything."
            st.rerun()
    except ConfigError as exc:
        st.error(escape_markdown(str(exc)))

duplicates = shop.duplicates()
if duplicates:
    st.subheader("Joined more than once")
    st.caption("One name, several workspaces: they share one spend allowance. Merge keeps the first workspace: "
               "the later links open it, the later workspaces are deleted and their spend counts there.")
    for i, group in enumerate(duplicates):
        first, later = group[0], group[1:]
        st.markdown(f"**{escape_markdown(first.name)}**: {len(group)} joins, workspaces "
                    + ", ".join(escape_markdown(p.workspace) for p in group))
        if st.button(f"Merge into {first.workspace}", key=f"host_merge_{i}"):
            try:
                for p in later:
                    engine.merge_participants(settings, first.token, p.token)
                st.session_state.host_notice = (f"Merged {len(later)} join(s) of {escape_markdown(first.name)} into "
                                                f"{escape_markdown(first.workspace)}.")
                st.rerun()
            except ConfigError as exc:
                st.error(escape_markdown(str(exc)))

joins = shop.joins()
if joins:
    with st.expander(f"Attempts to join ({len(joins)})"):
        st.dataframe([{"When": datetime.datetime.fromtimestamp(j.at).strftime("%H:%M:%S"), "Name": j.name,
                       "Device (address)": j.client, "Outcome": j.outcome, "Workspace": j.workspace}
                      for j in reversed(joins[-200:])], hide_index=True, key="host_joins")
