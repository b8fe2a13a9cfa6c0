"""Turn provider exceptions into one sentence a person can act on."""

from __future__ import annotations

import re
from datetime import UTC
from pathlib import Path


class ConfigError(Exception):
    """Something is not set up; the message says how to set it up."""


class UserError(ConfigError, ValueError):
    """Something the user can fix (a bad input, a name that does not exist, a file that cannot be written): the
    message says what and how. The CLI and the pages show it as it is; any other exception is a bug (logged).
    It is also a `ValueError`, so code that validated input with `except ValueError` keeps working."""


class CapReached(ConfigError):
    """A hosted request was refused by a spend cap (lib/gateway.py); the message says what was spent and reserved,
    the cap, and who can raise it."""


class NotAllowed(ConfigError):
    """In workshop mode, a hosted model the host did not allow for this role (lib/gateway.py)."""


def _credential(m: re.Match[str]) -> str:
    """`Bearer X` / `Basic X` when X is a credential (not "basic coverage"): a bearer token of 16+ characters with a
    digit, a basic token that is base64 of `user:password`."""
    scheme, token = m.group(1), m.group(2)
    if scheme.lower() == "bearer":
        shaped = len(token) >= 16 and any(c.isdigit() for c in token)
    else:
        import base64
        import binascii

        try:
            shaped = b":" in base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
        except (binascii.Error, ValueError):
            shaped = False
    return f"{scheme} [REDACTED]" if shaped else m.group(0)


# Credentials by their shape, in any text (answers included): bearer and basic tokens, keys such as sk-...,
# user:password@ in URLs.
_SHAPED = [
    (re.compile(r"(?i)\b(bearer|basic)\s+([A-Za-z0-9._~+/=-]{6,})"), _credential),
    (re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_-]{6,}"), "[REDACTED KEY]"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1[REDACTED]@"),
]
# In messages and records (not answers, where "Password: at least 12 characters" is text): `key=...` values too.
_SECRETS = [
    *_SHAPED,
    (re.compile(r"(?i)((?:api[-_]?key|x-api-key|access[-_]?token|token|key|sig|signature|password|secret)\s*[=:]\s*)"
                r"[^\s&;,'\"]{4,}"), r"\1[REDACTED]"),
]


_KNOWN: set[str] = set()
_compiled: tuple[frozenset[str], re.Pattern[str] | None, re.Pattern[str] | None, int] = (frozenset(), None, None, 0)


def remember_secret(value: str | None) -> None:
    """A configured key (whatever its shape): redacted from then on, in this process, in every form
    (see `secret_forms`)."""
    if value and len(value) >= 6:
        _KNOWN.add(value)


def _base64_cores(secret: bytes) -> set[str]:
    """The part of the base64 text of `secret` that is the same wherever it sits inside a longer base64 string
    (for each of the three byte alignments, standard and URL-safe alphabets): a key inside an encoded
    `Authorization: Basic ...` value or a base64 blob is found too."""
    import base64

    out = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + secret).decode()
        head = 4 if shift else 0  # the first group mixes the alignment bytes with the secret's
        whole = ((shift + len(secret)) // 3) * 4  # groups of three bytes that are complete
        core = encoded[head:whole]
        if len(core) >= 8:
            out |= {core, core.replace("+", "-").replace("/", "_")}
    return out


def secret_forms(secret: str) -> tuple[set[str], set[str]]:
    """(forms matched ignoring case, forms matched exactly) of one secret: the plain text and its URL-encoded
    forms in any letter case; its base64 (standard, URL-safe, at any alignment) of the secret as written and
    upper- and lower-cased."""
    from urllib.parse import quote, quote_plus

    any_case = {secret, quote(secret, safe=""), quote_plus(secret)}
    exact: set[str] = set()
    for variant in {secret, secret.upper(), secret.lower()}:
        exact |= _base64_cores(variant.encode("utf-8"))
    return {f for f in any_case if len(f) >= 6}, exact


def _patterns() -> tuple[re.Pattern[str] | None, re.Pattern[str] | None, int]:
    """Compiled patterns of every remembered secret's forms (rebuilt when a secret is added)."""
    global _compiled
    known = frozenset(_KNOWN)
    if known != _compiled[0]:
        fold: set[str] = set()
        exact: set[str] = set()
        for secret in known:
            a, b = secret_forms(secret)
            fold |= a
            exact |= b

        def alternation(forms: set[str], flags: int) -> re.Pattern[str] | None:
            if not forms:
                return None
            return re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)), flags)

        longest = max((len(f) for f in fold | exact), default=0)
        _compiled = (known, alternation(fold, re.IGNORECASE), alternation(exact, 0), longest)
    return _compiled[1], _compiled[2], _compiled[3]


