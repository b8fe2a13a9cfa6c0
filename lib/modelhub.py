"""Downloaded models: the data folder's `models/`, shared by every workspace, and the downloads
that fill it, through `huggingface_hub` against HF_ENDPOINT (default the public hub).

Layout under the data folder:
    models/<name>.gguf               a catalogue model, complete and checked
    models/<name>.json               its manifest (repo, file, commit, SHA-256, bytes, when): written last,
                                     so a model is listed only once its file is complete and checked
    models/<name>.train/             the same model's weights for LoRA training (safetensors, config,
                                     tokenizer) with its own manifest.json, written last
    models/.downloads/<key>/         a download under way or interrupted: <file>.part, remote.json (what is
                                     being fetched), status.json (progress, for every page and process), lock
    models/speeds.json               generation speeds measured on this machine

How a download goes (`pull`, `pull_training`):
- the file's metadata first (`huggingface_hub.get_hf_file_metadata`: HEAD on /{repo}/resolve/{revision}/{file}):
  its size, the commit, and its SHA-256 (the hub's X-Linked-Etag for files stored in LFS; for small
  files kept in git, the git blob id, checked the same way);
- free disk space checked before a byte is written (the file's size plus a margin);
- the bytes through `huggingface_hub.file_download.http_get` into `<file>.part`, resumed with an HTTP
  Range request after a kill, a cancel or a lost connection (hf_hub_download itself now discards a
  partial file when it fails, so it cannot resume across processes); a `.part` fetched for another
  version of the file is discarded, never mixed;
- the SHA-256 of the whole file checked against the hub's; a mismatch deletes it and fails;
- the file renamed into place, then the manifest written. A partial file is never offered as a model.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lib.errors import ConfigError
from lib.settings import PROJECT_ROOT, Settings, child_env

SHA256 = re.compile(r"^[0-9a-f]{64}$")
GIT_SHA1 = re.compile(r"^[0-9a-f]{40}$")
DISK_MARGIN = 64 * 1024 * 1024  # left free after a download, besides the file itself
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}[a-z0-9]$")


class HubError(ConfigError):
    """A download that did not happen; `reason` is one of unreachable, checksum, disk, cancelled, missing, busy."""

    reason = "failed"


class HubUnreachable(HubError):
    reason = "unreachable"


class ChecksumMismatch(HubError):
    reason = "checksum"


class NotEnoughDisk(HubError):
    reason = "disk"


class DownloadCancelled(HubError):
    reason = "cancelled"


class DownloadBusy(HubError):
    reason = "busy"


def by_hand(settings: Settings, name: str = "") -> str:
    """How to bring a GGUF in when the hub cannot be reached (said wherever a download fails that way)."""
    return ("Without the hub, copy the .gguf in by hand: download it on a machine with internet (the catalogue "
            "gives repository and file), then add it with Settings > Local models > 'Add a GGUF file', or "
            f"`python -m lib models add FILE.gguf{' --name ' + name if name else ''}`; it is checked by loading it "
            "in the local model worker. HF_ENDPOINT points the app at a mirror of the hub.")


# ---------------------------------------------------------------- the store

def models_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / "models"


def check_model_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{name!r} is not a usable model name: use 2-64 lower-case letters, digits, '.', '-' or "
                          "'_', starting and ending with a letter or digit.")
    return name


@dataclass(frozen=True)
class Installed:
    """A model in the data folder's models/, complete and checked."""

    name: str
    path: str
    sha256: str
    bytes: int
    source: str  # "hub" | "copied"
    repo: str = ""
    file: str = ""
    revision: str = ""
    commit: str = ""
    downloaded_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a small JSON file atomically (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def installed(data_dir: str | Path) -> dict[str, Installed]:
    """The complete, checked models of the data folder: a manifest whose file is there at its recorded size."""
    folder = models_dir(data_dir)
    out: dict[str, Installed] = {}
    if not folder.is_dir():
        return out
    for manifest in sorted(folder.glob("*.json")):
        name = manifest.stem
        data = _read_json(manifest)
        gguf = folder / f"{name}.gguf"
        if not data or not _NAME.match(name) or not gguf.is_file():
            continue
        try:
            if gguf.stat().st_size != int(data.get("bytes", -1)):
                continue
            out[name] = Installed(name=name, path=str(gguf.resolve()), sha256=str(data.get("sha256", "")),
                                  bytes=int(data["bytes"]), source=str(data.get("source", "hub")),
                                  repo=str(data.get("repo", "")), file=str(data.get("file", "")),
                                  revision=str(data.get("revision", "")), commit=str(data.get("commit", "")),
                                  downloaded_at=float(data.get("downloaded_at", 0.0)))
        except (OSError, ValueError, TypeError):
            continue
    return out


def installed_model(data_dir: str | Path, name: str) -> Installed | None:
    return installed(data_dir).get(name)


def training_dir(data_dir: str | Path, name: str) -> Path | None:
    """The model's weights for training (safetensors), if downloaded and checked."""
    folder = models_dir(data_dir) / f"{name}.train"
    return folder if (folder / "manifest.json").is_file() else None


def remove(data_dir: str | Path, name: str) -> bool:
    """Delete a downloaded model, its training weights and any partial download of either."""
    check_model_name(name)
    folder = models_dir(data_dir)
    found = False
    for path in (folder / f"{name}.json", folder / f"{name}.gguf"):  # the manifest first: unlisted at once
        if path.exists():
            path.unlink()
            found = True
    for path in (folder / f"{name}.train", downloads_dir(data_dir) / name, downloads_dir(data_dir) / f"{name}.train"):
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
            found = True
    return found


# ---------------------------------------------------------------- downloads: state shared across processes

def downloads_dir(data_dir: str | Path) -> Path:
    return models_dir(data_dir) / ".downloads"


@dataclass(frozen=True)
class Progress:
    key: str  # the model's name, or NAME.train for its training weights
    status: str  # starting | downloading | verifying | done | failed | cancelled | interrupted
    done_bytes: int = 0
    total_bytes: int | None = None
    bytes_per_s: float | None = None
    eta_s: float | None = None
    file: str = ""
    error: str | None = None
    reason: str | None = None
    pid: int | None = None
    updated_at: float = 0.0

    @property
    def fraction(self) -> float:
        return min(1.0, self.done_bytes / self.total_bytes) if self.total_bytes else 0.0

    @property
    def active(self) -> bool:
        return self.status in ("starting", "downloading", "verifying")

    def line(self) -> str:
        """'120.3 MB of 491.0 MB (24%), 2.1 MB/s, about 3 min left'"""
        total = f" of {self.total_bytes / 1e6:,.1f} MB ({self.fraction:.0%})" if self.total_bytes else ""
        speed = f", {self.bytes_per_s / 1e6:.1f} MB/s" if self.bytes_per_s else ""
        left = f", about {_duration(self.eta_s)} left" if self.eta_s is not None and self.status == "downloading" \
            else ""
        return f"{self.status} {self.file or self.key}: {self.done_bytes / 1e6:,.1f} MB{total}{speed}{left}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fraction": round(self.fraction, 4)}


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def status(data_dir: str | Path, key: str) -> Progress | None:
    """The last recorded state of a download; one whose process died mid-way is `interrupted` (resumable)."""
    data = _read_json(downloads_dir(data_dir) / key / "status.json")
    if not data:
        return None
    fields = {k: data.get(k) for k in Progress.__dataclass_fields__ if k in data}
    try:
        p = Progress(**fields)
    except TypeError:
        return None
    from lib.jobs import pid_alive  # the one check that a recorded process still runs

    if p.active and not pid_alive(p.pid):
        part = sum(f.stat().st_size for f in (downloads_dir(data_dir) / key).glob("*.part"))
        return Progress(**{**asdict(p), "status": "interrupted", "done_bytes": part, "bytes_per_s": None,
                           "eta_s": None})
    return p


