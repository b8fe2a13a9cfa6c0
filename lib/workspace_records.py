"""A workspace's records, one small class each over the workspace's one database (lib/db.py): comparisons
(History), fine-tuned models and the active one (Models), question sets, evaluation runs and their answers
(Runs), leases on work, capacity measurements and training jobs. `lib.workspace.Workspace` is all of them at
once. Records are read and written through their classes (lib/records.py); one that cannot be read (a newer
version, or damaged) is skipped and counted, never fatal.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.db import Database, WorkspaceError
from lib.finetune.registry import FineTunedModel, model_from_record, model_to_record, shipped_model
from lib.records import AnswerRecord, Comparison, Question, RecordError, RunRecord, RunSpec

TERMINAL = ("succeeded", "failed", "cancelled")


class Records:
    """The records of one workspace: its name, its folder and its database."""

    def __init__(self, db: Database, folder: Path, name: str) -> None:
        self.db, self.folder, self.name = db, Path(folder), name

    @staticmethod
    def _meta(con: sqlite3.Connection, key: str) -> str | None:
        row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def meta(self, key: str) -> str | None:
        with self.db.connect() as con:
            return self._meta(con, key)

    def set_meta(self, key: str, value: str) -> None:
        with self.db.write() as con:
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


# ---------------------------------------------------------------- comparisons

class History(Records):
    def add_comparison(self, comparison: Comparison) -> None:
        """Store one comparison with its per-arm results."""
        if not self.insert_comparisons([comparison]):
            raise WorkspaceError(f"A comparison with id {comparison.id!r} is already stored; nothing was changed.")

    def insert_comparisons(self, comparisons: list[Comparison]) -> int:
        """Insert comparisons whose id is new; returns how many (an existing record is never overwritten)."""
        added = 0
        with self.db.write() as con:
            for c in comparisons:
                record = c.to_dict()
                head = {k: v for k, v in record.items() if k != "results"}
                cur = con.execute(
                    "INSERT OR IGNORE INTO comparisons (id, created_at, collection, question, version, record) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (c.id, c.created_at, c.collection, c.question, c.VERSION, json.dumps(head, ensure_ascii=False)))
                if cur.rowcount == 0:
                    continue
                added += 1
                con.execute("DELETE FROM arm_results WHERE comparison_id = ?", (c.id,))
                con.executemany(
                    "INSERT INTO arm_results (comparison_id, position, arm, record) VALUES (?, ?, ?, ?)",
                    [(c.id, i, r["arm"], json.dumps(r, ensure_ascii=False)) for i, r in enumerate(record["results"])])
        return added

    def comparisons(self, collection: str | None = None) -> tuple[list[Comparison], int]:
        """(comparisons oldest first, number of records skipped as unreadable or of another shape)."""
        where, args = ("WHERE c.collection = ?", (collection,)) if collection is not None else ("", ())
        with self.db.connect() as con:
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
                if version != Comparison.VERSION:
                    raise RecordError(f"version {version}")
                item = json.loads(record)
                item["results"] = [json.loads(r) for r in results.get(cid, [])]
                good.append(Comparison.from_dict(item))
            except (ValueError, TypeError):  # RecordError and json.JSONDecodeError are ValueErrors
                skipped += 1
        return good, skipped

    def clear_history(self, collection: str) -> int:
        with self.db.write() as con:
            return con.execute("DELETE FROM comparisons WHERE collection = ?", (collection,)).rowcount


# ---------------------------------------------------------------- fine-tuned models

class Models(Records):
    def models_report(self) -> tuple[list[FineTunedModel], int]:
        """(the shipped adapter, then registered models oldest first; records skipped)."""
        out = [m for m in [shipped_model()] if m]
        skipped = 0
        with self.db.connect() as con:
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

    def put_model(self, con: sqlite3.Connection, model: FineTunedModel, activate: bool) -> None:
        """Register a model inside the caller's transaction (a job and its model are written together)."""
        con.execute("INSERT OR REPLACE INTO models (id, name, provider, created_at, version, record) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (model.id, model.name, model.provider, model.created_at or time.time(), 1,
                     json.dumps(model_to_record(model), ensure_ascii=False)))
        if activate:
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('active_model', ?)", (model.id,))

    def add_model(self, model: FineTunedModel, activate: bool = True) -> None:
        if model.id == "shipped":
            raise WorkspaceError("The id 'shipped' is reserved for the shipped adapter.")
        with self.db.write() as con:
            self.put_model(con, model, activate)

    def remove_model(self, model_id: str) -> None:
        with self.db.write() as con:
            con.execute("DELETE FROM models WHERE id = ?", (model_id,))
            if self._meta(con, "active_model") == model_id:
                con.execute("DELETE FROM meta WHERE key = 'active_model'")

    def activate(self, model_id: str) -> None:
        if model_id not in {m.id for m in self.models()}:
            raise WorkspaceError(f"No fine-tuned model {model_id!r} in workspace {self.name!r}.")
        self.set_meta("active_model", model_id)

    def active_model(self) -> FineTunedModel | None:
        """The model picked in this workspace, else the shipped adapter (if present)."""
        models = self.models()
        chosen = self.meta("active_model")
        return next((m for m in models if m.id == chosen), None) or (models[0] if models else None)


