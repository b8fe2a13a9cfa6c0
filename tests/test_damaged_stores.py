"""Damaged stores are reported with their path and left exactly as they are, never re-created (issue 18): the
workspace database (empty, truncated, a corrupted page: `PRAGMA quick_check` on open) and the embedded Chroma
store's chroma.sqlite3 (empty, truncated, random bytes: one plain line naming it, no traceback)."""

import os
import subprocess
import sys

import pytest

from lib.workspace import Workspace, WorkspaceError
from tests.conftest import ROOT

CLI = [sys.executable, "-c", "import sys; from lib.__main__ import main; sys.exit(main(sys.argv[1:]))"]


def _damage(path, how):
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "random bytes":
        path.write_bytes(os.urandom(len(data)))
    elif how == "a corrupted page":  # a table leaf page whose cell pointers now point nowhere sensible
        size = int.from_bytes(data[16:18], "big")
        leaves = [n for n in range(1, len(data) // size) if data[n * size] == 0x0D]
        page = bytearray(data)
        start = leaves[len(leaves) // 2] * size
        page[start + 8:start + 40] = b"\xff" * 32
        path.write_bytes(bytes(page))
    return path.read_bytes()


def _workspace_with_records(data):
    from tests.test_workspace import _comparison

    ws = Workspace(data)
    for i in range(60):
        ws.add_comparison(_comparison(f"c{i}"))
    for suffix in ("-wal", "-shm"):  # all in the main file, as after a clean close
        ws.db_path.with_name(ws.db_path.name + suffix).unlink(missing_ok=True)
    return ws


@pytest.mark.parametrize("how", ["empty", "truncated", "a corrupted page"])
def test_a_damaged_workspace_database_is_reported_and_left_untouched(tmp_path, how):
    data = tmp_path / "data"
    ws = _workspace_with_records(data)
    damaged = _damage(ws.db_path, how)
    run = subprocess.run([*CLI, "list", "--data-dir", str(data)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert str(ws.db_path) in run.stderr and "left exactly as it is" in run.stderr, run.stderr
    assert ws.db_path.read_bytes() == damaged  # never replaced, never re-created empty
    from lib import db as module

    module._checked.clear()
    with pytest.raises(WorkspaceError, match="could not be read"):
        Workspace(data)
    assert ws.db_path.read_bytes() == damaged


@pytest.mark.parametrize("how", ["empty", "truncated", "random bytes"])
def test_a_damaged_chroma_store_is_one_plain_line_and_left_untouched(tmp_path, how):
    data = tmp_path / "data"
    doc = tmp_path / "cat.md"
    doc.write_text("The office cat is called Pixel. " * 40)
    subprocess.run([*CLI, "ingest", str(doc), "--data-dir", str(data)], cwd=ROOT, check=True, capture_output=True,
                   timeout=300)
    store = data / "chroma" / "chroma.sqlite3"
    for suffix in ("-wal", "-shm"):
        store.with_name(store.name + suffix).unlink(missing_ok=True)
    damaged = _damage(store, how)
    for argv in (["list"], ["kbs"], ["ask", "What is the cat called?", "--arms", "rag"]):
        run = subprocess.run([*CLI, *argv, "--data-dir", str(data)], cwd=ROOT, capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 2, (argv, run.stdout, run.stderr)
        assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert str(store) in run.stderr and "left as it is" in run.stderr
        assert store.read_bytes() == damaged  # not re-created
