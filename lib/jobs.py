"""Long work in a background thread that a UI can poll: a comparison streaming
text per arm. Plain threads and locks, no UI framework. And whether a recorded process
(a training job, a download) still runs."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class Job(Generic[T]):
    """Run `work(on_delta)` (or `work(on_delta, on_status)` with `statuses=True`) in a thread; `texts` holds
    what each key streamed so far, `statuses` what each key is waiting for (e.g. its place in a queue)."""

    def __init__(self, work: Callable[..., T], statuses: bool = False) -> None:
        self._work = work
        self._with_status = statuses
        self._lock = threading.Lock()
        self._texts: dict[str, str] = {}
        self._statuses: dict[str, str] = {}
        self.result: T | None = None
        self.error: BaseException | None = None
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="workbench-job", daemon=True)

    def start(self) -> Job[T]:
        self._thread.start()
        return self

    def _on_delta(self, key: str, text: str) -> None:
        with self._lock:
            self._texts[key] = self._texts.get(key, "") + text

    def _on_status(self, key: str, status: str) -> None:
        with self._lock:
            self._statuses[key] = status

    def _run(self) -> None:
        try:
            self.result = self._work(self._on_delta, self._on_status) if self._with_status else \
                self._work(self._on_delta)
        except BaseException as exc:  # reported to the UI, never lost in a thread
            self.error = exc

    def texts(self) -> dict[str, str]:
        with self._lock:
            return dict(self._texts)

    def statuses(self) -> dict[str, str]:
        with self._lock:
            return {k: v for k, v in self._statuses.items() if v}

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return self.done


def pid_alive(pid: int | None) -> bool:
    """Whether the process `pid` still runs (a finished child that nobody reaped yet does not)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True
