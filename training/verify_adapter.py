"""Check that llama.cpp with the exported GGUF adapter computes what the trained LoRA computes.

    python -m training.verify_adapter --adapter assets/adapters/quillmere-smollm2-lora.gguf --prompts 3

The reference is transformers: the base GGUF dequantized to float32, with the adapter's
LoRA (read back from the GGUF file, q/k rows un-permuted) merged into its weights. llama.cpp
runs the same GGUF, Q4_1 weights, with the adapter applied at run time. For each chat prompt
(rendered by the GGUF's chat template, identical token ids on both sides, checked) it reports:

- greedy generation: the tokens that llama.cpp and transformers generate (N new tokens);
- teacher forcing on transformers' greedy continuation: top-1 agreement and the Pearson
  correlation of the logits at each position, for the base model and for base + adapter;
- the adapter's own effect, (logits with adapter - logits without) in llama.cpp against the
  same difference in transformers: correlated if the export (names, orientation, scale and
  q/k permutation) is right, uncorrelated if it is not (quantization noise mostly cancels);
- whether the adapter changes llama.cpp's greedy output at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.gguf_lora import permute_rows, read_adapter

QUESTIONS_FILE = Path(__file__).resolve().parent.parent / "sample_docs" / "questions.jsonl"


def default_questions(n: int) -> list[str]:
    """The first n evaluation questions of the sample corpus (held out from training)."""
    lines = QUESTIONS_FILE.read_text().splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()][:n]


@dataclass
class PromptReport:
    prompt: str
    prompt_tokens: int
    hf_text: str
    llama_text: str
    llama_base_text: str
    greedy_same_tokens: int  # positions where llama.cpp's greedy token equals transformers'
    greedy_common_prefix: int
    tf_top1_agree_lora: float  # teacher forcing on transformers' continuation
    tf_top1_agree_base: float
    tf_logit_corr_lora: float
    tf_logit_corr_base: float
    delta_corr: float  # corr(llama.cpp adapter effect, transformers adapter effect)
    adapter_changes_llama_output: bool


def merge_gguf_adapter(model: Any, adapter: Path) -> dict[str, Any]:
    """Add scale * B @ A from a llama.cpp adapter file to the transformers model's weights in place."""
    import torch

    from training.base_model import GGUF_NAMES

    meta, tensors = read_adapter(adapter)
    alpha = float(meta["adapter.lora.alpha"])
    config = model.config
    by_gguf = {v: k for k, v in GGUF_NAMES.items()}
    merged = 0
    for name in sorted(n for n in tensors if n.endswith(".lora_a")):
        weight = name[: -len(".lora_a")]
        a = tensors[name].astype(np.float32)
        b = tensors[weight + ".lora_b"].astype(np.float32)
        _, layer, short, _ = weight.split(".")
        module = by_gguf[short]
        if module == "self_attn.q_proj":  # undo llama.cpp's row permutation (inverse of permute_rows)
            b = _unpermute_rows(b, config.num_attention_heads)
        elif module == "self_attn.k_proj":
            b = _unpermute_rows(b, config.num_key_value_heads)
        target = model.get_submodule(f"model.layers.{layer}.{module}")
        rank = a.shape[0]
        with torch.no_grad():
            target.weight += torch.from_numpy((alpha / rank) * (b @ a))
        merged += 1
    return {"alpha": alpha, "merged_weights": merged, "architecture": meta.get("general.architecture"),
            "type": meta.get("general.type"), "adapter_type": meta.get("adapter.type")}


def _unpermute_rows(weights: np.ndarray, n_head: int) -> np.ndarray:
    rows = np.arange(weights.shape[0])
    order = permute_rows(rows, n_head)  # new row i holds old row order[i]
    out = np.empty_like(weights)
    out[order] = weights
    return out


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x.ravel().astype(np.float64), y.ravel().astype(np.float64)
    x, y = x - x.mean(), y - y.mean()
    denom = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denom) if denom else float("nan")


class LlamaRunner:
    """llama.cpp (through llama-cpp-python) with logits for every position."""

    def __init__(self, gguf: Path, lora: Path | None, n_ctx: int = 2048) -> None:
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(gguf), lora_path=str(lora) if lora else None, n_ctx=n_ctx,
                         logits_all=True, verbose=False, seed=0)

    def logits(self, tokens: list[int]) -> np.ndarray:
        self.llm.reset()
        self.llm.eval(tokens)
        return np.array(self.llm.scores[: len(tokens)], dtype=np.float32)

    def greedy(self, prompt: list[int], n: int) -> list[int]:
        out: list[int] = []
        self.llm.reset()
        self.llm.eval(prompt)
        eos = self.llm.token_eos()
        for _ in range(n):
            token = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
            if token == eos:
                break
            out.append(token)
            self.llm.eval([token])
        return out


def hf_logits(model: Any, tokens: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor([tokens])).logits[0].float().numpy()


def hf_greedy(model: Any, prompt: list[int], n: int, eos: int) -> list[int]:
    import torch

    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             max_new_tokens=n, do_sample=False, eos_token_id=eos, pad_token_id=eos)
    ids = [int(t) for t in out[0, len(prompt):]]
    return ids[: ids.index(eos)] if eos in ids else ids


