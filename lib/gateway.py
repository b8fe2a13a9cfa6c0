"""The one gateway for hosted requests: nothing reaches OpenAI, Azure or an OpenAI-compatible server except
through here (tests/test_gateway.py enumerates the call sites and fails on one that goes around it).

- Chat streams (Compare, evaluation runs, the LLM judge, question-set and training-pair generation, the
  connection test): `provider(settings, spec, role)` / `providers(settings)`.
- OpenAI fine-tuning: `fine_tuning(settings)` uploads the training file and creates the job with its estimated
  training cost reserved first; the reservation is settled at the trained tokens when the job reports.
- Hosted embeddings: `embeddings(settings)`.

With a spend cap set (WORKBENCH_CAP_PARTICIPANT_USD, WORKBENCH_CAP_TOTAL_USD) every hosted request reserves its
most expensive outcome in the ledger, in the transaction that checks it against what is left, and settles to
the measured cost afterwards; a request that does not fit is refused before anything is sent, and the refusal
says what was spent (settled) and what is reserved by requests under way. In workshop mode only the models
the host allows (per role) are served. Keys are bound to their endpoint by the client factory
(lib.providers.openai_client, which only this module calls).

The ledger is the `spend` table of the workshop database, `data/workshop/workshop.db` (lib.db: SQLite, WAL, one
`BEGIN IMMEDIATE` transaction per change, so several app processes on one data folder share it safely). A
process that dies mid-request leaves its reservation counted (the conservative side).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lib.db import workshop_database
from lib.errors import CapReached, ConfigError, NotAllowed
from lib.settings import ModelSpec, Settings, WorkshopConfig

HOSTED_KINDS = ("openai", "azure")  # what a cap covers: any OpenAI-compatible server (OPENAI_BASE_URL) included
WHO_RAISES = "ask the workshop host to raise it"
NO_FINETUNED = ConfigError(
    "No fine-tuned model is configured. Set WORKBENCH_FT_MODEL to an OpenAI fine-tuned id (ft:...), "
    "or WORKBENCH_FT_LORA to a local LoRA adapter (.gguf), or pick one on the Fine-tune page.")


def usd(x: float) -> str:
    """Dollars with the precision a small cap needs ($0.002 is not $0.00)."""
    from lib.format import usd as fmt

    return fmt(x)


# ---------------------------------------------------------------- the ledger

class Ledger:
    """Hosted spend of one data folder: reservations and settled costs, per workspace."""

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        self.db = workshop_database(self.data_dir)
        self.db.wal()
        with self.db.connect() as con:
            con.execute("CREATE TABLE IF NOT EXISTS spend (id INTEGER PRIMARY KEY, at REAL NOT NULL, "
                        "workspace TEXT NOT NULL, model TEXT NOT NULL, state TEXT NOT NULL, usd REAL NOT NULL, "
                        "prompt_tokens INTEGER, completion_tokens INTEGER)")
            con.execute("CREATE INDEX IF NOT EXISTS spend_by_workspace ON spend (workspace)")
            # Requests a participant's cap refused (what each would have cost): joining again under the same
            # name is refused while the allowance still could not pay for them (lib/workshop.Workshop.join).
            con.execute("CREATE TABLE IF NOT EXISTS refusals (at REAL NOT NULL, workspace TEXT NOT NULL, "
                        "usd REAL NOT NULL)")

    @staticmethod
    def _group(con: sqlite3.Connection, workspace: str) -> list[str]:
        """The workspaces of one participant: every workspace joined under the same name shares one allowance
        (joining again does not bring a fresh one); a workspace that nobody joined stands alone."""
        has_joins = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'joins'").fetchone()
        if not has_joins:
            return [workspace]
        rows = con.execute("SELECT DISTINCT workspace FROM joins WHERE outcome = 'joined' AND name_key IN "
                           "(SELECT name_key FROM joins WHERE workspace = ? AND outcome = 'joined')",
                           (workspace,)).fetchall()
        return sorted({workspace, *(r[0] for r in rows)})

    @classmethod
    def _totals(cls, con: sqlite3.Connection, workspace: str | None) -> tuple[float, float]:
        """(settled, reserved) dollars of one participant (all their workspaces) or of everyone."""
        if workspace is None:
            where, args = "", ()
        else:
            group = cls._group(con, workspace)
            where, args = f"WHERE workspace IN ({','.join('?' * len(group))})", tuple(group)
        rows = dict(con.execute(f"SELECT state, COALESCE(SUM(usd), 0) FROM spend {where} GROUP BY state",
                                args).fetchall())
        return float(rows.get("spent", 0.0)), float(rows.get("reserved", 0.0))

    def totals(self, workspace: str | None = None) -> tuple[float, float]:
        """(settled, reserved) dollars of the participant owning `workspace`, or of everyone."""
        with self.db.connect() as con:
            return self._totals(con, workspace)

    def spent(self, workspace: str | None = None) -> float:
        """Dollars counted against the caps: settled plus still reserved."""
        settled, reserved = self.totals(workspace)
        return settled + reserved

    def workspace_spent(self, workspace: str) -> float:
        """Dollars counted for this one workspace (without the other workspaces of its participant)."""
        with self.db.connect() as con:
            return float(con.execute("SELECT COALESCE(SUM(usd), 0) FROM spend WHERE workspace = ?",
                                     (workspace,)).fetchone()[0])

    def reserve(self, workspace: str, model: str, expected_usd: float, config: WorkshopConfig,
                what: str = "this request") -> int:
        """Check the caps and reserve `expected_usd` in one transaction; raise CapReached if it does not fit."""
        refusal: tuple[str, str] | None = None
        with self.db.write() as con:
            for scope, cap, variable in (("this participant", config.cap_participant_usd,
                                          "WORKBENCH_CAP_PARTICIPANT_USD"),
                                         ("the workshop", config.cap_total_usd, "WORKBENCH_CAP_TOTAL_USD")):
                if cap is None:
                    continue
                settled, reserved = self._totals(con, workspace if scope == "this participant" else None)
                if settled + reserved + expected_usd > cap:
                    held = f" ({usd(reserved)} more is reserved by requests under way)" if reserved else ""
                    refusal = (scope, (
                        f"Spend cap reached: {scope} has spent {usd(settled)}{held} of the {usd(cap)} "
                        f"{'total ' if scope == 'the workshop' else ''}cap on hosted models, and {what} to {model} "
                        f"could cost up to {usd(expected_usd)}. To go on, {WHO_RAISES} ({variable}). Local models "
                        "keep working."))
                    break
            if refusal is None:
                cur = con.execute("INSERT INTO spend (at, workspace, model, state, usd) "
                                  "VALUES (?, ?, ?, 'reserved', ?)", (time.time(), workspace, model, expected_usd))
                return int(cur.lastrowid or 0)
            if refusal[0] == "this participant":
                con.execute("INSERT INTO refusals (at, workspace, usd) VALUES (?, ?, ?)",
                            (time.time(), workspace, expected_usd))
        raise CapReached(refusal[1])

    def settle(self, reservation: int, cost: float, prompt_tokens: int | None = None,
               completion_tokens: int | None = None) -> None:
        """Replace a reservation by the measured cost (one transaction); a settled row is left as it is."""
        with self.db.write() as con:
            con.execute("UPDATE spend SET usd = ?, state = 'spent', prompt_tokens = ?, completion_tokens = ?, "
                        "at = ? WHERE id = ? AND state = 'reserved'",
                        (cost, prompt_tokens, completion_tokens, time.time(), reservation))

    def move(self, source: str, target: str) -> None:
        """Count a workspace's spend as another's (the host merged two joins of one person)."""
        with self.db.write() as con:
            con.execute("UPDATE spend SET workspace = ? WHERE workspace = ?", (target, source))


def left(settings: Settings) -> dict[str, Any]:
    """What the caps allow this workspace's participant and everyone: caps, settled, reserved and what is left."""
    config = settings.workshop
    ledger = Ledger(settings.data_dir)
    out: dict[str, Any] = {}
    for scope, cap, workspace in (("participant", config.cap_participant_usd, settings.workspace),
                                  ("total", config.cap_total_usd, None)):
        settled, reserved = ledger.totals(workspace)
        out[scope] = {"cap": cap, "settled": settled, "reserved": reserved,
                      "left": None if cap is None else max(0.0, cap - settled - reserved)}
    return out


