"""Generation providers behind one small protocol: `stream(messages, params)`
yields `Started`, then `Delta`s, then one `Done` with the usage.

- `LocalLlama`: a GGUF model (optionally with a LoRA adapter) run by llama.cpp in the
  shared local worker processes (lib.local_worker), requests of one model decoded together in batches,
  admitted in arrival order by the machine queue (lib.local_queue).
- `OpenAICompatible`: OpenAI, Azure OpenAI or any OpenAI-compatible base URL.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lib.errors import ConfigError
from lib.local_model import StopFilter, bundled_model_path  # noqa: F401  (StopFilter: re-exported)
from lib.records import GenParams
from lib.settings import LOCAL_BASE_MODEL, LOCAL_MAX_CTX, OPENAI_DEFAULT_URL, ModelSpec, Settings

Message = dict[str, str]


def scrubbed(events: Iterator[Event]) -> Iterator[Event]:
    """A provider's events with every secret redacted from the streamed text (lib.errors.RedactingStream), even
    when a key arrives split across chunks: what a provider says enters the system here, once."""
    from lib.errors import RedactingStream

    scrub = RedactingStream()
    try:
        for event in events:
            if isinstance(event, Delta):
                text = scrub.feed(event.text)
                if text:
                    yield Delta(text)
                continue
            if isinstance(event, Done):
                rest = scrub.flush()
                if rest:
                    yield Delta(rest)
            yield event
    except Exception:
        rest = scrub.flush()  # what arrived before a failure is kept (redacted), as it would have been shown
        if rest:
            yield Delta(rest)
        raise
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()  # a consumer that stops early ends the provider's stream now (its queue place, its request)
    rest = scrub.flush()
    if rest:
        yield Delta(rest)


@dataclass(frozen=True)
class Queued:
    """Waiting for the shared local model: `ahead` requests before this one (the running one included)."""

    ahead: int
    expected_wait_s: float | None = None


@dataclass(frozen=True)
class Started:
    """The model began work on this request (after any wait for a shared local model)."""


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Done:
    finish_reason: str | None
    prompt_tokens: int | None  # None when the provider did not report usage (or reported usage that cannot be right)
    completion_tokens: int | None
    cached_tokens: int = 0
    untrusted: str | None = None  # why the usage the server reported was not used (`untrusted_usage`)
    batch_size: int | None = None  # local model: the most requests decoded together with this one (1 = alone)


# Slack over `max_tokens` for a completion count a server may report (an end-of-text token, say).
COMPLETION_SLACK = 16


def prompt_token_ceiling(messages: list[Message]) -> int:
    """The most tokens any tokenizer can make of these messages: one per byte of their text (byte-level BPE and
    byte-fallback tokenizers never make more), plus 32 a message for a chat template's framing and 256 for a
    server's own preamble."""
    return sum(len(m.get("content", "").encode("utf-8")) + 32 for m in messages) + 256


def untrusted_usage(done: Done, prompt_ceiling: int, max_tokens: int | None) -> str | None:
    """Why the usage a provider reported cannot be right (None when it can): not whole numbers, negative, a
    completion past `max_tokens`, a prompt past `prompt_ceiling` (more tokens than the prompt sent could make),
    or cached tokens outside the prompt."""
    values = {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
              "cached_tokens": done.cached_tokens}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value in (
                float("inf"), float("-inf")) or int(value) != value:
            return f"{name} {value!r} is not a whole number"
        if value < 0:
            return f"{name} {value:,} is negative"
    prompt, completion = int(done.prompt_tokens or 0), int(done.completion_tokens or 0)
    if max_tokens is not None and completion > max_tokens + COMPLETION_SLACK:
        return f"completion_tokens {completion:,} is more than the {max_tokens:,} max tokens asked for"
    if prompt > prompt_ceiling:
        return f"prompt_tokens {prompt:,} is more than the prompt sent could make (at most {prompt_ceiling:,})"
    if int(done.cached_tokens or 0) > prompt:
        return f"cached_tokens {int(done.cached_tokens or 0):,} is more than the prompt's {prompt:,}"
    return None


Event = Queued | Started | Delta | Done


