"""The base model for training: SmolLM2-135M-Instruct read by transformers from the
very GGUF that llama.cpp runs (its Q4_1/Q8_0 weights dequantized to float32).

Reading a GGUF with transformers is slow (its tokenizer is rebuilt in Python, about
a minute on 2 cores), so the converted model and tokenizer are cached in
`~/.cache/rag-vs-finetune/` under the GGUF's sha256; the cache only saves time and
holds exactly what the GGUF load gives. `TRAIN_CACHE_DIR` moves it; `cache=False` skips it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

# transformers module name in a Llama layer -> the llama.cpp GGUF tensor name (without "blk.N.").
GGUF_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundled_gguf() -> Path:
    from lib.providers import bundled_model_path

    return bundled_model_path()


def cache_root() -> Path:
    env = os.environ.get("TRAIN_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rag-vs-finetune"


def load_base(gguf_path: str | Path | None = None, cache: bool = True, sha256: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) in float32 on the CPU, in eval mode, from the GGUF (default: the bundled one)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(gguf_path) if gguf_path else bundled_gguf()
    cached = cache_root() / f"{path.stem}-{(sha256 or file_sha256(path))[:16]}" if cache else None
    if cached is not None and (cached / "config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(cached)
        model = AutoModelForCausalLM.from_pretrained(cached, dtype=torch.float32)
        return model.eval(), tokenizer
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    if cached is not None:
        _save_atomically(model, tokenizer, cached)
    return model.eval(), tokenizer


def load_pretrained(folder: str | Path) -> tuple[Any, Any]:
    """(model, tokenizer) in float32 on the CPU, in eval mode, from a folder of safetensors, config and tokenizer
    (a catalogue model's training weights, lib.modelhub.pull_training)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return model.eval(), tokenizer


def _save_atomically(model: Any, tokenizer: Any, target: Path) -> None:
    """Write the converted model next to `target`, then rename it into place (two writers never collide)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError:
        pass  # another process got there first, or the disk is full: the cache is only an optimisation
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def gguf_tensor_name(module_name: str) -> str:
    """'...layers.3.self_attn.v_proj' -> 'blk.3.attn_v.weight'."""
    parts = module_name.split(".")
    i = parts.index("layers")
    layer, rest = int(parts[i + 1]), ".".join(parts[i + 2:])
    if rest not in GGUF_NAMES:
        raise ValueError(f"{module_name}: no GGUF tensor for {rest!r}")
    return f"blk.{layer}.{GGUF_NAMES[rest]}.weight"