def redact(text: str, secrets: tuple[str | None, ...] = (), answer: bool = False) -> str:
    """The text with API keys, bearer and basic tokens and URL credentials replaced by [REDACTED]: every
    remembered secret in its plain, URL-encoded, base64 and case-changed forms, and key-shaped strings of any
    provider (in a message, also `key=...` and `password: ...` values; not in an `answer`, where such words are
    text). Provider output is redacted where it enters (lib.providers, `explain`); messages, records and exports
    that may carry a server's words go through this too."""
    if not text:
        return text
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = re.sub(re.escape(secret), "[REDACTED]", text, flags=re.IGNORECASE)
    fold, exact, _ = _patterns()
    if fold is not None:
        text = fold.sub("[REDACTED]", text)
    if exact is not None:
        text = exact.sub("[REDACTED]", text)
    for pattern, replacement in _SHAPED if answer else _SECRETS:
        text = pattern.sub(replacement, text)  # type: ignore[call-overload]
    return text


# The unfinished end of a stream that may be the start of a key-shaped string (held back until it is complete).
_TAIL = re.compile(r"(?i)(?:\b(?:sk|rk|pk)(?:-[A-Za-z0-9_-]*)?|\b(?:bearer|basic)(?:\s+[A-Za-z0-9._~+/=-]*)?"
                   r"|[a-z][a-z0-9+.-]*://[^/\s]*)$")


def _prefixes() -> tuple[set[str], set[str]]:
    """Every beginning of every remembered secret's forms: (lower-cased, of the forms matched in any case;
    as written, of the exact forms)."""
    global _prefix_cache
    known = frozenset(_KNOWN)
    if _prefix_cache[0] != known:
        fold: set[str] = set()
        exact: set[str] = set()
        for secret in known:
            a, b = secret_forms(secret)
            fold |= {f.lower()[:n] for f in a for n in range(1, len(f))}
            exact |= {f[:n] for f in b for n in range(1, len(f))}
        _prefix_cache = (known, fold, exact)
    return _prefix_cache[1], _prefix_cache[2]


_prefix_cache: tuple[frozenset[str], set[str], set[str]] = (frozenset(), set(), set())


class RedactingStream:
    """Redacts streamed text whose secrets may be split across chunks. Text goes through at once, redacted,
    except an end that could be the beginning of a secret (of a remembered secret's forms, or key-shaped: `sk-`,
    `Bearer `, a URL), which is held back until the next chunk shows what it is; so answers are not delayed, and a
    key is never let out in pieces. Answers keep words such as "Password: at least 12 characters" (see `redact`)."""

    MAX_HOLD = 4096  # an end that keeps looking like a key for longer than this goes out (redacted) anyway

    def __init__(self) -> None:
        self.pending = ""

    def _hold_from(self) -> int:
        text = self.pending
        _, _, longest = _patterns()
        fold, exact = _prefixes()
        start = len(text)
        lowered = text.lower()
        for i in range(max(0, len(text) - longest), len(text)):  # a proper beginning of a remembered secret's form
            if lowered[i:] in fold or text[i:] in exact:
                start = i
                break
        tail = _TAIL.search(text, max(0, len(text) - self.MAX_HOLD))
        if tail is not None:
            start = min(start, tail.start())
        return start

    def feed(self, text: str) -> str:
        self.pending += text
        cut = self._hold_from()
        for pattern in _patterns()[:2]:  # a whole secret across the cut goes out whole, and redacted
            for m in pattern.finditer(self.pending) if pattern is not None else ():
                if m.start() < cut < m.end():
                    cut = m.end()
        if cut <= 0:
            return ""
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return redact(out, answer=True)

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return redact(out, answer=True)


class DeadlineExceeded(Exception):
    """An arm ran past its total time limit; the message names the limit."""


class StreamProblem(Exception):
    """A hosted answer that is not a complete answer (cut, empty, not a stream); the message says which."""


class LocalModelError(Exception):
    """The local model (its worker process) could not answer; the message says what happened and what to do."""


def explain(exc: BaseException, model: str = "", where: str = "") -> str:
    """What happened and what to do, without a traceback and without any key (in any of its forms)."""
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


BUG_LOG = Path("logs") / "errors.log"  # under the data folder


def report_bug(exc: BaseException, data_dir: str | Path) -> str:
    """Log an unexpected exception (a bug, not something the user can fix) with its traceback, redacted, to
    `<data>/logs/errors.log`, and return the plain sentence to show: something went wrong, and where the log is.
    Never raises: if the log cannot be written, the sentence says so."""
    import traceback
    from datetime import datetime

    log = Path(data_dir) / BUG_LOG
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    entry = f"--- {datetime.now(UTC).isoformat(timespec='seconds')}\n{redact(trace)}\n"
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as f:
            f.write(entry)
        where = f"The details are in {log}; please include them when you report it."
    except OSError as err:
        where = f"The details could not be written to {log} ({err.strerror or err})."
    return (f"Something went wrong: an unexpected {type(exc).__name__}. This is a bug in the workbench, not "
            f"something you did. {where}")