class _Tracker:
    """Progress of one download: reported to a callback and recorded in status.json, at most every 0.5 s."""

    def __init__(self, folder: Path, key: str, callback: Callable[[Progress], None] | None,
                 cancel: threading.Event | None) -> None:
        self.folder, self.key, self.callback, self.cancel = folder, key, callback, cancel
        self.total: int | None = None
        self.done = 0
        self.file = ""
        self.started = time.monotonic()
        self.start_bytes = 0
        self.last = 0.0

    def report(self, status: str, force: bool = False, error: str | None = None, reason: str | None = None) -> None:
        now = time.monotonic()
        if not force and now - self.last < 0.5:
            return
        self.last = now
        elapsed = now - self.started
        fetched = self.done - self.start_bytes
        speed = fetched / elapsed if elapsed > 1 and fetched > 0 else None
        eta = (self.total - self.done) / speed if speed and self.total else None
        p = Progress(self.key, status, self.done, self.total, speed, eta, self.file, error, reason, os.getpid(),
                     time.time())
        _write_json(self.folder / "status.json", p.to_dict())
        if self.callback is not None:
            self.callback(p)

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise DownloadCancelled("The download was cancelled; what arrived is kept, and downloading again "
                                    "resumes from there.")


class _PartFile:
    """The file object http_get writes to: appends to <file>.part, counts the bytes and stops on a cancel."""

    def __init__(self, path: Path, tracker: _Tracker) -> None:
        self.f = path.open("ab")
        self.tracker = tracker

    def write(self, data: bytes) -> int:
        self.tracker.check_cancel()
        n = self.f.write(data)
        self.tracker.done += n
        self.tracker.report("downloading")
        return n

    def tell(self) -> int:
        return self.f.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)

    def truncate(self, size: int | None = None) -> int:
        before = os.fstat(self.f.fileno()).st_size
        n = self.f.truncate(size)
        self.tracker.done -= before - os.fstat(self.f.fileno()).st_size  # the server ignored Range: starts over
        return n

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.f.close()


