"""A fake OpenAI-compatible HTTP server for tests (standard library only).

It speaks enough of the OpenAI REST API for the real `openai` client to parse its
answers into typed objects: chat completions (plain and SSE streaming, also on the
Azure deployments route), embeddings, models, files and fine-tuning jobs.

Errors are injected by model name:

- "missing-model": 404 model_not_found
- "rate-limited":  429 with `Retry-After: 0` (counted in `rate_limit_hits`)
- "slow-model":    waits `slow_seconds` before answering
- "server-error":  500
- "trickle-model": streams one word every `trickle_seconds`, for ever
- "cut-short":     the stream stops after two words, with no finish reason and no usage
- "json-instead":  answers a streaming request with a plain (non-stream) JSON completion
- "empty-200":     200 with an empty body;  "plain-text": 200 with a text/plain body
- "echo-auth":     400 whose message repeats the Authorization header and the URL it was sent
- "stream-error":  streams the first words, then an SSE error event
- "echo-key":      a careless server that puts the key it was sent into its answer (`echo_text`: plain,
                   URL-encoded, base64, upper-case and in a Basic header), streamed 3 characters a chunk
- "echo-key-error": the same text as a 400 error message
- "retry-later":   429 with `Retry-After: 3600`
- "bad-usage":     answers with the usage in `bad_usage` (e.g. negative or absurd token counts)

Usage::

    with FakeOpenAIServer() as server:
        client = openai.OpenAI(api_key="sk-test", base_url=server.base_url)
        ...
        assert server.requests[-1]["json"]["model"] == "gpt-4o-mini"
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import json
import random
import re
import socket
import struct
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4.1-mini", "text-embedding-3-small")
JOB_STEPS = ("validating_files", "queued", "running")  # then "succeeded" or "failed"
TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")


class ApiError(Exception):
    """An error answered as OpenAI's JSON error body."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
        self.headers = headers or {}


def echo_text(key: str) -> str:
    """What the "echo-key" models say: the key in every form a careless server might repeat it."""
    from urllib.parse import quote

    b64 = base64.b64encode(key.encode()).decode()
    basic = base64.b64encode(f"user:{key}".encode()).decode()
    return (f"Your key is {key} (URL-encoded {quote(key, safe='')}, base64 {b64}, upper-case {key.upper()}, "
            f"lower-case {key.lower()}); header Authorization: Basic {basic}. The refund window is 45 days [1].")


def count_words(text: str) -> int:
    return len(text.split())


def message_text(message: dict[str, Any]) -> str:
    """The text of a chat message whose content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Deterministic prompt size: words of every message plus 3 per message."""
    return sum(count_words(message_text(m)) + 3 for m in messages)


def default_reply(body: dict[str, Any]) -> str:
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    last = " ".join(message_text(users[-1]).split()) if users else ""
    return f"Answer about: {last[:40]} [1]"


def fake_embedding(text: str, dim: int) -> list[float]:
    """A unit vector: the sum of one hash-seeded random vector per lower-cased word,
    so the same text always maps to the same vector and texts that share words are close."""
    words = re.findall(r"\w+", text.lower()) or [text]
    vector = [0.0] * dim
    for word in words:
        rng = random.Random(hashlib.sha256(word.encode("utf-8")).digest())
        for i in range(dim):
            vector[i] += rng.gauss(0.0, 1.0)
    norm = sum(x * x for x in vector) ** 0.5 or 1.0
    return [x / norm for x in vector]


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Form fields of a multipart/form-data body: name -> (filename or None, bytes)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise ApiError(400, "Expected a multipart/form-data body.")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        if name:
            payload = part.get_payload(decode=True) or b""
            fields[str(name)] = (part.get_filename(), payload)
    return fields


def new_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}{uuid.uuid4().hex[:length]}"


