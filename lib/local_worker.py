"""The local model runs in worker processes of their own, shared by every session.

Why a process: llama.cpp is native code. A crash in it (a CPU feature it mis-detects,
an out-of-memory kill) must end the answers it was giving, not the Streamlit server that
every user is connected to. A worker holds one copy of each base model's weights and
applies LoRA adapters to its context, so the fine-tuned role costs an adapter, not a
second model.

Batched decoding: a worker decodes the requests it has been given together, in one llama.cpp batch per step
(continuous batching, as llama.cpp's server does with its slots): each request is a sequence of its own in the
context's KV memory (one memory stream per sequence), a new request's prompt is read between the other
sequences' steps (in the same calls it would get alone, so a sequence computes exactly what it would alone), each
sequence samples from its own logits with its own sampler, and a sequence that ends leaves at once and its memory
is cleared. An adapter
applies to the whole context, so one batch holds requests of one model and adapter; the machine queue
(lib.local_queue) sees to that, and to the arms of one comparison never sharing a batch (fair timing).

On machines with many cores, several worker processes (lanes) each serve their own batches with a share of
the cores (`serving_layout`; settings WORKBENCH_LOCAL_PROCESSES, WORKBENCH_THREADS, WORKBENCH_LOCAL_BATCH).

Two halves live here:
- the child (`serve`, run as `python -m lib.local_worker FD_IN FD_OUT`): loads models
  and adapters, renders the chat template, decodes its sequences step by step;
- the parent (`LocalWorker`): starts, talks to and restarts the children.

Extra buffer types (weight repacking, AMX) speed up prompt processing on many CPUs but
crashed llama.cpp on some Xeons with AMX. `extra_bufts` is "auto" (on, except on CPUs
that report AMX, and switched off for good in this process if loading with them
crashes the worker), "on" or "off" (setting WORKBENCH_LLAMA_EXTRA_BUFTS).
"""

from __future__ import annotations

import codecs
import collections
import itertools
import os
import queue as queue_module
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any

from lib.errors import LocalModelError
from lib.local_queue import LocalQueue, machine_queue
from lib.settings import child_env, llama_extra_bufts
from lib.settings import fault as injected_fault

PROTOCOL = 2
SMOKE_PROMPT = "Hello"
DEFAULT_BATCH = 8  # requests one worker decodes at once (WORKBENCH_LOCAL_BATCH)
STEP_TOKENS = 512  # prompt tokens read in one decode call at most (as llama-cpp-python's n_batch)
KV_BUDGET_BYTES = 1 << 30  # a worker's KV memory for all its sequences; fewer sequences at once for big contexts
THREADS_PER_PROCESS = 8  # auto layout: one worker process per this many cores


# ================================================================ CPU features and layout

def cpu_flags() -> set[str]:
    """The CPU feature flags Linux reports (empty where /proc/cpuinfo is missing)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_model() -> str:
    """The CPU's model name as Linux reports it ("unknown CPU" where it does not)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return "unknown CPU"
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip() or "unknown CPU"
    return "unknown CPU"


def has_amx(flags: set[str] | None = None) -> bool:
    return any(f.startswith("amx") for f in (cpu_flags() if flags is None else flags))


def resolve_extra_bufts(mode: str, flags: set[str] | None = None) -> bool:
    """Whether to load models with llama.cpp's extra buffer types, for a setting of auto/on/off."""
    mode = (mode or "auto").lower()
    if mode in ("on", "1", "true", "yes"):
        return True
    if mode in ("off", "0", "false", "no"):
        return False
    return not has_amx(flags)