# ---------------------------------------------------------------- which models a workshop serves

def allowed_models(settings: Settings, role: str) -> tuple[ModelSpec, ...]:
    """The hosted models participants may use for a role (WORKBENCH_WORKSHOP_BASE_MODELS / _FT_MODELS, else the
    configured model of that role)."""
    config = settings.workshop
    return config.base_models if role == "base" else config.ft_models


def check_allowed(settings: Settings, spec: ModelSpec, role: str) -> None:
    """In workshop mode, refuse a hosted model the host did not allow for this role. A fine-tuned model this
    workspace trained (through this gateway, so its cost was capped) is allowed for the fine-tuned role."""
    if not settings.workshop.enabled or spec.provider not in HOSTED_KINDS:
        return
    allowed = allowed_models(settings, role)
    if spec in allowed:
        return
    if role == "finetuned":
        from lib.workspace import Workspace, workspace_exists

        if workspace_exists(settings.data_dir, settings.workspace) and any(
                m.spec == spec for m in Workspace(settings.data_dir, settings.workspace).models()):
            return
    names = ", ".join(m.name for m in allowed) or "none"
    raise NotAllowed(f"{spec.name} is not a model this workshop serves for the {role} role (allowed: {names}). "
                     "The workshop host chooses the models (WORKBENCH_WORKSHOP_BASE_MODELS, "
                     "WORKBENCH_WORKSHOP_FT_MODELS); local models keep working.")


