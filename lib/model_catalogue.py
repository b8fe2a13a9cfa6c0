"""The model catalogue's list: small open models in GGUF that a user can download, read from the dated data file
`lib/data/model_catalogue.json` (with its sources). What the app does with them (which model plays a role, speeds,
the small-model caveat) is lib/catalogue.py; downloading them is lib/modelhub.py."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

from lib.errors import ConfigError

CATALOGUE_FILE = Path(__file__).resolve().parent / "data" / "model_catalogue.json"
BUNDLED = "smollm2-135m"
SMALL_PARAMS = 1_000_000_000  # below this, evaluation pages say that results at this size can invert
RUNTIME_OVERHEAD = 150_000_000  # llama.cpp's compute buffers and the worker process, roughly
@dataclass(frozen=True)
class TrainingFiles:
    """Where the same model's weights for LoRA training come from (safetensors), or `from_gguf` for the bundled one."""

    repo: str = ""
    files: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    size_bytes: int | None = None
    memory_bytes: int | None = None
    from_gguf: bool = False


@dataclass(frozen=True)
class CatalogueModel:
    name: str
    label: str
    repo: str
    file: str
    revision: str
    quantisation: str
    size_bytes: int
    size_exact: bool
    params: int
    context: int
    license: str
    arch: str
    layers: int
    kv_heads: int
    head_dim: int
    notes: str = ""
    bundled: bool = False
    training: TrainingFiles | None = None

    def kv_bytes(self, n_ctx: int) -> int:
        """llama.cpp's f16 KV cache for n_ctx tokens: keys and values, every layer."""
        return 2 * self.layers * self.kv_heads * self.head_dim * 2 * n_ctx

    def memory_bytes(self, max_ctx: int) -> int:
        """Memory to run it, estimated: the weights (the file is mapped whole), the KV cache at the context the app
        allocates, and llama.cpp's buffers."""
        return self.size_bytes + self.kv_bytes(min(self.context, max_ctx)) + RUNTIME_OVERHEAD

    @property
    def can_finetune(self) -> bool:
        return self.training is not None


@dataclass(frozen=True)
class Catalogue:
    date: str
    about: str
    sources: str
    models: tuple[CatalogueModel, ...] = field(default_factory=tuple)


@functools.lru_cache(maxsize=1)
def catalogue() -> Catalogue:
    data = json.loads(CATALOGUE_FILE.read_text())
    models = []
    for m in data["models"]:
        t = m.get("training")
        training = None if t is None else TrainingFiles(
            repo=t.get("repo", ""), files=tuple(t.get("files", ())), optional=tuple(t.get("optional", ())),
            size_bytes=t.get("size_bytes"), memory_bytes=t.get("memory_bytes"), from_gguf=bool(t.get("from_gguf")))
        models.append(CatalogueModel(**{k: v for k, v in m.items() if k != "training"}, training=training))
    return Catalogue(data["date"], data["about"], data["sources"], tuple(models))


def names() -> list[str]:
    return [m.name for m in catalogue().models]


def find(name: str) -> CatalogueModel:
    for m in catalogue().models:
        if m.name == name:
            return m
    raise ConfigError(f"No model named {name!r} in the catalogue ({catalogue().date}): choose one of "
                      f"{', '.join(names())} (python -m lib models list).")