class FakeOpenAIServer:
    """An in-process OpenAI-compatible server on 127.0.0.1 (a free port).

    Settings may be changed at any time, also while it runs; `reset()` restores them.
    """

    reply: str | None  # fixed reply text
    reply_fn: Callable[[dict[str, Any]], str] | None  # reply from the request body; wins over `reply`
    bad_keys: set[str]  # API keys answered with 401
    models: list[str]  # extra ids for GET /v1/models
    ollama_models: list[str]  # tags for GET /api/tags (Ollama's own list)
    slow_seconds: float  # how long "slow-model" waits
    first_token_delay: float  # wait before the first streamed chunk
    embedding_dim: int  # unless the request gives `dimensions`
    fail_jobs: bool  # fine-tuning jobs end "failed" instead of "succeeded"

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.rate_limit_hits: int = 0
        self.files: dict[str, dict[str, Any]] = {}  # id -> FileObject JSON plus "content" bytes
        self.jobs: dict[str, dict[str, Any]] = {}  # id -> FineTuningJob JSON
        self.job_events: dict[str, list[dict[str, Any]]] = {}  # job id -> events, oldest first
        self.lock = threading.RLock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self.reset()

    def reset(self) -> None:
        """Back to the initial settings, and forget requests, counters, files and jobs."""
        with self.lock:
            self.reply = None
            self.reply_fn = None
            self.bad_keys = {"sk-invalid"}
            self.models = []
            self.ollama_models = []  # tags listed by GET /api/tags, as an Ollama server lists its models
            self.slow_seconds = 5.0
            self.first_token_delay = 0.0
            self.trickle_seconds = 0.5
            self.embedding_dim = 16
            self.fail_jobs = False
            self.bad_usage: dict[str, Any] = {"prompt_tokens": -5, "completion_tokens": 7}
            self.requests.clear()
            self.rate_limit_hits = 0
            self.files.clear()
            self.jobs.clear()
            self.job_events.clear()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> FakeOpenAIServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        handler = type("BoundHandler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping for slow-model / first_token_delay
        self._httpd.shutdown()
        self._httpd.server_close()
        with self.lock:
            connections, self._connections = list(self._connections), set()
        for conn in connections:  # idle keep-alive connections would otherwise linger
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeOpenAIServer is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Root URL, e.g. for `AzureOpenAI(azure_endpoint=...)`."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """Base URL for `OpenAI(base_url=...)`."""
        return f"{self.url}/v1"

    azure_endpoint = url

    # ------------------------------------------------------------ inspection helpers

    def requests_to(self, path_suffix: str, method: str | None = None) -> list[dict[str, Any]]:
        """Recorded requests whose path ends with `path_suffix` (and of `method`, if given)."""
        with self.lock:
            return [r for r in self.requests
                    if r["path"].endswith(path_suffix) and (method is None or r["method"] == method)]

    # ------------------------------------------------------------ behaviour

    def reply_text(self, body: dict[str, Any]) -> str:
        if self.reply_fn is not None:
            return self.reply_fn(body)
        if self.reply is not None:
            return self.reply
        return default_reply(body)

    def all_model_ids(self) -> list[str]:
        with self.lock:
            tuned = [j["fine_tuned_model"] for j in self.jobs.values() if j["fine_tuned_model"]]
            ids = [*DEFAULT_MODELS, *self.models, *tuned]
        return list(dict.fromkeys(ids))

    def check_model(self, model: str) -> None:
        """Raise the error injected for `model`, or sleep for "slow-model"."""
        if model == "missing-model":
            raise ApiError(404, f"The model `{model}` does not exist", code="model_not_found")
        if model == "rate-limited":
            with self.lock:
                self.rate_limit_hits += 1
            raise ApiError(429, "Rate limit reached for requests", type_="requests", code="rate_limit_exceeded",
                           headers={"Retry-After": "0"})
        if model == "server-error":
            raise ApiError(500, "The server had an error while processing your request.", type_="server_error")
        if model == "retry-later":
            raise ApiError(429, "Rate limit reached; come back in an hour", type_="requests",
                           code="rate_limit_exceeded", headers={"Retry-After": "3600"})
        if model == "slow-model":
            self.sleep(self.slow_seconds)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer  # set on the per-server subclass
    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"

    def setup(self) -> None:
        super().setup()
        with self.fake.lock:
            self.fake._connections.add(self.connection)

    def handle(self) -> None:
        try:
            super().handle()
        except OSError:  # the client reset the connection, e.g. after closing a stream early
            self.close_connection = True

    def finish(self) -> None:
        with self.fake.lock:
            self.fake._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr logs
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ------------------------------------------------------------ plumbing

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        raw = self._read_body()
        body: Any = None
        if raw and "json" in headers.get("content-type", ""):
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        with self.fake.lock:
            self.fake.requests.append({"method": method, "path": path, "headers": headers,
                                       "query": query, "json": body})
        try:
            if method == "GET" and path == "/api/tags":  # Ollama's list of local models (it takes no key)
                return self._send_json(200, {"models": [
                    {"name": m, "model": m, "size": 1_300_000_000, "modified_at": "2026-11-01T10:00:00Z",
                     "details": {"family": "llama", "parameter_size": "1.2B", "quantization_level": "Q4_K_M"}}
                    for m in self.fake.ollama_models]})
            self._check_auth(headers)
            self._route(method, path, query, headers, body, raw)
        except ApiError as error:
            self._send_json(error.status, error.body, error.headers)
        except OSError:
            self.close_connection = True  # the client gave up (e.g. its timeout) or the server stops
        except Exception as exc:  # a bug in this fake: show it, and answer 500 so the test fails visibly
            traceback.print_exc()
            self._send_json(500, {"error": {"message": f"Fake server bug: {exc!r}", "type": "server_error",
                                            "param": None, "code": None}})

    def _check_auth(self, headers: dict[str, str]) -> None:
        key = headers.get("api-key")
        auth = headers.get("authorization", "")
        if key is None and auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        if not key:
            raise ApiError(401, "You didn't provide an API key.", code="invalid_api_key")
        if key in self.fake.bad_keys:
            raise ApiError(401, "Incorrect API key provided", code="invalid_api_key")

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self._send_bytes(status, data, "application/json", headers)

    def _send_bytes(self, status: int, data: bytes, content_type: str,
                    headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", new_id("req_"))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: Any, raw: bytes) -> None:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["openai", "deployments"] and len(parts) >= 4 and method == "POST":
            # Azure: the deployment name stands in for the model.
            if "api-version" not in query:
                raise ApiError(400, "Missing required query parameter: api-version", code="missing_api_version")
            azure_body = dict(self._require_json(body), model=parts[2])
            if parts[3:] == ["chat", "completions"]:
                return self._chat(azure_body)
            if parts[3:] == ["embeddings"]:
                return self._embeddings(azure_body)
        if parts[:1] != ["v1"]:
            raise self._not_found(method, path)
        route = parts[1:]
        if method == "POST" and route == ["chat", "completions"]:
            return self._chat(self._require_json(body))
        if method == "POST" and route == ["embeddings"]:
            return self._embeddings(self._require_json(body))
        if method == "GET" and route == ["models"]:
            return self._send_json(200, {"object": "list", "data": [self._model(m) for m in self.fake.all_model_ids()]})
        if method == "GET" and len(route) == 2 and route[0] == "models":
            if route[1] not in self.fake.all_model_ids():
                raise ApiError(404, f"The model `{route[1]}` does not exist", code="model_not_found")
            return self._send_json(200, self._model(route[1]))
        if route[:1] == ["files"]:
            return self._files(method, route[1:], headers, raw, query)
        if route[:2] == ["fine_tuning", "jobs"]:
            return self._jobs(method, route[2:], body, query)
        raise self._not_found(method, path)

    @staticmethod
    def _not_found(method: str, path: str) -> ApiError:
        return ApiError(404, f"Invalid URL ({method} {path})")

    @staticmethod
    def _require_json(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "We could not parse the JSON body of your request.")
        return body

    @staticmethod
    def _model(model_id: str) -> dict[str, Any]:
        owner = "fake-org" if model_id.startswith("ft:") else "openai"
        return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": owner}

    # ------------------------------------------------------------ chat completions

    def _chat(self, body: dict[str, Any]) -> None:
        model = str(body.get("model") or "")
        messages = body.get("messages")
        if not model or not isinstance(messages, list):
            raise ApiError(400, "`model` and `messages` are required.", param="messages")
        self.fake.check_model(model)
        if model == "echo-auth":  # a careless server that echoes the credentials it was sent
            with self.fake.lock:
                sent = self.fake.requests[-1]["headers"]
            raise ApiError(400, f"Invalid request. Headers received: Authorization: {sent.get('authorization', '')}; "
                                f"api-key: {sent.get('api-key', '')}; url: {self.path}")
        with self.fake.lock:
            sent = self.fake.requests[-1]["headers"]
        key = sent.get("api-key") or sent.get("authorization", "").removeprefix("Bearer ").strip()
        if model == "echo-key-error":
            raise ApiError(400, f"Invalid request from {echo_text(key)}")
        if model == "echo-key":  # the key split across chunks, so a filter must see it whole to catch it
            text = echo_text(key)
            words = [text[i:i + 3] for i in range(0, len(text), 3)]
        else:
            words = re.findall(r"\s*\S+", self.fake.reply_text(body))
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        finish_reason = "stop"
        if isinstance(limit, int) and len(words) > limit and model != "echo-key":
            words, finish_reason = words[:limit], "length"
        usage = {"prompt_tokens": prompt_tokens(messages),
                 "completion_tokens": count_words("".join(words)) if model == "echo-key" else len(words)}
        if model == "bad-usage":
            usage.update(self.fake.bad_usage)
        numbers = all(isinstance(usage[k], int | float) for k in ("prompt_tokens", "completion_tokens"))
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"] if numbers else None
        usage_details = {"prompt_tokens_details": {"cached_tokens": 0},
                         "completion_tokens_details": {"reasoning_tokens": 0}}
        base = {"id": new_id("chatcmpl-"), "created": int(time.time()), "model": model,
                "system_fingerprint": "fp_fake"}
        if model == "trickle-model":  # one word every trickle_seconds, for ever (until the client gives up)
            words = [f" word{i}" for i in range(100_000)]
        if model == "empty-200":
            return self._send_bytes(200, b"", "application/json")
        if model == "plain-text":
            return self._send_bytes(200, b"The refund window is 45 days.", "text/plain")
        if not body.get("stream") or model == "json-instead":
            return self._send_json(200, {
                **base, "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": finish_reason, "logprobs": None,
                             "message": {"role": "assistant", "content": "".join(words), "refusal": None}}],
                "usage": {**usage, **usage_details},
            })
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self._stream(self._chunks(base, model, words, finish_reason, include_usage, {**usage, **usage_details}))

    def _chunks(self, base: dict[str, Any], model: str, words: list[str], finish_reason: str,
                include_usage: bool, usage: dict[str, Any]) -> Iterator[dict[str, Any]]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            data = {**base, "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            if include_usage:
                data["usage"] = None
            return data

        yield chunk({"role": "assistant", "content": "", "refusal": None})
        for i, word in enumerate(words):
            if model == "trickle-model" and i:
                self.fake.sleep(self.fake.trickle_seconds)
            if model == "cut-short" and i == 2:
                return  # the stream ends early: no finish reason, no usage
            if model == "stream-error" and i == 2:
                yield {"error": {"message": "The server had an error while streaming.", "type": "server_error",
                                 "param": None, "code": None}}
                return
            yield chunk({"content": word})
        yield chunk({}, finish_reason)
        if include_usage:
            yield {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}

    def _stream(self, events: Iterator[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", new_id("req_"))
        self.end_headers()
        self.fake.sleep(self.fake.first_token_delay)
        for event in events:
            self._write_chunk(f"data: {json.dumps(event)}\n\n".encode())
        self._write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode("ascii") + data + b"\r\n")
        self.wfile.flush()

    # ------------------------------------------------------------ embeddings

    def _embeddings(self, body: dict[str, Any]) -> None:
        model = str(body.get("model") or "")
        self.fake.check_model(model)
        raw_input = body.get("input")
        texts: list[Any] = raw_input if isinstance(raw_input, list) else [raw_input]
        if not texts or any(t is None for t in texts):
            raise ApiError(400, "`input` must be a string or a list of strings.", param="input")
        dim = int(body.get("dimensions") or self.fake.embedding_dim)
        data, tokens = [], 0
        for index, item in enumerate(texts):
            if isinstance(item, list):  # token ids
                text, tokens = " ".join(map(str, item)), tokens + len(item)
            else:
                text, tokens = str(item), tokens + count_words(str(item))
            vector: Any = fake_embedding(text, dim)
            if body.get("encoding_format") == "base64":
                vector = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": vector})
        self._send_json(200, {"object": "list", "data": data, "model": model,
                              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    # ------------------------------------------------------------ files

    def _files(self, method: str, route: list[str], headers: dict[str, str], raw: bytes,
               query: dict[str, str]) -> None:
        fake = self.fake
        if method == "POST" and not route:
            fields = parse_multipart(headers.get("content-type", ""), raw)
            if "file" not in fields or "purpose" not in fields:
                raise ApiError(400, "`file` and `purpose` are required.", param="file")
            filename, content = fields["file"]
            file = {"id": new_id("file-"), "object": "file", "bytes": len(content),
                    "created_at": int(time.time()), "filename": filename or "upload",
                    "purpose": fields["purpose"][1].decode("utf-8"), "status": "processed",
                    "status_details": None, "expires_at": None}
            with fake.lock:
                fake.files[file["id"]] = {**file, "content": content}
            return self._send_json(200, file)
        if method == "GET" and not route:
            with fake.lock:
                files = [self._public_file(f) for f in fake.files.values()]
            if "purpose" in query:
                files = [f for f in files if f["purpose"] == query["purpose"]]
            return self._send_json(200, {"object": "list", "data": files[::-1], "has_more": False})
        if not route:
            raise self._not_found(method, "/v1/files")
        with fake.lock:
            file = fake.files.get(route[0])
        if file is None:
            raise ApiError(404, f"No such File object: {route[0]}", param="id")
        if method == "GET" and len(route) == 1:
            return self._send_json(200, self._public_file(file))
        if method == "GET" and route[1:] == ["content"]:
            return self._send_bytes(200, file["content"], "application/octet-stream")
        if method == "DELETE" and len(route) == 1:
            with fake.lock:
                fake.files.pop(route[0], None)
            return self._send_json(200, {"id": route[0], "object": "file", "deleted": True})
        raise self._not_found(method, "/v1/files/" + "/".join(route))

    @staticmethod
    def _public_file(file: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in file.items() if k != "content"}

    # ------------------------------------------------------------ fine-tuning jobs

    def _jobs(self, method: str, route: list[str], body: Any, query: dict[str, str]) -> None:
        fake = self.fake
        if method == "POST" and not route:
            return self._send_json(200, self._create_job(self._require_json(body)))
        if method == "GET" and not route:
            with fake.lock:
                jobs = list(fake.jobs.values())[::-1]
            return self._send_json(200, self._page(jobs, query))
        if not route:
            raise self._not_found(method, "/v1/fine_tuning/jobs")
        job_id = route[0]
        with fake.lock:
            job = fake.jobs.get(job_id)
            if job is None:
                raise ApiError(404, f"Could not find fine-tune: {job_id}", code="fine_tune_not_found", param="id")
            if method == "GET" and len(route) == 1:
                self._advance(job)
                payload: dict[str, Any] = dict(job)
            elif method == "GET" and route[1:] == ["events"]:
                payload = self._page(fake.job_events[job_id][::-1], query)
            elif method == "POST" and route[1:] == ["cancel"]:
                if job["status"] in ("succeeded", "failed"):
                    raise ApiError(400, f"Job has already {job['status']}; it cannot be cancelled.",
                                   code="invalid_state")
                if job["status"] != "cancelled":
                    job.update(status="cancelled", finished_at=int(time.time()))
                    self._event(job_id, "Fine-tuning job cancelled")
                payload = dict(job)
            else:
                raise self._not_found(method, "/v1/fine_tuning/jobs/" + "/".join(route))
        self._send_json(200, payload)

    @staticmethod
    def _page(items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
        """A cursor page (newest first) honouring `after` and `limit`."""
        if "after" in query:
            ids = [item["id"] for item in items]
            items = items[ids.index(query["after"]) + 1:] if query["after"] in ids else []
        limit = int(query.get("limit") or 20)
        return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}

    def _create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        fake = self.fake
        model = str(body.get("model") or "")
        training_file = str(body.get("training_file") or "")
        if model == "missing-model":
            raise ApiError(404, f"The model `{model}` does not exist", code="model_not_found", param="model")
        with fake.lock:
            file = fake.files.get(training_file)
        if file is None:
            raise ApiError(400, f"invalid training_file: {training_file}", code="invalid_training_file",
                           param="training_file")
        hyper = dict(body.get("hyperparameters") or {})
        method = body.get("method") or {}
        if isinstance(method, dict) and method.get("type") == "supervised":
            hyper.update((method.get("supervised") or {}).get("hyperparameters") or {})
        n_epochs = hyper.get("n_epochs")
        hyperparameters = {
            "n_epochs": n_epochs if isinstance(n_epochs, int) else 3,
            "batch_size": hyper.get("batch_size") if isinstance(hyper.get("batch_size"), int) else 1,
            "learning_rate_multiplier": hyper.get("learning_rate_multiplier")
            if isinstance(hyper.get("learning_rate_multiplier"), (int, float)) else 1.0,
        }
        job = {
            "id": new_id("ftjob-"), "object": "fine_tuning.job", "created_at": int(time.time()),
            "model": model, "training_file": training_file, "validation_file": body.get("validation_file"),
            "hyperparameters": hyperparameters, "status": "validating_files", "error": None,
            "fine_tuned_model": None, "finished_at": None, "trained_tokens": None,
            "organization_id": "org-fake", "result_files": [], "seed": int(body.get("seed") or 42),
            "estimated_finish": None, "integrations": [], "metadata": body.get("metadata"),
            "method": {"type": "supervised",
                       "supervised": {"hyperparameters": hyperparameters}},
            "user_provided_suffix": body.get("suffix"),
        }
        with fake.lock:
            fake.jobs[job["id"]] = job
            fake.job_events[job["id"]] = []
            self._event(job["id"], f"Validating training file: {training_file}")
        return dict(job)

    def _event(self, job_id: str, message: str, level: str = "info",
               data: dict[str, Any] | None = None) -> None:
        self.fake.job_events[job_id].append({
            "id": new_id("ftevent-"), "object": "fine_tuning.job.event", "created_at": int(time.time()),
            "level": level, "message": message, "data": data, "type": "metrics" if data else "message",
        })

    def _step_events(self, job: dict[str, Any], first: int, last: int, total: int) -> None:
        for step in range(first, last + 1):
            loss = round(2.5 * 0.8 ** step, 4)
            self._event(job["id"], f"Step {step}/{total}: training loss={loss}",
                        data={"step": step, "total_steps": total, "train_loss": loss})

    def _results_file(self, job_id: str) -> str:
        """Store the step metrics CSV that OpenAI attaches to a finished job; returns its id."""
        rows = ["step,train_loss"] + [f"{e['data']['step']},{e['data']['train_loss']}"
                                      for e in self.fake.job_events[job_id] if e["data"]]
        content = ("\n".join(rows) + "\n").encode("utf-8")
        file = {"id": new_id("file-"), "object": "file", "bytes": len(content), "created_at": int(time.time()),
                "filename": "step_metrics.csv", "purpose": "fine-tune-results", "status": "processed",
                "status_details": None, "expires_at": None}
        self.fake.files[file["id"]] = {**file, "content": content}
        return str(file["id"])

    def _advance(self, job: dict[str, Any]) -> None:
        """Move `job` one status forward (caller holds the lock)."""
        status = job["status"]
        if status in TERMINAL_STATUSES:
            return
        total = 10
        if status == "validating_files":
            job["status"] = "queued"
            self._event(job["id"], "Files validated, moving job to queued state")
        elif status == "queued":
            job.update(status="running", estimated_finish=int(time.time()) + 60)
            self._event(job["id"], "Fine-tuning job started")
            self._step_events(job, 1, total // 2, total)
        elif self.fake.fail_jobs:
            error = {"code": "invalid_training_file", "param": "training_file",
                     "message": "The job failed due to an invalid training file (fake failure)."}
            job.update(status="failed", error=error, finished_at=int(time.time()), estimated_finish=None)
            self._event(job["id"], f"Fine-tuning job failed: {error['message']}", level="error")
        else:
            content = self.fake.files[job["training_file"]]["content"].decode("utf-8", "replace")
            short = job["id"].removeprefix("ftjob-")[:8]
            tuned = f"ft:{job['model']}:fake-org:{job['user_provided_suffix'] or 'custom'}:{short}"
            self._step_events(job, total // 2 + 1, total, total)
            result_file = self._results_file(job["id"])
            job.update(status="succeeded", fine_tuned_model=tuned, finished_at=int(time.time()),
                       trained_tokens=count_words(content) * job["hyperparameters"]["n_epochs"],
                       result_files=[result_file], estimated_finish=None)
            self._event(job["id"], f"New fine-tuned model created: {tuned}")
            self._event(job["id"], "The job has successfully completed")