# ---------------------------------------------------------------- chat streams

class CappedProvider:
    """A hosted provider whose requests are checked against the caps before, and recorded after."""

    def __init__(self, inner: Any, ledger: Ledger, workspace: str, config: WorkshopConfig) -> None:
        self.inner, self.ledger, self.workspace, self.config = inner, ledger, workspace, config
        self.spec, self.kind = inner.spec, inner.kind
        self.where = getattr(inner, "where", "")

    def count_tokens(self, text: str) -> int:
        return int(self.inner.count_tokens(text))

    def expected_cost(self, messages: list[dict[str, str]], max_tokens: int) -> float:
        from lib.pricing import price_tokens
        from lib.tokens import count_chat

        cost, note = price_tokens(self.spec.name, count_chat(messages, self.spec.name), max_tokens)
        if cost is None:
            raise CapReached(f"Spend cap: {self.spec.name} has no known price ({note}), so the spend cap could not "
                             f"be kept: hosted requests to it are refused while a cap is set. To use it, {WHO_RAISES} "
                             "(or to remove the caps). Local models keep working.")
        return cost

    def stream(self, messages: list[dict[str, str]], params: Any) -> Iterator[Any]:
        from lib.pricing import price_tokens
        from lib.providers import Done

        expected = self.expected_cost(messages, params.max_tokens)
        reservation = self.ledger.reserve(self.workspace, self.spec.name, expected, self.config)
        settled = produced = False
        try:
            for event in self.inner.stream(messages, params):
                produced = True
                if isinstance(event, Done) and event.prompt_tokens is not None and event.completion_tokens is not None:
                    cost, _ = price_tokens(self.spec.name, event.prompt_tokens, event.completion_tokens,
                                           event.cached_tokens)
                    self.ledger.settle(reservation, expected if cost is None else cost, event.prompt_tokens,
                                       event.completion_tokens)
                    settled = True
                yield event
        finally:
            if not settled:  # no usage reported: the reservation stays as the cost; refused before any output: 0
                self.ledger.settle(reservation, expected if produced else 0.0)


def _wrap(settings: Settings, inner: Any) -> Any:
    if settings.workshop.capped and getattr(inner, "kind", "") in HOSTED_KINDS:
        return CappedProvider(inner, Ledger(settings.data_dir), settings.workspace, settings.workshop)
    return inner