def serving_layout(cores: int, processes: int | None = None, threads: int | None = None) -> tuple[int, int]:
    """(worker processes, threads per process) for this many cores. Unset values are automatic: one process per
    8 cores (llama.cpp gains little from more threads on one small model, and several processes serve batches
    side by side), and the cores shared out among the processes. `python -m lib capacity` measures what a
    layout serves; set WORKBENCH_LOCAL_PROCESSES and WORKBENCH_THREADS to try another."""
    cores = max(1, int(cores))
    procs = max(1, int(processes)) if processes else max(1, cores // THREADS_PER_PROCESS)
    return procs, (max(1, int(threads)) if threads else max(1, cores // procs))


# ================================================================ the child process

def load_llama(model: str, n_ctx: int, threads: int, extra_bufts: bool) -> Any:
    """A llama_cpp.Llama with extra buffer types on or off (llama-cpp-python has no argument for it)."""
    import llama_cpp
    import llama_cpp.llama_cpp as lib_llama

    defaults = lib_llama.llama_model_default_params

    def params() -> Any:
        p = defaults()
        p.use_extra_bufts = extra_bufts
        return p

    lib_llama.llama_model_default_params = params  # the Llama class reads its model parameters from here
    try:
        return llama_cpp.Llama(model_path=model, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                               verbose=False, seed=42)
    finally:
        lib_llama.llama_model_default_params = defaults


class _Sequence:
    """One request being decoded: its slot (sequence id in the KV memory), what is left of its prompt, its
    sampler, and what it has produced."""

    def __init__(self, rid: int, slot: int, prompt_ids: list[int], max_tokens: int, end_ids: set[int],
                 stops: Any, sampler: Any) -> None:
        self.rid = rid
        self.slot = slot
        self.prompt_tokens = len(prompt_ids)
        self.todo = list(prompt_ids)  # prompt tokens not evaluated yet
        self.pos = 0
        self.next_token: int | None = None  # sampled and not yet evaluated (None while reading the prompt)
        self.logits_at = -1  # index in this step's batch of the token whose logits it samples from
        self.max_tokens = max_tokens
        self.end_ids = end_ids
        self.stops = stops
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.sampler = sampler
        self.completion = 0
        self.batch_size = 1  # the most sequences decoded in one step with this one (itself included)


class _Child:
    """State of a worker process: the loaded model, its batched context and adapters, and the sequences."""

    MAX_ADAPTERS = 4

    def __init__(self, send: Callable[[tuple[Any, ...]], None]) -> None:
        self.send = send
        self.model_key: tuple[Any, ...] | None = None
        self.llm: Any = None
        self.ctx: Any = None  # llama_cpp._internals.LlamaContext with one KV stream per slot
        self.batch: Any = None
        self.mem: Any = None
        self.slots = 1
        self.n_ctx_seq = 0
        self.adapters: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self.current_adapter: str | None = None
        self.pending: collections.deque[tuple[str, int, dict[str, Any]]] = collections.deque()
        self.active: dict[int, _Sequence] = {}  # by request id, in the order they joined

    # ------------------------------------------------------------ model, context, adapters

    def _free_adapters(self) -> None:
        import llama_cpp

        for handle in self.adapters.values():
            llama_cpp.llama_adapter_lora_free(handle)
        self.adapters.clear()
        self.current_adapter = None

    def _release(self) -> None:
        import llama_cpp

        for seq in list(self.active.values()):
            self._drop(seq)
        if self.ctx is not None:
            self.set_adapter(None)
        self._free_adapters()
        if self.batch is not None:
            llama_cpp.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx is not None:
            self.ctx.close()
            self.ctx = None
        if self.llm is not None:
            self.llm.close()
            self.llm = None
        self.mem = None
        self.model_key = None

    @staticmethod
    def _key(req: dict[str, Any]) -> tuple[Any, ...]:
        return (req["model"], int(req["n_ctx"]), int(req["threads"]), bool(req["extra_bufts"]),
                int(req.get("batch", DEFAULT_BATCH)))

    def _slots_for(self, n_ctx: int, wanted: int) -> int:
        """Sequences at once: as many as asked, as far as their KV memory (n_ctx each) fits the budget."""
        import llama_cpp

        model = self.llm._model.model
        n_layer = llama_cpp.llama_model_n_layer(model)
        n_head = max(1, llama_cpp.llama_model_n_head(model))
        n_head_kv = llama_cpp.llama_model_n_head_kv(model) or n_head
        per_token = 2 * n_layer * (llama_cpp.llama_model_n_embd(model) // n_head) * n_head_kv * 2  # K and V, f16
        fits = KV_BUDGET_BYTES // max(1, per_token * n_ctx)
        return max(1, min(int(wanted), int(fits), int(llama_cpp.llama_max_parallel_sequences())))

    def load(self, req: dict[str, Any], smoke: bool) -> dict[str, Any]:
        import ctypes

        import llama_cpp
        from llama_cpp import _internals

        key = self._key(req)
        if key == self.model_key:
            return {"loaded": False, "slots": self.slots}
        if self.active:
            raise RuntimeError("the worker cannot switch models while it is answering")
        t0 = time.monotonic()
        model, n_ctx, threads, extra_bufts, wanted = key
        self._release()  # one base model at a time: release the previous one first
        self.send(("loading",))
        fault = injected_fault("worker_load")  # fault injection for the tests
        if fault == "always" or (fault == "extra_bufts" and extra_bufts):
            os.kill(os.getpid(), signal.SIGSEGV)
        # The Llama object gives the weights, tokenizer and metadata; decoding runs in a context of our own
        # with one KV memory stream per slot (its own small context stays unused).
        self.llm = load_llama(model, 64, threads, extra_bufts)
        self.slots = self._slots_for(n_ctx, wanted)
        params = llama_cpp.llama_context_default_params()
        ctypes.pointer(params)[0] = self.llm.context_params
        params.n_ctx = n_ctx * self.slots
        params.n_seq_max = self.slots
        params.kv_unified = False  # a stream per sequence: the same arithmetic as the sequence alone
        params.n_batch = params.n_ubatch = STEP_TOKENS
        params.n_threads = params.n_threads_batch = threads
        self.ctx = _internals.LlamaContext(model=self.llm._model, params=params, verbose=False)
        self.mem = llama_cpp.llama_get_memory(self.ctx.ctx)
        self.n_ctx_seq = int(llama_cpp.llama_n_ctx_seq(self.ctx.ctx))
        self.batch = llama_cpp.llama_batch_init(STEP_TOKENS, 0, 1)
        self.model_key = key
        if smoke:  # a forward pass now, so a broken build or buffer type fails here and not mid-answer
            ids = self.llm.tokenize(SMOKE_PROMPT.encode(), add_bos=False, special=False)
            self._fill([(t, i, 0, i == len(ids) - 1) for i, t in enumerate(ids)])
            if llama_cpp.llama_decode(self.ctx.ctx, self.batch) != 0:
                raise RuntimeError("llama.cpp could not run the model")
            llama_cpp.llama_memory_seq_rm(self.mem, 0, -1, -1)
        self.send(("ready",))
        return {"loaded": True, "load_ms": (time.monotonic() - t0) * 1000, "slots": self.slots}

    def set_adapter(self, lora: str | None) -> None:
        """Apply one LoRA adapter to the context (or none); adapters stay loaded, least recently used first out."""
        import ctypes

        import llama_cpp

        if lora == self.current_adapter:
            return
        if self.active:
            raise RuntimeError("the worker cannot switch adapters while it is answering")
        ctx = self.ctx.ctx
        if lora is None:
            if llama_cpp.llama_set_adapters_lora(ctx, None, 0, None):
                raise RuntimeError("llama.cpp could not remove the LoRA adapter")
            self.current_adapter = None
            return
        if lora not in self.adapters:
            handle = llama_cpp.llama_adapter_lora_init(self.llm._model.model, lora.encode())
            if not handle:
                raise ValueError(f"llama.cpp could not load the LoRA adapter {Path(lora).name}: is it a GGUF LoRA "
                                 "made for this base model?")
            self.adapters[lora] = handle
            while len(self.adapters) > self.MAX_ADAPTERS:
                old, oldest = next(iter(self.adapters.items()))
                if old == self.current_adapter:
                    break
                del self.adapters[old]
                llama_cpp.llama_adapter_lora_free(oldest)
        self.adapters.move_to_end(lora)
        arr = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self.adapters[lora])
        scales = (ctypes.c_float * 1)(1.0)
        if llama_cpp.llama_set_adapters_lora(ctx, arr, 1, scales):
            raise RuntimeError(f"llama.cpp could not apply the LoRA adapter {Path(lora).name}")
        self.current_adapter = lora

    def render(self, messages: list[dict[str, str]]) -> tuple[str, list[str]]:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = self.llm
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"{Path(self.model_key[0]).name if self.model_key else 'the model'} has no chat "
                             "template; use an instruction-tuned GGUF.")
        eos = llm.detokenize([llm.token_eos()], special=True).decode(errors="ignore")
        bos = llm.detokenize([llm.token_bos()], special=True).decode(errors="ignore")
        result = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos,
                                     add_generation_prompt=True)(messages=messages)
        stop = result.stop if isinstance(result.stop, list) else [result.stop]
        return result.prompt, [s for s in stop if s]

    def count(self, texts: list[str]) -> list[int]:
        return [len(self.llm.tokenize(t.encode(), add_bos=False, special=False)) if t else 0 for t in texts]

    # ------------------------------------------------------------ requests

    def receive(self, op: str, rid: int, req: dict[str, Any]) -> None:
        """A message from the parent: answered at once (stats, cancel, crash) or queued for `admit`."""
        if op == "cancel":
            self.pending = collections.deque(p for p in self.pending if p[1] != rid)
            if rid in self.active:
                self._drop(self.active[rid])
        elif op == "stats":
            self.send(("stats", rid, self.stats()))
        elif op == "crash":  # for tests: a native crash, as llama.cpp would have
            os.kill(os.getpid(), int(req.get("signal", signal.SIGSEGV)))
        elif op in ("generate", "load", "count"):
            self.pending.append((op, rid, req))
        else:
            self.send(("error", rid, "ValueError", f"unknown request {op!r}"))

    @property
    def busy(self) -> bool:
        return bool(self.active or self.pending)

    def admit(self) -> None:
        """Start waiting requests, in arrival order, while they fit the running batch (same model and adapter,
        a free slot); a request for another model or adapter waits until the running ones have finished."""
        while self.pending:
            op, rid, req = self.pending[0]
            if self.active:
                same = self._key(req) == self.model_key and (op != "generate" or
                                                             req.get("lora") == self.current_adapter)
                if not same or (op == "generate" and len(self.active) >= self.slots):
                    return
            self.pending.popleft()
            try:
                if op == "generate":
                    self._start(rid, req)
                elif op == "load":
                    self.send(("loaded", rid, self.load(req, req.get("smoke", True))))
                else:
                    self.load(req, req.get("smoke", True))
                    self.send(("counts", rid, self.count(req["texts"])))
            except Exception as exc:  # an error in one request: reported, and the worker serves the others
                self.send(("error", rid, type(exc).__name__, str(exc)))

    def _sampler(self, p: dict[str, Any]) -> Any:
        """The sampler chain llama-cpp-python's Llama.generate builds (repeat penalty over the last 64 tokens,
        then greedy at temperature 0, else top-k, typical, top-p, min-p, temperature and a seeded draw)."""
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(self.llm._model.model)
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())

        def add(s: Any) -> None:
            llama_cpp.llama_sampler_chain_add(chain, s)

        add(llama_cpp.llama_sampler_init_penalties(llama_cpp.llama_vocab_n_tokens(vocab), 64,
                                                   float(p["repeat_penalty"]), 0.0, 0.0))
        temp, seed = float(p["temperature"]), int(p["seed"])
        if temp < 0:
            add(llama_cpp.llama_sampler_init_dist(seed))
        elif temp == 0:
            add(llama_cpp.llama_sampler_init_greedy())
        else:
            add(llama_cpp.llama_sampler_init_top_k(40))
            add(llama_cpp.llama_sampler_init_typical(1.0, 1))
            add(llama_cpp.llama_sampler_init_top_p(0.95, 1))
            add(llama_cpp.llama_sampler_init_min_p(0.05, 1))
            add(llama_cpp.llama_sampler_init_temp(temp))
            add(llama_cpp.llama_sampler_init_dist(seed))
        return chain

    def _start(self, rid: int, req: dict[str, Any]) -> None:
        """A request joins the batch: its prompt is read from the next step on. Usage is exact: the prompt is
        tokenised by the model's own tokenizer and every sampled token is counted as it is produced."""
        from lib.local_model import StopFilter

        self.load(req, req.get("smoke", True))
        self.set_adapter(req.get("lora"))
        llm = self.llm
        prompt, stop = self.render(req["messages"])
        prompt_ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        n_ctx = min(int(req["n_ctx"]), self.n_ctx_seq)
        if len(prompt_ids) + 8 > n_ctx:
            raise ValueError(f"The prompt is {len(prompt_ids)} tokens but {req['label']} reads at most {n_ctx}: "
                             "lower top-k or the chunk size.")
        p = req["params"]
        end_ids = {llm.token_eos()}
        for s in stop:
            ids = llm.tokenize(s.encode(), add_bos=False, special=True)
            if len(ids) == 1:
                end_ids.add(ids[0])
        used = {s.slot for s in self.active.values()}
        slot = next(i for i in range(self.slots) if i not in used)
        # No prompt cache between requests: every arm pays for its whole prompt, as a new question does.
        self.active[rid] = _Sequence(rid, slot, prompt_ids, min(int(p["max_tokens"]), n_ctx - len(prompt_ids)),
                                     end_ids, StopFilter(tuple(p["stop"])), self._sampler(p))
        self.send(("started", rid))

    def _drop(self, seq: _Sequence) -> None:
        """The sequence leaves the batch: its KV memory is cleared and its sampler freed."""
        import llama_cpp

        self.active.pop(seq.rid, None)
        if self.mem is not None:
            llama_cpp.llama_memory_seq_rm(self.mem, seq.slot, -1, -1)
        if seq.sampler is not None:
            llama_cpp.llama_sampler_free(seq.sampler)
            seq.sampler = None

    def _fill(self, tokens: list[tuple[int, int, int, bool]]) -> None:
        """Put (token, position, sequence id, wants logits) into the batch."""
        b = self.batch
        for i, (token, pos, seq_id, logits) in enumerate(tokens):
            b.token[i] = token
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq_id
            b.logits[i] = logits
        b.n_tokens = len(tokens)

    def step(self) -> None:
        """One step: every generating sequence's next token in one decode call, then the next chunk of one
        joining sequence's prompt in a call of its own, cut where it would be cut alone (every STEP_TOKENS from
        its start). A sequence's prompt is thus read in exactly the calls it gets alone (llama.cpp splits a call
        that mixes sequences differently, and the arithmetic would differ in the last bits), so its answer is
        token for token the answer it gets alone."""
        if not self.active:
            return
        generating = [seq for seq in self.active.values() if seq.next_token is not None]
        joining = next((seq for seq in self.active.values() if seq.next_token is None), None)
        members = generating + ([joining] if joining is not None else [])
        for seq in members:
            seq.batch_size = max(seq.batch_size, len(members))
        if generating:
            self._fill([(seq.next_token, seq.pos, seq.slot, True) for seq in generating])  # type: ignore[misc]
            for i, seq in enumerate(generating):
                seq.pos += 1
                seq.logits_at = i
            self._decode(generating)
        if joining is not None and joining.rid in self.active:
            chunk, joining.todo = joining.todo[:STEP_TOKENS], joining.todo[STEP_TOKENS:]
            self._fill([(token, joining.pos + i, joining.slot, not joining.todo and i == len(chunk) - 1)
                        for i, token in enumerate(chunk)])
            joining.pos += len(chunk)
            joining.logits_at = -1 if joining.todo else len(chunk) - 1
            self._decode([joining])

    def _decode(self, members: list[_Sequence]) -> None:
        """Decode the batch as filled; then each member with logits samples its next token from them."""
        import llama_cpp

        code = llama_cpp.llama_decode(self.ctx.ctx, self.batch)
        if code != 0:
            for seq in members:
                self.send(("error", seq.rid, "RuntimeError", f"llama.cpp could not decode (code {code})"))
                self._drop(seq)
            return
        for seq in members:
            if seq.logits_at < 0:
                continue  # still reading its prompt
            try:
                self._advance(seq, llama_cpp.llama_sampler_sample(seq.sampler, self.ctx.ctx, seq.logits_at))
            except Exception as exc:
                self.send(("error", seq.rid, type(exc).__name__, str(exc)))
                self._drop(seq)

    def _advance(self, seq: _Sequence, token: int) -> None:
        """A sampled token: the end, or text streamed (held back at stop strings) and decoded next step."""
        finish = None
        if token in seq.end_ids:
            finish = "stop"
        else:
            seq.completion += 1
            text = seq.stops.feed(seq.decoder.decode(self.llm.detokenize([token], special=False)))
            if text:
                self.send(("delta", seq.rid, text))
            if seq.stops.stopped:
                finish = "stop"
            elif seq.completion >= seq.max_tokens:
                finish = "length"
        if finish is None:
            seq.next_token = token
            return
        tail = "" if seq.stops.stopped else seq.stops.feed(seq.decoder.decode(b"", final=True)) + seq.stops.flush()
        if tail:
            self.send(("delta", seq.rid, tail))
        self.send(("done", seq.rid, finish, seq.prompt_tokens, seq.completion, seq.batch_size))
        self._drop(seq)

    def stats(self) -> dict[str, Any]:
        return {"rss_kb": _rss_kb(os.getpid()), "model": self.model_key[0] if self.model_key else None,
                "extra_bufts": self.model_key[3] if self.model_key else None,
                "adapters": list(self.adapters), "pid": os.getpid(), "slots": self.slots,
                "active": len(self.active), "pending": len(self.pending)}


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _die_with_parent() -> None:
    """End this process when the app that started it goes away (even in the middle of an answer).
    (PR_SET_PDEATHSIG would fire when the starting *thread* ends, and arms run in short-lived threads.)"""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def serve(fd_in: int, fd_out: int) -> None:
    """The worker's loop: read what the parent sent (without waiting while there is work), admit, decode a step."""
    from multiprocessing.connection import Connection

    _die_with_parent()
    # llama.cpp and Python write diagnostics to stdout/stderr: keep them off the reply pipe.
    os.dup2(2, 1)
    conn_in, conn_out = Connection(fd_in, writable=False), Connection(fd_out, readable=False)
    child = _Child(conn_out.send)
    conn_out.send(("hello", PROTOCOL, os.getpid()))
    while True:
        try:
            wait: float | None = 0.0 if child.busy else None
            while conn_in.poll(wait):
                op, rid, req = conn_in.recv()
                child.receive(op, rid, req)
                wait = 0.0
            child.admit()
            child.step()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            return
        except Exception as exc:  # not one request's fault: every sequence in the batch is told, the worker goes on
            try:
                for seq in list(child.active.values()):
                    conn_out.send(("error", seq.rid, type(exc).__name__, str(exc)))
                    child._drop(seq)
            except OSError:
                return


