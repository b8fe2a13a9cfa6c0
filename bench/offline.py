"""Keep the benchmark offline: refuse outbound connections, and give Chroma's
default embedder the model file and tokenizer our embedder uses, so it never downloads.
Nothing here imports Chroma at import time, so block_network() can run first."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from pathlib import Path
from typing import Any

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}


class NetworkBlocked(RuntimeError):
    """Something in the benchmark tried to reach the network."""


def _loopback(address: Any) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX paths and the like
        return True
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def block_network() -> None:
    """Set the offline variables and make any non-loopback connection raise NetworkBlocked."""
    for key, value in OFFLINE_ENV.items():
        os.environ[key] = value
    if getattr(socket.socket.connect, "_bench_guard", False):
        return
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if not _loopback(address):
            raise NetworkBlocked(f"the benchmark is offline; refused a connection to {address!r}")
        connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        if not _loopback(address):
            raise NetworkBlocked(f"the benchmark is offline; refused a connection to {address!r}")
        return connect_ex(self, address)

    guarded_connect._bench_guard = True  # type: ignore[attr-defined]
    socket.socket.connect = guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]


# all-MiniLM-L6-v2's own configuration (sentence-transformers/all-MiniLM-L6-v2 on the Hugging Face hub).
_CONFIG = {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 384, "num_hidden_layers": 6,
           "num_attention_heads": 12, "intermediate_size": 1536, "hidden_act": "gelu", "vocab_size": 30522,
           "max_position_embeddings": 512, "type_vocab_size": 2, "pad_token_id": 0, "layer_norm_eps": 1e-12}
_SPECIAL = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
            "mask_token": "[MASK]"}
_TOKENIZER_CONFIG = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "do_basic_tokenize": True,
                     "strip_accents": None, "tokenize_chinese_chars": True, "model_max_length": 512, **_SPECIAL}


def prepare_chroma_model_dir(folder: Path) -> Path:
    """Lay out, under folder, the `onnx/` files Chroma's default embedder looks for before it
    decides to download: our int8 model and tokenizer (linked), and minimal configs."""
    from lib.embeddings import TOKENIZER_FILE, model_file

    onnx = folder / "onnx"
    onnx.mkdir(parents=True, exist_ok=True)
    for name, target in (("model.onnx", model_file()), ("tokenizer.json", TOKENIZER_FILE)):
        link = onnx / name
        if not link.exists():
            link.symlink_to(Path(target).resolve())
    vocab = json.loads(TOKENIZER_FILE.read_text())["model"]["vocab"]
    (onnx / "vocab.txt").write_text("".join(f"{tok}\n" for tok, _ in sorted(vocab.items(), key=lambda kv: kv[1])))
    (onnx / "config.json").write_text(json.dumps(_CONFIG, indent=2))
    (onnx / "special_tokens_map.json").write_text(json.dumps(_SPECIAL, indent=2))
    (onnx / "tokenizer_config.json").write_text(json.dumps(_TOKENIZER_CONFIG, indent=2))
    return folder


def chroma_default_embedder(folder: Path) -> Any:
    """Chroma's default embedder (ONNXMiniLM_L6_V2), running from folder; a download attempt raises."""
    from chromadb.utils.embedding_functions import ONNXMiniLM_L6_V2

    embedder = ONNXMiniLM_L6_V2(preferred_providers=["CPUExecutionProvider"])
    embedder.DOWNLOAD_PATH = prepare_chroma_model_dir(folder)  # type: ignore[misc]

    def refuse(url: str, fname: str, chunk_size: int = 1024) -> None:
        raise NetworkBlocked(f"Chroma's embedder tried to download {url}: its files under {folder} are incomplete")

    embedder._download = refuse  # type: ignore[method-assign]
    embedder(["warm up"])  # loads the session; raises here rather than mid-benchmark if anything is missing
    if (folder / embedder.ARCHIVE_FILENAME).exists():
        raise NetworkBlocked(f"Chroma's embedder fetched {embedder.ARCHIVE_FILENAME}")
    return embedder