def provider(settings: Settings, spec: ModelSpec, role: str = "base") -> Any:
    """The provider for one model: local ones as they are, hosted ones through the caps (and, in workshop mode,
    only a model the host allows for `role`)."""
    from lib.providers import make_provider

    check_allowed(settings, spec, role)
    return _wrap(settings, make_provider(spec, settings))


def providers(settings: Settings) -> dict[str, Any]:
    """role -> provider, or the exception that explains why that role has none."""
    out: dict[str, Any] = {}
    for role, spec in (("base", settings.base), ("finetuned", settings.finetuned)):
        if spec is None:
            out[role] = NO_FINETUNED
            continue
        try:
            out[role] = provider(settings, spec, role)
        except Exception as exc:
            out[role] = exc
    return out


def connection_test(settings: Settings, role: str = "base") -> tuple[bool, str]:
    """Can the model for `role` answer? One tiny request (capped like any other); the message says what is
    wrong."""
    from lib.errors import explain
    from lib.providers import Delta, Done
    from lib.records import GenParams

    spec = settings.base if role == "base" else settings.finetuned
    if spec is None:
        return False, str(NO_FINETUNED)
    t0 = time.monotonic()
    try:
        chosen = provider(settings, spec, role)
        text = ""
        for event in chosen.stream([{"role": "user", "content": "Say OK."}], GenParams(max_tokens=3)):
            if isinstance(event, Delta):
                text += event.text
            elif isinstance(event, Done):
                break
    except Exception as exc:
        return False, explain(exc, spec.name, str(getattr(getattr(exc, "request", None), "url", "") or ""))
    return True, f"{spec.label} answered in {(time.monotonic() - t0) * 1000:.0f} ms: {text.strip()!r}"


# ---------------------------------------------------------------- OpenAI fine-tuning

class FineTuning:
    """OpenAI fine-tuning through the gateway: the upload and the job, with the job's estimated training cost
    reserved before anything is sent and settled when the job reports its trained tokens."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from lib.providers import openai_client

            self._client = openai_client(self.settings)
        return self._client

    def start(self, ws: Any, examples: list[Any], base_model: str, epochs: int = 3, suffix: str | None = None,
              trained_on: tuple[dict[str, str], ...] = (), knowledge_base: str = "",
              provider: str = "openai") -> Any:
        """Reserve the estimated training cost, upload the training file, create the job and record it in the
        workspace (with its reservation). Returns the job object."""
        from lib.finetune.data import to_jsonl
        from lib.finetune.hosted import estimate_training_cost
        from lib.finetune.registry import sha256_text

        config = self.settings.workshop
        reservation = None
        if config.capped:
            estimate = estimate_training_cost(examples, base_model, epochs)
            if estimate["usd"] is None:
                raise CapReached(f"Spend cap: fine-tuning {base_model} has no known training price, so the spend "
                                 f"cap could not be kept: it is refused while a cap is set. To use it, {WHO_RAISES} "
                                 "(or to remove the caps).")
            reservation = Ledger(self.settings.data_dir).reserve(
                ws.name if ws is not None else self.settings.workspace, base_model, float(estimate["usd"]), config,
                what="this fine-tuning job")
        try:
            data = to_jsonl(examples)
            uploaded = self.client.files.create(file=("training.jsonl", data.encode()), purpose="fine-tune")
            kwargs: dict[str, Any] = {"model": base_model, "training_file": uploaded.id,
                                      "hyperparameters": {"n_epochs": epochs}}
            if suffix:
                kwargs["suffix"] = suffix
            job = self.client.fine_tuning.jobs.create(**kwargs)
        except BaseException:
            if reservation is not None:
                Ledger(self.settings.data_dir).settle(reservation, 0.0)
            raise
        if ws is not None:
            ws.add_job(job.id, "openai", suffix or base_model, {
                "base_model": base_model, "epochs": epochs, "suffix": suffix, "examples": len(examples),
                "training_file": uploaded.id, "training_sha256": sha256_text(data), "trained_on": list(trained_on),
                "knowledge_base": knowledge_base, "provider": provider, "reservation": reservation},
                status=str(job.status))
        return job

    def poll(self, job_id: str) -> tuple[Any, list[str]]:
        """The job's current state and its events, oldest first (free requests)."""
        job = self.client.fine_tuning.jobs.retrieve(job_id)
        events = self.client.fine_tuning.jobs.list_events(job_id, limit=50)
        return job, [e.message for e in reversed(list(events.data))]

    def cancel(self, job_id: str) -> Any:
        return self.client.fine_tuning.jobs.cancel(job_id)

    def settle(self, ws: Any, job_id: str, job: Any = None) -> None:
        """Settle a finished job's reservation: its trained tokens at the training price when it reports them;
        a failed job that trained nothing costs nothing; a cancelled one without a count keeps its reservation."""
        record = ws.job(job_id)
        if record is None or not record.finished or not record.params.get("reservation"):
            return
        from lib.pricing import training_price_per_mtok

        trained = getattr(job, "trained_tokens", None) if job is not None else None
        price = training_price_per_mtok(str(record.params.get("base_model", "")))
        ledger = Ledger(self.settings.data_dir)
        if trained is not None and price is not None:
            ledger.settle(int(record.params["reservation"]), float(trained) * price / 1e6)
        elif record.status == "failed":
            ledger.settle(int(record.params["reservation"]), 0.0)

    def refresh(self, ws: Any, record: Any) -> tuple[Any, list[str]]:
        """Ask for the job's state, store it (registering the model once it succeeded) and settle its cost."""
        from lib.finetune.hosted import refresh_openai_job

        job, events = refresh_openai_job(ws, self, record)
        self.settle(ws, record.id, job)
        return job, events

    def refresh_all(self, ws: Any) -> list[str]:
        """Refresh every unfinished hosted job; returns the problems met (one line per job)."""
        from lib.errors import explain

        problems = []
        for record in ws.jobs("openai"):
            if record.finished:
                continue
            try:
                self.refresh(ws, record)
            except Exception as exc:
                problems.append(f"{record.id}: {explain(exc)}")
        return problems


