"""Fine-tuned models as records: what a model is, where it came from (provenance),
and the adapter that ships with the project. A leaf module: it imports nothing of
lib but the configuration types, so the workspace can store models without cycles."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import asdict, dataclass, fields
from typing import Any

from lib.settings import LOCAL_BASE_MODEL, PROJECT_ROOT, ModelSpec

SHIPPED_ADAPTER = PROJECT_ROOT / "assets" / "adapters" / "quillmere-smollm2-lora.gguf"
MODEL_RECORD_VERSION = 1


@dataclass(frozen=True)
class FineTunedModel:
    id: str
    name: str
    provider: str  # "local" | "openai" | "azure"
    model: str  # base GGUF for local, the ft: id for OpenAI
    base_model: str
    lora: str | None = None
    created_at: float = 0.0
    training_file: str = ""
    training_sha256: str = ""
    examples: int = 0
    training_cost_usd: float | None = None
    trained_on: tuple[dict[str, str], ...] = ()  # documents (name, sha256) of the knowledge base
    notes: str = ""
    builtin: bool = False
    workspace: str = ""  # provenance: the workspace and knowledge base the training data came from
    knowledge_base: str = ""
    method: str = ""  # e.g. "LoRA r=16, 60 steps, lr 0.001" or "OpenAI job ftjob-..."
    train_seconds: float | None = None
    job_id: str = ""

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(self.provider, self.model, self.lora)


def model_to_record(model: FineTunedModel) -> dict[str, Any]:
    return {"version": MODEL_RECORD_VERSION, **asdict(model), "trained_on": list(model.trained_on)}


PROVIDER_KINDS = {"local", "openai", "azure", "ollama"}  # tests add their fake provider here, as to lib.providers.PROVIDERS


def model_from_record(record: Any) -> FineTunedModel | None:
    """The model a stored record describes, or None for a record of another shape (newer or damaged)."""
    if not isinstance(record, dict) or record.get("version", MODEL_RECORD_VERSION) != MODEL_RECORD_VERSION:
        return None
    known = {f.name for f in fields(FineTunedModel)}
    item = {k: v for k, v in record.items() if k in known}
    try:
        item["trained_on"] = tuple(dict(d) for d in item.get("trained_on") or ())
        model = FineTunedModel(**item)
    except (TypeError, ValueError):
        return None
    ok = all(isinstance(getattr(model, k), str) for k in ("id", "name", "provider", "model"))
    return model if ok and model.id and model.provider in PROVIDER_KINDS else None


def shipped_model() -> FineTunedModel | None:
    """The LoRA adapter that ships with the project, trained on the sample corpus."""
    if not SHIPPED_ADAPTER.is_file():
        return None
    meta_file = SHIPPED_ADAPTER.with_suffix(SHIPPED_ADAPTER.suffix + ".json")
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    return FineTunedModel(
        id="shipped", name="Quillmere house style (shipped LoRA)", provider="local", model=LOCAL_BASE_MODEL,
        base_model="SmolLM2-135M-Instruct", lora=str(SHIPPED_ADAPTER), created_at=meta_file.stat().st_mtime
        if meta_file.is_file() else 0.0, training_file="training/data/train.jsonl",
        training_sha256=str(meta.get("data_sha256", meta.get("training_data_sha256", ""))),
        examples=int(meta.get("examples", 0) or 0), training_cost_usd=0.0,
        notes="Trained by training/train_lora.py on the sample corpus (see README).", builtin=True,
        method=f"LoRA r={meta.get('rank', '?')}, {meta.get('steps', '?')} steps, lr {meta.get('lr', '?')}",
        train_seconds=meta.get("train_seconds"))


def new_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