# ================================================================ the parent: worker processes

class WorkerCrashed(LocalModelError):
    pass


def describe_exit(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown"
        hint = " (killed, often for lack of memory)" if -code == signal.SIGKILL else ""
        return f"stopped (signal {-code}, {name}){hint}"
    return f"exited with code {code}"


_TERMINAL = ("done", "loaded", "counts", "stats")


class _Lane:
    """One worker process: started on first use, its replies sorted to the requests they answer by a reader
    thread, restarted once after a crash however many requests the crash failed."""

    def __init__(self, owner: LocalWorker, index: int) -> None:
        self.owner = owner
        self.index = index
        self._proc: subprocess.Popen[bytes] | None = None
        self._send: Any = None
        self._lock = threading.Lock()  # starting and restarting
        self._send_lock = threading.Lock()  # the pipe to the child
        self._inboxes: dict[int, tuple[int, queue_module.SimpleQueue[tuple[Any, ...]]]] = {}
        self._rids = itertools.count(1)
        self.generation = 0
        self.loading = False
        self._ended: set[int] = set()  # generations whose process is gone
        self._stopped: set[int] = set()  # generations ended by stop(), not a crash
        self._notes: dict[int, str] = {}

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and self.generation not in self._ended

    def _start(self) -> None:
        """Start the process and read its hello (callers hold self._lock)."""
        from multiprocessing.connection import Connection

        self._close_send()
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = child_env(PYTHONUNBUFFERED="1")
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "lib.local_worker", str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, cwd=root, env=env, start_new_session=True)
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        send, recv = Connection(to_child_w, readable=False), Connection(from_child_r, writable=False)
        self._proc, self._send = proc, send
        self.generation += 1
        self.loading = False
        threading.Thread(target=self.owner._drain_stderr, args=(proc,), daemon=True,
                         name="local-worker-stderr").start()
        hello = recv.recv() if recv.poll(60) else None
        if not hello or hello[0] != "hello":
            code = _wait(proc)
            recv.close()
            self._ended.add(self.generation)
            self.owner._record_crash(describe_exit(code))
            raise WorkerCrashed(f"the local model process {describe_exit(code)} while starting")
        threading.Thread(target=self._read, args=(recv, proc, self.generation), daemon=True,
                         name=f"local-worker-{self.index}-replies").start()

    def _close_send(self) -> None:
        if self._send is not None:
            try:
                self._send.close()
            except OSError:
                pass
            self._send = None

    def _read(self, recv: Any, proc: subprocess.Popen[bytes], generation: int) -> None:
        """Sort the child's replies to their requests; when it is gone, tell every request it was serving."""
        while True:
            try:
                reply = recv.recv()
            except (EOFError, OSError):
                break
            if reply[0] == "loading":
                self.loading = True
            elif reply[0] == "ready":
                self.loading = False
            else:
                entry = self._inboxes.get(reply[1])
                if entry is not None:
                    entry[1].put((reply[0], *reply[2:]))
        try:
            recv.close()
        except OSError:
            pass
        code = _wait(proc)
        loading = self.loading
        with self._lock:
            self._ended.add(generation)
            stopped = generation in self._stopped
        what = "was stopped" if stopped else describe_exit(code)
        if not stopped:
            self.owner._record_crash(what)
        when = "while loading the model" if loading else "while answering"
        for _rid, (gen, inbox) in list(self._inboxes.items()):
            if gen == generation:
                inbox.put(("crashed", what, when, loading, generation))

    def submit(self, op: str, req: dict[str, Any]) -> tuple[int, int, queue_module.SimpleQueue[tuple[Any, ...]]]:
        """Send one request; its replies arrive in the returned inbox."""
        with self._lock:
            if not self._alive():
                self._start()
            rid, generation = next(self._rids), self.generation
            inbox: queue_module.SimpleQueue[tuple[Any, ...]] = queue_module.SimpleQueue()
            self._inboxes[rid] = (generation, inbox)
            try:
                with self._send_lock:
                    self._send.send((op, rid, req))
            except OSError:
                self._inboxes.pop(rid, None)
                proc = self._proc
                raise WorkerCrashed(f"the local model process {describe_exit(_wait(proc) if proc else None)} "
                                    "before the request was sent") from None
            return rid, generation, inbox

    def cancel(self, rid: int) -> None:
        """The request's reader went away: the child drops it (its slot and memory), the others go on."""
        self._inboxes.pop(rid, None)
        with self._send_lock:
            try:
                if self._send is not None:
                    self._send.send(("cancel", rid, {}))
            except OSError:
                pass

    def forget(self, rid: int) -> None:
        self._inboxes.pop(rid, None)

    def recover(self, generation: int) -> str:
        """After a crash of `generation`: a fresh process, started once for all the requests it failed."""
        with self._lock:
            if generation in self._stopped:
                return "(the app stopped it)"
            if generation not in self._notes:
                note = "and was restarted; ask again"
                if self.generation == generation:
                    try:
                        self._start()
                    except LocalModelError:
                        note = "and could not be restarted; see the server log"
                self._notes[generation] = note
            return self._notes[generation]

    def stop(self) -> None:
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                self._stopped.add(self.generation)
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
            self._close_send()

    def crash_for_test(self, sig: int) -> None:
        with self._lock:
            if not self._alive():
                self._start()
            with self._send_lock:
                self._send.send(("crash", 0, {"signal": sig}))
            self._proc.wait(10)  # type: ignore[union-attr]