# ---------------------------------------------------------------- question sets

class QuestionSets(Records):
    def save_question_set(self, name: str, rows: list[dict[str, Any]], source: str = "") -> None:
        """Store (or replace) a question set of this workspace under `name`."""
        if not name.strip():
            raise WorkspaceError("Name the question set.")
        with self.db.write() as con:
            con.execute("INSERT OR REPLACE INTO question_sets (name, created_at, source, version, rows) "
                        "VALUES (?, ?, ?, 1, ?)", (name.strip(), time.time(), source,
                                                    json.dumps(rows, ensure_ascii=False)))

    def question_sets(self) -> list[str]:
        with self.db.connect() as con:
            return [r[0] for r in con.execute("SELECT name FROM question_sets ORDER BY created_at")]

    def question_set(self, name: str) -> list[dict[str, Any]] | None:
        with self.db.connect() as con:
            row = con.execute("SELECT rows FROM question_sets WHERE name = ?", (name,)).fetchone()
        return None if row is None else list(json.loads(row[0]))

    def delete_question_set(self, name: str) -> None:
        with self.db.write() as con:
            con.execute("DELETE FROM question_sets WHERE name = ?", (name,))


# ---------------------------------------------------------------- evaluation runs

class Runs(Records):
    _RUN_COLUMNS = ("r.id, r.name, r.created_at, r.updated_at, r.status, r.spec, r.questions, r.finished_at, r.error, "
                "(SELECT COUNT(*) FROM eval_answers a WHERE a.run_id = r.id)")

    def create_run(self, run_id: str, spec: RunSpec, questions: list[Question]) -> None:
        now = time.time()
        with self.db.write() as con:
            con.execute("INSERT INTO eval_runs (id, name, created_at, updated_at, status, spec, questions) "
                        "VALUES (?, ?, ?, ?, 'running', ?, ?)",
                        (run_id, spec.name or run_id, now, now, json.dumps(spec.to_dict(), ensure_ascii=False),
                         json.dumps([q.to_row() for q in questions], ensure_ascii=False)))

    def save_answer(self, run_id: str, record: AnswerRecord) -> None:
        with self.db.write() as con:
            con.execute("INSERT OR REPLACE INTO eval_answers (run_id, question_id, arm, created_at, record) "
                        "VALUES (?, ?, ?, ?, ?)", (run_id, record.question.id, record.arm, time.time(),
                                                   json.dumps(record.to_dict(), ensure_ascii=False)))
            con.execute("UPDATE eval_runs SET updated_at = ? WHERE id = ?", (time.time(), run_id))

    def answers(self, run_id: str) -> list[AnswerRecord]:
        """A run's stored answers in the order they were stored; unreadable records are skipped."""
        out = []
        with self.db.connect() as con:
            for (record,) in con.execute("SELECT record FROM eval_answers WHERE run_id = ? ORDER BY rowid",
                                         (run_id,)):
                try:
                    out.append(AnswerRecord.from_dict(json.loads(record)))
                except ValueError:  # RecordError, or not JSON
                    continue
        return out

    def update_run(self, run_id: str, **fields: Any) -> None:
        allowed = {"status", "finished_at", "error"}
        sets = {k: v for k, v in fields.items() if k in allowed}
        if sets.get("error"):
            from lib.errors import redact

            sets["error"] = redact(str(sets["error"]))
        if not sets:
            return
        with self.db.write() as con:
            con.execute(f"UPDATE eval_runs SET {', '.join(f'{k} = ?' for k in sets)}, updated_at = ? WHERE id = ?",
                        (*sets.values(), time.time(), run_id))

    @staticmethod
    def _record(row: tuple[Any, ...]) -> RunRecord | None:
        rid, name, created, updated, status, spec, questions, finished, error, answered = row
        try:
            return RunRecord.from_dict({
                "id": rid, "name": name, "created_at": created, "updated_at": updated, "status": status,
                "spec": json.loads(spec), "questions": json.loads(questions), "finished_at": finished, "error": error,
                "answered": answered})
        except ValueError:  # RecordError, or not JSON
            return None

    def runs(self) -> list[RunRecord]:
        """Every evaluation run of the workspace, newest first (a run that cannot be read is left out)."""
        with self.db.connect() as con:
            rows = con.execute(f"SELECT {self._RUN_COLUMNS} FROM eval_runs r ORDER BY r.created_at DESC").fetchall()
        return [r for r in map(self._record, rows) if r is not None]

    def run(self, run: str) -> RunRecord | None:
        """A run by id, or the latest run of that name."""
        with self.db.connect() as con:
            row = con.execute(f"SELECT {self._RUN_COLUMNS} FROM eval_runs r WHERE r.id = ?", (run,)).fetchone() \
                or con.execute(f"SELECT {self._RUN_COLUMNS} FROM eval_runs r WHERE r.name = ? "
                               "ORDER BY r.created_at DESC LIMIT 1", (run,)).fetchone()
        return None if row is None else self._record(row)

    def delete_run(self, run_id: str) -> None:
        with self.db.write() as con:
            con.execute("DELETE FROM eval_answers WHERE run_id = ?", (run_id,))
            con.execute("DELETE FROM eval_runs WHERE id = ?", (run_id,))