def fine_tuning(settings: Settings) -> FineTuning:
    return FineTuning(settings)


# ---------------------------------------------------------------- hosted embeddings

class Embeddings:
    """OpenAI (or compatible) embeddings through the gateway: each batch reserved at its counted tokens and
    settled at the reported usage."""

    def __init__(self, settings: Settings) -> None:
        from lib.providers import openai_client

        self.settings = settings
        self._client = openai_client(settings)

    def create(self, model: str, texts: list[str]) -> list[list[float]]:
        from lib.pricing import price_tokens
        from lib.tokens import count_openai

        config = self.settings.workshop
        ledger = reservation = None
        if config.capped:
            tokens = sum(count_openai(t, model) for t in texts)
            expected, note = price_tokens(model, tokens, 0)
            if expected is None:
                raise CapReached(f"Spend cap: {model} has no known price ({note}), so the spend cap could not be "
                                 f"kept: embedding with it is refused while a cap is set. To use it, {WHO_RAISES}.")
            ledger = Ledger(self.settings.data_dir)
            reservation = ledger.reserve(self.settings.workspace, model, expected, config, what="this embedding batch")
        settled = False
        try:
            response = self._client.embeddings.create(model=model, input=texts)
            usage = getattr(response, "usage", None)
            if ledger is not None and reservation is not None and usage is not None:
                cost, _ = price_tokens(model, int(usage.prompt_tokens), 0)
                if cost is not None:
                    ledger.settle(reservation, cost, int(usage.prompt_tokens), 0)
                    settled = True
            return [item.embedding for item in sorted(response.data, key=lambda d: d.index)]
        except BaseException:
            if ledger is not None and reservation is not None and not settled:
                ledger.settle(reservation, 0.0)
                settled = True
            raise
        finally:
            if ledger is not None and reservation is not None and not settled:
                ledger.settle(reservation, expected)


def embeddings(settings: Settings) -> Embeddings:
    return Embeddings(settings)