class Provider(Protocol):
    spec: ModelSpec
    kind: str  # "local" | "openai" | "azure"

    def stream(self, messages: list[Message], params: GenParams) -> Iterator[Event]: ...

    def count_tokens(self, text: str) -> int: ...


# ---------------------------------------------------------------- local (llama.cpp)

def resolve_model_path(name: str) -> Path:
    if name in (LOCAL_BASE_MODEL, "", "default"):
        return bundled_model_path()
    path = Path(name).expanduser()
    if not path.is_file():
        raise ConfigError(f"Local model file {name!r} does not exist. Give the path of a .gguf file, "
                          f"or {LOCAL_BASE_MODEL!r} for the bundled model.")
    return path


_vocabs: dict[str, Any] = {}
_vocabs_guard = threading.Lock()


def _vocab(path: Path) -> Any:
    """The model's tokenizer and metadata only (no weights): counting tokens and rendering the chat
    template happen in the app process, generation in the worker process."""
    key = str(path)
    with _vocabs_guard:
        if key not in _vocabs:
            from llama_cpp import Llama

            _vocabs[key] = Llama(model_path=key, vocab_only=True, verbose=False)
        return _vocabs[key]


class LocalLlama:
    """A GGUF model (optionally with a LoRA adapter) run by llama.cpp in the shared local worker
    processes (lib.local_worker): requests of one model and adapter are decoded together in batches, admitted
    in arrival order across all sessions; the arms of one comparison are served one after another."""

    kind = "local"

    def __init__(self, spec: ModelSpec, n_ctx: int | None = None, threads: int | None = None,
                 extra_bufts: str = "auto", max_ctx: int = LOCAL_MAX_CTX, processes: int | None = None,
                 batch: int | None = None) -> None:
        from lib import local_worker
        from lib.gguf_meta import GGUFError, read_gguf

        self.spec = spec
        self.path = resolve_model_path(spec.name)
        if spec.lora and not Path(spec.lora).is_file():
            raise ConfigError(f"LoRA adapter {spec.lora!r} does not exist. Train one on the Fine-tune page "
                              "or fix the path in Settings.")
        try:
            info = read_gguf(self.path)
        except GGUFError as exc:
            raise ConfigError(f"The local model {self.path.name} cannot be used: {exc}.") from exc
        self.params = info.params  # from the GGUF's tensors, not from the model's name
        # The window the model was trained for (what a long-context comparison may use), and what llama.cpp
        # allocates: that window, capped for memory (WORKBENCH_LOCAL_CTX; the KV cache grows with it).
        self.context_window = info.context_length or 2048
        self.n_ctx = n_ctx or min(self.context_window, max_ctx)
        processes, self.threads = local_worker.serving_layout(os.cpu_count() or 1, processes, threads)
        self.worker = local_worker.worker(extra_bufts, processes, batch or local_worker.DEFAULT_BATCH)

    def count_tokens(self, text: str) -> int:
        return len(_vocab(self.path).tokenize(text.encode(), add_bos=False, special=False))

    def render(self, messages: list[Message]) -> tuple[str, list[str]]:
        """The exact prompt text the model sees (from the GGUF's own chat template) and its stop strings."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = _vocab(self.path)
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ConfigError(f"{self.path.name} has no chat template; use an instruction-tuned GGUF.")
        eos = llm.detokenize([llm.token_eos()], special=True).decode(errors="ignore")
        bos = llm.detokenize([llm.token_bos()], special=True).decode(errors="ignore")
        formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos,
                                        add_generation_prompt=True)
        result = formatter(messages=messages)
        stop = result.stop if isinstance(result.stop, list) else [result.stop]
        return result.prompt, [s for s in stop if s]

    def with_context(self, tokens: int) -> LocalLlama:
        """This model with room for `tokens` (prompt and answer) in its context, up to its own window: the
        long-context arm reads the whole knowledge base. The worker reloads its context for a new size."""
        import copy

        wider = copy.copy(self)
        wider.n_ctx = max(self.n_ctx, min(self.context_window, -(-tokens // 256) * 256))
        return wider

    def request(self, messages: list[Message], params: GenParams) -> dict[str, Any]:
        return {"model": str(self.path), "lora": self.spec.lora, "n_ctx": self.n_ctx, "threads": self.threads,
                "label": self.spec.label, "messages": messages,
                "params": {"max_tokens": params.max_tokens, "temperature": params.temperature, "seed": params.seed,
                           "stop": list(params.stop), "repeat_penalty": params.repeat_penalty}}

    def stream(self, messages: list[Message], params: GenParams) -> Iterator[Event]:
        """Wait for a place in a batch (yielding `Queued` with how many are ahead), then stream from the worker;
        `Started` comes when the request joins its batch. Usage is exact: the worker counts the prompt with the
        model's own tokenizer and every sampled token. Closing the stream early cancels the request."""
        return scrubbed(self._stream(messages, params))

    def _stream(self, messages: list[Message], params: GenParams) -> Iterator[Event]:
        from lib.local_queue import current_group

        worker = self.worker
        queue = worker.queue
        ticket = queue.join(batch_key=(str(self.path), self.n_ctx, self.threads, self.spec.lora),
                            lanes=worker.lane_ids, slots=worker.batch, group=current_group())
        try:
            while (ahead := queue.wait_turn(ticket, 0.5)) > 0:
                yield Queued(ahead, queue.expected_wait_s(ahead, ticket.capacity))
            for reply in worker.generate(self.request(messages, params), worker.lane_index(ticket.lane)):
                if reply[0] == "started":
                    yield Started()
                elif reply[0] == "delta":
                    yield Delta(reply[1])
                elif reply[0] == "done":
                    yield Done(reply[1], reply[2], reply[3], batch_size=reply[4])
        finally:
            queue.leave(ticket)


