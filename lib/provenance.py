"""What a fine-tuned model was trained on, said on every answer it gives.

A fine-tuned arm is only meaningful on the documents it was trained on. Each fine-tuned model
carries its provenance (base model, training set, the workspace and knowledge base with its
documents' names and content hashes, method, date, cost and time); every answer of a fine-tuned
arm shows a one-line model card, and a warning when the knowledge base asked is not the one it
was trained on, or its documents changed since (added, removed or edited, by name).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lib.finetune.registry import FineTunedModel
from lib.settings import PROJECT_ROOT

SAMPLE_DOCS = PROJECT_ROOT / "sample_docs"
SAMPLE_KB = "sample"
SAMPLE_DESCRIPTION = "the sample company (Quillmere Outdoor Co.)"
IGNORED = {"questions.jsonl"}


def sample_documents() -> tuple[dict[str, str], ...]:
    """Name and content hash of each sample document (what the shipped adapter was trained on)."""
    out = []
    for path in sorted(SAMPLE_DOCS.iterdir()):
        if path.is_file() and path.name not in IGNORED and not path.name.startswith("."):
            out.append({"name": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    return tuple(out)


def with_shipped_provenance(model: FineTunedModel) -> FineTunedModel:
    """The shipped adapter's record, completed with the documents it was trained on."""
    from dataclasses import replace

    if not model.builtin or model.trained_on:
        return model
    return replace(model, trained_on=sample_documents(), knowledge_base=model.knowledge_base or SAMPLE_KB,
                   notes=f"Fine-tuned on {SAMPLE_DESCRIPTION}: {model.notes}")


def trained_on(model: FineTunedModel) -> dict[str, Any]:
    """The provenance that goes with every answer of this model (the `trained_on` of `ask --json`)."""
    model = with_shipped_provenance(model)
    return {
        "model_id": model.id, "name": model.name, "base_model": model.base_model, "provider": model.provider,
        "workspace": model.workspace or ("(shipped)" if model.builtin else ""),
        "knowledge_base": model.knowledge_base,
        "description": SAMPLE_DESCRIPTION if model.builtin else "",
        "documents": [{"name": d.get("name") or d.get("document", ""), "sha256": d.get("sha256", "")}
                      for d in model.trained_on],
        "training_file": model.training_file, "examples": model.examples, "method": model.method or model.notes,
        "created_at": model.created_at, "train_seconds": model.train_seconds,
        "training_cost_usd": model.training_cost_usd,
    }


def model_card(model: FineTunedModel) -> str:
    """One line: what it is, what it was trained on, how, when, at what cost."""
    return card_line(trained_on(model))


def warnings(model: FineTunedModel | None, kb_name: str | None, documents: Sequence[Any]) -> list[str]:
    """Plain warnings when the knowledge base asked is not what the model was trained on."""
    if model is None:
        return ["Nothing is recorded about what this fine-tuned model was trained on (it is not in this "
                "workspace's registry): compare it with care."]
    model = with_shipped_provenance(model)
    trained = {d.get("name") or d.get("document", ""): d.get("sha256", "") for d in model.trained_on}
    origin = SAMPLE_DESCRIPTION if model.builtin else f"knowledge base '{model.knowledge_base}'"
    if not trained and not model.knowledge_base:
        return [f"{model.name} has no record of the documents it was trained on: compare it with care."]
    if kb_name is None:
        return []
    current = {getattr(d, "name", ""): getattr(d, "sha256", "") for d in documents}
    if model.knowledge_base and kb_name != model.knowledge_base and not (set(current) & set(trained)):
        return [f"Fine-tuned on {origin}, not on knowledge base '{kb_name}': without retrieval its answers come from "
                "that training, not from these documents. Fine-tune on this knowledge base to compare fairly."]
    added = sorted(set(current) - set(trained))
    removed = sorted(set(trained) - set(current))
    edited = sorted(n for n in set(current) & set(trained) if trained[n] and current[n] != trained[n])
    if not (added or removed or edited):
        if model.knowledge_base and kb_name != model.knowledge_base:
            return [f"Fine-tuned on {origin}; knowledge base '{kb_name}' holds the same documents."]
        return []
    parts = []
    if edited:
        parts.append("edited " + ", ".join(edited[:5]) + (f" and {len(edited) - 5} more" if len(edited) > 5 else ""))
    if added:
        parts.append("added " + ", ".join(added[:5]) + (f" and {len(added) - 5} more" if len(added) > 5 else ""))
    if removed:
        parts.append("removed " + ", ".join(removed[:5]) + (f" and {len(removed) - 5} more" if len(removed) > 5
                                                            else ""))
    return [f"The documents changed since {model.name} was trained on {origin}: {'; '.join(parts)}. It does not "
            "know about these changes; retrain it, or rely on retrieval for them."]


def find_model(workspace: Any, spec: Any) -> FineTunedModel | None:
    """The registered model that plays the fine-tuned role (None when the spec is not registered)."""
    if spec is None:
        return None
    return next((m for m in workspace.models() if m.spec == spec), None)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def card_line(info: dict[str, Any]) -> str:
    """The one-line model card from an answer's `trained_on`."""
    where = info.get("description") or (f"knowledge base '{info['knowledge_base']}'" if info.get("knowledge_base")
                                         else "an unrecorded data set")
    docs = f", {len(info.get('documents') or [])} documents" if info.get("documents") else ""
    when = time.strftime("%Y-%m-%d", time.localtime(info["created_at"])) if info.get("created_at") else "date unknown"
    took = f", {info['train_seconds'] / 60:.0f} min" if info.get("train_seconds") else ""
    cost = "" if info.get("training_cost_usd") is None else f", ${info['training_cost_usd']:,.2f}"
    return (f"{info.get('name')}: {info.get('base_model')} fine-tuned on {where}{docs} "
            f"({info.get('method') or 'method unrecorded'}; {when}{took}{cost})")
