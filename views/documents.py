import dataclasses
import time

import streamlit as st

from lib import engine
from lib.chunking import DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS, MAX_CHUNK_TOKENS
from lib.documents import safe_name
from lib.errors import ConfigError, redact
from lib.format import escape_markdown, one_line, when
from lib.store import delete_knowledge_base

settings = st.session_state.settings
st.title("Documents")

try:
    kb = engine.open_kb(settings)
except ConfigError as exc:
    st.error(escape_markdown(str(exc)))
    st.stop()

summary = st.empty()  # filled at the end of the run, so the counts include what this run added or removed

left, right = st.columns([3, 2])
with left:
    # A new key after a successful add empties the uploader (its files cannot be cleared through session state).
    st.session_state.setdefault("docs_uploader_round", 0)
    uploads = st.file_uploader("Add documents", type=["txt", "md", "pdf", "docx", "html", "htm"],
                               accept_multiple_files=True, key=f"docs_uploader_{st.session_state.docs_uploader_round}",
                               help=f"Up to {settings.max_upload_mb} MB per file.")
with right:
    size = st.slider("Chunk size (tokens)", 32, MAX_CHUNK_TOKENS, DEFAULT_CHUNK_TOKENS, 8, key="docs_chunk_size",
                     help="The embedding model reads at most 256 word pieces; longer chunks would be cut.")
    overlap = st.slider("Overlap (tokens)", 0, size // 2, min(DEFAULT_OVERLAP_TOKENS, size // 2), 4,
                        key="docs_overlap")

busy = "docs_job" in st.session_state  # files being stored (started on an earlier run of this page)
c1, c2 = st.columns(2)
add = c1.button("Add to knowledge base", type="primary", disabled=not uploads or busy, key="docs_add")
sample = c2.button("Load the sample documents", key="docs_sample", disabled=busy)

if (add or sample) and not busy:
    # Stored by a background job: leaving this page (or a rerun) while a file is embedding does not drop it.
    if add:
        files = [(upload.name, upload.getvalue()) for upload in uploads or []]
        max_bytes = settings.max_upload_mb * 1024 * 1024
        st.session_state.docs_job = engine.ingest_in_background(
            lambda progress: [engine.ingest_upload(kb, name, data, size, overlap, max_bytes, progress=progress)
                              for name, data in files])
        st.session_state.docs_uploader_round += 1  # the files are with the job: "Add" cannot run them twice
    else:
        st.session_state.docs_job = engine.ingest_in_background(
            lambda progress: engine.load_sample_corpus(kb, progress=progress))
    st.rerun()

if busy:
    job = st.session_state.docs_job
    st.caption("Storing the files. This goes on if you open another page: come back here for the results.")
    bars: dict = {}
    while not job.done:  # a page switch stops this loop, not the job
        for name, status in job.statuses().items():
            fraction, _, stage = status.partition(" ")
            bars.setdefault(name, st.empty()).progress(min(1.0, float(fraction)),
                                                       text=f"{escape_markdown(one_line(safe_name(name)))}: {stage}")
        time.sleep(0.25)
    st.session_state.pop("docs_job")
    results = [r.to_dict() for r in job.result or []]
    if job.error is not None:
        results.append({"file": "(the upload)", "status": "error", "error": redact(f"{type(job.error).__name__}: "
                                                                                 f"{job.error}"), "chunks": 0, "tokens": 0})
    st.session_state.docs_last_results = results
    st.rerun()

if st.session_state.get("docs_last_results"):
    for r in st.session_state.docs_last_results:
        if r["status"] == "error":
            st.error(f"**{escape_markdown(one_line(r['file']))}**: {escape_markdown(r['error'] or '')}", icon="⚠️")
        elif r["status"] == "unchanged":
            st.info(f"**{escape_markdown(one_line(r['file']))}**: already stored under this name with the same content "
                    f"({r['chunks']} chunks), nothing added.")
        else:
            st.success(f"**{escape_markdown(one_line(r['file']))}**: {r['status']}, {r['chunks']} chunks, "
                       f"{r['tokens']} tokens.")

st.subheader("In this knowledge base")
docs = kb.documents()
if not docs:
    st.info("No documents yet. Upload some above, or load the sample documents.")
else:
    st.dataframe(
        [{"document": d.name, "type": d.kind, "chunks": d.chunks, "tokens": d.tokens, "added": when(d.added_at)}
         for d in docs],
        hide_index=True, width="stretch",
        column_config={"chunks": st.column_config.NumberColumn(format="%d"),
                       "tokens": st.column_config.NumberColumn(format="%d")})
    chosen = st.selectbox("Document", [d.name for d in docs], key="docs_selected")
    p1, p2 = st.columns([4, 1])
    with p1.expander(f"Preview the chunks of {escape_markdown(one_line(chosen))}"):
        for chunk in kb.chunks_of(chosen):
            st.caption(f"Chunk {chunk.chunk}")
            st.text(chunk.text)
    if p2.button("Remove document", key="docs_remove"):
        st.session_state.docs_remove_pending = chosen
    if st.session_state.get("docs_remove_pending") == chosen:
        n_chunks = next(d.chunks for d in docs if d.name == chosen)
        st.warning(f"Remove **{escape_markdown(one_line(chosen))}** and its {n_chunks} chunks from "
                   f"**{escape_markdown(kb.name)}**? "
                   "This cannot be undone.")
        y, n = st.columns([1, 4])
        if y.button("Yes, remove it", type="primary", key="docs_remove_confirm"):
            removed = kb.remove_document(chosen)
            st.session_state.docs_last_results = []
            st.session_state.pop("docs_remove_pending", None)
            st.toast(f"Removed {escape_markdown(one_line(chosen))} ({removed} chunks).")
            st.rerun()
        if n.button("Cancel", key="docs_remove_cancel"):
            st.session_state.pop("docs_remove_pending", None)
            st.rerun()

st.subheader("Knowledge bases")
k1, k2 = st.columns(2)
with k1.form("docs_new_kb", clear_on_submit=True):
    new_name = st.text_input("New knowledge base", placeholder="e.g. support-docs", key="docs_new_name")
    if st.form_submit_button("Create and switch"):
        try:
            engine.open_kb(settings, new_name)
            st.session_state.kb_switch = new_name
            st.session_state.docs_last_results = []
            st.rerun()
        except ConfigError as exc:
            st.error(escape_markdown(str(exc)))
with k2:
    st.write(f"Delete **{escape_markdown(kb.name)}** and all its documents (its history stays on disk).")
    confirm = st.checkbox(f"Yes, delete {escape_markdown(kb.name)}", key="docs_confirm_delete")
    if st.button("Delete knowledge base", disabled=not confirm, key="docs_delete"):
        delete_knowledge_base(engine.client_for(settings), kb.name)
        st.session_state.kb_switch = "default"
        st.session_state.settings = dataclasses.replace(settings, collection="default")
        st.session_state.docs_last_results = []
        st.rerun()

summary.caption(f"Knowledge base **{escape_markdown(kb.name)}** in workspace **{escape_markdown(settings.workspace)}** · "
                f"{kb.count()} chunks · "
                f"embedder {escape_markdown(kb.embedder.model_id)}")
if kb.count():
    st.page_link("views/finetune.py", label="Fine-tune the local model on this knowledge base (Fine-tune page, tab 2a)",
                 icon="🎯")