# ---------------------------------------------------------------- leases

class Leases(Records):
    def take_lease(self, resource: str, owner: str, ttl_s: float) -> bool:
        """Own `resource` for `ttl_s` seconds: granted when nobody holds it, its holder's lease has expired, or
        `owner` holds it already (then renewed). One transaction, so two processes cannot both get it."""
        now = time.time()
        with self.db.write() as con:
            row = con.execute("SELECT owner, expires_at FROM leases WHERE resource = ?", (resource,)).fetchone()
            if row is not None and row[0] != owner and row[1] > now:
                return False
            con.execute("INSERT OR REPLACE INTO leases (resource, owner, taken_at, expires_at) VALUES (?, ?, ?, ?)",
                        (resource, owner, now, now + ttl_s))
        return True

    def renew_lease(self, resource: str, owner: str, ttl_s: float) -> bool:
        """Extend `owner`'s lease; False if somebody else holds it now (it expired and was taken over)."""
        with self.db.write() as con:
            return con.execute("UPDATE leases SET expires_at = ? WHERE resource = ? AND owner = ?",
                               (time.time() + ttl_s, resource, owner)).rowcount == 1

    def release_lease(self, resource: str, owner: str) -> None:
        with self.db.write() as con:
            con.execute("DELETE FROM leases WHERE resource = ? AND owner = ?", (resource, owner))

    def lease_holder(self, resource: str) -> tuple[str, float] | None:
        """(owner, expires_at) of a live lease on `resource`, or None when nobody holds it."""
        with self.db.connect() as con:
            row = con.execute("SELECT owner, expires_at FROM leases WHERE resource = ? AND expires_at > ?",
                              (resource, time.time())).fetchone()
        return (str(row[0]), float(row[1])) if row else None


