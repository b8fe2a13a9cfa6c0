"""Workshop mode: the participants, how they join, and what the host sees.

A workshop's participants live in the workshop database, `data/workshop/workshop.db` (lib.db; shared with the
spend ledger of lib/gateway.py; WAL, one `BEGIN IMMEDIATE` transaction per change, so several app processes on one
data folder share it safely):

- `participants`: an unguessable token (the personal link's `?t=`) -> the participant's name and workspace. A
  name alone opens nothing: only the token does.
- `joins`: every attempt to join (when, from which client address, under which name, and how it ended). It
  limits joins per client (WORKBENCH_JOIN_RATE in any 10 minutes), counts the participants against
  WORKBENCH_MAX_PARTICIPANTS, shows the host who joined twice, and makes one allowance of everyone who joined
  under one name: joining again does not bring a fresh allowance (lib/gateway.Ledger).
- `links`: tokens the host merged into another participant (their link opens that participant's workspace).
- `host_attempts`: wrong host codes, per client (at most HOST_ATTEMPTS in HOST_WINDOW_S).

Hosted spend and its caps are the gateway's (lib/gateway.py); models, endpoints and keys are the host's: a
participant's settings come from the configuration, and only a role's model may be picked, among those the host
allows (`locked_settings`). A participant's workspace is made, emptied and deleted by lib.engine (`join_workshop`,
`reset_participant`, `remove_participant`, `merge_participants`), which owns workspaces.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lib.db import workshop_database
from lib.errors import CapReached, ConfigError
from lib.gateway import Ledger
from lib.settings import ModelSpec, Settings, WorkshopConfig
from lib.settings import workshop_config as _parse

__all__ = ["Participant", "Workshop", "WorkshopConfig", "workshop_config"]

MAX_NAME = 60
JOIN_WINDOW_S = 600  # WORKBENCH_JOIN_RATE joins per client in this window
HOST_ATTEMPTS = 5  # wrong host codes per client ...
HOST_WINDOW_S = 300  # ... in this window, then that client waits
TOKEN_COOKIE = "workbench_link"  # the personal link's token, kept by the browser from the join on
HIDE_COOKIE = "workbench_hide_link"  # "1": the participant hid the link from the address bar
COOKIE_DAYS = 14


def workshop_config(env: Mapping[str, Any]) -> WorkshopConfig:
    """The workshop's configuration from environment-like values (lib.settings reads the real ones)."""
    return _parse({str(k).upper(): v for k, v in env.items()})


@dataclass(frozen=True)
class Participant:
    token: str
    name: str
    workspace: str
    created_at: float


@dataclass(frozen=True)
class Join:
    """One attempt to join, as the host sees it."""

    at: float
    name: str
    client: str
    outcome: str  # "joined" or the reason it was refused
    workspace: str


def name_key(name: str) -> str:
    """Two joins are one person's when their names match ignoring case and spacing."""
    return " ".join(name.casefold().split())


def check_name(name: str) -> str:
    name = " ".join(str(name or "").split())
    if not name:
        raise ConfigError("Type your name to join.")
    if len(name) > MAX_NAME:
        raise ConfigError(f"That name is {len(name)} characters long: use at most {MAX_NAME}.")
    return name


