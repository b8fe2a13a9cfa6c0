"""A workspace owns everything a user changes: its knowledge bases (a Chroma database per workspace, see
lib/store.py, with the document ledger of lib/store_ledger.py) and a SQLite database of versioned records
(lib/db.py): comparisons and their per-arm results, the fine-tuned model registry and the active model,
question sets, evaluation runs, leases, capacity measurements, training and fine-tuning jobs
(lib/workspace_records.py, one small class each; `Workspace` is all of them over one database).

Layout under the data folder:
    data/chroma/                        the Chroma store (one Chroma database per workspace)
    data/workspaces/<name>/workspace.db the workspace's records (SQLite, WAL)
    data/workspaces/<name>/jobs/<id>/   a local training job's data, progress and log
    data/workspaces/<name>/adapters/    LoRA adapters trained in this workspace

A database that cannot be read is reported, naming the file, and left exactly as it is: it is never replaced by
an empty one. A record of another shape (a newer version, or damaged) is skipped and counted, never fatal.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

from lib.db import WORKSPACE_DB, WorkspaceError, workspace_database
from lib.finetune.registry import model_from_record
from lib.records import Comparison, RecordError
from lib.store_ledger import DocumentLedger
from lib.workspace_records import Capacities, History, Jobs, Leases, QuestionSets, Runs

__all__ = ["DEFAULT_WORKSPACE", "NAME_RULE", "Workspace", "WorkspaceError", "check_workspace_name",
           "delete_workspace_files", "list_workspaces", "workspace_exists"]

DEFAULT_WORKSPACE = "default"
DB_NAME = WORKSPACE_DB
_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,30}[a-z0-9])?$")
NAME_RULE = ("use 1-32 lower-case letters, digits, '-' or '_', starting and ending with a letter or digit "
             "(for example 'alice' or 'team-2')")


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


class Workspace(History, Jobs, QuestionSets, Runs, Leases, Capacities):
    """One workspace: its folder under data/workspaces/, its records database (`db`) and the document ledger of
    its knowledge bases (`document_ledger`)."""

    def __init__(self, data_dir: str | Path, name: str = DEFAULT_WORKSPACE, create: bool = True) -> None:
        self.data_dir = Path(data_dir)
        name = check_workspace_name(name)
        folder = workspaces_root(self.data_dir) / name
        if not (folder / DB_NAME).is_file() and not create and name != DEFAULT_WORKSPACE:
            raise WorkspaceError(f"No workspace named {name!r}. Create it with "
                                 f"`python -m lib workspaces create {name}` or in the sidebar.")
        super().__init__(workspace_database(self.data_dir, name), folder, name)
        self.db_path = self.db.path
        self.document_ledger = DocumentLedger(self.db, self.folder / "locks")
        if self.name == DEFAULT_WORKSPACE:
            self.legacy_import = import_legacy(self)

    @property
    def schema_version(self) -> int:
        return self.db.schema_version


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
            if isinstance(item, dict):
                item.setdefault("collection", path.stem)
            try:
                records.append(Comparison.from_dict(item))
            except RecordError:
                summary["skipped_lines"] += 1
        summary["comparisons"] += ws.insert_comparisons(records)
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
            with ws.db.write() as con:
                for m in models:
                    if m is not None and m.id != "shipped" and not con.execute(
                            "SELECT 1 FROM models WHERE id = ?", (m.id,)).fetchone():
                        ws.put_model(con, m, activate=False)
                        summary["models"] += 1
                if isinstance(data.get("active"), str) and ws._meta(con, "active_model") is None:
                    con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('active_model', ?)",
                                (data["active"],))
            _mark_imported(models_file)
            summary["files"].append(models_file.name)
    if not summary["files"]:
        return summary
    ws.set_meta(f"legacy_import_{time.time():.0f}", json.dumps(summary))
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
