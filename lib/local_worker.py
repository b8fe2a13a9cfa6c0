"""The local model runs in a worker process of its own, shared by every session.

Why a process: llama.cpp is native code. A crash in it (a CPU feature it mis-detects,
an out-of-memory kill) must end one arm's answer, not the Streamlit server that every
user is connected to. The worker holds one copy of each base model's weights and
applies LoRA adapters to its context per request, so the fine-tuned role costs an
adapter, not a second model.

Why one queue: llama.cpp uses every core for one request. Two arms generating at once
would each report a latency that depends on which other arms were asked. Requests are
served one at a time in arrival order (`LocalQueue`), and each arm's time is measured
from when its turn starts; the wait is reported separately.

Two halves live here:
- the child (`serve`, run as `python -m lib.local_worker FD_IN FD_OUT`): loads models
  and adapters, renders the chat template, generates token by token;
- the parent (`LocalWorker`, `LocalQueue`): starts, talks to and restarts the child.

Extra buffer types (weight repacking, AMX) speed up prompt processing on many CPUs but
crashed llama.cpp on some Xeons with AMX. `extra_bufts` is "auto" (on, except on CPUs
that report AMX, and switched off for good in this process if loading with them
crashes the worker), "on" or "off" (setting WORKBENCH_LLAMA_EXTRA_BUFTS).
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.errors import LocalModelError

PROTOCOL = 1
SMOKE_PROMPT = "Hello"


# ================================================================ CPU features

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


class _Child:
    """State of the worker process: loaded models and adapters, released when no longer used."""

    MAX_ADAPTERS = 4

    def __init__(self) -> None:
        self.model_key: tuple[Any, ...] | None = None
        self.llm: Any = None
        self.adapters: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self.current_adapter: str | None = None

    def _free_adapters(self) -> None:
        import llama_cpp

        for handle in self.adapters.values():
            llama_cpp.llama_adapter_lora_free(handle)
        self.adapters.clear()
        self.current_adapter = None

    def load(self, model: str, n_ctx: int, threads: int, extra_bufts: bool, smoke: bool) -> dict[str, Any]:
        key = (model, n_ctx, threads, extra_bufts)
        if key == self.model_key:
            return {"loaded": False}
        t0 = time.monotonic()

        if self.llm is not None:  # one base model at a time: release the previous one first
            self.set_adapter(None)
            self._free_adapters()
            self.llm.close()
            self.llm = None
            self.model_key = None
        fault = os.environ.get("WORKBENCH_FAULT_WORKER_LOAD", "")  # fault injection for the tests
        if fault == "always" or (fault == "extra_bufts" and extra_bufts):
            os.kill(os.getpid(), signal.SIGSEGV)
        self.llm = load_llama(model, n_ctx, threads, extra_bufts)
        self.model_key = key
        if smoke:  # a forward pass now, so a broken build or buffer type fails here and not mid-answer
            ids = self.llm.tokenize(SMOKE_PROMPT.encode(), add_bos=False, special=False)
            self.llm.reset()
            self.llm.eval(ids)
            self.llm.reset()
        return {"loaded": True, "load_ms": (time.monotonic() - t0) * 1000}

    def set_adapter(self, lora: str | None) -> None:
        """Apply one LoRA adapter to the context (or none); adapters stay loaded, least recently used first out."""
        import ctypes

        import llama_cpp

        if lora == self.current_adapter:
            return
        ctx = self.llm._ctx.ctx
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

    def generate(self, req: dict[str, Any], send: Any) -> None:
        """Token by token, so usage is exact: the prompt is tokenised by the model's own tokenizer
        and every sampled token is counted as it is produced."""
        from lib.providers import StopFilter

        llm = self.llm
        self.set_adapter(req.get("lora"))
        send(("started",))
        prompt, stop = self.render(req["messages"])
        prompt_ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        n_ctx = req["n_ctx"]
        if len(prompt_ids) + 8 > n_ctx:
            raise ValueError(f"The prompt is {len(prompt_ids)} tokens but {req['label']} reads at most {n_ctx}: "
                             "lower top-k or the chunk size.")
        p = req["params"]
        max_tokens = min(int(p["max_tokens"]), n_ctx - len(prompt_ids))
        end_ids = {llm.token_eos()}
        for s in stop:
            ids = llm.tokenize(s.encode(), add_bos=False, special=True)
            if len(ids) == 1:
                end_ids.add(ids[0])
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopFilter(tuple(p["stop"]))
        llm.set_seed(int(p["seed"]))
        llm.reset()  # no prompt cache between requests: every arm pays for its whole prompt, as a new question does
        completion, finish = 0, "length"
        for token in llm.generate(prompt_ids, temp=float(p["temperature"]), top_k=40, top_p=0.95, min_p=0.05,
                                  repeat_penalty=float(p["repeat_penalty"]), reset=True):
            if token in end_ids:
                finish = "stop"
                break
            completion += 1
            text = stops.feed(decoder.decode(llm.detokenize([token], special=False)))
            if text:
                send(("delta", text))
            if stops.stopped:
                finish = "stop"
                break
            if completion >= max_tokens:
                break
        tail = "" if stops.stopped else stops.feed(decoder.decode(b"", final=True)) + stops.flush()
        if tail:
            send(("delta", tail))
        send(("done", finish, len(prompt_ids), completion))

    def stats(self) -> dict[str, Any]:
        return {"rss_kb": _rss_kb(os.getpid()), "model": self.model_key[0] if self.model_key else None,
                "extra_bufts": self.model_key[3] if self.model_key else None,
                "adapters": list(self.adapters), "pid": os.getpid()}


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
    """The worker's loop: one request at a time, replies streamed back on fd_out."""
    from multiprocessing.connection import Connection

    _die_with_parent()
    # llama.cpp and Python write diagnostics to stdout/stderr: keep them off the reply pipe.
    os.dup2(2, 1)
    conn_in, conn_out = Connection(fd_in, writable=False), Connection(fd_out, readable=False)
    child = _Child()
    conn_out.send(("hello", PROTOCOL, os.getpid()))
    while True:
        try:
            op, req = conn_in.recv()
        except (EOFError, OSError):
            return
        try:
            if op == "generate":
                child.load(req["model"], req["n_ctx"], req["threads"], req["extra_bufts"], req.get("smoke", True))
                child.generate(req, conn_out.send)
            elif op == "load":
                conn_out.send(("loaded", child.load(req["model"], req["n_ctx"], req["threads"],
                                                    req["extra_bufts"], req.get("smoke", True))))
            elif op == "count":
                child.load(req["model"], req["n_ctx"], req["threads"], req["extra_bufts"], req.get("smoke", True))
                conn_out.send(("counts", child.count(req["texts"])))
            elif op == "stats":
                conn_out.send(("stats", child.stats()))
            elif op == "crash":  # for tests: a native crash, as llama.cpp would have
                os.kill(os.getpid(), int(req.get("signal", signal.SIGSEGV)))
            else:
                conn_out.send(("error", "ValueError", f"unknown request {op!r}"))
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception as exc:  # an error in one request: reported, and the worker serves the next one
            try:
                conn_out.send(("error", type(exc).__name__, str(exc)))
            except OSError:
                return


