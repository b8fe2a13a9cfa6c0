"""How many tokens a model's context window holds: the long-context arm asks before it sends the whole knowledge
base. Local models say it themselves (GGUF metadata); hosted ones come from a dated table
(`lib/data/context_windows.json`) that WORKBENCH_CONTEXT_WINDOWS overrides. An unknown window is reported as
unknown, never guessed."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from lib.errors import UserError

TABLE = Path(__file__).parent / "data" / "context_windows.json"


@functools.lru_cache(maxsize=1)
def table() -> dict[str, Any]:
    return json.loads(TABLE.read_text())


def hosted_window(model: str, overrides: tuple[tuple[str, int], ...] = ()) -> tuple[int | None, str]:
    """(window, where it comes from) for a hosted model id (fine-tuned ids: their base model's)."""
    from lib.tokens import base_model_id

    base = base_model_id(model)
    for name, tokens in overrides:
        if model == name or base == name:
            return int(tokens), "WORKBENCH_CONTEXT_WINDOWS"
    known = table()["windows"]
    for prefix in sorted(known, key=len, reverse=True):
        if base == prefix or base.startswith(prefix + "-"):
            return int(known[prefix]), f"{TABLE.name} (checked {table()['checked']})"
    return None, f"no known context window for {model} (add it with WORKBENCH_CONTEXT_WINDOWS={model}=TOKENS)"


def window_of(provider: Any, overrides: tuple[tuple[str, int], ...] = ()) -> tuple[int | None, str]:
    """(window, source) of a provider's model: the GGUF's own for a local model, the table's for a hosted one."""
    own = getattr(provider, "context_window", None)
    if getattr(provider, "kind", "") == "local" and own:
        return int(own), "the model's GGUF metadata"
    spec = getattr(provider, "spec", None)
    return hosted_window(getattr(spec, "name", ""), overrides)


def parse_overrides(text: str) -> tuple[tuple[str, int], ...]:
    """WORKBENCH_CONTEXT_WINDOWS="gpt-4o=128000,my-model=32768" -> (("gpt-4o", 128000), ("my-model", 32768))."""
    out = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, tokens = part.rpartition("=")
        if not sep or not name.strip() or not tokens.strip().isdigit() or int(tokens) <= 0:
            raise UserError(f"WORKBENCH_CONTEXT_WINDOWS: {part.strip()!r} is not MODEL=TOKENS (a positive whole "
                             "number of tokens).")
        out.append((name.strip(), int(tokens)))
    return tuple(out)
