"""OpenAI fine-tuning jobs, recorded in the workspace so that any session, and the CLI
(`python -m lib jobs`), can follow them; a job that succeeds is registered once."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from lib.finetune.data import Example, count_example_tokens, to_jsonl
from lib.finetune.registry import FineTunedModel, sha256_text

if TYPE_CHECKING:
    from lib.workspace import Workspace
    from lib.workspace_records import JobRecord

ACTIVE_STATES = ("validating_files", "queued", "running")


def estimate_training_cost(examples: list[Example], base_model: str, epochs: int = 3) -> dict[str, Any]:
    """Training tokens x epochs x the model's training price (from the dated price file)."""
    from lib.pricing import extra_prices, training_price_per_mtok

    tokens = sum(count_example_tokens(ex, base_model) for ex in examples)
    price = training_price_per_mtok(base_model)
    return {"tokens": tokens, "epochs": epochs, "trained_tokens": tokens * epochs, "price_per_mtok": price,
            "usd": None if price is None else tokens * epochs * price / 1_000_000,
            "source": f"{extra_prices()['source']} (checked {extra_prices()['checked']})"}


def start_openai_job(api: Any, examples: list[Example], base_model: str, epochs: int = 3,
                     suffix: str | None = None, ws: Workspace | None = None,
                     trained_on: tuple[dict[str, str], ...] = (), knowledge_base: str = "",
                     provider: str = "openai") -> Any:
    """Upload the training file and create the job through the gateway (`api`: lib.gateway.fine_tuning(settings),
    which reserves the estimated training cost first); with `ws`, record it there. Returns the job object."""
    return api.start(ws, examples, base_model, epochs, suffix, trained_on, knowledge_base, provider)


def poll_openai_job(api: Any, job_id: str) -> tuple[Any, list[str]]:
    """The job's current state and its events, oldest first (`api`: lib.gateway.fine_tuning(settings))."""
    return api.poll(job_id)  # type: ignore[no-any-return]


def model_for_job(job: Any, examples: int, training_sha256: str, trained_on: tuple[dict[str, str], ...] = (),
                  provider: str = "openai", workspace: str = "", knowledge_base: str = "") -> FineTunedModel:
    from lib.pricing import training_price_per_mtok

    price = training_price_per_mtok(job.model)
    trained = getattr(job, "trained_tokens", None)
    finished = getattr(job, "finished_at", None)
    return FineTunedModel(
        id=job.id, name=job.fine_tuned_model, provider=provider, model=job.fine_tuned_model, base_model=job.model,
        created_at=time.time(), training_file=job.training_file, training_sha256=training_sha256,
        examples=examples, training_cost_usd=None if price is None or trained is None else trained * price / 1e6,
        trained_on=trained_on, notes=f"OpenAI job {job.id}", workspace=workspace, knowledge_base=knowledge_base,
        method=f"OpenAI fine-tuning job {job.id}",
        train_seconds=float(finished - job.created_at) if finished and getattr(job, "created_at", None) else None,
        job_id=job.id)


def register_openai_job(ws: Workspace, job: Any, examples: list[Example],
                        trained_on: tuple[dict[str, str], ...] = (), provider: str = "openai") -> FineTunedModel:
    """Register a succeeded job's model (and make it active)."""
    model = model_for_job(job, len(examples), sha256_text(to_jsonl(examples)), trained_on, provider, ws.name)
    ws.add_model(model)
    return model


def refresh_openai_job(ws: Workspace, api: Any, record: JobRecord) -> tuple[Any, list[str]]:
    """Ask OpenAI for the job's state, store it, and register the model when it has succeeded
    (once: the job and its model are written in one transaction). The gateway's `refresh` also settles the
    job's reserved cost."""
    job, events = poll_openai_job(api, record.id)
    status = str(job.status)
    if record.finished:
        return job, events
    if status == "succeeded":
        p = record.params
        model = model_for_job(job, int(p.get("examples", 0)), str(p.get("training_sha256", "")),
                              tuple(p.get("trained_on") or ()), str(p.get("provider", "openai")), ws.name,
                              str(p.get("knowledge_base", "")))
        ws.update_job(record.id, status=status, result={"model_id": model.id, "model": model.model}, model=model)
    elif status == "failed":
        err = getattr(job, "error", None)
        ws.update_job(record.id, status=status, error=getattr(err, "message", None) or "no reason given")
    elif status != record.status:
        ws.update_job(record.id, status=status)
    return job, events


def refresh_openai_jobs(ws: Workspace, api: Any) -> list[str]:
    """Refresh every unfinished hosted job (and settle the cost of those that finished); returns the problems
    met (one line per job)."""
    return api.refresh_all(ws)  # type: ignore[no-any-return]
