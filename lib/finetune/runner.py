"""`python -m lib.finetune.runner --data-dir D --workspace W --job ID`: run one local
training job recorded in a workspace, record how it ended and register the adapter.
Started by lib.finetune.local in its own session, so it outlives the page (and the
browser tab) that started it. SIGTERM cancels it: no adapter is written."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from lib.finetune.registry import FineTunedModel
from lib.settings import LOCAL_BASE_MODEL
from lib.workspace import Workspace

LEASE_TTL_S = 30.0  # the training process renews its lease on the job every third of this


def run(ws: Workspace, job_id: str) -> int:
    job = ws.job(job_id)
    if job is None:
        print(f"no job {job_id} in workspace {ws.name}", file=sys.stderr)
        return 2
    if job.finished:
        return 0
    p = job.params
    adapter = ws.adapter_path(job_id)
    folder = ws.job_folder(job_id)
    args = ["--data", p["training_file"], "--out", str(adapter), "--steps", str(p["steps"]), "--rank",
            str(p["rank"]), "--lr", str(p["lr"]), "--seed", str(p.get("seed", 42)),
            "--progress-file", str(folder / "progress.json")]
    if p.get("batch"):
        args += ["--batch", str(p["batch"])]
    base = p.get("base")  # a downloaded catalogue model: trained on its safetensors, for its GGUF
    if base:
        args += ["--base", base["gguf"], "--base-dir", base["train_dir"]]

    def stop(signum: int, frame: object) -> None:  # a cancel that arrives before the trainer takes over
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    from lib.finetune.local import CANCEL_REQUESTED

    if (ws.job(job_id) or job).error == CANCEL_REQUESTED:  # cancelled while this process was starting
        ws.update_job(job_id, status="cancelled", error="cancelled; no adapter was written")
        return 130
    owner = f"{socket.gethostname()}:{os.getpid()}"
    if not ws.take_lease(f"job:{job_id}", owner, LEASE_TTL_S):  # one process trains a job
        print(f"job {job_id} is being trained by another process", file=sys.stderr)
        return 2
    beating = threading.Event()

    def beat() -> None:  # while it trains, on this machine or another sharing the data folder
        while not beating.wait(LEASE_TTL_S / 3):
            try:
                ws.renew_lease(f"job:{job_id}", owner, LEASE_TTL_S)
            except Exception:
                continue

    threading.Thread(target=beat, name="lease", daemon=True).start()
    try:
        return _train(ws, job_id, job, p, args, adapter)
    finally:
        beating.set()
        ws.release_lease(f"job:{job_id}", owner)


def _train(ws: Workspace, job_id: str, job: Any, p: dict[str, Any], args: list[str], adapter: Path) -> int:
    base = p.get("base")  # a downloaded catalogue model, or None for the bundled one
    ws.update_job(job_id, status="running", pid=os.getpid())
    t0 = time.time()
    try:
        from training.train_lora import main as train_main

        code = train_main(args)
    except KeyboardInterrupt:
        code = 130
    except BaseException as exc:  # recorded for every page and the CLI, then re-raised into the log
        ws.update_job(job_id, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    if code == 130:
        ws.update_job(job_id, status="cancelled", error="cancelled; no adapter was written")
        return code
    sidecar = ws.adapter_sidecar(job_id)
    if code != 0 or sidecar is None:
        ws.update_job(job_id, status="failed", error=f"training stopped with exit code {code}. "
                                                     + ws.job_log_tail(job_id, 400))
        return code or 1
    model = FineTunedModel(
        id=job_id, name=job.name, provider="local", model=base["gguf"] if base else LOCAL_BASE_MODEL,
        base_model=base["label"] if base else "SmolLM2-135M-Instruct",
        lora=str(adapter), created_at=time.time(), training_file=p["training_file"],
        training_sha256=p["training_sha256"], examples=int(p["examples"]), training_cost_usd=0.0,
        trained_on=tuple(p.get("trained_on") or ()), notes=f"LoRA r={p['rank']}, {p['steps']} steps, lr {p['lr']}",
        workspace=ws.name, knowledge_base=p.get("knowledge_base", ""),
        method=f"LoRA r={p['rank']}, {p['steps']} steps, lr {p['lr']}"
               + (f"; {p['data_method']}" if p.get("data_method") else ""),
        train_seconds=sidecar.get("train_seconds", round(time.time() - t0, 1)), job_id=job_id)
    ws.update_job(job_id, status="succeeded", result={"model_id": model.id, "adapter": str(adapter),
                                                      "final_loss": sidecar.get("final_loss")}, model=model)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.finetune.runner")
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--job", required=True)
    a = ap.parse_args(argv)
    return run(Workspace(a.data_dir, a.workspace, create=False), a.job)


if __name__ == "__main__":
    sys.exit(main())