def workspace_name_for(name: str) -> str:
    """A valid, unique-enough workspace name from a participant's name (never derived from the token)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:20].strip("-") or "p"
    return f"{slug}-{secrets.token_hex(3)}"


class Workshop:
    """The participants and joins of one data folder."""

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        self.db = workshop_database(self.data_dir)
        self.path = self.db.path
        self.db.wal()
        with self.db.connect() as con:
            con.execute("CREATE TABLE IF NOT EXISTS participants (token TEXT PRIMARY KEY, name TEXT NOT NULL, "
                        "workspace TEXT NOT NULL UNIQUE, created_at REAL NOT NULL)")
            con.execute("CREATE TABLE IF NOT EXISTS joins (id INTEGER PRIMARY KEY, at REAL NOT NULL, "
                        "client TEXT NOT NULL, name TEXT NOT NULL, name_key TEXT NOT NULL, outcome TEXT NOT NULL, "
                        "workspace TEXT NOT NULL DEFAULT '')")
            con.execute("CREATE INDEX IF NOT EXISTS joins_by_client ON joins (client, at)")
            con.execute("CREATE INDEX IF NOT EXISTS joins_by_name ON joins (name_key)")
            con.execute("CREATE TABLE IF NOT EXISTS links (token TEXT PRIMARY KEY, owner TEXT NOT NULL, "
                        "at REAL NOT NULL)")
            con.execute("CREATE TABLE IF NOT EXISTS host_attempts (at REAL NOT NULL, client TEXT NOT NULL)")

    # ------------------------------------------------------------ joining

    def join(self, name: str, client: str = "", config: WorkshopConfig | None = None, code: str = "") -> Participant:
        """A new participant with a fresh workspace name and an unguessable token (the caller creates the
        workspace). Refused, with the reason, when the join code is wrong, this client joined too often, the
        workshop is full, or this name's allowance is used up. Every attempt is recorded."""
        config = config or WorkshopConfig()
        name = check_name(name)
        key, client, now = name_key(name), client or "unknown", time.time()
        refusal: str | None = None
        p = Participant(secrets.token_urlsafe(16), name, workspace_name_for(name), now)
        with self.db.write() as con:
            recent = con.execute("SELECT COUNT(*) FROM joins WHERE client = ? AND at > ?",
                                 (client, now - JOIN_WINDOW_S)).fetchone()[0]
            if recent >= config.join_rate:
                refusal = (f"Too many attempts to join from this device ({recent} in the last "
                           f"{JOIN_WINDOW_S // 60} minutes): wait a few minutes, or ask the workshop host.")
            elif config.join_code and not hmac.compare_digest(code.strip().encode(), config.join_code.encode()):
                refusal = "That is not the join code: ask the workshop host for it (it is on their screen)."
            elif config.max_participants is not None and con.execute(
                    "SELECT COUNT(*) FROM participants").fetchone()[0] >= config.max_participants:
                refusal = (f"The workshop is full ({config.max_participants} participants): ask the workshop "
                           "host.")
            elif config.cap_participant_usd is not None:
                earlier = [r[0] for r in con.execute("SELECT DISTINCT workspace FROM joins WHERE name_key = ? "
                                                     "AND outcome = 'joined'", (key,))]
                has_ledger = con.execute("SELECT 1 FROM sqlite_master WHERE name = 'refusals'").fetchone()
                if earlier and has_ledger:
                    marks = ",".join("?" * len(earlier))
                    held = float(con.execute(f"SELECT COALESCE(SUM(usd), 0) FROM spend WHERE workspace IN ({marks})",
                                             earlier).fetchone()[0])
                    refused = float(con.execute(f"SELECT COALESCE(MIN(usd), 0) FROM refusals WHERE workspace IN "
                                                f"({marks})", earlier).fetchone()[0] or 0)
                    # used up: spent, or too little left for a request this person was refused (unless the host
                    # has since raised the cap)
                    if held >= config.cap_participant_usd or (refused and held + refused > config.cap_participant_usd):
                        from lib.format import usd

                        refusal = (f"{name} has joined before, and that allowance is used up ({usd(held)} of "
                                   f"{usd(config.cap_participant_usd)} spent): joining again does not bring a new "
                                   "one. Open your personal link to go on with local models, or ask the workshop "
                                   "host.")
            con.execute("INSERT INTO joins (at, client, name, name_key, outcome, workspace) VALUES (?, ?, ?, ?, ?, ?)",
                        (now, client, name, key, refusal or "joined", "" if refusal else p.workspace))
            if refusal is None:
                con.execute("INSERT INTO participants (token, name, workspace, created_at) VALUES (?, ?, ?, ?)",
                            (p.token, p.name, p.workspace, p.created_at))
        if refusal is not None:
            raise (CapReached if "allowance" in refusal else ConfigError)(refusal)
        return p

    def joins(self) -> list[Join]:
        """Every attempt to join, oldest first."""
        with self.db.connect() as con:
            rows = con.execute("SELECT at, name, client, outcome, workspace FROM joins ORDER BY at, id").fetchall()
        return [Join(*r) for r in rows]

    # ------------------------------------------------------------ participants

    def participant(self, token: str | None) -> Participant | None:
        """The participant a link's token opens (a merged link opens the participant it was merged into)."""
        if not token:
            return None
        with self.db.connect() as con:
            row = con.execute("SELECT token, name, workspace, created_at FROM participants WHERE token = ?",
                              (token,)).fetchone()
            if row is None:
                link = con.execute("SELECT owner FROM links WHERE token = ?", (token,)).fetchone()
                if link is not None:
                    row = con.execute("SELECT token, name, workspace, created_at FROM participants WHERE token = ?",
                                      (link[0],)).fetchone()
        return Participant(*row) if row else None

    def participants(self) -> list[Participant]:
        with self.db.connect() as con:
            rows = con.execute("SELECT token, name, workspace, created_at FROM participants "
                               "ORDER BY created_at").fetchall()
        return [Participant(*r) for r in rows]

    def duplicates(self) -> list[list[Participant]]:
        """Participants who joined more than once under one name (ignoring case and spacing), oldest first."""
        groups: dict[str, list[Participant]] = {}
        for p in self.participants():
            groups.setdefault(name_key(p.name), []).append(p)
        return [g for g in groups.values() if len(g) > 1]

    def remove(self, token: str) -> None:
        """Forget a participant: their link (and links merged into it) stop working. Their joins and spend stay
        counted."""
        with self.db.write() as con:
            con.execute("DELETE FROM participants WHERE token = ?", (token,))
            con.execute("DELETE FROM links WHERE owner = ?", (token,))

    def merge(self, keep: str, duplicate: str) -> tuple[Participant, Participant]:
        """One person joined twice: the duplicate's link now opens `keep`'s workspace, and what the duplicate spent
        counts as `keep`'s. Returns (kept, duplicate); the caller deletes the duplicate's workspace."""
        kept, dup = self.participant(keep), self.participant(duplicate)
        if kept is None or dup is None:
            raise ConfigError("No such participant (already removed?).")
        if kept.token == dup.token or kept.workspace == dup.workspace:
            raise ConfigError("Pick two different participants to merge.")
        with self.db.write() as con:
            con.execute("DELETE FROM participants WHERE token = ?", (dup.token,))
            con.execute("UPDATE links SET owner = ? WHERE owner = ?", (kept.token, dup.token))
            con.execute("INSERT OR REPLACE INTO links (token, owner, at) VALUES (?, ?, ?)",
                        (dup.token, kept.token, time.time()))
            con.execute("UPDATE joins SET name_key = (SELECT name_key FROM joins WHERE workspace = ? LIMIT 1) "
                        "WHERE workspace = ? AND EXISTS (SELECT 1 FROM joins WHERE workspace = ?)",
                        (kept.workspace, dup.workspace, kept.workspace))
        Ledger(self.data_dir).move(dup.workspace, kept.workspace)
        return kept, dup

    # ------------------------------------------------------------ the host code

    def host_wait(self, client: str) -> float:
        """Seconds this client must wait before trying the host code again (0: it may try now)."""
        now = time.time()
        with self.db.connect() as con:
            times = [r[0] for r in con.execute("SELECT at FROM host_attempts WHERE client = ? AND at > ? ORDER BY at",
                                               (client or "unknown", now - HOST_WINDOW_S))]
        return 0.0 if len(times) < HOST_ATTEMPTS else max(0.0, times[-HOST_ATTEMPTS] + HOST_WINDOW_S - now)

    def check_host_code(self, code: str, config: WorkshopConfig, client: str = "") -> bool:
        """Whether `code` is the host code; a wrong one is counted against this client (HOST_ATTEMPTS in
        HOST_WINDOW_S), and while it must wait, no code is even compared."""
        wait = self.host_wait(client)
        if wait > 0:
            raise ConfigError(f"Too many wrong host codes from this device: try again in {wait / 60:.0f} minute(s).")
        if config.host_code and hmac.compare_digest(code.encode(), config.host_code.encode()):
            return True
        with self.db.write() as con:
            con.execute("INSERT INTO host_attempts (at, client) VALUES (?, ?)", (time.time(), client or "unknown"))
        return False


