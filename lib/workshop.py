"""Workshop mode and spend caps.

A workshop's participants and the hosted spend live in one small SQLite file,
`data/workshop/workshop.db` (WAL, one `BEGIN IMMEDIATE` transaction per change, so
several app processes on one data folder share it safely):

- `participants`: an unguessable token (the personal link's `?t=`) -> the participant's
  name and workspace. A name alone opens nothing: only the token does.
- `spend`: one row per hosted request. Before a request its expected cost (prompt tokens
  counted with lib.tokens plus max_tokens, at the model's price) is *reserved* in the same
  transaction that checks it against what is left, so two requests at once cannot both
  spend the last dollar; afterwards the row is settled with the measured cost. A process
  that dies mid-request leaves its reservation counted (the conservative side).

Caps (dollars): WORKBENCH_CAP_PARTICIPANT_USD (per workspace) and WORKBENCH_CAP_TOTAL_USD
(everyone together). A model whose price is unknown is refused while a cap is set: its
cost could not be counted, so the cap could not be kept. Local models cost nothing and
are never capped.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.errors import ConfigError

DB_FOLDER = "workshop"
DB_NAME = "workshop.db"
HOSTED_KINDS = ("openai", "azure")  # what a cap covers: any OpenAI-compatible server (OPENAI_BASE_URL) included
WHO_RAISES = "ask the workshop host to raise it"


class CapReached(ConfigError):
    """A hosted request was refused by a spend cap; the message says what was spent, the cap, and who can raise it."""


@dataclass(frozen=True)
class WorkshopConfig:
    enabled: bool = False
    host_code: str | None = None
    cap_participant_usd: float | None = None
    cap_total_usd: float | None = None

    @property
    def capped(self) -> bool:
        return self.cap_participant_usd is not None or self.cap_total_usd is not None


def _dollars(env: Mapping[str, Any], name: str) -> float | None:
    raw = str(env.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw.lstrip("$"))
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an amount in dollars (for example 2.50).") from None
    if value < 0:
        raise ValueError(f"{name}={raw!r}: a cap cannot be negative.")
    return value


def workshop_config(env: Mapping[str, Any]) -> WorkshopConfig:
    """WORKBENCH_WORKSHOP (1/true/yes), WORKBENCH_HOST_CODE, WORKBENCH_CAP_PARTICIPANT_USD, WORKBENCH_CAP_TOTAL_USD."""
    enabled = str(env.get("WORKBENCH_WORKSHOP") or "").strip().lower() in ("1", "true", "yes", "on")
    code = str(env.get("WORKBENCH_HOST_CODE") or "").strip() or None
    if enabled and not code:
        raise ValueError("Workshop mode (WORKBENCH_WORKSHOP=1) needs a host code: set WORKBENCH_HOST_CODE, "
                         "which opens the Host page.")
    return WorkshopConfig(enabled, code, _dollars(env, "WORKBENCH_CAP_PARTICIPANT_USD"),
                          _dollars(env, "WORKBENCH_CAP_TOTAL_USD"))


def _usd(x: float) -> str:
    return f"${x:.2f}" if x >= 0.01 or x == 0 else f"${x:.6f}"


@dataclass(frozen=True)
class Participant:
    token: str
    name: str
    workspace: str
    created_at: float


def workspace_name_for(name: str) -> str:
    """A valid, unique-enough workspace name from a participant's name (never derived from the token)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:20].strip("-") or "p"
    return f"{slug}-{secrets.token_hex(3)}"


