"""A workspace owns everything a user changes: its knowledge bases (a Chroma database
per workspace, see lib/store.py), and a SQLite database of versioned records:
comparisons and their per-arm results, the fine-tuned model registry and the active
model, training and fine-tuning jobs.

Layout under the data folder:
    data/chroma/                        the Chroma store (one Chroma database per workspace)
    data/workspaces/<name>/workspace.db the workspace's records (SQLite, WAL)
    data/workspaces/<name>/jobs/<id>/   a local training job's data, progress and log
    data/workspaces/<name>/adapters/    LoRA adapters trained in this workspace

The schema is versioned by numbered migrations, each applied once and recorded in the
`_migrations` table (as simonw/llm keeps its logs database). Every write is one
transaction (`BEGIN IMMEDIATE`), so several threads and processes writing at once lose
nothing. A database that cannot be read is reported, naming the file, and left exactly
as it is: it is never replaced by an empty one. A record of another shape (a newer
version, or damaged) is skipped and counted, never fatal.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.errors import ConfigError
from lib.finetune.registry import FineTunedModel, model_from_record, model_to_record, shipped_model
from lib.history import RECORD_VERSION, is_valid_record

DEFAULT_WORKSPACE = "default"
DB_NAME = "workspace.db"
_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,30}[a-z0-9])?$")
NAME_RULE = ("use 1-32 lower-case letters, digits, '-' or '_', starting and ending with a letter or digit "
             "(for example 'alice' or 'team-2')")
TERMINAL = ("succeeded", "failed", "cancelled")


class WorkspaceError(ConfigError):
    """The workspace cannot be used as asked; the message says why and what to do."""


def check_workspace_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise WorkspaceError(f"{name!r} is not a valid workspace name: {NAME_RULE}.")
    return name


def workspaces_root(data_dir: str | Path) -> Path:
    return Path(data_dir) / "workspaces"


def list_workspaces(data_dir: str | Path) -> list[str]:
    """Names of the workspaces in the data folder; `default` always exists."""
    root = workspaces_root(data_dir)
    found = {p.name for p in root.iterdir() if (p / DB_NAME).is_file() and _NAME.match(p.name)} \
        if root.is_dir() else set()
    return sorted(found | {DEFAULT_WORKSPACE})


def workspace_exists(data_dir: str | Path, name: str) -> bool:
    return name == DEFAULT_WORKSPACE or (workspaces_root(data_dir) / check_workspace_name(name) / DB_NAME).is_file()


def delete_workspace_files(data_dir: str | Path, name: str) -> None:
    """Remove a workspace's folder: its records, jobs and adapters. Its knowledge bases live
    in the Chroma store: delete them with lib.engine.delete_workspace, which calls this."""
    check_workspace_name(name)
    if name == DEFAULT_WORKSPACE:
        raise WorkspaceError("The default workspace cannot be deleted.")
    folder = workspaces_root(data_dir) / name
    if not (folder / DB_NAME).is_file():
        raise WorkspaceError(f"No workspace named {name!r}.")
    shutil.rmtree(folder)


_checked: dict[str, tuple[int, int, int]] = {}  # path -> (inode, size, mtime) of the version found sound


def sqlite_file_problem(path: str | Path, quick_check: bool = True) -> str | None:
    """What is wrong with an existing SQLite database file (None when nothing is): empty (SQLite would start an
    empty database in it), not a database, truncated, or pages that fail `PRAGMA quick_check`. Reads only, and
    only through SQLite (closing any other handle on the file would drop the locks that SQLite connections of
    this process hold on it); a file found sound is not checked again in this process until it changes."""
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if _checked.get(str(path)) == identity:
        return None
    wal = path.with_name(path.name + "-wal")
    if stat.st_size == 0:
        if not (wal.is_file() and wal.stat().st_size > 0):
            return "it is empty: 0 bytes"
    if quick_check:
        try:
            con = sqlite3.connect(path, timeout=30)
            try:
                con.execute("PRAGMA busy_timeout = 30000")
                found = [row[0] for row in con.execute("PRAGMA quick_check(5)")]
            finally:
                con.close()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return None  # a writer holds it: the next open checks it
            return f"{type(exc).__name__}: {exc}"
        except sqlite3.DatabaseError as exc:
            return f"{type(exc).__name__}: {exc}"
        if found != ["ok"]:
            return "PRAGMA quick_check found damage: " + "; ".join(" ".join(str(f).split()) for f in found)[:300]
    _checked[str(path)] = identity
    return None


@contextmanager
def immediate(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction taken at once (BEGIN IMMEDIATE): committed at the end, rolled back on any error."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


# ---------------------------------------------------------------- schema

def _script(con: sqlite3.Connection, sql: str) -> None:
    """Statements one by one (executescript would commit the migration's transaction)."""
    for statement in sql.split(";"):
        if statement.strip():
            con.execute(statement)


def _m001_records(con: sqlite3.Connection) -> None:
    _script(con, """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE comparisons (
            id TEXT PRIMARY KEY, created_at REAL NOT NULL, collection TEXT NOT NULL, question TEXT NOT NULL,
            version INTEGER NOT NULL, record TEXT NOT NULL);
        CREATE INDEX comparisons_by_collection ON comparisons (collection, created_at);
        CREATE TABLE arm_results (
            comparison_id TEXT NOT NULL REFERENCES comparisons (id) ON DELETE CASCADE,
            position INTEGER NOT NULL, arm TEXT NOT NULL, record TEXT NOT NULL,
            PRIMARY KEY (comparison_id, position));
        CREATE TABLE models (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, provider TEXT NOT NULL, created_at REAL NOT NULL,
            version INTEGER NOT NULL, record TEXT NOT NULL);
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL, name TEXT NOT NULL DEFAULT '',
            params TEXT NOT NULL DEFAULT '{}', result TEXT, error TEXT, pid INTEGER,
            created_at REAL NOT NULL, updated_at REAL NOT NULL);
        CREATE INDEX jobs_by_kind ON jobs (kind, created_at);
    """)


def _m002_evaluation(con: sqlite3.Connection) -> None:
    _script(con, """
        CREATE TABLE question_sets (
            name TEXT PRIMARY KEY, created_at REAL NOT NULL, source TEXT NOT NULL DEFAULT '',
            version INTEGER NOT NULL, rows TEXT NOT NULL);
        CREATE TABLE eval_runs (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
            status TEXT NOT NULL, spec TEXT NOT NULL, questions TEXT NOT NULL, finished_at REAL, error TEXT);
        CREATE INDEX eval_runs_by_name ON eval_runs (name, created_at);
        CREATE TABLE eval_answers (
            run_id TEXT NOT NULL REFERENCES eval_runs (id) ON DELETE CASCADE,
            question_id TEXT NOT NULL, arm TEXT NOT NULL, created_at REAL NOT NULL, record TEXT NOT NULL,
            PRIMARY KEY (run_id, question_id, arm));
    """)


def _m003_document_versions(con: sqlite3.Connection) -> None:
    """The commit records of documents in knowledge bases (lib/store.py). A version is `writing` while its
    chunks are stored, `committed` (the one readers see, at most one per name) once the last chunk is in,
    and `superseded` from the moment a newer version is committed until its chunks are deleted.
    `collection` is the Chroma collection's id, so a knowledge base deleted and made again starts afresh."""
    _script(con, """
        CREATE TABLE document_versions (
            collection TEXT NOT NULL, ingest TEXT NOT NULL, name TEXT NOT NULL, sha256 TEXT NOT NULL,
            kind TEXT NOT NULL DEFAULT '', chunks INTEGER NOT NULL DEFAULT 0, tokens INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL, pid INTEGER, created_at REAL NOT NULL, committed_at REAL,
            PRIMARY KEY (collection, ingest));
        CREATE INDEX document_versions_by_name ON document_versions (collection, name, status);
        CREATE UNIQUE INDEX document_versions_one_committed ON document_versions (collection, name)
            WHERE status = 'committed';
        CREATE TABLE adopted_collections (collection TEXT PRIMARY KEY, adopted_at REAL NOT NULL)
    """)


def _m006_capacity(con: sqlite3.Connection) -> None:
    """Capacity measurements of the local model on this machine (lib/capacity.py): one record per measurement,
    with the machine's description and every concurrency level."""
    _script(con, """
        CREATE TABLE capacity (
            id TEXT PRIMARY KEY, created_at REAL NOT NULL, role TEXT NOT NULL, model TEXT NOT NULL,
            version INTEGER NOT NULL, record TEXT NOT NULL);
        CREATE INDEX capacity_by_role ON capacity (role, created_at)
    """)


@dataclass(frozen=True)
class DocumentVersion:
    """One stored version of a document in a knowledge base (see _m003_document_versions)."""

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


_VERSION_COLUMNS = ("collection, ingest, name, sha256, kind, chunks, tokens, status, pid, created_at, "
                    "committed_at")


def _m004_leases(con: sqlite3.Connection) -> None:
    """Who owns a piece of work now (an evaluation run, a training job): one owner at a time, renewed while it
    works, taken over only once it has expired."""
    _script(con, """
        CREATE TABLE leases (resource TEXT PRIMARY KEY, owner TEXT NOT NULL, taken_at REAL NOT NULL,
                             expires_at REAL NOT NULL)
    """)


# Numbered, applied in order, each once. Append new ones (evaluation runs, document commit
# records, spend) at the end; never edit one that has shipped.
MIGRATIONS: list[tuple[int, str, Callable[[sqlite3.Connection], None]]] = [
    (1, "records", _m001_records),
    (2, "evaluation runs and question sets", _m002_evaluation),
    (3, "document versions", _m003_document_versions),
    (4, "leases", _m004_leases),
    (6, "capacity measurements", _m006_capacity),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


@dataclass(frozen=True)
class JobRecord:
    id: str
    kind: str  # "local" (LoRA training on this machine) | "openai" (hosted fine-tuning)
    status: str  # starting | running | validating_files | queued | succeeded | failed | cancelled
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    pid: int | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "status": self.status, "name": self.name, "params": self.params,
                "result": self.result, "error": self.error, "created_at": self.created_at,
                "updated_at": self.updated_at}


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a finished child that nobody reaped yet is not running
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


class Workspace:
    """One workspace: its folder under data/workspaces/ and its records database."""

    def __init__(self, data_dir: str | Path, name: str = DEFAULT_WORKSPACE, create: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.name = check_workspace_name(name)
        self.folder = workspaces_root(self.data_dir) / self.name
        self.db_path = self.folder / DB_NAME
        if not self.db_path.is_file():
            if not create and self.name != DEFAULT_WORKSPACE:
                raise WorkspaceError(f"No workspace named {self.name!r}. Create it with "
                                     f"`python -m lib workspaces create {self.name}` or in the sidebar.")
            self.folder.mkdir(parents=True, exist_ok=True)
            self._create()
        self._check_integrity()
        self._migrate()
        if self.name == DEFAULT_WORKSPACE:
            self.legacy_import = import_legacy(self)

    # ------------------------------------------------------------ database plumbing

    def _damaged(self, exc: Exception | str) -> WorkspaceError:
        why = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        return WorkspaceError(
            f"The workspace database {self.db_path} could not be read ({why}). It was left "
            "exactly as it is: nothing was replaced or deleted. Restore it from a backup, or move it aside "
            "(for example rename it to workspace.db.damaged) to start this workspace afresh.")

    def _create(self) -> None:
        """Make the database beside its place and link it in whole: a workspace.db is never seen empty or half
        made (so an empty one is damage, and is reported), and of processes creating it at once one wins."""
        import uuid

        tmp = self.folder / f".{DB_NAME}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        try:
            self._migrate(tmp)
            try:
                os.link(tmp, self.db_path)
            except FileExistsError:
                pass  # another process made it first: use theirs
            except OSError:  # a file system without hard links
                if not self.db_path.exists():
                    os.rename(tmp, self.db_path)
        finally:
            for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
                leftover.unlink(missing_ok=True)

    def _check_integrity(self) -> None:
        """An existing database file is checked before anything is written to it: an empty file (which SQLite
        would silently start afresh), a truncated or corrupted one (`PRAGMA quick_check`) is reported with its
        path and left as it is. Checked once per process for each version of the file."""
        problem = sqlite_file_problem(self.db_path)
        if problem:
            raise self._damaged(problem)

    @contextmanager
    def _connect(self, path: Path | None = None) -> Iterator[sqlite3.Connection]:
        try:
            con = sqlite3.connect(path or self.db_path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._damaged(exc) from exc
        try:
            con.execute("PRAGMA busy_timeout = 30000")
            con.execute("PRAGMA foreign_keys = ON")
            yield con
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise WorkspaceError(f"The workspace database {self.db_path} stayed busy for 30 s: {exc}. "
                                     "Try again.") from exc
            raise self._damaged(exc) from exc
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc
        finally:
            con.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction; other writers wait (busy_timeout) rather than fail or overwrite."""
        with self._connect() as con, immediate(con):
            yield con

    def _migrate(self, path: Path | None = None) -> None:
        with self._connect(path) as con:
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]  # also reads the header: fails if damaged
            if str(mode).lower() != "wal":
                raise WorkspaceError(f"The workspace database {self.db_path} could not switch to WAL mode ({mode}).")
            con.execute("CREATE TABLE IF NOT EXISTS _migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                        "applied_at REAL NOT NULL)")
            applied = {row[0] for row in con.execute("SELECT id FROM _migrations")}
            newer = [i for i in applied if i > SCHEMA_VERSION]
            if newer:
                raise WorkspaceError(
                    f"The workspace database {self.db_path} has schema version {max(newer)}, newer than this "
                    f"version of the workbench understands ({SCHEMA_VERSION}). Update the workbench; the file "
                    "was left as it is.")
            for number, name, apply in MIGRATIONS:
                if number in applied:
                    continue
                with immediate(con):  # another process may have applied it while we waited for the lock
                    if con.execute("SELECT 1 FROM _migrations WHERE id = ?", (number,)).fetchone() is None:
                        apply(con)
                        con.execute("INSERT INTO _migrations (id, name, applied_at) VALUES (?, ?, ?)",
                                    (number, name, time.time()))

    @property
    def schema_version(self) -> int:
        with self._connect() as con:
            return int(con.execute("SELECT COALESCE(MAX(id), 0) FROM _migrations").fetchone()[0])

    def _meta(self, con: sqlite3.Connection, key: str) -> str | None:
        row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def meta(self, key: str) -> str | None:
        with self._connect() as con:
            return self._meta(con, key)

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as con:
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
    # ------------------------------------------------------------ document versions (lib/store.py)

    @contextmanager
    def document_lock(self, collection: str, name: str, wait: bool = True) -> Iterator[bool]:
        """Hold the lock on one document of a knowledge base, across threads and processes (an fcntl lock
        on a file under the workspace folder: the system releases it when its holder dies, even by kill -9).
        Yields True once held; with wait=False yields False at once if somebody else holds it."""
        import fcntl
        import hashlib

        folder = self.folder / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(f"{collection}\0{name}".encode()).hexdigest()[:32]
        fd = os.open(folder / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
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
        sql = f"SELECT {_VERSION_COLUMNS} FROM document_versions WHERE collection = ?"
        args: list[Any] = [collection]
        if status:
            sql, args = sql + " AND status = ?", [*args, status]
        if name is not None:
            sql, args = sql + " AND name = ?", [*args, name]
        with self._connect() as con:
            return [DocumentVersion(*row) for row in con.execute(sql + " ORDER BY name, created_at", args)]

    def begin_version(self, collection: str, ingest: str, name: str, sha256: str, kind: str, chunks: int,
                      tokens: int) -> None:
        """Record a version about to be written (invisible to readers until commit_version)."""
        with self._write() as con:
            con.execute(f"INSERT INTO document_versions ({_VERSION_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (collection, ingest, name, sha256, kind, chunks, tokens, "writing", os.getpid(),
                         time.time(), None))

    def commit_version(self, collection: str, ingest: str) -> list[str]:
        """In one transaction: the version becomes the one readers see and the name's previous committed
        version becomes `superseded`. Returns the superseded versions' ingest ids (their chunks to delete)."""
        with self._write() as con:
            row = con.execute("SELECT name FROM document_versions WHERE collection = ? AND ingest = ? AND "
                              "status = 'writing'", (collection, ingest)).fetchone()
            if row is None:
                raise WorkspaceError(f"Document version {ingest} is not being written; nothing was committed.")
            old = [r[0] for r in con.execute(
                "SELECT ingest FROM document_versions WHERE collection = ? AND name = ? AND status = 'committed'",
                (collection, row[0]))]
            con.execute("UPDATE document_versions SET status = 'superseded' WHERE collection = ? AND name = ? "
                        "AND status = 'committed'", (collection, row[0]))
            con.execute("UPDATE document_versions SET status = 'committed', committed_at = ? WHERE "
                        "collection = ? AND ingest = ?", (time.time(), collection, ingest))
        return old

    def supersede(self, collection: str, name: str) -> list[str]:
        """Hide a document's committed version (removal): returns its ingest ids, whose chunks to delete."""
        with self._write() as con:
            old = [r[0] for r in con.execute(
                "SELECT ingest FROM document_versions WHERE collection = ? AND name = ? AND status = 'committed'",
                (collection, name))]
            con.execute("UPDATE document_versions SET status = 'superseded' WHERE collection = ? AND name = ? "
                        "AND status = 'committed'", (collection, name))
        return old

    def drop_version(self, collection: str, ingest: str) -> None:
        """Forget a version whose chunks were deleted."""
        with self._write() as con:
            con.execute("DELETE FROM document_versions WHERE collection = ? AND ingest = ? AND status != "
                        "'committed'", (collection, ingest))

    def collection_adopted(self, collection: str) -> bool:
        with self._connect() as con:
            return con.execute("SELECT 1 FROM adopted_collections WHERE collection = ?",
                               (collection,)).fetchone() is not None

    def adopt_collection(self, collection: str, versions: list[DocumentVersion]) -> None:
        """Record the documents of a knowledge base stored before commit records existed, as committed."""
        with self._write() as con:
            for v in versions:
                con.execute(f"INSERT OR IGNORE INTO document_versions ({_VERSION_COLUMNS}) "
                            "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                            (collection, v.ingest, v.name, v.sha256, v.kind, v.chunks, v.tokens, "committed",
                             None, v.created_at, v.committed_at))
            con.execute("INSERT OR IGNORE INTO adopted_collections (collection, adopted_at) VALUES (?, ?)",
                        (collection, time.time()))

    # ------------------------------------------------------------ history

    def add_comparison(self, record: dict[str, Any]) -> None:
        """Store one comparison record (lib.history.comparison_to_dict) with its per-arm results."""
        if not self._insert_comparisons([record]):
            raise WorkspaceError(f"A comparison with id {record['id']!r} is already stored; nothing was changed.")

    def _insert_comparisons(self, records: list[dict[str, Any]]) -> int:
        """Insert records whose id is new; returns how many (an existing record is never overwritten)."""
        added = 0
        with self._write() as con:
            for record in records:
                head = {k: v for k, v in record.items() if k != "results"}
                cur = con.execute(
                    "INSERT OR IGNORE INTO comparisons (id, created_at, collection, question, version, record) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (record["id"], float(record["created_at"]), str(record.get("collection") or ""),
                     str(record["question"]), int(record.get("version", RECORD_VERSION)),
                     json.dumps(head, ensure_ascii=False)))
                if cur.rowcount == 0:
                    continue
                added += 1
                con.execute("DELETE FROM arm_results WHERE comparison_id = ?", (record["id"],))
                con.executemany(
                    "INSERT INTO arm_results (comparison_id, position, arm, record) VALUES (?, ?, ?, ?)",
                    [(record["id"], i, str(r.get("arm", "")), json.dumps(r, ensure_ascii=False))
                     for i, r in enumerate(record["results"])])
        return added

    def comparisons(self, collection: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """(comparison records oldest first, number of records skipped as unreadable or of another shape)."""
        where, args = ("WHERE c.collection = ?", (collection,)) if collection is not None else ("", ())
        with self._connect() as con:
            heads = con.execute(f"SELECT c.id, c.version, c.record FROM comparisons c {where} "
                                "ORDER BY c.created_at, c.rowid", args).fetchall()
            results: dict[str, list[str]] = {}
            for cid, record in con.execute(
                    f"SELECT a.comparison_id, a.record FROM arm_results a JOIN comparisons c ON c.id = a.comparison_id "
                    f"{where} ORDER BY a.comparison_id, a.position", args):
                results.setdefault(cid, []).append(record)
        good, skipped = [], 0
        for cid, version, record in heads:
            try:
                item = json.loads(record)
                item["results"] = [json.loads(r) for r in results.get(cid, [])]
            except (json.JSONDecodeError, TypeError):
                skipped += 1
                continue
            if version != RECORD_VERSION or not is_valid_record(item):
                skipped += 1
                continue
            good.append(item)
        return good, skipped

    def clear_history(self, collection: str) -> int:
        with self._write() as con:
            return con.execute("DELETE FROM comparisons WHERE collection = ?", (collection,)).rowcount

    # ------------------------------------------------------------ fine-tuned models

    def models_report(self) -> tuple[list[FineTunedModel], int]:
        """(the shipped adapter, then registered models oldest first; records skipped)."""
        out = [m for m in [shipped_model()] if m]
        skipped = 0
        with self._connect() as con:
            rows = con.execute("SELECT record FROM models ORDER BY created_at, rowid").fetchall()
        for (record,) in rows:
            try:
                model = model_from_record(json.loads(record))
            except json.JSONDecodeError:
                model = None
            if model is None:
                skipped += 1
            elif model.id != "shipped":
                out.append(model)
        return out, skipped

    def models(self) -> list[FineTunedModel]:
        return self.models_report()[0]

    def _put_model(self, con: sqlite3.Connection, model: FineTunedModel, activate: bool) -> None:
        con.execute("INSERT OR REPLACE INTO models (id, name, provider, created_at, version, record) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (model.id, model.name, model.provider, model.created_at or time.time(), 1,
                     json.dumps(model_to_record(model), ensure_ascii=False)))
        if activate:
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('active_model', ?)", (model.id,))

    def add_model(self, model: FineTunedModel, activate: bool = True) -> None:
        if model.id == "shipped":
            raise WorkspaceError("The id 'shipped' is reserved for the shipped adapter.")
        with self._write() as con:
            self._put_model(con, model, activate)

    def remove_model(self, model_id: str) -> None:
        with self._write() as con:
            con.execute("DELETE FROM models WHERE id = ?", (model_id,))
            if self._meta(con, "active_model") == model_id:
                con.execute("DELETE FROM meta WHERE key = 'active_model'")

    def activate(self, model_id: str) -> None:
        if model_id not in {m.id for m in self.models()}:
            raise WorkspaceError(f"No fine-tuned model {model_id!r} in workspace {self.name!r}.")
        with self._write() as con:
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('active_model', ?)", (model_id,))

    def active_model(self) -> FineTunedModel | None:
        """The model picked in this workspace, else the shipped adapter (if present)."""
        models = self.models()
        chosen = self.meta("active_model")
        return next((m for m in models if m.id == chosen), None) or (models[0] if models else None)

    # ------------------------------------------------------------ evaluation

    def save_question_set(self, name: str, rows: list[dict[str, Any]], source: str = "") -> None:
        """Store (or replace) a question set of this workspace under `name`."""
        if not name.strip():
            raise WorkspaceError("Name the question set.")
        with self._write() as con:
            con.execute("INSERT OR REPLACE INTO question_sets (name, created_at, source, version, rows) "
                        "VALUES (?, ?, ?, 1, ?)", (name.strip(), time.time(), source,
                                                    json.dumps(rows, ensure_ascii=False)))

    def question_sets(self) -> list[str]:
        with self._connect() as con:
            return [r[0] for r in con.execute("SELECT name FROM question_sets ORDER BY created_at")]

    def question_set(self, name: str) -> list[dict[str, Any]] | None:
        with self._connect() as con:
            row = con.execute("SELECT rows FROM question_sets WHERE name = ?", (name,)).fetchone()
        return None if row is None else list(json.loads(row[0]))

    def delete_question_set(self, name: str) -> None:
        with self._write() as con:
            con.execute("DELETE FROM question_sets WHERE name = ?", (name,))

    def create_run(self, run_id: str, spec: dict[str, Any], questions: list[dict[str, Any]]) -> None:
        now = time.time()
        with self._write() as con:
            con.execute("INSERT INTO eval_runs (id, name, created_at, updated_at, status, spec, questions) "
                        "VALUES (?, ?, ?, ?, 'running', ?, ?)",
                        (run_id, str(spec.get("name") or run_id), now, now, json.dumps(spec, ensure_ascii=False),
                         json.dumps(questions, ensure_ascii=False)))

    def save_answer(self, run_id: str, question_id: str, arm: str, record: dict[str, Any]) -> None:
        with self._write() as con:
            con.execute("INSERT OR REPLACE INTO eval_answers (run_id, question_id, arm, created_at, record) "
                        "VALUES (?, ?, ?, ?, ?)", (run_id, question_id, arm, time.time(),
                                                   json.dumps(record, ensure_ascii=False)))
            con.execute("UPDATE eval_runs SET updated_at = ? WHERE id = ?", (time.time(), run_id))

    def answers(self, run_id: str) -> list[dict[str, Any]]:
        """A run's stored answers in the order they were stored; unreadable records are skipped."""
        out = []
        with self._connect() as con:
            for (record,) in con.execute("SELECT record FROM eval_answers WHERE run_id = ? ORDER BY rowid",
                                         (run_id,)):
                try:
                    item = json.loads(record)
                except json.JSONDecodeError:
                    continue
                if isinstance(item, dict) and "grade" in item and "result" in item:
                    out.append(item)
        return out

    def update_run(self, run_id: str, **fields: Any) -> None:
        allowed = {"status", "finished_at", "error"}
        sets = {k: v for k, v in fields.items() if k in allowed}
        if sets.get("error"):
            from lib.errors import redact

            sets["error"] = redact(str(sets["error"]))
        if not sets:
            return
        with self._write() as con:
            con.execute(f"UPDATE eval_runs SET {', '.join(f'{k} = ?' for k in sets)}, updated_at = ? WHERE id = ?",
                        (*sets.values(), time.time(), run_id))

    def _run_row(self, row: tuple[Any, ...]) -> dict[str, Any]:
        rid, name, created, updated, status, spec, questions, finished, error, answered = row
        return {"id": rid, "name": name, "created_at": created, "updated_at": updated, "status": status,
                "spec": json.loads(spec), "questions": json.loads(questions), "finished_at": finished,
                "error": error, "answered": answered}

    _RUN_COLUMNS = ("r.id, r.name, r.created_at, r.updated_at, r.status, r.spec, r.questions, r.finished_at, r.error, "
                    "(SELECT COUNT(*) FROM eval_answers a WHERE a.run_id = r.id)")

    def runs(self) -> list[dict[str, Any]]:
        """Every evaluation run of the workspace, newest first."""
        with self._connect() as con:
            rows = con.execute(f"SELECT {self._RUN_COLUMNS} FROM eval_runs r ORDER BY r.created_at DESC").fetchall()
        return [self._run_row(r) for r in rows]

    def run(self, run: str) -> dict[str, Any] | None:
        """A run by id, or the latest run of that name."""
        with self._connect() as con:
            row = con.execute(f"SELECT {self._RUN_COLUMNS} FROM eval_runs r WHERE r.id = ?", (run,)).fetchone() \
                or con.execute(f"SELECT {self._RUN_COLUMNS} FROM eval_runs r WHERE r.name = ? "
                               "ORDER BY r.created_at DESC LIMIT 1", (run,)).fetchone()
        return None if row is None else self._run_row(row)

    def delete_run(self, run_id: str) -> None:
        with self._write() as con:
            con.execute("DELETE FROM eval_answers WHERE run_id = ?", (run_id,))
            con.execute("DELETE FROM eval_runs WHERE id = ?", (run_id,))

    # ------------------------------------------------------------ leases

    def take_lease(self, resource: str, owner: str, ttl_s: float) -> bool:
        """Own `resource` for `ttl_s` seconds: granted when nobody holds it, its holder's lease has expired, or
        `owner` holds it already (then renewed). One transaction, so two processes cannot both get it."""
        now = time.time()
        with self._write() as con:
            row = con.execute("SELECT owner, expires_at FROM leases WHERE resource = ?", (resource,)).fetchone()
            if row is not None and row[0] != owner and row[1] > now:
                return False
            con.execute("INSERT OR REPLACE INTO leases (resource, owner, taken_at, expires_at) VALUES (?, ?, ?, ?)",
                        (resource, owner, now, now + ttl_s))
        return True

    def renew_lease(self, resource: str, owner: str, ttl_s: float) -> bool:
        """Extend `owner`'s lease; False if somebody else holds it now (it expired and was taken over)."""
        with self._write() as con:
            return con.execute("UPDATE leases SET expires_at = ? WHERE resource = ? AND owner = ?",
                               (time.time() + ttl_s, resource, owner)).rowcount == 1

    def release_lease(self, resource: str, owner: str) -> None:
        with self._write() as con:
            con.execute("DELETE FROM leases WHERE resource = ? AND owner = ?", (resource, owner))

    def lease_holder(self, resource: str) -> tuple[str, float] | None:
        """(owner, expires_at) of a live lease on `resource`, or None when nobody holds it."""
        with self._connect() as con:
            row = con.execute("SELECT owner, expires_at FROM leases WHERE resource = ? AND expires_at > ?",
                              (resource, time.time())).fetchone()
        return (str(row[0]), float(row[1])) if row else None
    # ------------------------------------------------------------ capacity measurements (lib/capacity.py)

    def save_capacity(self, record: dict[str, Any]) -> None:
        with self._write() as con:
            con.execute("INSERT OR REPLACE INTO capacity (id, created_at, role, model, version, record) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (record["id"], float(record["created_at"]), record["role"], record["model"],
                         int(record.get("version", 1)), json.dumps(record, ensure_ascii=False)))

    def capacities(self, role: str | None = None) -> list[dict[str, Any]]:
        """Stored capacity measurements (of one role), newest first; unreadable records are skipped."""
        with self._connect() as con:
            rows = con.execute("SELECT record FROM capacity WHERE ? IS NULL OR role = ? ORDER BY created_at DESC",
                               (role, role)).fetchall()
        out = []
        for (text,) in rows:
            try:
                out.append(json.loads(text))
            except ValueError:
                continue
        return out

    # ------------------------------------------------------------ jobs

    def add_job(self, job_id: str, kind: str, name: str, params: dict[str, Any], status: str = "starting",
                pid: int | None = None) -> JobRecord:
        now = time.time()
        with self._write() as con:
            con.execute("INSERT INTO jobs (id, kind, status, name, params, pid, created_at, updated_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (job_id, kind, status, name, json.dumps(params, ensure_ascii=False), pid, now, now))
        job = self.job(job_id)
        assert job is not None
        return job

    def update_job(self, job_id: str, *, status: str | None = None, pid: int | None = None,
                   error: str | None = None, result: dict[str, Any] | None = None,
                   model: FineTunedModel | None = None, activate: bool = True) -> None:
        """Change a job; with `model`, register it in the same transaction (so a finished job
        and its model appear together or not at all). A finished job is never reopened."""
        if error:
            from lib.errors import redact

            error = redact(error)
        with self._write() as con:
            row = con.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise WorkspaceError(f"No job {job_id!r} in workspace {self.name!r}.")
            if row[0] in TERMINAL and status is not None and status != row[0]:
                return
            sets, args = ["updated_at = ?"], [time.time()]
            for column, value in (("status", status), ("pid", pid), ("error", error)):
                if value is not None:
                    sets.append(f"{column} = ?")
                    args.append(value)
            if result is not None:
                sets.append("result = ?")
                args.append(json.dumps(result, ensure_ascii=False))
            con.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", (*args, job_id))
            if model is not None:
                self._put_model(con, model, activate)

    @staticmethod
    def _job(row: tuple[Any, ...]) -> JobRecord | None:
        try:
            return JobRecord(id=row[0], kind=row[1], status=row[2], name=row[3], params=json.loads(row[4] or "{}"),
                             result=json.loads(row[5]) if row[5] else None, error=row[6], pid=row[7],
                             created_at=row[8], updated_at=row[9])
        except (json.JSONDecodeError, TypeError):
            return None

    _JOB_COLUMNS = "id, kind, status, name, params, result, error, pid, created_at, updated_at"

    def job(self, job_id: str) -> JobRecord | None:
        with self._connect() as con:
            row = con.execute(f"SELECT {self._JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._check_alive(self._job(row)) if row else None

    def jobs(self, kind: str | None = None) -> list[JobRecord]:
        """Jobs newest first. A local job whose process has gone without a result is marked failed."""
        where, args = ("WHERE kind = ?", (kind,)) if kind else ("", ())
        with self._connect() as con:
            rows = con.execute(f"SELECT {self._JOB_COLUMNS} FROM jobs {where} ORDER BY created_at DESC, rowid DESC",
                               args).fetchall()
        return [j for j in (self._check_alive(self._job(r)) for r in rows) if j is not None]

    def _check_alive(self, job: JobRecord | None) -> JobRecord | None:
        if job is None or job.kind != "local" or job.finished:
            return job
        with self._connect() as con:  # the training process holds a lease on its job while it trains
            lease = con.execute("SELECT expires_at FROM leases WHERE resource = ?", (f"job:{job.id}",)).fetchone()
        if lease is not None and lease[0] > time.time():
            return job  # alive, on this machine or another sharing the data folder
        if lease is None and _pid_alive(job.pid):
            return job  # not started training yet (or started by an earlier version)
        if lease is None and job.pid is None and time.time() - job.created_at < 60:
            return job  # being started
        if job.error == "cancel requested":  # lib.finetune.local.CANCEL_REQUESTED: it died of the cancel
            self.update_job(job.id, status="cancelled", error="cancelled; no adapter was written")
            return self.job(job.id)
        self.update_job(job.id, status="failed",
                        error="The training process ended without reporting a result (the machine or the app "
                              "may have restarted). Its log is in " + str(self.job_folder(job.id) / "log.txt"))
        return self.job(job.id)

    def job_folder(self, job_id: str) -> Path:
        """Where a local job keeps its training data, progress file and log."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", job_id):
            raise WorkspaceError(f"{job_id!r} is not a valid job id.")
        return self.folder / "jobs" / job_id

    def adapter_path(self, job_id: str) -> Path:
        return self.folder / "adapters" / f"{self.job_folder(job_id).name}.gguf"

    def write_job_file(self, job_id: str, name: str, text: str) -> Path:
        folder = self.job_folder(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "adapters").mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_text(text, encoding="utf-8")
        return path

    def open_job_log(self, job_id: str) -> Any:
        """The job's log file, opened for appending (binary): a training process writes its output there."""
        folder = self.job_folder(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        return (folder / "log.txt").open("ab")

    def adapter_sidecar(self, job_id: str) -> dict[str, Any] | None:
        """The JSON sidecar the trainer writes next to a finished adapter, or None if there is no adapter."""
        adapter = self.adapter_path(job_id)
        if not adapter.is_file():
            return None
        try:
            data = json.loads(adapter.with_name(adapter.name + ".json").read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, json.JSONDecodeError):
            return {}

    def job_progress(self, job_id: str) -> dict[str, Any]:
        """The progress a training job last wrote (step, total, loss, eta), or {} before the first."""
        try:
            data = json.loads((self.job_folder(job_id) / "progress.json").read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, json.JSONDecodeError):
            return {}

    def job_log_tail(self, job_id: str, chars: int = 600) -> str:
        try:
            return (self.job_folder(job_id) / "log.txt").read_text(errors="replace")[-chars:]
        except OSError:
            return ""


# ---------------------------------------------------------------- the first release's files

def import_legacy(ws: Workspace) -> dict[str, Any]:
    """Import the first release's data/history/*.jsonl and data/models.json into `ws` once.
    Each imported file is kept, renamed with an `.imported` suffix, so it is not imported
    twice; a file that cannot be read is left where it is and reported."""
    data_dir = ws.data_dir
    summary: dict[str, Any] = {"comparisons": 0, "skipped_lines": 0, "models": 0, "files": [], "problems": []}
    history_files = sorted((data_dir / "history").glob("*.jsonl")) if (data_dir / "history").is_dir() else []
    models_file = data_dir / "models.json"
    if not history_files and not models_file.is_file():
        return summary
    for path in history_files:
        records = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                summary["skipped_lines"] += 1
                continue
            if not is_valid_record(item):
                summary["skipped_lines"] += 1
                continue
            item.setdefault("collection", path.stem)
            item.setdefault("version", RECORD_VERSION)
            records.append(item)
        summary["comparisons"] += ws._insert_comparisons(records)
        _mark_imported(path)
        summary["files"].append(path.name)
    if models_file.is_file():
        try:
            data = json.loads(models_file.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (ValueError, OSError) as exc:
            summary["problems"].append(f"{models_file} could not be read ({exc}); it was left in place, "
                                       "not imported. Fix it and reopen the workspace to import it.")
        else:
            models = [model_from_record(m) for m in data.get("models", [])]
            summary["skipped_models"] = sum(m is None for m in models)
            with ws._write() as con:
                for m in models:
                    if m is not None and m.id != "shipped" and not con.execute(
                            "SELECT 1 FROM models WHERE id = ?", (m.id,)).fetchone():
                        ws._put_model(con, m, activate=False)
                        summary["models"] += 1
                if isinstance(data.get("active"), str) and ws._meta(con, "active_model") is None:
                    con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('active_model', ?)",
                                (data["active"],))
            _mark_imported(models_file)
            summary["files"].append(models_file.name)
    if not summary["files"]:
        return summary
    with ws._write() as con:
        con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    (f"legacy_import_{time.time():.0f}", json.dumps(summary)))
    return summary


def _mark_imported(path: Path) -> None:
    target = path.with_name(path.name + ".imported")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.imported-{n}")
    try:
        path.rename(target)
    except FileNotFoundError:  # another process imported it at the same moment
        pass