def _wait(proc: subprocess.Popen[bytes]) -> int | None:
    try:
        return proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


class LocalWorker:
    """The local model's worker processes (`processes` lanes, each decoding up to `batch` requests at once):
    started on first use, relaying requests, restarted after a crash."""

    def __init__(self, extra_bufts: str = "auto", processes: int = 1, batch: int = DEFAULT_BATCH) -> None:
        self.mode = extra_bufts
        self.extra_bufts = resolve_extra_bufts(extra_bufts)
        self.processes = max(1, int(processes))
        self.batch = max(1, int(batch))
        self.queue: LocalQueue = machine_queue()
        self._lanes = [_Lane(self, i) for i in range(self.processes)]
        self.lane_ids: tuple[Hashable, ...] = tuple((id(self), i) for i in range(self.processes))
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._guard = threading.Lock()
        self.restarts = 0
        self.last_crash: str | None = None
        self.fallback_note: str | None = None

    # -------------------------------------------------------- processes

    @property
    def pid(self) -> int | None:
        """The first worker process's id (None while it is not running)."""
        return self._lanes[0].pid

    @property
    def pids(self) -> list[int | None]:
        return [lane.pid for lane in self._lanes]

    def lane_index(self, lane_id: Hashable | None) -> int:
        """The process that serves a request admitted to `lane_id` by the machine queue."""
        return self.lane_ids.index(lane_id) if lane_id in self.lane_ids else 0

    def _drain_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            if line:
                self._stderr.append(line)

    def _record_crash(self, what: str) -> None:
        with self._guard:
            self.last_crash = what
            self.restarts += 1

    def stop(self) -> None:
        for lane in self._lanes:
            lane.stop()

    # -------------------------------------------------------- requests

    def _request(self, op: str, req: dict[str, Any], lane: int = 0) -> Iterator[tuple[Any, ...]]:
        """Send one request and yield its replies; a crash becomes WorkerCrashed, after a restart. Closing the
        iterator early cancels the request in the worker (the other requests of its batch go on)."""
        target = self._lanes[lane % len(self._lanes)]
        for attempt in range(2):
            rid, generation, inbox = target.submit(op, {**req, "extra_bufts": self.extra_bufts, "batch": self.batch})
            started = finished = False
            try:
                while True:
                    reply = inbox.get()
                    if reply[0] == "crashed":
                        finished = True
                        _, what, when, loading, gen = reply
                        if loading and not started and self.extra_bufts and self.mode == "auto" and attempt == 0:
                            # Extra buffer types crash llama.cpp on some CPUs: load without them from now on.
                            with self._guard:
                                self.extra_bufts = False
                                self.fallback_note = (f"llama.cpp {what} when loading with extra buffer types; "
                                                      "they are off for this process")
                            target.recover(gen)
                            break
                        raise WorkerCrashed(f"the local model process {what} {when} {target.recover(gen)}")
                    if reply[0] == "started":
                        started = True
                    if reply[0] == "error":
                        finished = True
                        raise LocalModelError(reply[2]) if reply[1] in ("ValueError", "RuntimeError") \
                            else LocalModelError(f"{reply[1]}: {reply[2]}")
                    if reply[0] in _TERMINAL:
                        finished = True
                    yield reply
                    if finished:
                        return
            finally:
                if finished:
                    target.forget(rid)
                else:
                    target.cancel(rid)

    def model_request(self, model: str, n_ctx: int, threads: int) -> dict[str, Any]:
        return {"model": model, "n_ctx": n_ctx, "threads": threads}

    def generate(self, req: dict[str, Any], lane: int = 0) -> Iterator[tuple[Any, ...]]:
        """Replies: ("started",), ("delta", text)..., ("done", finish, prompt_tokens, completion_tokens, batch)."""
        yield from self._request("generate", req, lane)

    def count(self, req: dict[str, Any], texts: list[str], lane: int = 0) -> list[int]:
        for reply in self._request("count", {**req, "texts": texts}, lane):
            if reply[0] == "counts":
                return list(reply[1])
        raise LocalModelError("the local model did not count the tokens")

    def stats(self, lane: int = 0) -> dict[str, Any]:
        for reply in self._request("stats", {}, lane):
            if reply[0] == "stats":
                return dict(reply[1])
        return {}

    def crash_for_test(self, sig: int = signal.SIGSEGV, lane: int = 0) -> None:
        self._lanes[lane].crash_for_test(sig)


