"""The only module that touches Chroma: open a knowledge base (an embedded
persistent store under a folder, or a Chroma server), add a document atomically,
list, preview, remove and query."""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lib.chunking import Chunk
from lib.documents import Document
from lib.embeddings import Embedder
from lib.errors import ConfigError, UserError
from lib.records import Source
from lib.store_ledger import DocumentLedger, DocumentVersion

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,61}[a-zA-Z0-9]$")
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
        check_store_file(Path(data_dir or "data") / "chroma")  # before Chroma opens it (see there)
    return chromadb.AdminClient(_chroma_settings(data_dir, host))


class StoreError(ConfigError):
    """The knowledge-base store cannot be used; one line naming the store and what to do."""


def store_error(exc: BaseException, where: str | Path) -> StoreError:
    """A Chroma failure as one plain line that names the store (no traceback)."""
    detail = " ".join(str(exc).split())[:300]
    return StoreError(f"The knowledge-base store {where} could not be used ({type(exc).__name__}: {detail}). It was "
                      "left as it is: restore it from a backup, or move it aside to start with an empty store.")


_store_checked: set[str] = set()  # embedded stores checked in this process (before Chroma first opened them)


def check_store_file(path: str | Path) -> None:
    """An embedded store's chroma.sqlite3 that is empty, truncated or not a database is reported before Chroma
    opens it (Chroma would start an empty one in an empty file, and fail with a traceback on the others). Checked
    once per process, strictly before Chroma opens it: closing any other handle on a file that Chroma holds open
    would drop its locks."""
    from lib.db import sqlite_file_problem

    db = Path(path) / "chroma.sqlite3"
    key = str(db.resolve())
    if key in _store_checked:
        return
    problem = sqlite_file_problem(db)
    if problem:
        raise StoreError(f"The knowledge-base store {db} is damaged ({problem}). It was left as it is: restore it "
                         "from a backup, or move the chroma folder aside to start with an empty store.")
    _store_checked.add(key)


def open_client(data_dir: str | Path | None = None, host: str | None = None, workspace: str = "default") -> Any:
    """A client for a workspace's Chroma database: embedded (PersistentClient under data_dir/chroma)
    or a Chroma server ("host:port"). The database is created on first use, the same way for both.
    A damaged store, or any failure opening it, is one plain line naming it (StoreError)."""
    where = host or Path(data_dir or "data") / "chroma"
    if not host:
        check_store_file(where)
    try:
        return _open_client(data_dir, host, workspace)
    except ConfigError:
        raise
    except Exception as exc:
        raise store_error(exc, where) from exc


def _open_client(data_dir: str | Path | None, host: str | None, workspace: str) -> Any:
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
class AddResult:
    status: str  # "ingested" | "unchanged" (this name, this content, stored complete) | "replaced"
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


def _batch_size(client: Any) -> int:
    """How many records one Chroma `add` takes (about 5,461 for the embedded store)."""
    return max(1, int(client.get_max_batch_size()))


def _ledger_of(client: Any) -> DocumentLedger:
    """The document ledger of an embedded client's workspace (its data folder and Chroma database); a server's
    client cannot say which data folder holds the commit records, so pass the ledger."""
    settings = client.get_settings()
    if not getattr(settings, "is_persistent", False) or not settings.persist_directory:
        raise ConfigError("A knowledge base on a Chroma server needs its workspace: open it with lib.engine.open_kb.")
    database = str(getattr(client, "database", DEFAULT_DATABASE))
    name = "default" if database == DEFAULT_DATABASE else database.removeprefix("workspace-")
    return DocumentLedger.of(Path(settings.persist_directory).parent, name)


