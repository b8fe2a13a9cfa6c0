"""Export a peft LoRA of a Llama-architecture model (SmolLM2) or a Qwen2 one as a llama.cpp LoRA adapter (GGUF).

What llama.cpp expects (src/llama-adapter.cpp, and convert_lora_to_gguf.py which writes it):
- metadata `general.type = "adapter"`, `general.architecture` = the base model's
  (`llama`), `adapter.type = "lora"` and `adapter.lora.alpha` (float; the scale applied
  is alpha / rank, the same as peft's `lora_alpha / r`);
- for each adapted weight `W` named as in the base GGUF (`blk.N.attn_v.weight`), two
  tensors `blk.N.attn_v.weight.lora_a` and `.lora_b` holding peft's `lora_A.weight`
  (rank x in) and `lora_B.weight` (out x rank) unchanged: numpy's row-major (rank, in)
  is ggml's ne = [in, rank], so `a->ne[0]` equals `W->ne[0]` and `a->ne[1] == b->ne[0]`
  as llama.cpp checks;
- llama.cpp's conversion of Llama permutes the rows of the q and k projections (rotary
  halves interleaved per head), so W_q' = P W_q and the LoRA delta P (B A) needs B's rows
  permuted the same way; A is unchanged. Qwen2's conversion does not permute them (its
  rotary layout is llama.cpp's NEOX mode), so its deltas are written as they are. The
  tensor names (blk.N.attn_v, ffn_down, ...) are the same for both architectures.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from training.base_model import gguf_tensor_name


def permute_rows(weights: np.ndarray, n_head: int) -> np.ndarray:
    """The row permutation convert_hf_to_gguf.py applies to Llama's q_proj/k_proj (LlamaModel.permute)."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


PERMUTED_QK = {"llama"}  # architectures whose q/k rows convert_hf_to_gguf.py permutes (Qwen2's it leaves as they are)


def lora_tensors(peft_model: Any, arch: str = "llama") -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], float, int]:
    """{GGUF weight name: (A, B)} in float32 with q/k permuted as the base GGUF's were, plus (alpha, rank)."""
    config = peft_model.get_base_model().config
    lora_config = peft_model.peft_config["default"]
    if getattr(lora_config, "use_rslora", False) or getattr(lora_config, "use_dora", False):
        raise ValueError("llama.cpp adapters support plain LoRA only (no rsLoRA or DoRA)")
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, module in peft_model.named_modules():
        if not hasattr(module, "lora_A") or "default" not in module.lora_A:
            continue
        a = module.lora_A["default"].weight.detach().float().cpu().numpy()
        b = module.lora_B["default"].weight.detach().float().cpu().numpy()
        if arch in PERMUTED_QK and name.endswith("q_proj"):
            b = permute_rows(b, config.num_attention_heads)
        elif arch in PERMUTED_QK and name.endswith("k_proj"):
            b = permute_rows(b, config.num_key_value_heads)
        out[gguf_tensor_name(name)] = (a, b)
    if not out:
        raise ValueError("the model has no LoRA layers to export")
    return out, float(lora_config.lora_alpha), int(lora_config.r)


SUPPORTED_ARCHS = ("llama", "qwen2")  # whose tensor names and layouts this export is known to match


def write_adapter(peft_model: Any, path: str | Path, dtype: str = "f16", name: str = "", arch: str = "llama") -> int:
    """Write the adapter atomically (a temporary file renamed into place); returns its size in bytes. `arch` is the
    base GGUF's architecture: llama.cpp refuses an adapter whose architecture differs from its model's."""
    import gguf

    if arch not in SUPPORTED_ARCHS:
        raise ValueError(f"exporting a LoRA for the {arch!r} architecture is not supported (only "
                         f"{', '.join(SUPPORTED_ARCHS)})")
    tensors, alpha, _rank = lora_tensors(peft_model, arch)
    np_type = {"f16": np.float16, "f32": np.float32}[dtype]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; an adapter is an ordinary file
        writer = gguf.GGUFWriter(tmp, arch=arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        if name:
            writer.add_name(name)
        for tensor_name, (a, b) in sorted(tensors.items(), key=lambda kv: _natural_key(kv[0])):
            writer.add_tensor(f"{tensor_name}.lora_a", np.ascontiguousarray(a.astype(np_type)))
            writer.add_tensor(f"{tensor_name}.lora_b", np.ascontiguousarray(b.astype(np_type)))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path.stat().st_size


def read_adapter(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(metadata, tensors) of a GGUF adapter, for checks and tests."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    meta: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        value = field.contents()
        meta[key] = value
    tensors = {t.name: np.asarray(t.data) for t in reader.tensors}
    return meta, tensors


def _natural_key(name: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in name.split("."))
