"""Issue 9 items 1-3: a crash (kill -9 of a real process) or a failure while a document is stored or
replaced never leaves a truncated or mixed document, and two processes replacing one document do not mix
their versions. The child (tests/ingest_child.py) ingests through lib.engine with a store batch of 4."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib import engine
from lib.chunking import chunk_text
from lib.documents import load_bytes
from tests.ingest_child import OVERLAP, SIZE

CHILD = Path(__file__).with_name("ingest_child.py")
KB = "crashes"


def _text(tag: str, n: int = 60) -> str:
    return " ".join(f"Version {tag} sentence {i} says the value of item {i} is {i * 7 + len(tag)}." for i in range(n))


def _chunks(embedder, text: str) -> list[str]:
    return [c.text for c in chunk_text(text, embedder.spans, SIZE, OVERLAP)]


def _spawn(settings, path: Path, mode: str, marker: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(CHILD), str(settings.data_dir), KB, str(path), mode, str(marker)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(marker: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    end = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the child ended before pausing: {proc.communicate()}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError("the child never reached its pause")
        time.sleep(0.1)


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _ingest_in_child_and_kill(settings, path: Path, mode: str, tmp_path: Path) -> None:
    marker = tmp_path / f"paused-{mode.replace(':', '-')}"
    proc = _spawn(settings, path, mode, marker)
    _wait_for(marker, proc)
    _kill(proc)


def _raw_count(kb) -> int:
    return len(kb.collection.get(include=[])["ids"])


def test_a_crash_during_a_large_ingest_leaves_no_truncated_document(settings, embedder, tmp_path):
    path = tmp_path / "big.txt"
    path.write_text(_text("one"))
    full = _chunks(embedder, path.read_text())
    assert len(full) > 8  # several batches of 4
    marker = tmp_path / "paused"
    proc = _spawn(settings, path, "add:2", marker)
    _wait_for(marker, proc)
    # while the child is paused after 2 of its batches: a reader sees nothing of the document, and opening
    # the knowledge base does not delete what a live writer is writing
    kb = engine.open_kb(settings, KB, embedder=embedder)
    assert kb.documents() == [] and kb.find(name="big.txt") is None and kb.count() == 0
    assert kb.chunks_of("big.txt") == [] and kb.query("value of item 3", 5) == []
    assert _raw_count(kb) == 8
    _kill(proc)
    # after the crash: the next open cleans up the incomplete version; re-ingest stores it whole
    kb = engine.open_kb(settings, KB, embedder=embedder)
    assert kb.documents() == [] and _raw_count(kb) == 0
    [again] = engine.ingest_paths(kb, [path], SIZE, OVERLAP)
    assert (again.status, again.chunks) == ("ingested", len(full))
    assert [s.text for s in kb.chunks_of("big.txt")] == full and _raw_count(kb) == len(full)


@pytest.mark.parametrize("mode, visible", [("add:2", "old"), ("delete", "new")])
def test_a_crash_while_replacing_leaves_one_whole_version(settings, embedder, tmp_path, mode, visible):
    """Killed while the new version's chunks go in (readers keep the old version), or after they are all in
    but before the old chunks are deleted (readers see the new version): never both, never a mix."""
    path = tmp_path / "doc.txt"
    old_text, new_text = _text("old", 30), _text("new", 40)
    path.write_text(old_text)
    kb = engine.open_kb(settings, KB, embedder=embedder)
    assert engine.ingest_paths(kb, [path], SIZE, OVERLAP)[0].status == "ingested"
    path.write_text(new_text)
    _ingest_in_child_and_kill(settings, path, mode, tmp_path)
    expected = _chunks(embedder, old_text if visible == "old" else new_text)
    kb = engine.open_kb(settings, KB, embedder=embedder)
    got = kb.chunks_of("doc.txt")
    assert [s.text for s in got] == expected and [s.chunk for s in got] == list(range(len(expected)))
    assert kb.count() == len(expected) and _raw_count(kb) == len(expected)  # the other version was cleaned up
    # re-ingesting the file on disk (the new version) ends with exactly the new version
    assert engine.ingest_paths(kb, [path], SIZE, OVERLAP)[0].status == ("replaced" if visible == "old"
                                                                         else "unchanged")
    assert [s.text for s in kb.chunks_of("doc.txt")] == _chunks(embedder, new_text)
    assert _raw_count(kb) == len(_chunks(embedder, new_text))


def test_a_failed_delete_of_the_old_version_still_switches_cleanly(settings, embedder, monkeypatch):
    kb = engine.open_kb(settings, KB, embedder=embedder)
    old, new = load_bytes("d.md", _text("old", 10).encode()), load_bytes("d.md", _text("new", 12).encode())
    kb.add_document(old, chunk_text(old.text, embedder.spans, SIZE, OVERLAP))
    real_delete = kb.collection.delete

    def failing_delete(**kw):
        raise OSError("disk went away")

    monkeypatch.setattr(kb.collection, "delete", failing_delete)
    assert kb.add_document(new, chunk_text(new.text, embedder.spans, SIZE, OVERLAP)).status == "replaced"
    expected = _chunks(embedder, new.text)
    assert [s.text for s in kb.chunks_of("d.md")] == expected and kb.count() == len(expected)
    assert [s.document for s in kb.query("value of item 3", 50)] == ["d.md"] * len(expected)
    monkeypatch.setattr(kb.collection, "delete", real_delete)
    kb = engine.open_kb(settings, KB, embedder=embedder)  # the next open deletes the superseded chunks
    assert _raw_count(kb) == len(expected) and [s.text for s in kb.chunks_of("d.md")] == expected


def test_two_processes_replacing_one_document_do_not_mix_versions(settings, embedder, tmp_path):
    kb = engine.open_kb(settings, KB, embedder=embedder)
    first = tmp_path / "first" / "shared.txt"
    second = tmp_path / "second" / "shared.txt"
    versions = {}
    for path, tag in ((first, "alpha"), (second, "beta")):
        path.parent.mkdir()
        path.write_text(_text(tag, 30))
        versions[tag] = _chunks(embedder, path.read_text())
    original = load_bytes("shared.txt", _text("original", 20).encode())
    kb.add_document(original, chunk_text(original.text, embedder.spans, SIZE, OVERLAP))
    procs = [_spawn(settings, path, "slow", tmp_path / f"never-{i}") for i, path in enumerate((first, second))]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert [out.split()[0] for out, _ in outputs] == ["replaced", "replaced"]
    kb = engine.open_kb(settings, KB, embedder=embedder)
    got = [s.text for s in kb.chunks_of("shared.txt")]
    assert got in (versions["alpha"], versions["beta"])
    assert _raw_count(kb) == len(got) and [d.name for d in kb.documents()] == ["shared.txt"]


def test_a_knowledge_base_stored_before_commit_records_is_adopted_and_repaired(settings, embedder):
    """Chunks without an ingest id (the first releases) are recorded as committed when the knowledge base is
    opened; of a name left with two versions mixed (the old bug), the newest whole version is kept."""
    client = engine.client_for(settings)
    collection = client.create_collection(KB, embedding_function=embedder, metadata={"hnsw:space": "cosine"})

    def put(name, text, added_at):
        doc = load_bytes(name, text.encode())
        chunks = chunk_text(doc.text, embedder.spans, SIZE, OVERLAP)
        collection.add(ids=[f"{doc.sha256[:24]}-{c.index:05d}" for c in chunks], documents=[c.text for c in chunks],
                       metadatas=[{"document": name, "chunk": c.index, "doc_sha": doc.sha256, "chunk_sha": c.sha256,
                                   "tokens": c.tokens, "kind": doc.kind, "added_at": added_at} for c in chunks])
        return [c.text for c in chunks]

    keep = put("keep.md", _text("keep", 10), 1.0)
    put("mixed.md", _text("older", 12), 2.0)
    newer = put("mixed.md", _text("newer", 10), 3.0)
    kb = engine.open_kb(settings, KB, embedder=embedder)
    assert [(d.name, d.chunks) for d in kb.documents()] == [("keep.md", len(keep)), ("mixed.md", len(newer))]
    assert [s.text for s in kb.chunks_of("mixed.md")] == newer and [s.text for s in kb.chunks_of("keep.md")] == keep
    assert _raw_count(kb) == len(keep) + len(newer) and len(kb.query("value of item 2", 100)) == len(keep) + len(newer)
    assert engine.ingest_upload(kb, "keep.md", _text("keep", 10).encode(), SIZE, OVERLAP).status == "unchanged"