class Workshop:
    """The participants and the spend ledger of one data folder."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / DB_FOLDER / DB_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("CREATE TABLE IF NOT EXISTS participants (token TEXT PRIMARY KEY, name TEXT NOT NULL, "
                        "workspace TEXT NOT NULL UNIQUE, created_at REAL NOT NULL)")
            con.execute("CREATE TABLE IF NOT EXISTS spend (id INTEGER PRIMARY KEY, at REAL NOT NULL, "
                        "workspace TEXT NOT NULL, model TEXT NOT NULL, state TEXT NOT NULL, usd REAL NOT NULL, "
                        "prompt_tokens INTEGER, completion_tokens INTEGER)")
            con.execute("CREATE INDEX IF NOT EXISTS spend_by_workspace ON spend (workspace)")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise ConfigError(f"The workshop database {self.path} could not be opened: {exc}") from exc
        try:
            con.execute("PRAGMA busy_timeout = 30000")
            yield con
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"The workshop database {self.path} could not be used ({exc}); it was left as "
                              "it is.") from exc
        finally:
            con.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        from lib.workspace import immediate

        with self._connect() as con, immediate(con):
            yield con

    # ------------------------------------------------------------ participants

    def join(self, name: str) -> Participant:
        """A new participant with a fresh workspace name and an unguessable token (the caller creates the workspace)."""
        name = " ".join(name.split())
        if not name:
            raise ConfigError("Type your name to join.")
        if len(name) > 60:
            raise ConfigError("That name is too long: use at most 60 characters.")
        p = Participant(secrets.token_urlsafe(16), name, workspace_name_for(name), time.time())
        with self._write() as con:
            con.execute("INSERT INTO participants (token, name, workspace, created_at) VALUES (?, ?, ?, ?)",
                        (p.token, p.name, p.workspace, p.created_at))
        return p

    def participant(self, token: str | None) -> Participant | None:
        if not token:
            return None
        with self._connect() as con:
            row = con.execute("SELECT token, name, workspace, created_at FROM participants WHERE token = ?",
                              (token,)).fetchone()
        return Participant(*row) if row else None

    def participants(self) -> list[Participant]:
        with self._connect() as con:
            rows = con.execute("SELECT token, name, workspace, created_at FROM participants "
                               "ORDER BY created_at").fetchall()
        return [Participant(*r) for r in rows]

    def remove(self, token: str) -> None:
        """Forget a participant: their link stops working. Their spend stays counted in the total."""
        with self._write() as con:
            con.execute("DELETE FROM participants WHERE token = ?", (token,))

    # ------------------------------------------------------------ spend

    def spent(self, workspace: str | None = None) -> float:
        """Dollars spent (and reserved by requests under way) by one workspace, or by everyone."""
        with self._connect() as con:
            return self._spent(con, workspace)

    @staticmethod
    def _spent(con: sqlite3.Connection, workspace: str | None) -> float:
        if workspace is None:
            return float(con.execute("SELECT COALESCE(SUM(usd), 0) FROM spend").fetchone()[0])
        return float(con.execute("SELECT COALESCE(SUM(usd), 0) FROM spend WHERE workspace = ?",
                                 (workspace,)).fetchone()[0])

    def reserve(self, workspace: str, model: str, expected_usd: float, config: WorkshopConfig) -> int:
        """Check the caps and reserve `expected_usd` in one transaction; raise CapReached if it does not fit."""
        with self._write() as con:
            mine, everyone = self._spent(con, workspace), self._spent(con, None)
            cap = config.cap_participant_usd
            if cap is not None and mine + expected_usd > cap:
                raise CapReached(
                    f"Spend cap reached: this workspace has spent {_usd(mine)} of its {_usd(cap)} cap on hosted "
                    f"models, and this request to {model} could cost up to {_usd(expected_usd)}. To go on, "
                    f"{WHO_RAISES} (WORKBENCH_CAP_PARTICIPANT_USD). Local models keep working.")
            cap = config.cap_total_usd
            if cap is not None and everyone + expected_usd > cap:
                raise CapReached(
                    f"Spend cap reached: the workshop has spent {_usd(everyone)} of its {_usd(cap)} total cap on "
                    f"hosted models, and this request to {model} could cost up to {_usd(expected_usd)}. To go on, "
                    f"{WHO_RAISES} (WORKBENCH_CAP_TOTAL_USD). Local models keep working.")
            cur = con.execute("INSERT INTO spend (at, workspace, model, state, usd) VALUES (?, ?, ?, 'reserved', ?)",
                              (time.time(), workspace, model, expected_usd))
            return int(cur.lastrowid or 0)

    def settle(self, reservation: int, usd: float, prompt_tokens: int | None = None,
               completion_tokens: int | None = None) -> None:
        """Replace a reservation by the measured cost (one transaction)."""
        with self._write() as con:
            con.execute("UPDATE spend SET usd = ?, state = 'spent', prompt_tokens = ?, completion_tokens = ?, "
                        "at = ? WHERE id = ?", (usd, prompt_tokens, completion_tokens, time.time(), reservation))


# ---------------------------------------------------------------- the cap wrapper

class CappedProvider:
    """A hosted provider whose requests are checked against the caps before, and recorded after."""

    def __init__(self, inner: Any, workshop: Workshop, workspace: str, config: WorkshopConfig) -> None:
        self.inner, self.workshop, self.workspace, self.config = inner, workshop, workspace, config
        self.spec, self.kind = inner.spec, inner.kind
        self.where = getattr(inner, "where", "")

    def count_tokens(self, text: str) -> int:
        return int(self.inner.count_tokens(text))

    def expected_cost(self, messages: list[dict[str, str]], max_tokens: int) -> float:
        from lib.pricing import price_tokens
        from lib.tokens import count_chat

        usd, note = price_tokens(self.spec.name, count_chat(messages, self.spec.name), max_tokens)
        if usd is None:
            raise CapReached(f"{self.spec.name} has no known price ({note}), so the spend cap could not be kept: "
                             f"hosted requests to it are refused while a cap is set. To use it, {WHO_RAISES} "
                             "(or to remove the caps). Local models keep working.")
        return usd

    def stream(self, messages: list[dict[str, str]], params: Any) -> Iterator[Any]:
        from lib.pricing import price_tokens
        from lib.providers import Done

        expected = self.expected_cost(messages, params.max_tokens)
        reservation = self.workshop.reserve(self.workspace, self.spec.name, expected, self.config)
        settled = produced = False
        try:
            for event in self.inner.stream(messages, params):
                produced = True
                if isinstance(event, Done) and event.prompt_tokens is not None and event.completion_tokens is not None:
                    usd, _ = price_tokens(self.spec.name, event.prompt_tokens, event.completion_tokens,
                                          event.cached_tokens)
                    self.workshop.settle(reservation, expected if usd is None else usd, event.prompt_tokens,
                                         event.completion_tokens)
                    settled = True
                yield event
        finally:
            if not settled:  # no usage reported: the reservation stays as the cost; refused before any output: 0
                self.workshop.settle(reservation, expected if produced else 0.0)


def capped(providers: dict[str, Any], data_dir: str | Path, workspace: str, config: WorkshopConfig) -> dict[str, Any]:
    """Wrap the hosted providers of `providers` (role -> provider or exception) in the caps."""
    if not config.capped:
        return providers
    shop = Workshop(data_dir)
    return {role: CappedProvider(p, shop, workspace, config) if getattr(p, "kind", "") in HOSTED_KINDS else p
            for role, p in providers.items()}


# ---------------------------------------------------------------- the host's view

@dataclass(frozen=True)
class ParticipantRow:
    token: str
    name: str
    workspace: str
    joined_at: float
    questions: int
    runs: int
    spent_usd: float


def participant_rows(data_dir: str | Path) -> list[ParticipantRow]:
    """Each participant with the questions asked, evaluation runs and hosted spend of their workspace."""
    from lib.workspace import Workspace, workspace_exists

    shop = Workshop(data_dir)
    rows = []
    for p in shop.participants():
        questions = runs = 0
        if workspace_exists(data_dir, p.workspace):
            ws = Workspace(data_dir, p.workspace, create=False)
            good, skipped = ws.comparisons()
            questions, runs = len(good) + skipped, len(ws.runs())
        rows.append(ParticipantRow(p.token, p.name, p.workspace, p.created_at, questions, runs,
                                   shop.spent(p.workspace)))
    return rows


def join(settings: Any, name: str) -> Participant:
    """Join the workshop: a participant with their own new, empty workspace."""
    from dataclasses import replace

    from lib import engine

    p = Workshop(settings.data_dir).join(name)
    engine.create_workspace(replace(settings, workspace=p.workspace), p.workspace)
    return p


def reset_participant(settings: Any, token: str) -> Participant:
    """Empty a participant's workspace (knowledge bases, history, runs, models, jobs); their link keeps working.
    What they spent stays counted: a reset does not refund the caps."""
    from dataclasses import replace

    from lib import engine
    from lib.workspace import workspace_exists

    p = Workshop(settings.data_dir).participant(token)
    if p is None:
        raise ConfigError("No such participant (already removed?).")
    if workspace_exists(settings.data_dir, p.workspace):
        engine.delete_workspace(settings, p.workspace)
    engine.create_workspace(replace(settings, workspace=p.workspace), p.workspace)
    return p


def remove_participant(settings: Any, token: str) -> Participant:
    """Delete a participant's workspace and forget them: their link stops working."""
    from lib import engine
    from lib.workspace import workspace_exists

    shop = Workshop(settings.data_dir)
    p = shop.participant(token)
    if p is None:
        raise ConfigError("No such participant (already removed?).")
    if workspace_exists(settings.data_dir, p.workspace):
        engine.delete_workspace(settings, p.workspace)
    shop.remove(token)
    return p
