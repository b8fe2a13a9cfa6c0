"""The knowledge-base store's commit protocol (lib/store.py): the versions of each document, recorded in the
workspace's database, and a lock per document held across threads and processes.

A version is `writing` while its chunks go into Chroma, `committed` (the one readers see, at most one per name)
in one transaction after the last chunk, which also marks the version it replaces `superseded`; chunks of a
`superseded` version, or of a `writing` one whose writer died, are deleted by the next open.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.db import Database, WorkspaceError, workspace_database


@dataclass(frozen=True)
class DocumentVersion:
    """One stored version of a document in a knowledge base (see lib.db._m003_document_versions)."""

    collection: str
    ingest: str  # the id every chunk of this version carries in its metadata
    name: str
    sha256: str
    kind: str
    chunks: int
    tokens: int
    status: str  # writing | committed | superseded
    pid: int | None
    created_at: float
    committed_at: float | None


_COLUMNS = "collection, ingest, name, sha256, kind, chunks, tokens, status, pid, created_at, committed_at"


class DocumentLedger:
    """The document versions of one workspace's knowledge bases, and their locks (files under `locks`)."""

    def __init__(self, db: Database, locks: Path) -> None:
        self.db, self.locks = db, Path(locks)

    @classmethod
    def of(cls, data_dir: str | Path, workspace: str) -> DocumentLedger:
        """The ledger of a workspace in a data folder (its database made on first use)."""
        db = workspace_database(data_dir, workspace)
        return cls(db, db.path.parent / "locks")

    @contextmanager
    def document_lock(self, collection: str, name: str, wait: bool = True) -> Iterator[bool]:
        """Hold the lock on one document of a knowledge base, across threads and processes (an fcntl lock
        on a file under the workspace folder: the system releases it when its holder dies, even by kill -9).
        Yields True once held; with wait=False yields False at once if somebody else holds it."""
        self.locks.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(f"{collection}\0{name}".encode()).hexdigest()[:32]
        fd = os.open(self.locks / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def document_versions(self, collection: str, status: str | None = None,
                          name: str | None = None) -> list[DocumentVersion]:
        sql = f"SELECT {_COLUMNS} FROM document_versions WHERE collection = ?"
        args: list[Any] = [collection]
        if status:
            sql, args = sql + " AND status = ?", [*args, status]
        if name is not None:
            sql, args = sql + " AND name = ?", [*args, name]
        with self.db.connect() as con:
            return [DocumentVersion(*row) for row in con.execute(sql + " ORDER BY name, created_at", args)]

    def begin_version(self, collection: str, ingest: str, name: str, sha256: str, kind: str, chunks: int,
                      tokens: int) -> None:
        """Record a version about to be written (invisible to readers until commit_version)."""
        with self.db.write() as con:
            con.execute(f"INSERT INTO document_versions ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (collection, ingest, name, sha256, kind, chunks, tokens, "writing", os.getpid(),
                         time.time(), None))

    def _committed_ingests(self, con: Any, collection: str, name: str) -> list[str]:
        """Mark the committed version of `name` superseded; returns its ingest ids (their chunks to delete)."""
        old = [r[0] for r in con.execute(
            "SELECT ingest FROM document_versions WHERE collection = ? AND name = ? AND status = 'committed'",
            (collection, name))]
        con.execute("UPDATE document_versions SET status = 'superseded' WHERE collection = ? AND name = ? "
                    "AND status = 'committed'", (collection, name))
        return old

    def commit_version(self, collection: str, ingest: str) -> list[str]:
        """In one transaction: the version becomes the one readers see and the name's previous committed
        version becomes `superseded`. Returns the superseded versions' ingest ids (their chunks to delete)."""
        with self.db.write() as con:
            row = con.execute("SELECT name FROM document_versions WHERE collection = ? AND ingest = ? AND "
                              "status = 'writing'", (collection, ingest)).fetchone()
            if row is None:
                raise WorkspaceError(f"Document version {ingest} is not being written; nothing was committed.")
            old = self._committed_ingests(con, collection, row[0])
            con.execute("UPDATE document_versions SET status = 'committed', committed_at = ? WHERE "
                        "collection = ? AND ingest = ?", (time.time(), collection, ingest))
        return old

    def supersede(self, collection: str, name: str) -> list[str]:
        """Hide a document's committed version (removal): returns its ingest ids, whose chunks to delete."""
        with self.db.write() as con:
            return self._committed_ingests(con, collection, name)

    def drop_version(self, collection: str, ingest: str) -> None:
        """Forget a version whose chunks were deleted."""
        with self.db.write() as con:
            con.execute("DELETE FROM document_versions WHERE collection = ? AND ingest = ? AND status != "
                        "'committed'", (collection, ingest))

    def collection_adopted(self, collection: str) -> bool:
        with self.db.connect() as con:
            return con.execute("SELECT 1 FROM adopted_collections WHERE collection = ?",
                               (collection,)).fetchone() is not None

    def adopt_collection(self, collection: str, versions: list[DocumentVersion]) -> None:
        """Record the documents of a knowledge base stored before commit records existed, as committed."""
        with self.db.write() as con:
            for v in versions:
                con.execute(f"INSERT OR IGNORE INTO document_versions ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                            (collection, v.ingest, v.name, v.sha256, v.kind, v.chunks, v.tokens, "committed",
                             None, v.created_at, v.committed_at))
            con.execute("INSERT OR IGNORE INTO adopted_collections (collection, adopted_at) VALUES (?, ?)",
                        (collection, time.time()))
