import streamlit as st

from lib import engine
from lib.format import escape_markdown

settings = st.session_state.settings

st.title("RAG, fine-tuning, or both?")
st.markdown(
    "Drop in your own documents, ask one question, and see side by side what retrieval-augmented generation, "
    "a fine-tuned model and the hybrid of the two answer, with what each costs and how long each takes. "
    "Everything runs offline on bundled local models; add an API key in Settings to compare hosted models."
)

st.subheader("Try it in one click")
st.write("Load a small sample knowledge base (a fictional outdoor-gear company: policies, product sheets, "
         "a PDF, a Word file and a web page) and ask it a first question on the local models.")
st.caption(f"The samples go into a knowledge base of their own, **{engine.SAMPLE_KB}**; your knowledge bases "
           "are left as they are.")
if st.button("Load the sample documents and ask a first question", type="primary", key="home_start"):
    kb = engine.open_kb(settings, engine.SAMPLE_KB)
    bar = st.progress(0.0, text="Loading the sample documents…")
    files = {}

    def progress(name: str, stage: str, fraction: float) -> None:
        files[name] = fraction
        bar.progress(min(1.0, sum(files.values()) / 15), text=f"{stage.capitalize()} {name}")

    results = engine.load_sample_corpus(kb, progress)
    failed = [r for r in results if r.status == "error"]
    if failed:
        st.error("Some sample documents could not be loaded: "
                 + "; ".join(escape_markdown(r.error or "") for r in failed))
    st.session_state.compare_question = "How long is the refund window?"
    st.session_state.compare_autorun = True
    if settings.collection != engine.SAMPLE_KB:
        st.session_state.kb_switch = engine.SAMPLE_KB  # the router applies it before the sidebar is drawn
        st.session_state.compare_notice = (f"Switched to knowledge base **{engine.SAMPLE_KB}** (the sample "
                                           f"documents); **{escape_markdown(settings.collection)}** is unchanged. "
                                           "Switch back in the sidebar.")
    st.switch_page("views/compare.py")

st.subheader("What you are comparing")
cols = st.columns(4)
for col, (name, text) in zip(cols, [
    ("Baseline", "The base model alone: what it knows without help."),
    ("RAG", "The base model plus passages retrieved from your documents; cites its sources."),
    ("Fine-tuned", "A model trained on example answers: consistent style, no retrieval step. Out of the box it is "
                   "the shipped LoRA adapter, fine-tuned on the sample company."),
    ("Hybrid", "The fine-tuned model plus retrieval: what most production systems ship."),
]):
    col.markdown(f"**{name}**  \n{text}")
st.caption("Conventional wisdom: RAG wins when knowledge changes and answers need citations; fine-tuning wins on "
           "style, format and latency; most systems combine both. Measure it on your own data.")
st.info("The shipped fine-tuned model was **fine-tuned on the sample company** (Quillmere's 15 documents). On the "
        "sample knowledge base the Fine-tuned and Hybrid arms are a fair comparison; on your own documents they "
        "answer from the sample company and say so. To compare fairly there, fine-tune on your knowledge base "
        "(Fine-tune page, *Fine-tune on this knowledge base*, or `python -m lib finetune --kb NAME`).", icon="ℹ️")
