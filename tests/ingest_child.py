"""A child process that ingests one file through lib.engine with a small store batch size, for the crash
and concurrency tests in tests/test_ingest_crash.py. Usage:

    python tests/ingest_child.py DATA KB FILE MODE MARKER

MODE: `add:N` pauses (forever, until killed) after the N-th batch is stored; `delete` pauses before the first
chunk delete of the ingest (after the new version is stored); `slow` waits a little after every batch;
`none` just ingests. A pause writes MARKER first, so the parent knows when to kill -9."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib import engine  # noqa: E402
from lib.settings import load_settings  # noqa: E402

BATCH = 4  # records per Chroma add, instead of ~5,461: a small file needs several batches
SIZE, OVERLAP = 32, 0  # chunk size: a small file makes many chunks


def main() -> None:
    data, kb_name, path, mode, marker = sys.argv[1:6]
    settings = load_settings(env={}, secrets_file=None, data_dir=Path(data))
    kb = engine.open_kb(settings, kb_name)
    kb.client.get_max_batch_size = lambda: BATCH  # type: ignore[method-assign]
    cls = type(kb.collection)
    real_add, real_delete = cls.add, cls.delete
    adds = {"n": 0}

    def pause() -> None:
        Path(marker).write_text("paused")
        time.sleep(600)

    def add(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        out = real_add(self, *args, **kwargs)
        adds["n"] += 1
        if mode == f"add:{adds['n']}":
            pause()
        if mode == "slow":
            time.sleep(0.2)
        return out

    def delete(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if mode == "delete":
            pause()
        return real_delete(self, *args, **kwargs)

    cls.add, cls.delete = add, delete
    [result] = engine.ingest_paths(kb, [path], SIZE, OVERLAP)
    print(result.status, result.chunks, result.error or "")


if __name__ == "__main__":
    main()