class KnowledgeBase:
    """One Chroma collection, built by one embedder.

    Every document version is written under a fresh ingest id (in each chunk's metadata) and recorded in the
    workspace's document ledger (lib/store_ledger.py): `writing` while its chunks go in (in batches of at most the
    store's batch size), `committed` in one transaction after the last chunk, which also marks the version it replaces
    `superseded`. Readers (documents, find, chunks_of, count, query) see committed versions only, so a
    document is visible only when complete and a replacement switches at once. Opening a knowledge base
    deletes the chunks of versions left `writing` by a dead writer and of `superseded` versions. A
    per-document lock (held across processes) lets one writer at a time replace a document."""

    def __init__(self, client: Any, name: str, embedder: Embedder, create: bool = True,
                 ledger: DocumentLedger | None = None) -> None:
        self.client = client
        self.name = check_name(name)
        self.embedder = embedder
        try:
            self._open(create, ledger)
        except ConfigError:
            raise
        except Exception as exc:  # a damaged store: one line naming it, never a traceback
            settings = getattr(client, "get_settings", lambda: None)()
            where = getattr(settings, "persist_directory", None) or getattr(settings, "chroma_server_host", None) \
                or "(Chroma)"
            raise store_error(exc, where) from exc

    def _open(self, create: bool, ledger: DocumentLedger | None) -> None:
        client, name, embedder = self.client, self.name, self.embedder
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
        self.ledger = ledger or _ledger_of(client)
        self.key = str(self.collection.id)
        self._adopt()
        self.recover()

    # ------------------------------------------------------------ commit records

    def _adopt(self) -> None:
        """A knowledge base stored before commit records existed: record its documents as committed (the
        newest version of each name; chunks of an older version left beside it are deleted)."""
        if self.ledger.collection_adopted(self.key):
            return
        with self.ledger.document_lock(self.key, "\0adopt"):
            if self.ledger.collection_adopted(self.key):
                return
            got = self.collection.get(include=["metadatas"]) if self.collection.count() else {"ids": []}
            groups: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
            for cid, m in zip(got["ids"], got.get("metadatas") or []):
                if m and "ingest" not in m:
                    groups.setdefault((str(m["document"]), str(m["doc_sha"])), []).append((cid, dict(m)))
            newest: dict[str, tuple[float, str]] = {}
            for (doc, sha), rows in groups.items():
                added = max(float(m.get("added_at", 0.0)) for _, m in rows)
                if doc not in newest or added > newest[doc][0]:
                    newest[doc] = (added, sha)
            versions, stale = [], []
            for (doc, sha), rows in groups.items():
                if newest[doc][1] != sha:
                    stale += [cid for cid, _ in rows]
                    continue
                ingest = f"legacy-{uuid.uuid4().hex[:16]}"
                step = _batch_size(self.client)
                for s in range(0, len(rows), step):
                    part = rows[s:s + step]
                    self.collection.update(ids=[cid for cid, _ in part],
                                           metadatas=[{**m, "ingest": ingest} for _, m in part])  # type: ignore[misc]
                added = newest[doc][0]
                versions.append(DocumentVersion(self.key, ingest, doc, sha, str(rows[0][1].get("kind", "")),
                                                len(rows), sum(int(m.get("tokens", 0)) for _, m in rows),
                                                "committed", None, added, added))
            if stale:
                self.collection.delete(ids=stale)
            self.ledger.adopt_collection(self.key, versions)

    def _delete_version(self, ingest: str) -> None:
        self.collection.delete(where={"ingest": ingest})
        self.ledger.drop_version(self.key, ingest)

    def recover(self) -> int:
        """Delete what a crashed or failed writer left: versions still `writing` whose writer is gone (its
        document lock is free) and `superseded` versions. Returns how many versions were cleaned up."""
        cleaned = 0
        for v in self.ledger.document_versions(self.key, "superseded"):
            self._delete_version(v.ingest)
            cleaned += 1
        for v in self.ledger.document_versions(self.key, "writing"):
            with self.ledger.document_lock(self.key, v.name, wait=False) as held:
                still = [w for w in self.ledger.document_versions(self.key, "writing", v.name)
                         if w.ingest == v.ingest]
                if held and still:  # nobody is writing this document now: the writer died
                    self._delete_version(v.ingest)
                    cleaned += 1
        return cleaned

    def _committed(self) -> dict[str, Any]:
        return {v.name: v for v in self.ledger.document_versions(self.key, "committed")}

    @staticmethod
    def _info(v: Any) -> DocumentInfo:
        return DocumentInfo(v.name, v.sha256, v.kind, v.chunks, v.tokens, float(v.committed_at or v.created_at))

    # ------------------------------------------------------------ readers: committed versions only

    def count(self) -> int:
        """Chunks of committed documents."""
        return sum(v.chunks for v in self._committed().values())

    def find(self, *, name: str | None = None, sha256: str | None = None) -> DocumentInfo | None:
        docs = self._committed().values()
        found = [v for v in docs if (v.name == name if name is not None else v.sha256 == sha256)]
        return self._info(found[0]) if found else None

    def documents(self) -> list[DocumentInfo]:
        return [self._info(v) for v in sorted(self._committed().values(), key=lambda v: v.name)]

    def chunks_of(self, name: str) -> list[Source]:
        v = self._committed().get(name)
        if v is None:
            return []
        got = self.collection.get(where={"ingest": v.ingest}, include=["documents", "metadatas"])
        rows = sorted(zip(got["metadatas"] or [], got["documents"] or []), key=lambda r: int(r[0]["chunk"]))
        return [Source(name, int(m["chunk"]), 1.0, text) for m, text in rows]

    def complete(self, name: str) -> bool:
        """Whether the committed version of `name` has all its chunks in the store."""
        v = self._committed().get(name)
        return v is not None and self._stored_chunks(v.ingest) == v.chunks

    def _stored_chunks(self, ingest: str) -> int:
        return len(self.collection.get(where={"ingest": ingest}, include=[])["ids"])

    # ------------------------------------------------------------ writers

    def add_document(self, doc: Document, chunks: list[Chunk], vectors: np.ndarray | None = None) -> AddResult:
        """Store a document's chunks under its name, all or nothing (see the class). The same content under
        the same name, stored complete, is `unchanged`; the same content under another name is stored under
        this name too; a new version under an existing name replaces the old one atomically."""
        tokens = sum(c.tokens for c in chunks)
        with self.ledger.document_lock(self.key, doc.name):
            current = self._committed().get(doc.name)
            if current is not None and current.sha256 == doc.sha256 and \
                    self._stored_chunks(current.ingest) == current.chunks:
                return AddResult("unchanged", current.chunks, current.tokens, existing_name=current.name)
            if not chunks:
                raise UserError(f"{doc.name} produced no chunks.")
            if vectors is None:
                vectors = self.embedder.embed([c.text for c in chunks])
            ingest = uuid.uuid4().hex[:20]
            now = time.time()
            ids = [f"{ingest}-{c.index:05d}" for c in chunks]
            metas: list[dict[str, Any]] = [
                {"document": doc.name, "chunk": c.index, "doc_sha": doc.sha256, "chunk_sha": c.sha256,
                 "tokens": c.tokens, "start_char": c.start_char, "end_char": c.end_char, "kind": doc.kind,
                 "added_at": now, "ingest": ingest} for c in chunks]
            self.ledger.begin_version(self.key, ingest, doc.name, doc.sha256, doc.kind, len(chunks), tokens)
            step = _batch_size(self.client)
            try:
                for s in range(0, len(ids), step):
                    self.collection.add(ids=ids[s:s + step], documents=[c.text for c in chunks[s:s + step]],
                                        metadatas=metas[s:s + step],  # type: ignore[arg-type]
                                        embeddings=[v for v in vectors[s:s + step]])
                old = self.ledger.commit_version(self.key, ingest)
            except BaseException:
                with contextlib.suppress(Exception):  # else the next open cleans it up
                    self._delete_version(ingest)
                raise
            for previous in old:  # a failure here leaves it `superseded`: hidden, deleted on the next open
                with contextlib.suppress(Exception):
                    self._delete_version(previous)
            return AddResult("replaced" if old else "ingested", len(chunks), tokens)

    def remove_document(self, name: str) -> int:
        with self.ledger.document_lock(self.key, name):
            current = self._committed().get(name)
            for ingest in self.ledger.supersede(self.key, name):
                self._delete_version(ingest)
            return current.chunks if current else 0

    def query(self, text: str, k: int = 4, min_score: float = 0.0) -> list[Source]:
        """The k most similar chunks scoring at least min_score, best first."""
        committed = list(self._committed().values())
        n = sum(v.chunks for v in committed)
        if n == 0 or k <= 0:
            return []
        vector = self.embedder.embed([text])
        ingests = [v.ingest for v in committed]
        where = {"ingest": ingests[0]} if len(ingests) == 1 else {"ingest": {"$in": ingests}}
        got = self.collection.query(query_embeddings=[vector[0]], n_results=min(k, n), where=where,
                                    include=["documents", "metadatas", "distances"])
        out = []
        for meta, doc, dist in zip(got["metadatas"][0], got["documents"][0], got["distances"][0]):  # type: ignore[index]
            score = round(1.0 - float(dist), 4)
            if score >= min_score:
                out.append(Source(str(meta["document"]), int(meta["chunk"]), score, doc))  # type: ignore[arg-type]
        return out