_workers: dict[tuple[str, int, int], LocalWorker] = {}
_workers_guard = threading.Lock()


def worker(extra_bufts: str = "auto", processes: int = 1, batch: int = DEFAULT_BATCH) -> LocalWorker:
    """The process-wide worker for these settings (one per server process, shared by every session)."""
    key = (extra_bufts, max(1, int(processes)), max(1, int(batch)))
    with _workers_guard:
        if key not in _workers:
            _workers[key] = LocalWorker(*key)
        return _workers[key]


def _stop_all() -> None:
    for w in list(_workers.values()):
        try:
            w.stop()
        except Exception:
            pass


import atexit  # noqa: E402

atexit.register(_stop_all)


def smoke(model: str | None = None, extra_bufts: str = "auto") -> str:
    """Load the model in a worker and generate a few tokens; raises with what to do when llama.cpp is broken."""
    from lib.local_model import bundled_model_path

    path = model or str(bundled_model_path())
    w = LocalWorker(extra_bufts)
    try:
        text = ""
        for reply in w.generate({"model": path, "lora": None, "n_ctx": 512, "threads": os.cpu_count() or 1,
                                 "label": Path(path).name, "messages": [{"role": "user", "content": "Say OK."}],
                                 "params": {"max_tokens": 4, "temperature": 0.0, "seed": 42, "stop": [],
                                            "repeat_penalty": 1.1}}):
            if reply[0] == "delta":
                text += reply[1]
        note = f" ({w.fallback_note})" if w.fallback_note else ""
        return f"llama.cpp works on this CPU: extra buffer types {'on' if w.extra_bufts else 'off'}{note}; " \
               f"answered {text.strip()!r}"
    finally:
        w.stop()


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "--smoke":
        try:
            print(smoke(extra_bufts=llama_extra_bufts()))
        except Exception as exc:
            print(f"llama.cpp does not run on this machine: {exc}.\nRebuild it for this CPU: "
                  ".venv/bin/pip install --force-reinstall --no-cache-dir --no-deps llama-cpp-python==0.3.36 "
                  "(about 10 minutes), or set WORKBENCH_LLAMA_EXTRA_BUFTS=off.", file=sys.stderr)
            sys.exit(1)
        sys.exit(0)
    serve(int(sys.argv[1]), int(sys.argv[2]))
