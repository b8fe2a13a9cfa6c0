"""An Ollama server, when one answers at OLLAMA_HOST (or localhost:11434): the models it has
(`GET /api/tags`), to be used for either role through its OpenAI-compatible endpoint (`/v1`, the
"ollama" provider in lib.providers). The app downloads nothing for Ollama: `ollama pull` does."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from lib.settings import DEFAULT_OLLAMA_HOST


@dataclass(frozen=True)
class OllamaModel:
    name: str  # the tag to ask for, e.g. "llama3.2:1b"
    size_bytes: int | None
    family: str
    parameter_size: str  # as Ollama reports it, e.g. "1.2B"
    quantization: str
    modified_at: str


@dataclass(frozen=True)
class OllamaStatus:
    url: str
    reachable: bool
    models: tuple[OllamaModel, ...] = ()
    error: str | None = None


def ollama_base(settings: Any) -> str:
    return str(getattr(settings, "ollama_host", None) or DEFAULT_OLLAMA_HOST).rstrip("/")


def list_models(settings: Any, timeout: float = 1.5) -> OllamaStatus:
    """The Ollama server's models, or why none could be listed (not running is the usual case)."""
    url = ollama_base(settings)
    try:
        with urllib.request.urlopen(f"{url}/api/tags", timeout=timeout) as response:  # noqa: S310 (a configured URL)
            data = json.loads(response.read().decode("utf-8", errors="replace"))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        return OllamaStatus(url, False, error=f"no Ollama server answers at {url} ({reason})")
    except ValueError:
        return OllamaStatus(url, False, error=f"{url}/api/tags did not answer with JSON: is it an Ollama server?")
    models = []
    for item in data.get("models") or [] if isinstance(data, dict) else []:
        if not isinstance(item, dict) or not item.get("name"):
            continue
        details = item.get("details") if isinstance(item.get("details"), dict) else {}
        models.append(OllamaModel(str(item["name"]),
                                  int(item["size"]) if isinstance(item.get("size"), int) else None,
                                  str(details.get("family") or ""), str(details.get("parameter_size") or ""),
                                  str(details.get("quantization_level") or ""), str(item.get("modified_at") or "")))
    return OllamaStatus(url, True, tuple(sorted(models, key=lambda m: m.name)))
