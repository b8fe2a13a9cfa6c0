"""The machine-wide queue for work that uses this machine's cores: local generation (every worker process of
the local model) and the local embedder's batches (ingest, evaluation retrieval).

A request joins with what it can share the machine with:
- `batch_key`: requests with the same key (the same model, context size and LoRA adapter) may be decoded
  together in one batch by one worker process; `None` asks for the whole machine alone (an embedding batch).
- `lanes` and `slots`: the worker processes (lanes) that can serve it, and how many requests one of them
  decodes at once.
- `group`: requests of one group are never served at the same time. The arms of one comparison form a group
  (see `comparison_group`): their times are compared with each other, so on an otherwise idle server each is
  served alone, as it would be asked alone.

Requests are admitted in arrival order. One that cannot be placed yet (its lane runs another model or
adapter, or every slot is taken) holds back the ones behind it, so a model switch waits for the running batch to
finish and is never starved. One that waits only for its own group's earlier request lets the others pass.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import threading
import time
from collections.abc import Hashable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

MACHINE = "machine"  # the lane of work that takes the whole machine


@dataclass
class Ticket:
    number: int
    arrived: float = field(default_factory=time.monotonic)
    batch_key: Hashable | None = None  # None: the whole machine, alone
    lanes: tuple[Hashable, ...] = (MACHINE,)
    slots: int = 1  # requests one lane serves at once
    group: str | None = None
    lane: Hashable | None = None  # set when admitted
    admitted: float | None = None

    @property
    def capacity(self) -> int:
        return 1 if self.batch_key is None else max(1, len(self.lanes) * self.slots)


_group: ContextVar[str | None] = ContextVar("local_queue_group", default=None)


@contextlib.contextmanager
def comparison_group(name: str) -> Iterator[None]:
    """Local requests made inside this block (in this thread) with the same name are served one after another,
    never in one batch: the arms of one comparison, whose times are compared with each other."""
    token = _group.set(name)
    try:
        yield
    finally:
        _group.reset(token)


def current_group() -> str | None:
    return _group.get()


class LocalQueue:
    """Requests for this machine's cores, admitted in arrival order (see the module's description)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._numbers = itertools.count()
        self._waiting: list[Ticket] = []
        self._running: list[Ticket] = []
        self._durations: collections.deque[float] = collections.deque(maxlen=20)

    def join(self, batch_key: Hashable | None = None, lanes: tuple[Hashable, ...] = (MACHINE,), slots: int = 1,
             group: str | None = None) -> Ticket:
        with self._cond:
            ticket = Ticket(next(self._numbers), batch_key=batch_key, lanes=tuple(lanes) or (MACHINE,),
                            slots=max(1, int(slots)), group=group)
            self._waiting.append(ticket)
            self._admit()
            return ticket

    # ------------------------------------------------------------ admission (callers hold the lock)

    def _place(self, t: Ticket) -> Hashable | None:
        """The lane this ticket can start on now, or None."""
        if any(r.batch_key is None for r in self._running):
            return None  # the whole machine is taken
        if t.batch_key is None:
            return MACHINE if not self._running else None
        best: tuple[int, Hashable] | None = None
        for lane in t.lanes:
            here = [r for r in self._running if r.lane == lane]
            if here and (here[0].batch_key != t.batch_key or len(here) >= t.slots):
                continue
            if best is None or len(here) < best[0]:  # the least busy lane: an idle process serves it fastest
                best = (len(here), lane)
        return None if best is None else best[1]

    def _admit(self) -> None:
        admitted = False
        for t in list(self._waiting):
            if t.group is not None and any(r.group == t.group for r in self._running):
                continue  # waits for its own group's earlier request only: the others may pass
            lane = self._place(t)
            if lane is None:
                break  # arrival order: nobody behind it jumps ahead
            t.lane, t.admitted = lane, time.monotonic()
            self._waiting.remove(t)
            self._running.append(t)
            admitted = True
        if admitted:
            self._cond.notify_all()

    def _position(self, ticket: Ticket) -> int:
        if ticket.admitted is not None:
            return 0
        ahead = sum(1 for t in self._waiting if t.number < ticket.number)
        return ahead + len(self._running)

    # ------------------------------------------------------------ the API

    def position(self, ticket: Ticket) -> int:
        """How many requests are ahead of this one (the ones being served included); 0 = it is being served."""
        with self._cond:
            return self._position(ticket)

    def expected_wait_s(self, ahead: int, capacity: int = 1) -> float | None:
        """From recent request times: the rest of the oldest running request, then one request's time for every
        `capacity` requests still ahead (`capacity`: how many are served at once)."""
        with self._cond:
            if not self._durations or ahead <= 0:
                return None if ahead > 0 else 0.0
            typical = sorted(self._durations)[len(self._durations) // 2]
            now = time.monotonic()
            oldest = min((t.admitted or now for t in self._running), default=None)
            running_left = max(0.0, typical - (now - oldest)) if oldest is not None else 0.0
            capacity = max(1, capacity)
            return running_left + typical * max(0, ahead - capacity) / capacity

    def wait_turn(self, ticket: Ticket, timeout: float) -> int:
        """Wait up to `timeout` for this ticket to be admitted; returns its position (0 once admitted)."""
        with self._cond:
            self._admit()
            if ticket.admitted is None:
                self._cond.wait(timeout)
                self._admit()
            return self._position(ticket)

    def leave(self, ticket: Ticket, record: bool = True) -> None:
        """Give the place back; `record` counts its duration in the wait estimates (generation, not ingest)."""
        with self._cond:
            if ticket in self._running:
                self._running.remove(ticket)
                if record and ticket.admitted is not None:
                    self._durations.append(time.monotonic() - ticket.admitted)
            elif ticket in self._waiting:
                self._waiting.remove(ticket)
            self._admit()
            self._cond.notify_all()

    @property
    def length(self) -> int:
        with self._cond:
            return len(self._waiting) + len(self._running)

    @property
    def running(self) -> int:
        with self._cond:
            return len(self._running)


_machine_queue = LocalQueue()


def machine_queue() -> LocalQueue:
    """The one queue for work that uses every core of this machine: local generation (all workers) and the
    local embedder's batches during ingest, so neither slows the other down unseen."""
    return _machine_queue


@contextlib.contextmanager
def machine_turn() -> Iterator[None]:
    """Run a short piece of all-cores work (an embedding batch) in its turn on the machine queue, alone."""
    queue = machine_queue()
    ticket = queue.join()
    try:
        while queue.wait_turn(ticket, 1.0) > 0:
            pass
        yield
    finally:
        queue.leave(ticket, record=False)
