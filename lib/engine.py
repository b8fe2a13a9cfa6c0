"""The one flow every surface calls: open a knowledge base, ingest files, and
ask a question across arms. The CLI and the Streamlit pages are thin layers on this."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from lib.arms import compare
from lib.chunking import DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS, chunk_text, validate
from lib.documents import DocumentError, expand_paths, load_bytes, load_path, safe_name
from lib.embeddings import Embedder, make_embedder
from lib.errors import ConfigError, UserError
from lib.providers import Provider
from lib.records import ArmResult, Comparison, GenParams
from lib.settings import Settings
from lib.store import KnowledgeBase, open_client
from lib.workshop import Participant, Workshop
from lib.workspace import DEFAULT_WORKSPACE, Workspace

EMBED_BATCH = 32
MAX_CHUNKS_PER_DOCUMENT = 20_000
Progress = Callable[[str, str, float], None]  # (file, stage, fraction done 0..1)


@dataclass(frozen=True)
class IngestResult:
    file: str
    status: str  # "ingested" | "replaced" | "unchanged" | "skipped" | "error"
    chunks: int = 0
    tokens: int = 0
    error: str | None = None
    ms: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


_clients: dict[tuple[str, str | None, str], object] = {}
_clients_lock = threading.Lock()


def client_for(settings: Settings) -> object:
    """One Chroma client per store and workspace per process, as Chroma recommends."""
    key = (str(Path(settings.data_dir).resolve()), settings.chroma_host, settings.workspace)
    with _clients_lock:
        if key not in _clients:
            _clients[key] = open_client(settings.data_dir, settings.chroma_host, settings.workspace)
        return _clients[key]


def open_kb(settings: Settings, name: str | None = None, embedder: Embedder | None = None,
            create: bool = True) -> KnowledgeBase:
    """The knowledge base `name` (default: the settings' collection) in the settings' workspace."""
    return KnowledgeBase(client_for(settings), name or settings.collection, embedder or embedder_for(settings),
                         create, ledger=workspace_for(settings).document_ledger)


def _turn(embedder: Embedder) -> contextlib.AbstractContextManager[None]:
    """The local embedder and the local model each use every core: an embedding batch waits for its turn
    in the machine queue (between answers), so an ingest cannot slow a local arm down 30x, nor the reverse."""
    from lib.embeddings import MiniLMEmbedder
    from lib.local_queue import machine_turn

    return machine_turn() if isinstance(embedder, MiniLMEmbedder) else contextlib.nullcontext()
# ---------------------------------------------------------------- workspaces

def workspace_for(settings: Settings, create: bool = True) -> Workspace:
    """The workspace named in the settings (`default` unless WORKBENCH_WORKSPACE or --workspace say)."""
    return Workspace(settings.data_dir, settings.workspace, create=create)


def resolve_finetuned(settings: Settings, workspace: Workspace | None = None) -> Settings:
    """Settings whose fine-tuned role is filled in: WORKBENCH_FT_MODEL / WORKBENCH_FT_LORA (or a
    session's choice) win; otherwise the workspace's active model (by default the shipped adapter)."""
    if settings.finetuned is not None:
        return settings
    active = (workspace or workspace_for(settings)).active_model()
    return replace(settings, finetuned=active.spec) if active else settings


def resolve_base(settings: Settings, workspace: Workspace | None = None) -> Settings:
    """Settings whose base role is the workspace's chosen model (`python -m lib models use NAME`, or Settings >
    Local models), unless the configuration (WORKBENCH_BASE_MODEL, a hosted provider, a session's Settings form)
    names the base model. A chosen model that is no longer downloaded leaves the configured one in force."""
    from lib import catalogue

    if settings.base_explicit:
        return settings
    choice = catalogue.chosen(workspace or workspace_for(settings))
    spec = catalogue.spec_for(settings.data_dir, choice) if choice else None
    return replace(settings, base=spec) if spec is not None else settings


def resolve_models(settings: Settings, workspace: Workspace | None = None) -> Settings:
    """Both roles filled in from the workspace where the configuration leaves them open (resolve_base,
    resolve_finetuned)."""
    ws = workspace or workspace_for(settings)
    return resolve_finetuned(resolve_base(settings, ws), ws)


def create_workspace(settings: Settings, name: str) -> Workspace:
    """A new, empty workspace (its records and its Chroma database)."""
    from lib.workspace import check_workspace_name, workspace_exists

    if workspace_exists(settings.data_dir, check_workspace_name(name)):
        raise ConfigError(f"A workspace named {name!r} already exists.")
    ws = Workspace(settings.data_dir, name, create=True)
    client_for(replace(settings, workspace=name))
    return ws


def delete_workspace(settings: Settings, name: str) -> None:
    """Delete a workspace with its knowledge bases, history, models and jobs."""
    from lib.store import delete_workspace_database
    from lib.workspace import check_workspace_name, delete_workspace_files, workspace_exists

    if check_workspace_name(name) == DEFAULT_WORKSPACE:
        raise ConfigError("The default workspace cannot be deleted.")
    if not workspace_exists(settings.data_dir, name):
        raise ConfigError(f"No workspace named {name!r}.")
    delete_workspace_database(settings.data_dir, settings.chroma_host, name)
    delete_workspace_files(settings.data_dir, name)
    with _clients_lock:
        for key in [k for k in _clients if k[2] == name]:
            _clients.pop(key)


# ---------------------------------------------------------------- workshop participants (lib/workshop.py)

def join_workshop(settings: Settings, name: str, client: str = "", code: str = "") -> Participant:
    """Join the workshop: a participant with their own new, empty workspace."""
    p = Workshop(settings.data_dir).join(name, client, settings.workshop, code)
    create_workspace(replace(settings, workspace=p.workspace), p.workspace)
    return p


def _participant(settings: Settings, token: str) -> Participant:
    p = Workshop(settings.data_dir).participant(token)
    if p is None:
        raise ConfigError("No such participant (already removed?).")
    return p


def _delete_if_there(settings: Settings, name: str) -> None:
    from lib.workspace import workspace_exists

    if workspace_exists(settings.data_dir, name):
        delete_workspace(settings, name)


def reset_participant(settings: Settings, token: str) -> Participant:
    """Empty a participant's workspace (knowledge bases, history, runs, models, jobs); their link keeps working.
    What they spent stays counted: a reset does not refund the caps."""
    p = _participant(settings, token)
    _delete_if_there(settings, p.workspace)
    create_workspace(replace(settings, workspace=p.workspace), p.workspace)
    return p


def remove_participant(settings: Settings, token: str) -> Participant:
    """Delete a participant's workspace and forget them: their link stops working."""
    p = _participant(settings, token)
    _delete_if_there(settings, p.workspace)
    Workshop(settings.data_dir).remove(p.token)
    return p


def merge_participants(settings: Settings, keep: str, duplicate: str) -> tuple[Participant, Participant]:
    """Merge a duplicate join into the participant to keep: the duplicate's link opens the kept workspace, the
    duplicate's workspace is deleted, and its spend counts as the kept participant's."""
    kept, dup = Workshop(settings.data_dir).merge(keep, duplicate)
    _delete_if_there(settings, dup.workspace)
    return kept, dup


def ingest_document(kb: KnowledgeBase, name: str, load: Callable[[], object], size: int, overlap: int,
                    progress: Progress | None = None) -> IngestResult:
    """Load, chunk, embed and store one file; any failure leaves nothing of it behind."""
    t0 = time.monotonic()
    report = progress or (lambda *_: None)
    try:
        report(name, "parsing", 0.0)
        doc = load()
        from lib.documents import Document

        assert isinstance(doc, Document)
        same = kb.find(name=doc.name)  # "unchanged" only for this name with this content, stored complete
        if same is not None and same.sha256 == doc.sha256 and kb.complete(doc.name):
            report(name, "unchanged", 1.0)
            return IngestResult(name, "unchanged", same.chunks, same.tokens, ms=(time.monotonic() - t0) * 1000)
        chunks = chunk_text(doc.text, kb.embedder.spans, size, overlap)
        if len(chunks) > MAX_CHUNKS_PER_DOCUMENT:
            raise UserError(f"{name} makes {len(chunks):,} chunks; the limit is {MAX_CHUNKS_PER_DOCUMENT:,} per "
                             "document. Split it into smaller files, or use a larger chunk size.")
        report(name, "embedding", 0.1)
        parts = []
        for s in range(0, len(chunks), EMBED_BATCH):
            with _turn(kb.embedder):
                parts.append(kb.embedder.embed([c.text for c in chunks[s:s + EMBED_BATCH]]))
            report(name, "embedding", 0.1 + 0.8 * min(1.0, (s + EMBED_BATCH) / len(chunks)))
        report(name, "storing", 0.9)
        added = kb.add_document(doc, chunks, np.concatenate(parts) if parts else None)
        report(name, added.status, 1.0)
        return IngestResult(name, added.status, added.chunks, added.tokens, ms=(time.monotonic() - t0) * 1000)
    except (DocumentError, ConfigError, ValueError) as exc:
        report(name, "error", 1.0)
        return IngestResult(name, "error", error=str(exc), ms=(time.monotonic() - t0) * 1000)
    except Exception as exc:  # a broken store or embedder: still one file's error, not a crash
        report(name, "error", 1.0)
        return IngestResult(name, "error", error=f"{type(exc).__name__}: {exc}", ms=(time.monotonic() - t0) * 1000)


def ingest_paths(kb: KnowledgeBase, paths: Iterable[str | Path], size: int = DEFAULT_CHUNK_TOKENS,
                 overlap: int = DEFAULT_OVERLAP_TOKENS, max_bytes: int = 20 * 1024 * 1024,
                 progress: Progress | None = None) -> list[IngestResult]:
    validate(size, overlap)
    files, skipped = expand_paths(list(paths))
    results = [IngestResult(safe_name(str(p)), "skipped", error="not a supported document type") for p in skipped]
    for path, name in files:
        results.append(ingest_document(kb, name, lambda p=path, n=name: load_path(p, max_bytes, n), size,
                                       overlap, progress))
    return results


def ingest_upload(kb: KnowledgeBase, name: str, data: bytes, size: int = DEFAULT_CHUNK_TOKENS,
                  overlap: int = DEFAULT_OVERLAP_TOKENS, max_bytes: int = 20 * 1024 * 1024,
                  progress: Progress | None = None) -> IngestResult:
    validate(size, overlap)
    name = safe_name(name)  # the name as stored and shown: valid text, control and bidirectional characters escaped
    return ingest_document(kb, name, lambda: load_bytes(name, data, max_bytes), size, overlap, progress)


def ingest_in_background(run: Callable[[Progress], list[IngestResult]]) -> object:
    """Ingest in a thread of its own (a lib.jobs.Job): a page that started it may be left, or rerun, and the files
    are still stored; the page follows the job's progress (`statuses()`: file -> "FRACTION STAGE") and shows its
    results when it is opened again."""
    from lib.jobs import Job

    def work(on_delta: Callable[[str, str], None], on_status: Callable[[str, str], None]) -> list[IngestResult]:
        return run(lambda name, stage, fraction: on_status(name, f"{fraction:.3f} {stage}"))

    return Job(work, statuses=True).start()


def providers_for(settings: Settings) -> dict[str, Provider | Exception]:
    """role -> provider, or the exception that explains why that role has none. Hosted providers come through
    the gateway (lib/gateway.py): with spend caps set each request is checked and recorded."""
    from lib import gateway

    return gateway.providers(settings)


def ask(settings: Settings, question: str, arms: list[str] | tuple[str, ...], kb: KnowledgeBase | None = None,
        params: GenParams = GenParams(), top_k: int = 4, min_score: float = 0.0,
        providers: dict[str, Provider | Exception] | None = None,
        on_delta: Callable[[str, str], None] | None = None,
        on_status: Callable[[str, str], None] | None = None) -> Comparison:
    from lib.records import RetrievalParams

    comparison = compare(question, arms, kb, providers if providers is not None else providers_for(settings),
                         params, RetrievalParams(top_k, min_score), on_delta, on_status, settings.context_windows)
    return with_provenance(settings, comparison, kb)


def with_provenance(settings: Settings, comparison: Comparison, kb: KnowledgeBase | None) -> Comparison:
    """Fine-tuned arms' answers carry what the model was trained on, and warnings when this knowledge base is
    not what it was trained on (or changed since)."""
    from lib.arms import ARMS

    tuned = [r for r in comparison.results if ARMS[r.arm].role == "finetuned" and r.model]
    if not tuned or settings.finetuned is None:
        return comparison
    stamp = provenance_stamp(settings, kb)
    return replace(comparison, results=tuple(stamp(r) if r in tuned else r for r in comparison.results))


def provenance_stamp(settings: Settings, kb: KnowledgeBase | None) -> Callable[[ArmResult], ArmResult]:
    """What the fine-tuned model was trained on, looked up once: a function that adds it to a fine-tuned arm's
    result (its model card, and warnings when this knowledge base is not what it was trained on, or changed since).
    Compare's answers and an evaluation run's carry the same."""
    from lib import provenance

    if settings.finetuned is None:
        return lambda r: r
    try:
        model = provenance.find_model(workspace_for(settings, create=False), settings.finetuned)
    except ConfigError:
        model = None
    documents = kb.documents() if kb is not None else []
    notes = tuple(provenance.warnings(model, kb.name if kb is not None else None, documents))
    card = provenance.trained_on(model) if model is not None else None
    return lambda r: replace(r, warnings=(*r.warnings, *notes), trained_on=card) if r.model else r


# ---------------------------------------------------------------- helpers the pages call

SAMPLE_DOCS = Path(__file__).resolve().parent.parent / "sample_docs"
SAMPLE_QUESTIONS = SAMPLE_DOCS / "questions.jsonl"
SAMPLE_KB = "sample"  # the knowledge base the Start page's one-click sample goes into
_embedders: dict[str, Embedder] = {}


def embedder_for(settings: Settings) -> Embedder:
    """The offline embedder is loaded once per process and shared (it is read-only)."""
    from lib import gateway

    def hosted() -> object:
        return gateway.embeddings(settings)

    if settings.embedder != "minilm":
        return make_embedder(settings, hosted)
    if "minilm" not in _embedders:
        _embedders["minilm"] = make_embedder(settings, hosted)
    return _embedders["minilm"]


def sample_questions() -> list[dict[str, object]]:
    import json

    return [json.loads(line) for line in SAMPLE_QUESTIONS.read_text().splitlines() if line.strip()]


def load_sample_corpus(kb: KnowledgeBase, progress: Progress | None = None) -> list[IngestResult]:
    return [r for r in ingest_paths(kb, [SAMPLE_DOCS], progress=progress) if r.status != "skipped"]


def has_sample_corpus(kb: KnowledgeBase) -> bool:
    names = {d.name for d in kb.documents()}
    return {"refund_policy.md", "warranty.pdf"} <= names


def connection_test(settings: Settings, role: str = "base") -> tuple[bool, str]:
    """Can the model for `role` answer? One tiny request through the gateway; the message says what is wrong."""
    from lib import gateway

    return gateway.connection_test(settings, role)
