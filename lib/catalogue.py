"""The model catalogue: small open models in GGUF that a user can download (lib.modelhub), use for a
role of a workspace, and fine-tune locally; with sizes, memory, context window, licence and the speed
to expect on this machine (measured, or estimated from the bundled model's measured speed and the
parameter ratio, and labelled so).

The list itself is a dated data file, `lib/data/model_catalogue.json`, with its sources (read by
lib/model_catalogue.py, which lib.modelhub downloads from). Which model
plays a role is a workspace's record (meta `local_model:base`; the fine-tuned role is the workspace's
active fine-tuned model, a LoRA trained for that base); `lib.engine.resolve_models` applies it unless the
configuration names a base model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lib.errors import ConfigError
from lib.model_catalogue import BUNDLED, SMALL_PARAMS, CatalogueModel, catalogue, find, names
from lib.records import RunSpec
from lib.settings import LOCAL_BASE_MODEL, ModelSpec, Settings

BASE_KEY = "local_model:base"
FINETUNED_KEY = "local_model:finetuned"


# ---------------------------------------------------------------- what a role's model is

def model_path(data_dir: str | Path, name: str) -> Path | None:
    """The GGUF of a catalogue model or of a GGUF added by hand, if it is here (the bundled one always is)."""
    from lib import modelhub

    if name == BUNDLED:
        from lib.providers import bundled_model_path

        return bundled_model_path()
    found = modelhub.installed_model(data_dir, name)
    return Path(found.path) if found else None


def spec_for(data_dir: str | Path, choice: str) -> ModelSpec | None:
    """The model a workspace's record names ("qwen2.5-0.5b", "ollama:llama3.2:1b"), or None if it is gone."""
    if choice.startswith("ollama:"):
        return ModelSpec("ollama", choice.partition(":")[2])
    if choice == BUNDLED:
        return ModelSpec("local", LOCAL_BASE_MODEL)
    path = model_path(data_dir, choice)
    return ModelSpec("local", str(path)) if path else None


def chosen(workspace: Any, role: str = "base") -> str | None:
    return workspace.meta(BASE_KEY if role == "base" else FINETUNED_KEY)


def local_name(settings: Settings, spec: ModelSpec | None) -> str | None:
    """The catalogue (or added) name of a local model spec: 'qwen2.5-0.5b', 'smollm2-135m' for the bundled one."""
    if spec is None or spec.provider != "local":
        return None
    if spec.name in (LOCAL_BASE_MODEL, "", "default"):
        return BUNDLED
    path = Path(spec.name)
    from lib import modelhub

    if path.suffix == ".gguf" and path.parent.resolve() == modelhub.models_dir(settings.data_dir).resolve() and \
            modelhub.installed_model(settings.data_dir, path.stem):
        return path.stem
    return None


def use(settings: Settings, workspace: Any, name: str, role: str = "base") -> dict[str, Any]:
    """Make `name` the workspace's model for `role` from now on. Base: a downloaded (or bundled, or Ollama) model.
    Fine-tuned: the newest LoRA trained for that model in this workspace becomes the active fine-tuned model
    (a LoRA belongs to one base model), or an Ollama model."""
    if role not in ("base", "finetuned"):
        raise ConfigError(f"Unknown role {role!r}: use base or finetuned.")
    if name.startswith("ollama:"):
        tag = name.partition(":")[2].strip()
        if not tag:
            raise ConfigError("Name the Ollama model: ollama:TAG (for example ollama:llama3.2:1b).")
        if role == "base":
            workspace.set_meta(BASE_KEY, f"ollama:{tag}")
            return {"name": name, "role": role, "model": tag, "provider": "ollama"}
        from lib.finetune.registry import FineTunedModel

        model = FineTunedModel(id=f"ollama-{tag}".replace(":", "-").replace("/", "-"), name=f"{tag} (Ollama)",
                               provider="ollama", model=tag, base_model=tag, created_at=time.time(),
                               notes="An Ollama model: what it was fine-tuned on is not recorded by this app.",
                               method="served by Ollama", workspace=workspace.name)
        workspace.add_model(model, activate=True)
        workspace.set_meta(FINETUNED_KEY, f"ollama:{tag}")
        return {"name": name, "role": role, "model": tag, "provider": "ollama", "model_id": model.id}
    spec = spec_for(settings.data_dir, name)
    if spec is None:
        if name in names():
            raise ConfigError(f"{name} is not downloaded: python -m lib models pull {name}")
        raise ConfigError(f"No model named {name!r} here: download one from the catalogue ({', '.join(names())}) "
                          "or add a GGUF with `python -m lib models add FILE.gguf`.")
    if role == "base":
        workspace.set_meta(BASE_KEY, name)
        return {"name": name, "role": role, "model": spec.label, "provider": "local", "path": spec.name}
    tuned = [m for m in workspace.models() if m.provider == "local" and m.lora and m.model == spec.name]
    if not tuned:
        raise ConfigError(f"No LoRA adapter has been trained for {name} in workspace {workspace.name!r}: the "
                          "fine-tuned role needs one. Fine-tune it first: python -m lib finetune --kb KB "
                          f"--base {name} (or Fine-tune page).")
    newest = max(tuned, key=lambda m: m.created_at)
    workspace.activate(newest.id)
    workspace.set_meta(FINETUNED_KEY, name)
    return {"name": name, "role": role, "model": newest.spec.label, "provider": "local", "model_id": newest.id,
            "path": spec.name, "lora": newest.lora}


