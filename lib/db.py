"""SQLite, one way for every database of the app (a workspace's records, the workshop's participants and spend
ledger): where they are, connections that wait for a busy database, the one write helper, numbered migrations,
and the rule that a damaged file is reported, naming it, and left exactly as it is (never replaced by an empty
one).

Every write is one transaction (`BEGIN IMMEDIATE`), so several threads and processes writing at once lose
nothing; a database still busy after BUSY_TIMEOUT_S is one plain error ("try again"), as is a damaged one.
A schema is versioned by numbered migrations, each applied once and recorded in the `_migrations` table (as
simonw/llm keeps its logs database).
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lib.errors import ConfigError

BUSY_TIMEOUT_S = 30
WORKSPACE_DB = "workspace.db"
WORKSHOP_FOLDER, WORKSHOP_DB = "workshop", "workshop.db"

Migration = tuple[int, str, Callable[[sqlite3.Connection], None]]


class WorkspaceError(ConfigError):
    """The workspace cannot be used as asked; the message says why and what to do."""


def workspace_db_path(data_dir: str | Path, name: str) -> Path:
    return Path(data_dir) / "workspaces" / name / WORKSPACE_DB


def workshop_db_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / WORKSHOP_FOLDER / WORKSHOP_DB


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
            con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
            try:
                con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
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


def script(con: sqlite3.Connection, sql: str) -> None:
    """Statements one by one (executescript would commit the migration's transaction)."""
    for statement in sql.split(";"):
        if statement.strip():
            con.execute(statement)


class Database:
    """One SQLite file. `what` names it in messages ("workspace database"); `error` is the error type a user sees
    (a ConfigError); `advice` says what to do with a damaged file."""

    def __init__(self, path: str | Path, what: str, error: type[ConfigError] = ConfigError,
                 advice: str = "Restore it from a backup, or move it aside to start afresh.") -> None:
        self.path, self.what, self.error, self.advice = Path(path), what, error, advice

    def damaged(self, exc: Exception | str) -> ConfigError:
        why = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        return self.error(f"The {self.what} {self.path} could not be read ({why}). It was left exactly as it is: "
                          f"nothing was replaced or deleted. {self.advice}")

    @contextmanager
    def connect(self, path: Path | None = None) -> Iterator[sqlite3.Connection]:
        """A connection that waits up to BUSY_TIMEOUT_S for other writers; a database still busy, or damaged, is
        one plain error naming the file."""
        try:
            con = sqlite3.connect(path or self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise self.damaged(exc) from exc
        try:
            con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
            con.execute("PRAGMA foreign_keys = ON")
            yield con
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise self.error(f"The {self.what} {self.path} stayed busy for {BUSY_TIMEOUT_S} s: {exc}. "
                                 "Try again.") from exc
            raise self.damaged(exc) from exc
        except sqlite3.DatabaseError as exc:
            raise self.damaged(exc) from exc
        finally:
            con.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One transaction; other writers wait (busy_timeout) rather than fail or overwrite."""
        with self.connect() as con, immediate(con):
            yield con

    def check(self) -> None:
        """An existing file is checked before anything is written to it: an empty file (which SQLite would silently
        start afresh), a truncated or corrupted one (`PRAGMA quick_check`) is reported with its path and left as it
        is. Checked once per process for each version of the file."""
        problem = sqlite_file_problem(self.path)
        if problem:
            raise self.damaged(problem)

    def wal(self, path: Path | None = None) -> None:
        """Write-ahead logging, so readers never wait for a writer (also reads the header: fails if damaged)."""
        with self.connect(path) as con:
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise self.error(f"The {self.what} {self.path} could not switch to WAL mode ({mode}).")

    def migrate(self, migrations: list[Migration], path: Path | None = None) -> None:
        """Apply the migrations not applied yet, each once, in order; a database of a newer schema is refused and
        left as it is."""
        newest = migrations[-1][0]
        self.wal(path)
        with self.connect(path) as con:
            con.execute("CREATE TABLE IF NOT EXISTS _migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                        "applied_at REAL NOT NULL)")
            applied = {row[0] for row in con.execute("SELECT id FROM _migrations")}
            newer = [i for i in applied if i > newest]
            if newer:
                raise self.error(
                    f"The {self.what} {self.path} has schema version {max(newer)}, newer than this version of the "
                    f"workbench understands ({newest}). Update the workbench; the file was left as it is.")
            for number, name, apply in migrations:
                if number in applied:
                    continue
                with immediate(con):  # another process may have applied it while we waited for the lock
                    if con.execute("SELECT 1 FROM _migrations WHERE id = ?", (number,)).fetchone() is None:
                        apply(con)
                        con.execute("INSERT INTO _migrations (id, name, applied_at) VALUES (?, ?, ?)",
                                    (number, name, time.time()))

    def create(self, migrations: list[Migration]) -> None:
        """Make the database beside its place and link it in whole: it is never seen empty or half made (so an
        empty one is damage, and is reported), and of processes creating it at once one wins."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
        try:
            self.migrate(migrations, tmp)
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another process made it first: use theirs
            except OSError:  # a file system without hard links
                if not self.path.exists():
                    os.rename(tmp, self.path)
        finally:
            for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
                leftover.unlink(missing_ok=True)

    def open(self, migrations: list[Migration], create: bool = True) -> Database:
        """Create it if it is not there (and `create`), check it, and bring its schema up to date."""
        if not self.path.is_file():
            if not create:
                raise self.error(f"No {self.what} at {self.path}.")
            self.create(migrations)
        self.check()
        self.migrate(migrations)
        return self

    @property
    def schema_version(self) -> int:
        with self.connect() as con:
            return int(con.execute("SELECT COALESCE(MAX(id), 0) FROM _migrations").fetchone()[0])


# ---------------------------------------------------------------- the workspace's schema

def _m001_records(con: sqlite3.Connection) -> None:
    script(con, """
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
    script(con, """
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
    """The commit records of documents in knowledge bases (lib/store_ledger.py). A version is `writing` while its
    chunks are stored, `committed` (the one readers see, at most one per name) once the last chunk is in,
    and `superseded` from the moment a newer version is committed until its chunks are deleted.
    `collection` is the Chroma collection's id, so a knowledge base deleted and made again starts afresh."""
    script(con, """
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


def _m004_leases(con: sqlite3.Connection) -> None:
    """Who owns a piece of work now (an evaluation run, a training job): one owner at a time, renewed while it
    works, taken over only once it has expired."""
    script(con, """
        CREATE TABLE leases (resource TEXT PRIMARY KEY, owner TEXT NOT NULL, taken_at REAL NOT NULL,
                             expires_at REAL NOT NULL)
    """)


def _m006_capacity(con: sqlite3.Connection) -> None:
    """Capacity measurements of the local model on this machine (lib/capacity.py): one record per measurement,
    with the machine's description and every concurrency level."""
    script(con, """
        CREATE TABLE capacity (
            id TEXT PRIMARY KEY, created_at REAL NOT NULL, role TEXT NOT NULL, model TEXT NOT NULL,
            version INTEGER NOT NULL, record TEXT NOT NULL);
        CREATE INDEX capacity_by_role ON capacity (role, created_at)
    """)


# The workspace database's migrations: numbered, applied in order, each once. Append new ones at the end; never
# edit one that has shipped.
MIGRATIONS: list[Migration] = [
    (1, "records", _m001_records),
    (2, "evaluation runs and question sets", _m002_evaluation),
    (3, "document versions", _m003_document_versions),
    (4, "leases", _m004_leases),
    (6, "capacity measurements", _m006_capacity),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def workspace_database(data_dir: str | Path, name: str, create: bool = True) -> Database:
    """A workspace's records database, created (and its schema brought up to date) on first use."""
    return Database(workspace_db_path(data_dir, name), "workspace database", WorkspaceError,
                    "Restore it from a backup, or move it aside (for example rename it to workspace.db.damaged) to "
                    "start this workspace afresh.").open(MIGRATIONS, create)


def workshop_database(data_dir: str | Path) -> Database:
    """The workshop database (participants, joins and the spend ledger), shared by every app process on the data
    folder; its tables are made by their owners (lib/gateway.py, lib/workshop.py)."""
    db = Database(workshop_db_path(data_dir), "workshop database")
    db.path.parent.mkdir(parents=True, exist_ok=True)
    return db