# ---------------------------------------------------------------- OpenAI-compatible

def openai_client(settings: Settings, timeout: float | None = None) -> Any:
    """OpenAI, Azure OpenAI or any OpenAI-compatible server, from the settings. Only the gateway
    (lib/gateway.py) calls this. A key is only ever sent to the endpoint configured with it
    (Settings.key_for_openai / key_for_azure): a base URL typed in the app never receives the key
    of the environment or secrets file."""
    import openai

    from lib.errors import remember_secret
    from lib.settings import endpoint_id

    for secret in (settings.openai_api_key, settings.azure_api_key):
        remember_secret(secret)
    timeout = timeout or settings.request_timeout_s
    if settings.azure_endpoint:
        key = settings.key_for_azure()
        if not key:
            if settings.azure_api_key or settings.openai_api_key:
                raise ConfigError(f"No key for the Azure endpoint {endpoint_id(settings.azure_endpoint)}: the "
                                  "configured key is only sent to the endpoint configured with it. Type the key "
                                  "for this endpoint in Settings, or set AZURE_OPENAI_API_KEY with it.")
            raise ConfigError("Azure OpenAI needs a key: set AZURE_OPENAI_API_KEY.")
        return openai.AzureOpenAI(azure_endpoint=settings.azure_endpoint, api_key=key,
                                  api_version=settings.azure_api_version, timeout=timeout,
                                  max_retries=settings.max_retries)
    key = settings.key_for_openai()
    if not key and not settings.openai_base_url:
        if settings.openai_api_key:
            raise ConfigError(f"The configured key is only sent to the endpoint configured with it "
                              f"({settings.openai_key_scope}), not to {endpoint_id(None)}: type a key for it in "
                              "Settings.")
        raise ConfigError("No API key: set OPENAI_API_KEY (or OPENAI_BASE_URL for a local OpenAI-compatible "
                          "server such as Ollama or vLLM), or use the local models.")
    # Local servers (Ollama, vLLM, llama.cpp) take any key; the client insists on one. A base URL that no
    # key is bound to gets this placeholder, never a key configured for another endpoint.
    # The URL is always given: the client would otherwise read OPENAI_BASE_URL from the environment.
    return openai.OpenAI(api_key=key or "not-needed", base_url=settings.openai_base_url or OPENAI_DEFAULT_URL,
                         timeout=timeout, max_retries=settings.max_retries)


def _reasoning_model(model: str) -> bool:
    from lib.tokens import base_model_id

    base = base_model_id(model)
    return base.startswith(("o1", "o3", "o4", "gpt-5"))


