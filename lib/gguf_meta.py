"""What a GGUF file says about itself, read from its header without loading any weights:
architecture, context window, parameter count (the sum of its tensors' element counts), whether
it carries a chat template, and the shapes that size the KV cache.

The GGUF header (ggml's docs/gguf.md): magic `GGUF`, version (uint32), tensor count and
metadata count (uint64; uint32 in version 1), then the metadata as key/typed-value pairs, then
one record per tensor (name, dimensions, type, offset). Reading it is a few milliseconds even
for a 150,000-token vocabulary, so the app reads it rather than trusting a model's name.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"GGUF"
# value type -> struct format of one scalar (8: string, 9: array are read apart)
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


class GGUFError(ValueError):
    """The file is not a GGUF model this app can read; the message says why."""


@dataclass(frozen=True)
class GGUFInfo:
    path: str
    size_bytes: int
    version: int
    architecture: str
    kind: str  # general.type: "model" or "adapter"
    name: str
    params: int  # elements in all tensors (what "135M" or "1.5B" counts)
    context_length: int | None  # the window the model was trained for ({arch}.context_length)
    block_count: int | None
    head_count: int | None
    head_count_kv: int | None
    embedding_length: int | None
    file_type: int | None
    has_chat_template: bool
    license: str

    @property
    def kv_bytes_per_token(self) -> int | None:
        """Bytes of llama.cpp's f16 KV cache per token of context (keys and values, every layer)."""
        if not (self.block_count and self.head_count and self.embedding_length):
            return None
        head_dim = self.embedding_length // self.head_count
        return 2 * self.block_count * (self.head_count_kv or self.head_count) * head_dim * 2


def params_label(params: int | None) -> str:
    """135M, 494M, 1.5B: the way model cards write a parameter count."""
    if not params:
        return "unknown size"
    if params >= 1e9:
        return f"{params / 1e9:.1f}B"
    return f"{params / 1e6:.0f}M"


class _Reader:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f

    def take(self, fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        data = self.f.read(size)
        if len(data) != size:
            raise GGUFError("the file ends inside its header (an incomplete download?)")
        return struct.unpack("<" + fmt, data)[0]

    def string(self, length_fmt: str) -> str:
        n = self.take(length_fmt)
        if n > 1 << 26:
            raise GGUFError("the header has an implausible string length")
        data = self.f.read(n)
        if len(data) != n:
            raise GGUFError("the file ends inside its header (an incomplete download?)")
        return data.decode("utf-8", errors="replace")

    def skip(self, n: int) -> None:
        self.f.seek(n, 1)

    def value(self, kind: int, length_fmt: str) -> Any:
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == _STRING:
            return self.string(length_fmt)
        if kind == _ARRAY:
            item, count = self.take("I"), self.take(length_fmt)
            if item in _SCALARS:  # fixed size: jump over it
                self.skip(struct.calcsize("<" + _SCALARS[item]) * count)
                return None
            if item == _STRING:
                for _ in range(count):
                    self.skip(self.take(length_fmt))
                return None
            for _ in range(count):
                self.value(item, length_fmt)
            return None
        raise GGUFError(f"unknown metadata value type {kind}")


def _read(path: Path) -> GGUFInfo:
    size = path.stat().st_size
    with path.open("rb") as raw:
        r = _Reader(raw)
        if raw.read(4) != MAGIC:
            raise GGUFError(f"{path.name} is not a GGUF file (it does not start with 'GGUF')")
        version = r.take("I")
        if version not in (1, 2, 3):
            raise GGUFError(f"{path.name} is GGUF version {version}, which this app cannot read")
        count_fmt = "I" if version == 1 else "Q"
        n_tensors, n_kv = r.take(count_fmt), r.take(count_fmt)
        meta: dict[str, Any] = {}
        for _ in range(n_kv):
            key = r.string(count_fmt)
            meta[key] = r.value(r.take("I"), count_fmt)
        params = 0
        for _ in range(n_tensors):
            r.skip(r.take(count_fmt))  # the tensor's name
            dims = [r.take(count_fmt) for _ in range(r.take("I"))]
            r.take("I")  # ggml type
            r.take("Q")  # offset
            n = 1
            for d in dims:
                n *= d
            params += n
    arch = str(meta.get("general.architecture") or "")

    def arch_int(key: str) -> int | None:
        v = meta.get(f"{arch}.{key}")
        return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    return GGUFInfo(
        path=str(path), size_bytes=size, version=version, architecture=arch,
        kind=str(meta.get("general.type") or "model"), name=str(meta.get("general.name") or path.stem),
        params=params, context_length=arch_int("context_length"), block_count=arch_int("block_count"),
        head_count=arch_int("attention.head_count"), head_count_kv=arch_int("attention.head_count_kv"),
        embedding_length=arch_int("embedding_length"),
        file_type=int(meta["general.file_type"]) if isinstance(meta.get("general.file_type"), int) else None,
        has_chat_template=isinstance(meta.get("tokenizer.chat_template"), str),
        license=str(meta.get("general.license") or ""))


_cache: dict[tuple[str, int, int], GGUFInfo] = {}
_guard = threading.Lock()


def read_gguf(path: str | Path) -> GGUFInfo:
    """The header facts of a GGUF file (cached per path, size and modification time)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise GGUFError(f"{p} cannot be read: {exc.strerror or exc}") from exc
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    with _guard:
        if key in _cache:
            return _cache[key]
    try:
        info = _read(p)
    except struct.error as exc:
        raise GGUFError(f"{p.name} has a damaged GGUF header ({exc})") from exc
    except OSError as exc:
        raise GGUFError(f"{p} cannot be read: {exc.strerror or exc}") from exc
    with _guard:
        _cache[key] = info
    return info