@contextlib.contextmanager
def _locked(folder: Path, key: str) -> Iterator[None]:
    """One download of a model at a time, across processes (an fcntl lock the system drops when its holder dies)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DownloadBusy(f"{key} is already being downloaded by another process; follow it in Settings or "
                               "wait for it.") from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- talking to the hub

@dataclass(frozen=True)
class RemoteFile:
    repo: str
    file: str
    revision: str
    commit: str
    size: int
    sha256: str | None  # LFS files: the content's SHA-256
    git_sha1: str | None  # files kept in git: the blob id (sha1 of "blob <size>\0" + content)
    url: str


def _hub_error(exc: BaseException, settings: Settings, what: str) -> HubError:
    name = type(exc).__name__
    status_code = getattr(getattr(exc, "response", None), "status_code", None)
    if name in ("RepositoryNotFoundError", "EntryNotFoundError", "RemoteEntryNotFoundError",
                "RevisionNotFoundError") or status_code == 404:
        return HubError(f"{what} was not found on {settings.hf_endpoint} ({name}): the catalogue may be out of date.")
    if name == "GatedRepoError" or status_code in (401, 403):
        return HubError(f"{what} needs a login on the hub ({status_code}); the catalogue lists only ungated models.")
    return HubUnreachable(f"The model hub at {settings.hf_endpoint} could not be reached ({name}: {exc}). "
                          + by_hand(settings))


def remote_file(settings: Settings, repo: str, file: str, revision: str = "main") -> RemoteFile:
    """What the hub says about one file: size, commit and checksum (HEAD on its /resolve URL)."""
    if settings.hf_offline:
        raise HubUnreachable("HF_HUB_OFFLINE is set, so the model hub is not contacted. Unset it to download. "
                             + by_hand(settings))
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo, file, revision=revision, endpoint=settings.hf_endpoint)
    try:
        meta = get_hf_file_metadata(url, timeout=20)
    except Exception as exc:  # every failure to reach or read the hub is reported, never raised raw
        raise _hub_error(exc, settings, f"{repo}/{file}") from exc
    etag = (meta.etag or "").lower()
    if meta.size is None or not meta.commit_hash:
        raise HubError(f"{url} did not answer like the model hub (no size or commit): check HF_ENDPOINT.")
    return RemoteFile(repo, file, revision, meta.commit_hash, int(meta.size),
                      etag if SHA256.match(etag) else None, etag if GIT_SHA1.match(etag) else None,
                      meta.location or url)


def _free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def _check_disk(folder: Path, needed: int, what: str) -> None:
    free = _free_bytes(folder)
    if free < needed + DISK_MARGIN:
        raise NotEnoughDisk(f"Not enough free disk space for {what}: it needs {needed / 1e9:.2f} GB more and "
                            f"{DISK_MARGIN / 1e6:.0f} MB to spare, and {folder} has {free / 1e9:.2f} GB free. Free "
                            "some space (or remove a downloaded model) and try again.")


def file_sha256(path: Path, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _Quiet:
    """A progress bar that shows nothing: our own progress goes to status.json and the caller."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _fetch(remote: RemoteFile, part: Path, tracker: _Tracker) -> None:
    """Bring `part` to the remote file's size, resuming from what it holds (Range), through huggingface_hub."""
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    have = part.stat().st_size if part.exists() else 0
    if have > remote.size:  # longer than the file: not a prefix of it
        part.unlink()
        have = 0
    tracker.file = remote.file
    if have == remote.size:
        return
    out = _PartFile(part, tracker)
    try:
        http_get(remote.url, out, resume_size=have, headers=build_hf_headers(), expected_size=remote.size,
                 displayed_filename=remote.file, tqdm_class=_Quiet)  # type: ignore[arg-type]
    except DownloadCancelled:
        raise
    except OSError as exc:
        raise HubUnreachable(f"The download of {remote.file} stopped ({exc}); what arrived is kept, and downloading "
                             "again resumes from there.") from exc
    except Exception as exc:
        raise _hub_error(exc, _SETTINGS_FOR_ERRORS.get(), remote.file) from exc
    finally:
        out.close()