def document_text(kb: KnowledgeBase, name: str) -> str:
    """A stored document's text (its committed version), stitched back from its chunks' character spans."""
    version = kb._committed().get(name)
    if version is None:
        raise ConfigError(f"No document named {name!r} in knowledge base {kb.name!r}.")
    got = kb.collection.get(where={"ingest": version.ingest}, include=["documents", "metadatas"])
    rows = sorted(zip(got["metadatas"] or [], got["documents"] or []), key=lambda r: int(r[0]["start_char"]))
    text, end = "", 0
    for meta, chunk in rows:
        start, stop = int(meta["start_char"]), int(meta["end_char"])
        if stop <= end:
            continue
        text += chunk[max(0, end - start):]
        end = stop
    return text


def copy_knowledge_base(kb: KnowledgeBase, new_name: str) -> KnowledgeBase:
    """A new knowledge base holding the committed documents of `kb` (texts, metadata and vectors; nothing
    re-embedded), each committed in the copy as it is in the original."""
    if new_name in list_knowledge_bases(kb.client):
        raise ConfigError(f"A knowledge base named {new_name!r} already exists.")
    copy = KnowledgeBase(kb.client, new_name, kb.embedder, create=True, ledger=kb.ledger)
    step = _batch_size(kb.client)
    for v in kb._committed().values():
        got = kb.collection.get(where={"ingest": v.ingest}, include=["documents", "metadatas", "embeddings"])
        ingest = uuid.uuid4().hex[:20]
        ids = [f"{ingest}-{int(m['chunk']):05d}" for m in got["metadatas"]]  # type: ignore[union-attr]
        metas = [{**m, "ingest": ingest} for m in got["metadatas"]]  # type: ignore[union-attr]
        copy.ledger.begin_version(copy.key, ingest, v.name, v.sha256, v.kind, v.chunks, v.tokens)
        for s in range(0, len(ids), step):
            copy.collection.add(ids=ids[s:s + step], documents=list(got["documents"][s:s + step]),  # type: ignore[index]
                                metadatas=metas[s:s + step],  # type: ignore[arg-type]
                                embeddings=[e for e in got["embeddings"][s:s + step]])  # type: ignore[index]
        copy.ledger.commit_version(copy.key, ingest)
    return copy
