"""The only module that touches Chroma: open a knowledge base (an embedded
persistent store under a folder, or a Chroma server), add a document atomically,
list, preview, remove and query."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lib.chunking import Chunk
from lib.documents import Document
from lib.embeddings import Embedder
from lib.errors import ConfigError

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,61}[a-zA-Z0-9]$")
_locks: dict[str, threading.Lock] = {}  # per collection: one writer at a time in this process
_locks_guard = threading.Lock()


def _lock(key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


DEFAULT_DATABASE = "default_database"  # Chroma's own default: the `default` workspace's knowledge bases


def workspace_database(workspace: str) -> str:
    """The Chroma database (in the default tenant) that holds a workspace's knowledge bases.
    The `default` workspace uses Chroma's default database, so existing collections belong to it."""
    return DEFAULT_DATABASE if workspace in ("", "default") else f"workspace-{workspace}"


def _chroma_settings(data_dir: str | Path | None, host: str | None) -> Any:
    from chromadb.config import Settings as ChromaSettings

    if host:
        hostname, _, port = host.rpartition(":")
        return ChromaSettings(anonymized_telemetry=False, allow_reset=False,
                              chroma_api_impl="chromadb.api.fastapi.FastAPI",
                              chroma_server_host=hostname or host, chroma_server_http_port=int(port or 8000))
    return ChromaSettings(anonymized_telemetry=False, allow_reset=False, is_persistent=True,
                          persist_directory=str(Path(data_dir or "data") / "chroma"))


def _admin(data_dir: str | Path | None, host: str | None) -> Any:
    import chromadb

    if not host:
        (Path(data_dir or "data") / "chroma").mkdir(parents=True, exist_ok=True)
    return chromadb.AdminClient(_chroma_settings(data_dir, host))


def open_client(data_dir: str | Path | None = None, host: str | None = None, workspace: str = "default") -> Any:
    """A client for a workspace's Chroma database: embedded (PersistentClient under data_dir/chroma)
    or a Chroma server ("host:port"). The database is created on first use, the same way for both."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    database = workspace_database(workspace)
    if database != DEFAULT_DATABASE:
        admin = _admin(data_dir, host)
        try:
            admin.get_database(database)
        except Exception:  # NotFoundError (embedded) or its HTTP equivalent
            admin.create_database(database)
    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if host:
        hostname, _, port = host.rpartition(":")
        return chromadb.HttpClient(host=hostname or host, port=int(port or 8000), settings=chroma_settings,
                                   database=database)
    path = Path(data_dir or "data") / "chroma"
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings, database=database)


def delete_workspace_database(data_dir: str | Path | None, host: str | None, workspace: str) -> None:
    """Delete every knowledge base of a workspace, then its Chroma database."""
    database = workspace_database(workspace)
    if database == DEFAULT_DATABASE:
        raise ConfigError("The default workspace's knowledge bases are not deleted with a workspace.")
    admin = _admin(data_dir, host)
    try:
        admin.get_database(database)
    except Exception:
        return
    client = open_client(data_dir, host, workspace)
    for name in list_knowledge_bases(client):
        client.delete_collection(name)
    admin.delete_database(database)


def check_name(name: str) -> str:
    """Chroma's rules for a collection name, checked here so the message says the rule, not a traceback."""
    rule = ("use 3-63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit, with no '..', "
            "and not an IP address")
    if not _NAME.match(name or "") or ".." in name or re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", name):
        raise ConfigError(f"{name!r} is not a valid knowledge base name: {rule}.")
    return name


@dataclass(frozen=True)
class DocumentInfo:
    name: str
    sha256: str
    kind: str
    chunks: int
    tokens: int
    added_at: float  # unix time


@dataclass(frozen=True)
class Source:
    """A retrieved chunk: what the arms saw and what citations [n] point to."""

    document: str
    chunk: int
    score: float  # cosine similarity, 1 = identical
    text: str


@dataclass(frozen=True)
class AddResult:
    status: str  # "ingested" | "unchanged" | "replaced"
    chunks: int
    tokens: int
    existing_name: str | None = None