class _Current:
    """The settings of the download in progress in this thread, for error messages raised deep inside."""

    def __init__(self) -> None:
        self.local = threading.local()

    def get(self) -> Settings:
        return getattr(self.local, "settings", Settings())

    @contextlib.contextmanager
    def using(self, settings: Settings) -> Iterator[None]:
        self.local.settings = settings
        try:
            yield
        finally:
            self.local.settings = None


_SETTINGS_FOR_ERRORS = _Current()


def _verify(path: Path, remote: RemoteFile, tracker: _Tracker) -> str:
    """The file's SHA-256, after checking it (or its git blob id) against the hub's; a mismatch deletes it."""
    tracker.report("verifying", force=True)
    actual = file_sha256(path)
    if remote.sha256 is not None and actual != remote.sha256:
        path.unlink(missing_ok=True)
        raise ChecksumMismatch(f"{remote.file} does not match the hub's checksum (SHA-256 {actual[:12]}… against "
                               f"{remote.sha256[:12]}… expected): it was deleted and nothing was installed. Try "
                               "again; if it happens again, the file on the hub or a proxy is at fault.")
    if remote.sha256 is None and remote.git_sha1 is not None and git_blob_sha1(path) != remote.git_sha1:
        path.unlink(missing_ok=True)
        raise ChecksumMismatch(f"{remote.file} does not match the hub's git blob id: it was deleted; try again.")
    if remote.sha256 is None and remote.git_sha1 is None:
        path.unlink(missing_ok=True)
        raise ChecksumMismatch(f"The hub gave no checksum for {remote.file} (neither a SHA-256 nor a git blob id "
                               "in its ETag), so it could not be checked and was not installed.")
    return actual