# ================================================================ the parent: queue and supervisor

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


@dataclass
class Ticket:
    number: int
    arrived: float = field(default_factory=time.monotonic)


class LocalQueue:
    """Requests for the local model, served one at a time in arrival order across all sessions."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._numbers = itertools.count()
        self._waiting: list[Ticket] = []
        self._running: Ticket | None = None
        self._running_since = 0.0
        self._durations: collections.deque[float] = collections.deque(maxlen=20)

    def join(self) -> Ticket:
        with self._cond:
            ticket = Ticket(next(self._numbers))
            self._waiting.append(ticket)
            return ticket

    def position(self, ticket: Ticket) -> int:
        """How many requests are ahead of this one (the one being served included); 0 = its turn."""
        with self._cond:
            return self._position(ticket)

    def _position(self, ticket: Ticket) -> int:
        ahead = sum(1 for t in self._waiting if t.number < ticket.number)
        return ahead + (1 if self._running is not None else 0)

    def expected_wait_s(self, ahead: int) -> float | None:
        """From recent request times: the rest of the running one plus the ones waiting ahead."""
        with self._cond:
            if not self._durations or ahead <= 0:
                return None if ahead > 0 else 0.0
            typical = sorted(self._durations)[len(self._durations) // 2]
            running_left = max(0.0, typical - (time.monotonic() - self._running_since)) if self._running else 0.0
            return running_left + typical * (ahead - (1 if self._running else 0))

    def wait_turn(self, ticket: Ticket, timeout: float) -> int:
        """Wait up to `timeout` for this ticket's turn; returns its position (0 once it holds the model)."""
        with self._cond:
            if self._position(ticket) > 0:
                self._cond.wait(timeout)
            if self._position(ticket) == 0:
                self._waiting.remove(ticket)
                self._running = ticket
                self._running_since = time.monotonic()
                return 0
            return self._position(ticket)

    def leave(self, ticket: Ticket, record: bool = True) -> None:
        """Give the turn back; `record` counts its duration in the wait estimates (generation, not ingest)."""
        with self._cond:
            if self._running is ticket:
                self._running = None
                if record:
                    self._durations.append(time.monotonic() - self._running_since)
            elif ticket in self._waiting:
                self._waiting.remove(ticket)
            self._cond.notify_all()

    @property
    def length(self) -> int:
        with self._cond:
            return len(self._waiting) + (1 if self._running else 0)