def verify(adapter: Path, questions: Sequence[str], new_tokens: int = 24, base: Path | None = None) -> dict[str, Any]:
    import copy

    from lib.arms import build_prompt
    from training.base_model import bundled_gguf, load_base
    from training.train_lora import render

    gguf = base or bundled_gguf()
    hf_base, tokenizer = load_base(gguf)
    hf_lora = copy.deepcopy(hf_base)
    info = merge_gguf_adapter(hf_lora, adapter)
    llama_lora = LlamaRunner(gguf, adapter)
    llama_base = LlamaRunner(gguf, None)
    eos = int(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    reports: list[PromptReport] = []
    for question in questions:
        messages = build_prompt(question, None).messages()
        text = render(tokenizer, messages, add_generation_prompt=True)
        prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
        llama_prompt = llama_lora.llm.tokenize(text.encode(), add_bos=False, special=True)
        if list(prompt) != list(llama_prompt):
            raise AssertionError(f"tokenizers disagree on the prompt for {question!r}")

        hf_out = hf_greedy(hf_lora, prompt, new_tokens, eos)
        ll_out = llama_lora.greedy(prompt, new_tokens)
        ll_base_out = llama_base.greedy(prompt, new_tokens)
        same = sum(1 for x, y in zip(hf_out, ll_out, strict=False) if x == y)
        prefix = next((i for i, (x, y) in enumerate(zip(hf_out, ll_out, strict=False)) if x != y),
                      min(len(hf_out), len(ll_out)))

        # Teacher forcing on transformers' continuation: positions from the last prompt token on.
        seq = prompt + hf_out
        span = slice(len(prompt) - 1, len(seq) - 1) if hf_out else slice(len(prompt) - 1, len(prompt))
        hl, hb = hf_logits(hf_lora, seq)[span], hf_logits(hf_base, seq)[span]
        ll, lb = llama_lora.logits(seq)[span], llama_base.logits(seq)[span]
        reports.append(PromptReport(
            prompt=question, prompt_tokens=len(prompt),
            hf_text=tokenizer.decode(hf_out), llama_text=tokenizer.decode(ll_out),
            llama_base_text=tokenizer.decode(ll_base_out),
            greedy_same_tokens=same, greedy_common_prefix=prefix,
            tf_top1_agree_lora=float((hl.argmax(-1) == ll.argmax(-1)).mean()),
            tf_top1_agree_base=float((hb.argmax(-1) == lb.argmax(-1)).mean()),
            tf_logit_corr_lora=_corr(hl, ll), tf_logit_corr_base=_corr(hb, lb),
            delta_corr=_corr(hl - hb, ll - lb), adapter_changes_llama_output=ll_out != ll_base_out))
    summary = {
        "adapter": str(adapter), **info, "new_tokens": new_tokens, "prompts": len(reports),
        "greedy_token_agreement": sum(r.greedy_same_tokens for r in reports)
        / max(1, sum(max(len(tokenizer(r.hf_text, add_special_tokens=False)["input_ids"]), 1) for r in reports)),
        "tf_top1_agree_lora": float(np.mean([r.tf_top1_agree_lora for r in reports])),
        "tf_top1_agree_base": float(np.mean([r.tf_top1_agree_base for r in reports])),
        "tf_logit_corr_lora": float(np.mean([r.tf_logit_corr_lora for r in reports])),
        "tf_logit_corr_base": float(np.mean([r.tf_logit_corr_base for r in reports])),
        "delta_corr": float(np.mean([r.delta_corr for r in reports])),
        "adapter_changes_llama_output": sum(r.adapter_changes_llama_output for r in reports),
    }
    return {"summary": summary, "prompts": [asdict(r) for r in reports]}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.verify_adapter", description=__doc__.split("\n\n")[0])
    p.add_argument("--adapter", type=Path, required=True)
    p.add_argument("--prompts", type=int, default=3, help="how many questions of sample_docs/questions.jsonl")
    p.add_argument("--question", action="append", default=[], help="a question to use instead of the defaults")
    p.add_argument("--tokens", type=int, default=24, help="new tokens per prompt")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    a = p.parse_args(argv)
    questions = a.question or default_questions(a.prompts)
    result = verify(a.adapter, questions, a.tokens)
    if a.json:
        print(json.dumps(result, indent=1))
        return 0
    for r in result["prompts"]:
        print(f"\nQ: {r['prompt']}  ({r['prompt_tokens']} prompt tokens)")
        print(f"  transformers+LoRA : {r['hf_text']!r}")
        print(f"  llama.cpp+LoRA    : {r['llama_text']!r}")
        print(f"  llama.cpp base    : {r['llama_base_text']!r}")
        print(f"  greedy tokens equal {r['greedy_same_tokens']} (common prefix {r['greedy_common_prefix']}); "
              f"teacher-forced top-1 agreement {r['tf_top1_agree_lora']:.2f} (base {r['tf_top1_agree_base']:.2f}), "
              f"logit corr {r['tf_logit_corr_lora']:.4f} (base {r['tf_logit_corr_base']:.4f}), "
              f"adapter-effect corr {r['delta_corr']:.3f}")
    print("\nsummary:", json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