def _staging(data_dir: str | Path, key: str, remotes: list[RemoteFile]) -> Path:
    """The download folder of `key`; parts fetched for another version of the files are discarded."""
    folder = downloads_dir(data_dir) / key
    folder.mkdir(parents=True, exist_ok=True)
    want = {r.file: {"size": r.size, "sha256": r.sha256, "git_sha1": r.git_sha1} for r in remotes}  # the content
    if _read_json(folder / "remote.json") != want:
        for part in folder.glob("*.part"):
            part.unlink()
        for sub in [p for p in folder.iterdir() if p.is_dir()]:
            shutil.rmtree(sub, ignore_errors=True)
        _write_json(folder / "remote.json", want)
    return folder


def _part_path(folder: Path, file: str) -> Path:
    return folder / (file.replace("/", "__") + ".part")


def _run(tracker: _Tracker, work: Callable[[], Installed | Path]) -> Any:
    try:
        result = work()
    except HubError as exc:
        tracker.report("cancelled" if isinstance(exc, DownloadCancelled) else "failed", force=True,
                       error=str(exc), reason=exc.reason)
        raise
    except BaseException as exc:
        tracker.report("failed", force=True, error=f"{type(exc).__name__}: {exc}", reason="failed")
        raise
    tracker.report("done", force=True)
    return result


def pull(settings: Settings, name: str, progress: Callable[[Progress], None] | None = None,
         cancel: threading.Event | None = None) -> Installed:
    """Download a catalogue model's GGUF into the data folder, resuming and checking it (see the module's doc)."""
    from lib.model_catalogue import find

    model = find(name)
    if model.bundled:
        raise ConfigError(f"{name} ships with the app: there is nothing to download.")
    done = installed_model(settings.data_dir, name)
    if done is not None:
        return done
    folder = downloads_dir(settings.data_dir) / name
    with _locked(folder, name), _SETTINGS_FOR_ERRORS.using(settings):
        tracker = _Tracker(folder, name, progress, cancel)
        tracker.report("starting", force=True)

        def work() -> Installed:
            remote = remote_file(settings, model.repo, model.file, model.revision)
            if remote.sha256 is None:
                raise ChecksumMismatch(f"The hub gave no SHA-256 for {model.repo}/{model.file} (it is not stored in "
                                       "LFS?), so it cannot be checked; nothing was downloaded.")
            staging = _staging(settings.data_dir, name, [remote])
            part = _part_path(staging, remote.file)
            have = part.stat().st_size if part.exists() else 0
            tracker.total, tracker.done, tracker.start_bytes = remote.size, have, have
            _check_disk(models_dir(settings.data_dir), remote.size - have, f"{name} ({remote.size / 1e9:.2f} GB)")
            tracker.report("downloading", force=True)
            _fetch(remote, part, tracker)
            digest = _verify(part, remote, tracker)
            return _install(settings.data_dir, name, part, {
                "name": name, "repo": model.repo, "file": model.file, "revision": model.revision,
                "commit": remote.commit, "sha256": digest, "bytes": remote.size, "source": "hub",
                "endpoint": settings.hf_endpoint, "downloaded_at": time.time()})

        result = _run(tracker, work)
    shutil.rmtree(folder, ignore_errors=True)
    return result  # type: ignore[no-any-return]


def _install(data_dir: str | Path, name: str, part: Path, manifest: dict[str, Any]) -> Installed:
    """Move a checked file into place, then write its manifest (from then on it is listed)."""
    folder = models_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.gguf"
    os.replace(part, target)
    os.chmod(target, 0o644)
    _write_json(folder / f"{name}.json", manifest)
    found = installed_model(data_dir, name)
    if found is None:
        raise HubError(f"{name} was downloaded but could not be recorded in {folder}.")
    return found