def text(value: Any) -> str:
    """A value read from the browser's request (a cookie, the client address) as text; anything else (absent,
    or a test harness's stand-in) as ''."""
    return value if isinstance(value, str) else ""


def remember_link_script(token: str, hide: bool, secure: bool = False) -> str:
    """A script that has the browser keep the personal link's token (and whether it is hidden from the address
    bar) in first-party cookies, so a page opened after a restart, or without `?t=`, still opens the workspace.
    SameSite=Strict: the cookie is never sent by another site's page."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{8,128}", token):
        raise ConfigError("Not a personal link.")
    attrs = f"; path=/; max-age={COOKIE_DAYS * 86400}; samesite=strict" + ("; secure" if secure else "")
    return (f'<script>document.cookie = "{TOKEN_COOKIE}={token}{attrs}"; '
            f'document.cookie = "{HIDE_COOKIE}={"1" if hide else "0"}{attrs}";</script>')


# ---------------------------------------------------------------- a participant's settings

def locked_settings(settings: Settings, choices: Mapping[str, Any]) -> Settings:
    """A participant's settings: the host's configuration (provider, endpoint, key), with only a role's model
    picked from the models the host allows for it (Settings shows them). Anything else a session asked is
    ignored."""
    from lib.gateway import HOSTED_KINDS, allowed_models

    out = settings
    for role, field in (("base", "base"), ("finetuned", "finetuned")):
        spec = choices.get(field)
        if isinstance(spec, ModelSpec) and (spec in allowed_models(settings, role) or (
                spec.provider not in HOSTED_KINDS and spec.lora is None and not spec.name.endswith(".gguf"))):
            out = replace(out, **{field: spec})
    return out


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
    joins: int  # how many times this name joined


def participant_rows(data_dir: str | Path) -> list[ParticipantRow]:
    """Each participant with the questions asked, evaluation runs and hosted spend of their workspace."""
    from lib.workspace import Workspace, workspace_exists

    shop = Workshop(data_dir)
    ledger = Ledger(data_dir)
    times: dict[str, int] = {}
    for j in shop.joins():
        if j.outcome == "joined":
            times[name_key(j.name)] = times.get(name_key(j.name), 0) + 1
    rows = []
    for p in shop.participants():
        questions = runs = 0
        if workspace_exists(data_dir, p.workspace):
            ws = Workspace(data_dir, p.workspace, create=False)
            good, skipped = ws.comparisons()
            questions, runs = len(good) + skipped, len(ws.runs())
        rows.append(ParticipantRow(p.token, p.name, p.workspace, p.created_at, questions, runs,
                                   ledger.workspace_spent(p.workspace), times.get(name_key(p.name), 1)))
    return rows