def training_base(data_dir: str | Path, name: str | None) -> dict[str, Any] | None:
    """What a local training job needs to know about its base model: None for the bundled one (trained from its
    GGUF), else the catalogue model's GGUF, label, architecture and its training weights' folder (if here)."""
    from lib import modelhub

    if name in (None, "", BUNDLED):
        return None
    model = find(name)  # type: ignore[arg-type]
    if model.training is None:
        raise ConfigError(f"{name} cannot be fine-tuned locally in this app: {model.notes}")
    path = model_path(data_dir, model.name)
    if path is None:
        raise ConfigError(f"{name} is not downloaded: python -m lib models pull {name}")
    folder = modelhub.training_dir(data_dir, model.name)
    return {"name": model.name, "label": model.label, "gguf": str(path), "arch": model.arch,
            "train_dir": str(folder) if folder else None, "params": local_params(path)}


# ---------------------------------------------------------------- size, speed and the small-model caveat

def local_params(path: str | Path) -> int | None:
    """A local model's parameter count, read from its GGUF's tensors."""
    from lib.gguf_meta import GGUFError, read_gguf

    try:
        return read_gguf(path).params
    except GGUFError:
        return None


def spec_params(spec: ModelSpec | None) -> int | None:
    """Parameters of the model a spec names, when it is a local GGUF (None for hosted models: not published)."""
    if spec is None or spec.provider != "local":
        return None
    from lib.providers import resolve_model_path

    try:
        return local_params(resolve_model_path(spec.name))
    except ConfigError:
        return None


def _bundled_params() -> int | None:
    from lib.providers import bundled_model_path

    try:
        return local_params(bundled_model_path())
    except ConfigError:
        return None


def small_model_caveat(run_spec: RunSpec) -> str | None:
    """The caveat an evaluation run's results carry when a local model it used is small (under 1B parameters, by
    its GGUF's own count, recorded with the run); None for larger or hosted models."""
    from lib.arms import ARMS
    from lib.gguf_meta import params_label

    providers, models, recorded = run_spec.providers, run_spec.models, run_spec.params
    roles = {ARMS[a].role for a in run_spec.arms if a in ARMS} or set(providers)
    smallest: tuple[int, str, bool] | None = None
    for role in sorted(roles):
        if providers.get(role) != "local":
            continue
        label = str(models.get(role) or "")
        bundled = label.split(" + LoRA")[0] == LOCAL_BASE_MODEL
        params = recorded.get(role)
        if params is None and bundled:  # a run recorded before parameter counts were: the bundled model's
            params = _bundled_params()
        if isinstance(params, int) and (smallest is None or params < smallest[0]):
            smallest = (params, label, bundled)
    if smallest is None or smallest[0] >= SMALL_PARAMS:
        return None
    params, label, bundled = smallest
    who = (f"the {params_label(params)} offline demo model" if bundled
           else f"a {params_label(params)}-parameter local model ({label})")
    return (f"These results come from {who} ({params:,} parameters, counted in its GGUF). At this size results "
            "can invert: decide on the model you will ship, with its own evaluation run.")


