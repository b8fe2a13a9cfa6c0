"""Turn provider exceptions into one sentence a person can act on."""

from __future__ import annotations

import re


class ConfigError(Exception):
    """Something is not set up; the message says how to set it up."""


_SECRETS = [
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 [REDACTED]"),
    (re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_-]{6,}"), "[REDACTED KEY]"),
    (re.compile(r"(?i)((?:api[-_]?key|x-api-key|access[-_]?token|token|key|sig|signature|password|secret)\s*[=:]\s*)"
                r"[^\s&;,'\"]{4,}"), r"\1[REDACTED]"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1[REDACTED]@"),
]


_KNOWN: set[str] = set()


def remember_secret(value: str | None) -> None:
    """A configured key (whatever its shape): redacted verbatim from then on, in this process."""
    if value and len(value) >= 6:
        _KNOWN.add(value)


def redact(text: str, secrets: tuple[str | None, ...] = ()) -> str:
    """The text with API keys, bearer tokens and URL credentials replaced by [REDACTED]. Every message,
    record and export that may carry a server's words goes through this."""
    if not text:
        return text
    for secret in (*secrets, *_KNOWN):
        if secret and len(secret) >= 6:
            text = text.replace(secret, "[REDACTED]")
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class DeadlineExceeded(Exception):
    """An arm ran past its total time limit; the message names the limit."""


class StreamProblem(Exception):
    """A hosted answer that is not a complete answer (cut, empty, not a stream); the message says which."""


class LocalModelError(Exception):
    """The local model (its worker process) could not answer; the message says what happened and what to do."""


def explain(exc: BaseException, model: str = "", where: str = "") -> str:
    """What happened and what to do, without a traceback and without any key."""
    return redact(_explain(exc, model, redact(where)))


def _explain(exc: BaseException, model: str = "", where: str = "") -> str:
    import openai

    server = f" at {where}" if where else ""
    if isinstance(exc, ConfigError):
        return str(exc)
    if isinstance(exc, (DeadlineExceeded, StreamProblem)):
        return str(exc)
    import json

    if isinstance(exc, json.JSONDecodeError):
        return (f"The answer from{server or ' the server'} was not valid JSON ({exc.msg} at position {exc.pos}): "
                "it may not be an OpenAI-compatible endpoint. Check the base URL.")
    if isinstance(exc, LocalModelError):
        text = str(exc)
        return text[:1].upper() + text[1:]
    if isinstance(exc, openai.AuthenticationError):
        return (f"The API key was rejected{server} (401). Check OPENAI_API_KEY (or the Azure key) "
                "in Settings or .streamlit/secrets.toml.")
    if isinstance(exc, openai.PermissionDeniedError):
        return f"The key has no access to {model or 'this model'}{server} (403). Use a key or project that has it."
    if isinstance(exc, openai.NotFoundError):
        return (f"Model {model!r} was not found{server} (404): the name is wrong or the model was deleted. "
                "Pick another model in Settings.")
    if isinstance(exc, openai.RateLimitError):
        return ("Rate limit or quota exceeded (429). Wait a minute and try again, "
                "or check your plan's limits and billing.")
    if isinstance(exc, openai.APITimeoutError):
        return (f"{model or 'The model'} did not answer in time{server}. Try again, lower max tokens, "
                "or raise the timeout (WORKBENCH_TIMEOUT).")
    if isinstance(exc, openai.APIConnectionError):
        return (f"Could not connect{server}. Check the base URL and that the server is running "
                "(and that this machine can reach it).")
    if isinstance(exc, openai.BadRequestError):
        message = getattr(exc, "message", str(exc))
        return f"The request was rejected (400): {message}"
    if isinstance(exc, openai.InternalServerError):
        return f"The server had an error ({getattr(exc, 'status_code', 500)}). Try again in a moment."
    if isinstance(exc, openai.APIStatusError):
        return f"The server answered {exc.status_code}: {getattr(exc, 'message', exc)}"
    if isinstance(exc, FileNotFoundError):
        return f"Model file not found: {exc.filename or exc}. Check the path in Settings."
    if isinstance(exc, MemoryError):
        return "Out of memory while running the model. Close other apps or pick a smaller model."
    return f"{type(exc).__name__}: {exc}"