def pull_training(settings: Settings, name: str, progress: Callable[[Progress], None] | None = None,
                  cancel: threading.Event | None = None) -> Path:
    """Download a catalogue model's weights for training (safetensors, config, tokenizer) with the same rules."""
    from lib.model_catalogue import find

    model = find(name)
    spec = model.training
    if spec is None or not spec.repo:
        raise ConfigError(f"{name} cannot be fine-tuned locally in this app: "
                          + (model.notes if spec is None else "it is trained from its GGUF, nothing to download."))
    ready = training_dir(settings.data_dir, name)
    if ready is not None:
        return ready
    key = f"{name}.train"
    folder = downloads_dir(settings.data_dir) / key
    with _locked(folder, key), _SETTINGS_FOR_ERRORS.using(settings):
        tracker = _Tracker(folder, key, progress, cancel)
        tracker.report("starting", force=True)

        def work() -> Path:
            remotes = []
            for file in (*spec.files, *spec.optional):
                try:
                    remotes.append(remote_file(settings, spec.repo, file, "main"))
                except HubError as exc:
                    if file in spec.optional and "was not found" in str(exc):
                        continue
                    raise
            staging = _staging(settings.data_dir, key, remotes)
            parts = {r.file: _part_path(staging, r.file) for r in remotes}
            have = sum(p.stat().st_size for p in parts.values() if p.exists())
            total = sum(r.size for r in remotes)
            tracker.total, tracker.done, tracker.start_bytes = total, have, have
            _check_disk(models_dir(settings.data_dir), total - have, f"{name}'s training weights "
                                                                     f"({total / 1e9:.2f} GB)")
            checked: dict[str, str] = {}
            for r in remotes:
                part = parts[r.file]
                _fetch(r, part, tracker)
                checked[r.file] = _verify(part, r, tracker)
            target = models_dir(settings.data_dir) / f"{name}.train"
            build = Path(tempfile.mkdtemp(dir=models_dir(settings.data_dir), prefix=f".{name}.train-"))
            try:
                for r in remotes:
                    os.replace(parts[r.file], build / r.file)
                _write_json(build / "manifest.json", {
                    "name": name, "repo": spec.repo, "files": {r.file: {"sha256": checked[r.file], "bytes": r.size,
                                                                        "commit": r.commit} for r in remotes},
                    "endpoint": settings.hf_endpoint, "downloaded_at": time.time()})
                shutil.rmtree(target, ignore_errors=True)
                os.replace(build, target)
            finally:
                shutil.rmtree(build, ignore_errors=True)
            return target

        result = _run(tracker, work)
    shutil.rmtree(folder, ignore_errors=True)
    return result  # type: ignore[no-any-return]


# ---------------------------------------------------------------- a GGUF copied in by hand

def add_file(settings: Settings, source: str | Path, name: str | None = None,
             check: Callable[[Path], None] | None = None) -> Installed:
    """Copy a local .gguf into the data folder's models (for when the hub cannot be reached): its header is read,
    then `check` (by default: one token generated in the local model worker) must pass before it is listed."""
    from lib.gguf_meta import GGUFError, read_gguf

    src = Path(source).expanduser()
    if not src.is_file():
        raise ConfigError(f"{src} is not a file.")
    stem = re.sub(r"[^a-z0-9._-]+", "-", (name or src.stem).lower()).strip("-._") or "model"
    name = check_model_name(stem[:64])
    if installed_model(settings.data_dir, name) is not None:
        raise ConfigError(f"A model named {name!r} is already in {models_dir(settings.data_dir)}; remove it first or "
                          "choose another name.")
    folder = downloads_dir(settings.data_dir) / name
    with _locked(folder, name):
        _check_disk(models_dir(settings.data_dir), src.stat().st_size, src.name)
        part = folder / "copy.gguf"
        shutil.copyfile(src, part)
        try:
            info = read_gguf(part)
            if info.kind != "model":
                raise ConfigError(f"{src.name} is a GGUF {info.kind} (a LoRA adapter?), not a model.")
            if not info.has_chat_template:
                raise ConfigError(f"{src.name} has no chat template: use an instruction-tuned GGUF.")
            (check or _check_in_worker(settings))(part)
            digest = file_sha256(part)
            result = _install(settings.data_dir, name, part, {
                "name": name, "repo": "", "file": src.name, "revision": "", "commit": "", "sha256": digest,
                "bytes": part.stat().st_size, "source": "copied", "downloaded_at": time.time(),
                "params": info.params, "context": info.context_length, "architecture": info.architecture})
        except GGUFError as exc:
            raise ConfigError(f"{src.name} cannot be used: {exc}.") from exc
        finally:
            part.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    return result