def list_knowledge_bases(client: Any) -> list[str]:
    return sorted(c if isinstance(c, str) else c.name for c in client.list_collections())


def delete_knowledge_base(client: Any, name: str) -> None:
    client.delete_collection(check_name(name))


def embedder_identity(embedder: Any) -> str:
    """What vectors a collection holds: the embedder's kind, model and dimension."""
    ident = getattr(embedder, "identity", None)
    return ident() if callable(ident) else f"{embedder.name()}/{getattr(embedder, 'model_id', '')}"


def check_embedder(name: str, meta: dict[str, Any], embedder: Any) -> None:
    """Refuse to open a collection with an embedder other than the one that built it."""
    built = meta.get("embedder_id")
    if built:
        same = built == embedder_identity(embedder)
        built_label = str(built)
    else:  # collections of the first release recorded the kind and model name only
        same = meta.get("embedder") in (None, embedder.name()) and meta.get("embedder_model", "") in (
            "", getattr(embedder, "model_id", ""))
        built_label = str(meta.get("embedder_model") or meta.get("embedder"))
    if not same:
        raise ConfigError(
            f"Knowledge base {name!r} was built with the embedder {built_label!r}, not "
            f"{embedder_identity(embedder)!r}: vectors from two models (or two dimensions) cannot be compared. "
            "Switch the embedder back, or ingest into a new knowledge base.")