def measure_speed(settings: Settings, name: str, max_tokens: int = 32) -> dict[str, Any]:
    """Generate from a fixed prompt on this machine and record prompt and generation speed (tokens per second)."""
    from lib import modelhub
    from lib.providers import Delta, Done, LocalLlama, Started
    from lib.records import GenParams

    spec = spec_for(settings.data_dir, name)
    if spec is None or spec.provider != "local":
        raise ConfigError(f"{name} is not a local model here: download it first (python -m lib models pull {name}).")
    provider = LocalLlama(spec, threads=settings.n_threads, extra_bufts=settings.llama_extra_bufts,
                          max_ctx=settings.local_max_ctx)
    text = " ".join(["The refund window for unused items is 45 days from delivery, and e-bikes have 21 days."] * 6)
    messages = [{"role": "system", "content": "Answer in one sentence."},
                {"role": "user", "content": f"{text}\nQuestion: How long is the refund window?"}]
    list(provider.stream([{"role": "user", "content": "Hi"}], GenParams(max_tokens=1)))  # load it, untimed
    t0 = started = first = None
    done = None
    for event in provider.stream(messages, GenParams(max_tokens=max_tokens, stop=())):
        now = time.monotonic()
        if isinstance(event, Started):
            started = now
        elif isinstance(event, Delta) and first is None:
            first = now
        elif isinstance(event, Done):
            done, t0 = event, now
    if done is None or started is None or first is None or t0 is None or not done.completion_tokens:
        raise ConfigError(f"{name} generated nothing to measure.")
    decode = (done.completion_tokens - 1) / (t0 - first) if done.completion_tokens > 1 and t0 > first else None
    result = {"prompt_tokens_per_s": round((done.prompt_tokens or 0) / (first - started), 1),
              "tokens_per_s": round(decode, 1) if decode else None, "prompt_tokens": done.prompt_tokens,
              "completion_tokens": done.completion_tokens, "threads": provider.threads,
              "measured_at": time.time(), "params": provider.params}
    modelhub.record_speed(settings.data_dir, name, result)
    return result


def expected_speed(settings: Settings, model: CatalogueModel, measured: dict[str, dict[str, Any]] | None = None,
                   params: int | None = None) -> dict[str, Any]:
    """Generation speed to expect here: measured, else the bundled model's measured speed scaled by the parameter
    ratio (generation on a CPU reads every weight once per token), labelled an estimate; else unknown."""
    from lib import modelhub

    measured = modelhub.speeds(settings.data_dir) if measured is None else measured
    own = measured.get(model.name)
    if own and own.get("tokens_per_s"):
        return {"tokens_per_s": own["tokens_per_s"], "prompt_tokens_per_s": own.get("prompt_tokens_per_s"),
                "source": "measured", "note": f"measured here {time.strftime('%Y-%m-%d', time.localtime(own['measured_at']))}"}
    ref = measured.get(BUNDLED)
    if not ref or not ref.get("tokens_per_s"):
        return {"tokens_per_s": None, "prompt_tokens_per_s": None, "source": "unknown",
                "note": "not measured yet: measure the bundled model first (python -m lib models measure)"}
    ratio = float(ref.get("params") or find(BUNDLED).params) / float(params or model.params)
    return {"tokens_per_s": round(ref["tokens_per_s"] * ratio, 1),
            "prompt_tokens_per_s": round(ref["prompt_tokens_per_s"] * ratio, 1) if ref.get("prompt_tokens_per_s")
            else None, "source": "estimate",
            "note": f"estimate: the bundled model's measured {ref['tokens_per_s']:g} tokens/s x the parameter ratio "
                    f"{ratio:.2f}"}


