"""A stand-in for the Hugging Face hub's download endpoint, on 127.0.0.1, for offline tests.

It answers `HEAD` and `GET /{owner}/{repo}/resolve/{revision}/{file}` as the hub does for a file:
`X-Repo-Commit`, `ETag` and, for files stored in LFS, `X-Linked-Etag` (the content's SHA-256) and
`X-Linked-Size`; `GET` honours `Range: bytes=N-` with a 206 and `Content-Range`. Knobs for faults:
a wrong checksum, a bandwidth limit (so a test can kill a download half-way), a connection dropped
after some bytes. Every request is recorded (method, path, Range) so tests can check a resume.

    python -m tests.hub_server --serve REPO/FILE=PATH ...   (prints the port; used by subprocess tests)
"""

from __future__ import annotations

import hashlib
import http.server
import socketserver
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Served:
    path: Path
    lfs: bool = True
    sha256: str = ""
    git_sha1: str = ""
    wrong_checksum: bool = False


@dataclass
class HubState:
    files: dict[str, Served] = field(default_factory=dict)  # "owner/repo/file" -> what to serve
    bytes_per_s: float | None = None  # bandwidth limit of GET bodies
    drop_after: int | None = None  # close the connection after this many body bytes (once)
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, Range header)


def _digests(path: Path) -> tuple[str, str]:
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            sha256.update(block)
            sha1.update(block)
    return sha256.hexdigest(), sha1.hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HubState

    def log_message(self, *args: object) -> None:
        pass

    def _file(self) -> Served | None:
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return None
        key = "/".join(parts[:2] + parts[4:])
        return self.state.files.get(key)

    def _headers(self, served: Served, status: int, length: int, extra: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("X-Repo-Commit", COMMIT)
        sha = ("0" * 64) if served.wrong_checksum else served.sha256
        if served.lfs:
            self.send_header("X-Linked-Etag", f'"{sha}"')
            self.send_header("X-Linked-Size", str(served.path.stat().st_size))
            self.send_header("ETag", f'"{sha}"')
        else:
            self.send_header("ETag", f'"{served.git_sha1}"')
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()

    def _not_found(self) -> None:
        self.send_response(404)
        self.send_header("X-Error-Code", "EntryNotFound")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802
        self.state.requests.append(("HEAD", self.path, self.headers.get("Range", "")))
        served = self._file()
        if served is None:
            return self._not_found()
        self._headers(served, 200, served.path.stat().st_size, {})

    def do_GET(self) -> None:  # noqa: N802
        rng = self.headers.get("Range", "")
        self.state.requests.append(("GET", self.path, rng))
        served = self._file()
        if served is None:
            return self._not_found()
        size = served.path.stat().st_size
        start = 0
        if rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0] or 0)
        if start >= size and size:
            self.send_response(416)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        extra = {"Content-Range": f"bytes {start}-{size - 1}/{size}"} if start else {}
        self._headers(served, 206 if start else 200, size - start, extra)
        sent = 0
        t0 = time.monotonic()
        with served.path.open("rb") as f:
            f.seek(start)
            while True:
                block = f.read(64 * 1024)
                if not block:
                    break
                if self.state.drop_after is not None and sent + len(block) > self.state.drop_after:
                    block = block[: max(0, self.state.drop_after - sent)]
                    self.state.drop_after = None
                    try:
                        self.wfile.write(block)
                        self.wfile.flush()
                    finally:
                        self.close_connection = True
                        self.connection.shutdown(2)
                    return
                try:
                    self.wfile.write(block)
                except (BrokenPipeError, ConnectionResetError):
                    return
                sent += len(block)
                if self.state.bytes_per_s:
                    ahead = sent / self.state.bytes_per_s - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class StandInHub:
    """Start with `.start()`; `endpoint` is the HF_ENDPOINT to use; `serve(repo, file, path)` adds a file."""

    def __init__(self) -> None:
        self.state = HubState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = _Server(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="stand-in-hub")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def serve(self, repo: str, file: str, path: Path, lfs: bool = True) -> Served:
        sha256, sha1 = _digests(path)
        served = Served(Path(path), lfs, sha256, sha1)
        self.state.files[f"{repo}/{file}"] = served
        return served

    def start(self) -> StandInHub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main(argv: list[str]) -> None:
    hub = StandInHub()
    for item in argv:
        if item.startswith("--rate="):
            hub.state.bytes_per_s = float(item.split("=", 1)[1])
            continue
        key, _, path = item.partition("=")
        repo, _, file = key.rpartition("/")
        hub.serve(repo, file, Path(path))
    hub.start()
    print(hub.server.server_address[1], flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[2:] if len(sys.argv) > 1 and sys.argv[1] == "--serve" else sys.argv[1:])