class KnowledgeBase:
    """One Chroma collection, built by one embedder."""

    def __init__(self, client: Any, name: str, embedder: Embedder, create: bool = True) -> None:
        self.client = client
        self.name = check_name(name)
        self.embedder = embedder
        existing = name in list_knowledge_bases(client)
        if not existing and not create:
            raise ConfigError(f"No knowledge base named {name!r}. Create it by ingesting documents into it.")
        if existing:
            meta = client.get_collection(name, embedding_function=None).metadata or {}
            check_embedder(name, meta, embedder)
        self.collection = client.get_or_create_collection(
            name,
            embedding_function=embedder,  # type: ignore[arg-type]
            metadata={"embedder": embedder.name(), "embedder_model": getattr(embedder, "model_id", ""),
                      "embedder_id": embedder_identity(embedder), "hnsw:space": "cosine", "created_at": time.time()},
        )

    def count(self) -> int:
        return int(self.collection.count())

    def _metadatas(self, where: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        got = self.collection.get(where=where, include=["metadatas"])
        return [dict(m) for m in (got["metadatas"] or [])]

    def find(self, *, name: str | None = None, sha256: str | None = None) -> DocumentInfo | None:
        where = {"document": name} if name else {"doc_sha": sha256}
        docs = self._summarise(self._metadatas(where))
        return docs[0] if docs else None

    @staticmethod
    def _summarise(metas: list[dict[str, Any]]) -> list[DocumentInfo]:
        by_name: dict[str, dict[str, Any]] = {}
        for m in metas:
            d = by_name.setdefault(m["document"], {"sha": m["doc_sha"], "kind": m.get("kind", ""), "chunks": 0,
                                                   "tokens": 0, "added_at": m.get("added_at", 0.0)})
            d["chunks"] += 1
            d["tokens"] += int(m.get("tokens", 0))
        return [DocumentInfo(name, d["sha"], d["kind"], d["chunks"], d["tokens"], float(d["added_at"]))
                for name, d in sorted(by_name.items())]

    def documents(self) -> list[DocumentInfo]:
        return self._summarise(self._metadatas())

    def chunks_of(self, name: str) -> list[Source]:
        got = self.collection.get(where={"document": name}, include=["documents", "metadatas"])
        rows = sorted(zip(got["metadatas"] or [], got["documents"] or []), key=lambda r: int(r[0]["chunk"]))
        return [Source(name, int(m["chunk"]), 1.0, text) for m, text in rows]

    def add_document(self, doc: Document, chunks: list[Chunk], vectors: np.ndarray | None = None) -> AddResult:
        """Store a document's chunks, all or nothing. The same content (by hash) is
        stored once; a new version under the same name replaces the old one."""
        tokens = sum(c.tokens for c in chunks)
        with _lock(f"{id(self.client)}:{self.name}"):
            same = self.find(sha256=doc.sha256)
            if same is not None:
                return AddResult("unchanged", same.chunks, same.tokens, existing_name=same.name)
            if not chunks:
                raise ValueError(f"{doc.name} produced no chunks.")
            if vectors is None:
                vectors = self.embedder.embed([c.text for c in chunks])
            old = self.collection.get(where={"document": doc.name}, include=[])["ids"]
            now = time.time()
            ids = [f"{doc.sha256[:24]}-{c.index:05d}" for c in chunks]
            metas: list[dict[str, Any]] = [
                {"document": doc.name, "chunk": c.index, "doc_sha": doc.sha256, "chunk_sha": c.sha256,
                 "tokens": c.tokens, "start_char": c.start_char, "end_char": c.end_char, "kind": doc.kind,
                 "added_at": now} for c in chunks]
            step = max(1, int(self.client.get_max_batch_size()))
            try:
                for s in range(0, len(ids), step):
                    self.collection.add(ids=ids[s:s + step], documents=[c.text for c in chunks[s:s + step]],
                                        metadatas=metas[s:s + step],  # type: ignore[arg-type]
                                        embeddings=[v for v in vectors[s:s + step]])
            except BaseException:
                self.collection.delete(ids=ids)  # leave nothing of this file behind
                raise
            if old:
                self.collection.delete(ids=old)
            return AddResult("replaced" if old else "ingested", len(chunks), tokens)

    def remove_document(self, name: str) -> int:
        with _lock(f"{id(self.client)}:{self.name}"):
            ids = self.collection.get(where={"document": name}, include=[])["ids"]
            if ids:
                self.collection.delete(ids=ids)
            return len(ids)

    def query(self, text: str, k: int = 4, min_score: float = 0.0) -> list[Source]:
        """The k most similar chunks scoring at least min_score, best first."""
        n = self.count()
        if n == 0 or k <= 0:
            return []
        vector = self.embedder.embed([text])
        got = self.collection.query(query_embeddings=[vector[0]], n_results=min(k, n),
                                    include=["documents", "metadatas", "distances"])
        out = []
        for meta, doc, dist in zip(got["metadatas"][0], got["documents"][0], got["distances"][0]):  # type: ignore[index]
            score = round(1.0 - float(dist), 4)
            if score >= min_score:
                out.append(Source(str(meta["document"]), int(meta["chunk"]), score, doc))  # type: ignore[arg-type]
        return out


def document_text(kb: KnowledgeBase, name: str) -> str:
    """A stored document's text, stitched back from its chunks' character spans (chunks overlap)."""
    got = kb.collection.get(where={"document": name}, include=["documents", "metadatas"])
    rows = sorted(zip(got["metadatas"] or [], got["documents"] or []), key=lambda r: int(r[0]["start_char"]))
    if not rows:
        raise ConfigError(f"No document named {name!r} in knowledge base {kb.name!r}.")
    text, end = "", 0
    for meta, chunk in rows:
        start, stop = int(meta["start_char"]), int(meta["end_char"])
        if stop <= end:
            continue
        text += chunk[max(0, end - start):]
        end = stop
    return text


def copy_knowledge_base(kb: KnowledgeBase, new_name: str) -> KnowledgeBase:
    """A new knowledge base holding exactly the records of `kb` (texts, metadata and vectors; nothing re-embedded)."""
    if new_name in list_knowledge_bases(kb.client):
        raise ConfigError(f"A knowledge base named {new_name!r} already exists.")
    copy = KnowledgeBase(kb.client, new_name, kb.embedder, create=True)
    got = kb.collection.get(include=["documents", "metadatas", "embeddings"])
    ids = list(got["ids"])
    step = max(1, int(kb.client.get_max_batch_size()))
    for s in range(0, len(ids), step):
        copy.collection.add(ids=ids[s:s + step], documents=list(got["documents"][s:s + step]),  # type: ignore[index]
                            metadatas=list(got["metadatas"][s:s + step]),  # type: ignore[index]
                            embeddings=[v for v in got["embeddings"][s:s + step]])  # type: ignore[index]
    return copy