class OpenAICompatible:
    """A hosted model. Every answer has a total deadline (`deadline_s`, WORKBENCH_ARM_DEADLINE) that covers the
    retries too; `read_timeout_s` (WORKBENCH_TIMEOUT) bounds each wait for the server. A stream that is cut, empty,
    not a stream at all, or ends without a finish reason is never taken for a complete answer."""

    RETRYABLE = ("RateLimitError", "InternalServerError", "APIConnectionError", "APITimeoutError")

    def __init__(self, spec: ModelSpec, client: Any, deadline_s: float = 120.0, read_timeout_s: float | None = None,
                 retries: int | None = None) -> None:
        self.spec = spec
        self.kind = spec.provider
        self.client = client
        self.deadline_s = deadline_s
        own = getattr(client, "timeout", None)  # by default, the client's own timeout and retries
        self.read_timeout_s = read_timeout_s if read_timeout_s is not None else \
            (float(own) if isinstance(own, int | float) else 60.0)
        self.retries = retries if retries is not None else int(getattr(client, "max_retries", 2) or 0)
        _remember_client_secrets(client)

    @property
    def where(self) -> str:
        return str(getattr(self.client, "base_url", "") or "")

    def count_tokens(self, text: str) -> int:
        from lib.tokens import count_openai

        return count_openai(text, self.spec.name)

    def _open(self, kwargs: dict[str, Any], deadline: float) -> Any:
        """Create the streaming request, retrying retryable failures while the deadline allows."""
        import time

        from lib.errors import DeadlineExceeded

        attempt = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded(f"{self.spec.name} gave no answer within the {self.deadline_s:g} s limit for one "
                                       f"answer (WORKBENCH_ARM_DEADLINE), after {attempt} attempt(s); nothing arrived. "
                                       "Try again, or raise the limit.")
            try:
                client = self.client.with_options(max_retries=0, timeout=min(self.read_timeout_s, left))
                return client.chat.completions.create(**kwargs)
            except Exception as exc:
                if type(exc).__name__ not in self.RETRYABLE or attempt >= self.retries:
                    raise
                attempt += 1
                asked = _retry_after(exc)
                left = deadline - time.monotonic()
                if asked is not None and asked >= left:
                    raise DeadlineExceeded(
                        f"{self.spec.name}: the server asked to retry after {asked:g} s (Retry-After), past the "
                        f"{self.deadline_s:g} s limit for one answer (WORKBENCH_ARM_DEADLINE), so it was not "
                        f"retried ({attempt} attempt(s) made). Try again later, or raise the limit.") from exc
                wait = asked if asked is not None else min(8.0, 0.5 * 2 ** attempt)
                time.sleep(max(0.0, min(wait, deadline - time.monotonic() - 0.05)))

    def stream(self, messages: list[Message], params: GenParams) -> Iterator[Event]:
        """Started, the answer's text (redacted of every secret, see `scrubbed`), then Done with the usage."""
        return scrubbed(self._stream(messages, params))

    def _stream(self, messages: list[Message], params: GenParams) -> Iterator[Event]:
        import threading
        import time

        from lib.errors import DeadlineExceeded, StreamProblem

        kwargs: dict[str, Any] = {"model": self.spec.name, "messages": messages, "stream": True,
                                  "stream_options": {"include_usage": True}, "seed": params.seed}
        if _reasoning_model(self.spec.name):  # these take neither temperature nor stop
            kwargs["max_completion_tokens"] = params.max_tokens
        else:
            kwargs["max_tokens"] = params.max_tokens
            kwargs["temperature"] = params.temperature
            if params.stop:
                kwargs["stop"] = list(params.stop)
        yield Started()
        deadline = time.monotonic() + self.deadline_s
        response = self._open(kwargs, deadline)
        http = getattr(response, "response", None)
        ctype = str(http.headers.get("content-type", "")) if http is not None else "text/event-stream"
        if "event-stream" not in ctype:
            response.close()
            raise StreamProblem(f"{self.spec.name} answered with {ctype or 'no content type'} instead of a stream "
                                "of tokens: the server does not stream, or is not an OpenAI-compatible endpoint. "
                                "Check the base URL.")
        # A server that trickles or never ends is stopped at the deadline, even inside a blocking read.
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            response.close()

        timer = threading.Timer(max(0.0, deadline - time.monotonic()), expire)
        timer.daemon = True
        timer.start()
        finish = None
        usage = None
        received = 0
        try:
            for chunk in response:
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices or []:
                    if choice.delta and choice.delta.content:
                        received += len(choice.delta.content)
                        yield Delta(choice.delta.content)
                    finish = choice.finish_reason or finish
                if expired.is_set():
                    break
        except Exception as exc:
            if expired.is_set():
                pass
            elif received:
                raise StreamProblem(f"The stream from {self.spec.name} was cut after {received} characters of the "
                                    f"answer ({type(exc).__name__}); what arrived is incomplete. Ask again.") from exc
            else:
                raise
        finally:
            timer.cancel()
        if expired.is_set():
            raise DeadlineExceeded(f"{self.spec.name} was stopped at the {self.deadline_s:g} s limit for one answer "
                                   f"(WORKBENCH_ARM_DEADLINE) after {received} characters: the server was still "
                                   "streaming. Lower max tokens, or raise the limit.")
        if finish is None and received == 0:
            raise StreamProblem(f"{self.spec.name} sent an empty answer (no text and no finish reason). The server "
                                "may have failed silently; try again.")
        if usage is None:
            yield Done(finish, None, None)
        else:
            details = getattr(usage, "prompt_tokens_details", None)
            reported = Done(finish, usage.prompt_tokens, usage.completion_tokens,
                            (getattr(details, "cached_tokens", 0) or 0) if details else 0)
            why = untrusted_usage(reported, prompt_token_ceiling(messages), params.max_tokens)
            # Usage that cannot be right is not passed on (nor charged, nor priced): the arm counts instead.
            yield Done(finish, None, None, 0, untrusted=why) if why else reported