# ---------------------------------------------------------------- capacity measurements (lib/capacity.py)

class Capacities(Records):
    def save_capacity(self, record: dict[str, Any]) -> None:
        """Store a measurement (lib.capacity.Capacity.to_dict)."""
        with self.db.write() as con:
            con.execute("INSERT OR REPLACE INTO capacity (id, created_at, role, model, version, record) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (record["id"], float(record["created_at"]), record["role"], record["model"],
                         int(record.get("version", 1)), json.dumps(record, ensure_ascii=False)))

    def capacities(self, role: str | None = None) -> list[dict[str, Any]]:
        """Stored capacity measurements (of one role), newest first, for lib.capacity.Capacity.from_dict;
        records that are not JSON are skipped."""
        with self.db.connect() as con:
            rows = con.execute("SELECT record FROM capacity WHERE ? IS NULL OR role = ? ORDER BY created_at DESC",
                               (role, role)).fetchall()
        out = []
        for (text,) in rows:
            try:
                out.append(json.loads(text))
            except ValueError:
                continue
        return out


# ---------------------------------------------------------------- training and fine-tuning jobs

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


class Jobs(Models):
    _JOB_COLUMNS = "id, kind, status, name, params, result, error, pid, created_at, updated_at"

    def add_job(self, job_id: str, kind: str, name: str, params: dict[str, Any], status: str = "starting",
                pid: int | None = None) -> JobRecord:
        now = time.time()
        with self.db.write() as con:
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
        with self.db.write() as con:
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
                self.put_model(con, model, activate)

    @staticmethod
    def _job(row: tuple[Any, ...]) -> JobRecord | None:
        try:
            return JobRecord(id=row[0], kind=row[1], status=row[2], name=row[3], params=json.loads(row[4] or "{}"),
                             result=json.loads(row[5]) if row[5] else None, error=row[6], pid=row[7],
                             created_at=row[8], updated_at=row[9])
        except (json.JSONDecodeError, TypeError):
            return None

    def job(self, job_id: str) -> JobRecord | None:
        with self.db.connect() as con:
            row = con.execute(f"SELECT {self._JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._check_alive(self._job(row)) if row else None

    def jobs(self, kind: str | None = None) -> list[JobRecord]:
        """Jobs newest first. A local job whose process has gone without a result is marked failed."""
        where, args = ("WHERE kind = ?", (kind,)) if kind else ("", ())
        with self.db.connect() as con:
            rows = con.execute(f"SELECT {self._JOB_COLUMNS} FROM jobs {where} ORDER BY created_at DESC, rowid DESC",
                               args).fetchall()
        return [j for j in (self._check_alive(self._job(r)) for r in rows) if j is not None]

    def _check_alive(self, job: JobRecord | None) -> JobRecord | None:
        from lib.jobs import pid_alive

        if job is None or job.kind != "local" or job.finished:
            return job
        with self.db.connect() as con:  # the training process holds a lease on its job while it trains
            lease = con.execute("SELECT expires_at FROM leases WHERE resource = ?", (f"job:{job.id}",)).fetchone()
        if lease is not None and lease[0] > time.time():
            return job  # alive, on this machine or another sharing the data folder
        if lease is None and pid_alive(job.pid):
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