def rows(settings: Settings) -> list[dict[str, Any]]:
    """One row per catalogue model (and per GGUF added by hand): what `models list --json` prints."""
    from lib import modelhub

    here = modelhub.installed(settings.data_dir)
    measured = modelhub.speeds(settings.data_dir)
    out = []
    for m in catalogue().models:
        got = here.get(m.name)
        path = model_path(settings.data_dir, m.name) if (m.bundled or got) else None
        own = local_params(path) if path else None
        progress = modelhub.status(settings.data_dir, m.name)
        out.append({
            "name": m.name, "label": m.label, "repo": m.repo, "file": m.file, "quantisation": m.quantisation,
            "size_bytes": got.bytes if got else m.size_bytes, "size_exact": bool(got) or m.size_exact,
            "params": own or m.params, "params_source": "gguf" if own else "model card",
            "context": m.context, "license": m.license, "arch": m.arch,
            "memory_bytes": m.memory_bytes(settings.local_max_ctx), "memory_note": (
                f"estimate: the file, a KV cache of {min(m.context, settings.local_max_ctx):,} tokens "
                f"({m.kv_bytes(min(m.context, settings.local_max_ctx)) / 1e6:,.0f} MB) and llama.cpp's buffers"),
            "downloaded": bool(m.bundled or got), "bundled": m.bundled, "path": str(path) if path else None,
            "sha256": got.sha256 if got else None,
            "can_finetune": m.can_finetune,
            "training_downloaded": bool(m.training and (m.training.from_gguf or
                                                         modelhub.training_dir(settings.data_dir, m.name))),
            "training_bytes": m.training.size_bytes if m.training else None,
            "training_memory_bytes": m.training.memory_bytes if m.training else None,
            "speed": expected_speed(settings, m, measured, own),
            "download": progress.to_dict() if progress else None, "notes": m.notes, "source": "catalogue"})
    for name, got in sorted(here.items()):
        if name in names():
            continue
        own = local_params(got.path)
        from lib.gguf_meta import GGUFError, read_gguf

        try:
            info = read_gguf(got.path)
            context, arch = info.context_length, info.architecture
        except GGUFError:
            context, arch = None, ""
        out.append({"name": name, "label": Path(got.file).stem or name, "repo": got.repo, "file": got.file,
                    "quantisation": "", "size_bytes": got.bytes, "size_exact": True, "params": own,
                    "params_source": "gguf", "context": context, "license": "", "arch": arch,
                    "memory_bytes": None, "memory_note": "", "downloaded": True, "bundled": False,
                    "path": got.path, "sha256": got.sha256, "can_finetune": False, "training_downloaded": False,
                    "training_bytes": None, "training_memory_bytes": None,
                    "speed": {"tokens_per_s": (measured.get(name) or {}).get("tokens_per_s"),
                              "source": "measured" if measured.get(name) else "unknown", "note": ""},
                    "download": None, "notes": f"added by hand ({got.source})", "source": got.source})
    return out


def estimate_training(seconds_per_step_bundled: float, params: int | None) -> float | None:
    """Seconds per LoRA step for a model of `params`, scaled from the bundled model's measured step time (a rough
    guide until a speed probe on that model runs: training cost grows about with the parameters)."""
    bundled = find(BUNDLED).params
    return seconds_per_step_bundled * (params / bundled) if params else None



def loras_for(settings: Settings, workspace: Any, name: str) -> list[Any]:
    """The workspace's LoRA adapters trained for the local model `name`, newest first."""
    spec = spec_for(settings.data_dir, name)
    if spec is None or spec.provider != "local":
        return []
    tuned = [m for m in workspace.models() if m.provider == "local" and m.lora and m.model == spec.name]
    return sorted(tuned, key=lambda m: m.created_at, reverse=True)


def size_text(n: int | None, exact: bool = True) -> str:
    """1.12 GB, 386 MB (about 386 MB when the figure is a model card's rounding)."""
    if not n:
        return "?"
    text = f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"
    return text if exact else f"about {text}"


def table(rows_: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The catalogue as the Settings page shows it: one row per model, in words and units."""
    from lib.gguf_meta import params_label

    size = size_text

    out = []
    for r in rows_:
        speed = r["speed"]
        tps = speed.get("tokens_per_s")
        state = r.get("download") or {}
        if r["bundled"]:
            status = "bundled"
        elif r["downloaded"]:
            status = "downloaded"
        elif state.get("status") in ("starting", "downloading", "verifying"):
            status = f"downloading {state.get('fraction', 0):.0%}"
        elif state.get("status") in ("interrupted", "cancelled", "failed"):
            status = f"{state['status']} at {state.get('done_bytes', 0) / 1e6:,.0f} MB"
        else:
            status = "not downloaded"
        out.append({
            "model": r["label"], "name": r["name"], "parameters": params_label(r["params"]) + (
                "" if r["params_source"] == "gguf" else " (card)"),
            "quantisation": r["quantisation"], "download": size(r["size_bytes"], r["size_exact"]),
            "memory (est.)": size(r["memory_bytes"]), "context": f"{r['context']:,}" if r["context"] else "?",
            "licence": r["license"] or "?",
            "tokens/s": (f"{tps:g}" + (" (est.)" if speed["source"] == "estimate" else "")) if tps else "not measured",
            "fine-tune": ("yes" if r["can_finetune"] else "no"), "status": status})
    return out
