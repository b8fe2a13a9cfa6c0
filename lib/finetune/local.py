"""Local LoRA training as a job that outlives the page that started it.

`start_local_training` records the job in the workspace and starts
`python -m lib.finetune.runner` in its own session; the runner trains (training/train_lora.py),
writes the job's status to the workspace database and, on success, registers the adapter
as the workspace's active fine-tuned model itself. Pages only read the job."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any

from lib.errors import ConfigError
from lib.finetune.data import Example, to_jsonl
from lib.finetune.registry import new_id, sha256_text
from lib.settings import PROJECT_ROOT, child_env

if TYPE_CHECKING:
    from lib.workspace import Workspace
    from lib.workspace_records import JobRecord

TRAIN_DEPS = ("torch", "transformers", "peft", "gguf")
_children: list[subprocess.Popen[bytes]] = []  # reaped by a thread each, so a finished runner is no zombie


def missing_training_deps() -> list[str]:
    return [m for m in TRAIN_DEPS if importlib.util.find_spec(m) is None]


def start_local_training(ws: Workspace, examples: list[Example], name: str, steps: int = 60, rank: int = 16,
                         lr: float = 1e-3, trained_on: tuple[dict[str, str], ...] = (),
                         knowledge_base: str = "", data_method: str = "", base: str | None = None,
                         origin: str = "training_set") -> str:
    """Start training in a background process; returns the job id. The process registers the model.
    `base`: a downloaded catalogue model to train the LoRA for (its training weights must be downloaded);
    None trains for the bundled model."""
    from lib.catalogue import training_base

    base_info = training_base(ws.data_dir, base)
    if base_info is not None and not base_info["train_dir"]:
        raise ConfigError(f"Training a LoRA for {base_info['label']} needs its training weights (safetensors), not "
                          "downloaded yet: Settings > Local models > 'Download its training weights', or "
                          f"`python -m lib models pull {base_info['name']} --training`.")
    missing = missing_training_deps()
    if missing:
        raise ConfigError(f"Local training needs {', '.join(missing)}, which are not installed. Run: "
                          ".venv/bin/pip install -r requirements-train.txt (CPU-only torch, about 1 GB).")
    running = [j for j in ws.jobs("local") if not j.finished]
    if running:
        raise ConfigError(f"A local training job ({running[0].name}) is still running in this workspace; "
                          "wait for it or cancel it first.")
    job_id = new_id()
    data = to_jsonl(examples)
    path = ws.write_job_file(job_id, "train.jsonl", data)
    params: dict[str, Any] = {
        "steps": int(steps), "rank": int(rank), "lr": float(lr), "examples": len(examples),
        "training_file": str(path), "training_sha256": sha256_text(data), "trained_on": list(trained_on),
        "knowledge_base": knowledge_base, "adapter": str(ws.adapter_path(job_id)), "data_method": data_method,
        "origin": origin}  # "knowledge_base": the one-click fine-tune on a knowledge base; "training_set": tab 1
    if base_info is not None:
        params["base"] = base_info
    ws.add_job(job_id, "local", name, params)
    cmd = [sys.executable, "-m", "lib.finetune.runner", "--data-dir", str(ws.data_dir), "--workspace", ws.name,
           "--job", job_id]
    env = child_env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with ws.open_job_log(job_id) as log:
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # not killed with the app's process group
    ws.update_job(job_id, pid=proc.pid)
    _children.append(proc)
    threading.Thread(target=proc.wait, name=f"reap-{job_id}", daemon=True).start()
    return job_id


def training_base_for(settings: Any) -> tuple[str | None, str]:
    """Which model local training makes a LoRA for: the base role's model when it is a downloaded catalogue model
    that can be fine-tuned here, else the bundled one; and a sentence that says so (and what is missing)."""
    from lib import catalogue, modelhub

    name = catalogue.local_name(settings, settings.base)
    if name in (None, catalogue.BUNDLED) or name not in catalogue.names():
        return None, ("LoRA adapters are trained for the bundled SmolLM2-135M model. To fine-tune a larger one, "
                      "download it and make it the base model (Settings > Local models).")
    model = catalogue.find(name)
    if model.training is None:
        return None, (f"The base model {model.label} cannot be fine-tuned locally here, so adapters are trained for "
                      "the bundled SmolLM2-135M model (they apply to it only).")
    ready = modelhub.training_dir(settings.data_dir, name) is not None
    return name, (f"LoRA adapters are trained for the base model {model.label}, on its own weights"
                  + ("." if ready else ": download its training weights first (Settings > Local models, about "
                     f"{(model.training.size_bytes or 0) / 1e9:.1f} GB).")
                  + f" Training it needs about {(model.training.memory_bytes or 0) / 1e9:.0f} GB of memory.")


def local_status(ws: Workspace, job: JobRecord) -> dict[str, Any]:
    """What to show for a local job: its recorded status plus the trainer's latest progress."""
    progress = ws.job_progress(job.id)
    status = {"step": 0, "total_steps": job.params.get("steps", 0), **progress, "status": job.status}
    if job.status == "running" and progress.get("status") in ("loading", "exporting"):
        status["phase"] = progress["status"]
    if job.error:
        status["error"] = job.error
    return status


CANCEL_REQUESTED = "cancel requested"


def cancel_local_training(ws: Workspace, job_id: str) -> None:
    """Ask the training process to stop; it records `cancelled` and writes no adapter."""
    job = ws.job(job_id)
    if job is None or job.finished:
        return
    # Recorded first: a process that dies of the signal before it could say so is then known as cancelled.
    ws.update_job(job_id, error=CANCEL_REQUESTED)
    if job.pid:
        try:
            os.kill(job.pid, signal.SIGTERM)
            return
        except ProcessLookupError:
            pass
    ws.update_job(job_id, status="cancelled", error="cancelled before the training process started")