def _remember_client_secrets(client: Any) -> None:
    """The key a client sends, and a password in its base URL, are redacted from everything it answers."""
    from lib.errors import remember_secret

    key = getattr(client, "api_key", None)
    if isinstance(key, str) and key != "not-needed":
        remember_secret(key)
    password = getattr(getattr(client, "base_url", None), "password", None)
    if isinstance(password, str):
        remember_secret(password)


def _retry_after(exc: Exception) -> float | None:
    """Seconds the server asked to wait (`retry-after-ms`, or `Retry-After` in seconds or as an HTTP date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    import math

    try:
        if headers.get("retry-after-ms") is not None:
            seconds = float(headers["retry-after-ms"]) / 1000
        elif headers.get("retry-after") is None:
            return None
        else:
            value = headers["retry-after"]
            try:
                seconds = float(value)
            except ValueError:
                import email.utils
                import time

                seconds = max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None  # nonsense is ignored, not obeyed


# ---------------------------------------------------------------- registry

def _local(spec: ModelSpec, settings: Settings) -> Provider:
    return LocalLlama(spec, threads=settings.n_threads, extra_bufts=settings.llama_extra_bufts,
                      max_ctx=settings.local_max_ctx, processes=settings.local_processes,
                      batch=settings.local_batch)


def _ollama(spec: ModelSpec, settings: Settings) -> Provider:
    """A model of the Ollama server (OLLAMA_HOST, else localhost:11434) through its OpenAI-compatible endpoint.
    Its own client: a configured OpenAI key is never sent to it."""
    import openai

    from lib.ollama import ollama_base

    client = openai.OpenAI(api_key="ollama", base_url=f"{ollama_base(settings)}/v1",
                           timeout=settings.request_timeout_s, max_retries=settings.max_retries)
    return OpenAICompatible(spec, client, settings.arm_deadline_s, settings.request_timeout_s, settings.max_retries)


def _hosted(spec: ModelSpec, settings: Settings) -> Provider:
    return OpenAICompatible(spec, openai_client(settings), settings.arm_deadline_s, settings.request_timeout_s,
                            settings.max_retries)


PROVIDERS: dict[str, Callable[[ModelSpec, Settings], Provider]] = {
    "local": _local,
    "openai": _hosted,
    "azure": _hosted,
    "ollama": _ollama,
}


def make_provider(spec: ModelSpec, settings: Settings) -> Provider:
    try:
        factory = PROVIDERS[spec.provider]
    except KeyError:
        raise ConfigError(f"Unknown provider {spec.provider!r}: use one of {', '.join(PROVIDERS)}.") from None
    return factory(spec, settings)