_machine_queue = LocalQueue()


def machine_queue() -> LocalQueue:
    """The one queue for work that uses every core of this machine: local generation (all workers) and the
    local embedder's batches during ingest, so neither slows the other down unseen."""
    return _machine_queue


@contextlib.contextmanager
def machine_turn() -> Iterator[None]:
    """Run a short piece of all-cores work (an embedding batch) in its turn on the machine queue."""
    queue = machine_queue()
    ticket = queue.join()
    try:
        while queue.wait_turn(ticket, 1.0) > 0:
            pass
        yield
    finally:
        queue.leave(ticket, record=False)


class LocalWorker:
    """Starts the worker process on first use, relays requests, restarts it after a crash."""

    def __init__(self, extra_bufts: str = "auto") -> None:
        self.mode = extra_bufts
        self.extra_bufts = resolve_extra_bufts(extra_bufts)
        self.queue = machine_queue()
        self._proc: subprocess.Popen[bytes] | None = None
        self._send: Any = None
        self._recv: Any = None
        self._lock = threading.Lock()  # guards the pipe: the queue already serialises generation
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self.restarts = 0
        self.last_crash: str | None = None
        self.fallback_note: str | None = None

    # -------------------------------------------------------- process

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    def _start(self) -> None:
        from multiprocessing.connection import Connection

        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "lib.local_worker", str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, cwd=root, env=env, start_new_session=True)
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._send = Connection(to_child_w, readable=False)
        self._recv = Connection(from_child_r, writable=False)
        proc = self._proc
        threading.Thread(target=self._drain_stderr, args=(proc,), daemon=True, name="local-worker-stderr").start()
        hello = self._read(timeout=60)
        if not hello or hello[0] != "hello":
            raise self._crashed("while starting")

    def _drain_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            if line:
                self._stderr.append(line)

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _ensure(self) -> None:
        if not self._alive():
            if self._proc is not None:
                self._close()
            self._start()

    def _close(self) -> None:
        for conn in (self._send, self._recv):
            try:
                if conn is not None:
                    conn.close()
            except OSError:
                pass
        self._send = self._recv = None

    def stop(self) -> None:
        with self._lock:
            if self._alive() and self._proc:
                self._proc.terminate()
                try:
                    self._proc.wait(5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
            self._close()

    def _read(self, timeout: float | None = None) -> tuple[Any, ...] | None:
        """The next reply, or None once the child is gone."""
        try:
            if timeout is not None and not self._recv.poll(timeout):
                return None
            return self._recv.recv()  # type: ignore[no-any-return]
        except (EOFError, OSError):
            return None

    def _crashed(self, when: str) -> WorkerCrashed:
        code = None
        if self._proc is not None:
            try:
                code = self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                code = self._proc.wait()
        self._close()
        self.last_crash = describe_exit(code)
        self.restarts += 1
        return WorkerCrashed(f"the local model process {self.last_crash} {when}")

    def _restart_after_crash(self) -> str:
        try:
            self._start()
            return "and was restarted; ask again"
        except LocalModelError:
            return "and could not be restarted; see the server log"

    # -------------------------------------------------------- requests

    def _request(self, op: str, req: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
        """Send one request and yield its replies; a crash becomes WorkerCrashed, after a restart."""
        with self._lock:
            for attempt in range(2):
                self._ensure()
                req = {**req, "extra_bufts": self.extra_bufts}
                try:
                    self._send.send((op, req))
                except OSError:
                    raise self._crashed("before the request was sent") from None
                started = False
                while True:
                    reply = self._read()
                    if reply is None:
                        crash = self._crashed("while loading the model" if not started else "while answering")
                        if not started and self.extra_bufts and self.mode == "auto" and attempt == 0:
                            # Extra buffer types crash llama.cpp on some CPUs: load without them from now on.
                            self.extra_bufts = False
                            self.fallback_note = (f"llama.cpp {self.last_crash} when loading with extra buffer "
                                                  "types; they are off for this process")
                            break
                        raise WorkerCrashed(f"{crash} {self._restart_after_crash()}")
                    if reply[0] == "started":
                        started = True
                    if reply[0] == "error":
                        raise LocalModelError(reply[2]) if reply[1] in ("ValueError", "RuntimeError") \
                            else LocalModelError(f"{reply[1]}: {reply[2]}")
                    yield reply
                    if reply[0] in ("done", "loaded", "counts", "stats"):
                        return

    def model_request(self, model: str, n_ctx: int, threads: int) -> dict[str, Any]:
        return {"model": model, "n_ctx": n_ctx, "threads": threads}

    def generate(self, req: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
        yield from self._request("generate", req)

    def count(self, req: dict[str, Any], texts: list[str]) -> list[int]:
        for reply in self._request("count", {**req, "texts": texts}):
            if reply[0] == "counts":
                return list(reply[1])
        raise LocalModelError("the local model did not count the tokens")

    def stats(self) -> dict[str, Any]:
        for reply in self._request("stats", {}):
            if reply[0] == "stats":
                return dict(reply[1])
        return {}

    def crash_for_test(self, sig: int = signal.SIGSEGV) -> None:
        with self._lock:
            self._ensure()
            self._send.send(("crash", {"signal": sig}))
            self._proc.wait(10)  # type: ignore[union-attr]


_workers: dict[str, LocalWorker] = {}
_workers_guard = threading.Lock()


def worker(extra_bufts: str = "auto") -> LocalWorker:
    """The process-wide worker for this setting (one per server process, shared by every session)."""
    with _workers_guard:
        if extra_bufts not in _workers:
            _workers[extra_bufts] = LocalWorker(extra_bufts)
        return _workers[extra_bufts]


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
    from lib.providers import bundled_model_path

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
            print(smoke(extra_bufts=os.environ.get("WORKBENCH_LLAMA_EXTRA_BUFTS", "auto")))
        except Exception as exc:
            print(f"llama.cpp does not run on this machine: {exc}.\nRebuild it for this CPU: "
                  ".venv/bin/pip install --force-reinstall --no-cache-dir --no-deps llama-cpp-python==0.3.36 "
                  "(about 10 minutes), or set WORKBENCH_LLAMA_EXTRA_BUFTS=off.", file=sys.stderr)
            sys.exit(1)
        sys.exit(0)
    serve(int(sys.argv[1]), int(sys.argv[2]))