def _check_in_worker(settings: Settings) -> Callable[[Path], None]:
    def check(path: Path) -> None:
        from lib.providers import Done, LocalLlama
        from lib.records import GenParams
        from lib.settings import ModelSpec

        provider = LocalLlama(ModelSpec("local", str(path)), threads=settings.n_threads,
                              extra_bufts=settings.llama_extra_bufts, max_ctx=min(settings.local_max_ctx, 1024))
        try:
            done = [e for e in provider.stream([{"role": "user", "content": "Say OK."}], GenParams(max_tokens=1))
                    if isinstance(e, Done)]
        except Exception as exc:
            raise ConfigError(f"{path.name} did not load in the local model worker: {exc}") from exc
        if not done:
            raise ConfigError(f"{path.name} loaded but generated nothing in the local model worker.")
    return check


# ---------------------------------------------------------------- downloads as background processes (the app)

def start_pull(settings: Settings, name: str, training: bool = False) -> int:
    """Start `python -m lib models pull NAME` in a process of its own (it outlives the page); returns its pid.
    Follow it with `status`, stop it with `cancel`."""
    key = f"{name}.train" if training else name
    current = status(settings.data_dir, key)
    if current is not None and current.active:
        raise DownloadBusy(f"{key} is already being downloaded.")
    folder = downloads_dir(settings.data_dir) / key
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "lib", "models", "pull", name, "--json", "--data-dir", str(settings.data_dir)]
    if training:
        cmd.append("--training")
    env = child_env(HF_ENDPOINT=settings.hf_endpoint, HF_HUB_OFFLINE="1" if settings.hf_offline else "0")
    with (folder / "log.txt").open("ab") as log:
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    _write_json(folder / "status.json", Progress(key, "starting", pid=proc.pid, updated_at=time.time()).to_dict())
    threading.Thread(target=proc.wait, name=f"reap-pull-{key}", daemon=True).start()
    return proc.pid


def cancel(data_dir: str | Path, key: str) -> bool:
    """Stop a download running in another process (SIGTERM: it records `cancelled`; its partial file stays)."""
    current = status(data_dir, key)
    if current is None or not current.active or not current.pid:
        return False
    try:
        os.kill(current.pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def discard(data_dir: str | Path, key: str) -> None:
    """Forget a stopped download and its partial file."""
    current = status(data_dir, key)
    if current is not None and current.active:
        raise DownloadBusy(f"{key} is still downloading: cancel it first.")
    shutil.rmtree(downloads_dir(data_dir) / key, ignore_errors=True)


# ---------------------------------------------------------------- measured speeds

def speeds(data_dir: str | Path) -> dict[str, dict[str, Any]]:
    return _read_json(models_dir(data_dir) / "speeds.json") or {}


def record_speed(data_dir: str | Path, name: str, measurement: dict[str, Any]) -> None:
    folder = models_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(downloads_dir(data_dir) / ".speeds", "speeds"):
        data = speeds(data_dir)
        data[name] = measurement
        _write_json(folder / "speeds.json", data)
