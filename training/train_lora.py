"""Train a LoRA adapter for the bundled SmolLM2-135M-Instruct (or, with --base and --base-dir, a model of the
catalogue downloaded with its training weights) and export it for llama.cpp.

    python -m training.train_lora --data training/data/train.jsonl \
        --out assets/adapters/quillmere-smollm2-lora.gguf --steps 120 --seed 42

- The base model is the GGUF that the app runs, read by transformers (dequantized to
  float32; see training/base_model.py), so the adapter is trained on the weights it is used with.
- Each example (OpenAI chat JSONL: {"messages": [...]}) is rendered with the GGUF's own
  chat template, exactly as lib.providers.LocalLlama renders a prompt; the loss covers the
  assistant turns only (their text and the closing <|im_end|>), never the prompt.
- Deterministic: one seed for torch, Python and numpy, a seeded data order (shuffled per
  epoch, batched by similar length), and CPU kernels.
- Outputs, each written atomically (temporary file, then rename), so a failure or a
  cancel (SIGTERM) never leaves a half-written file: the adapter (GGUF, f16), a JSON
  sidecar next to it (`<adapter>.json`: data, hyper-parameters, versions, results), and
  with --progress-file a JSON status rewritten after every step.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

IGNORE = -100
DEFAULT_TARGETS = ("v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ALL_TARGETS = ("q_proj", "k_proj", *DEFAULT_TARGETS)


class Cancelled(BaseException):
    """Raised in the training process on SIGTERM (the app's Cancel button)."""


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE where the loss does not apply

    @property
    def trained_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


@dataclass
class Progress:
    """The JSON status the app polls: rewritten atomically so a reader never sees half a file."""

    path: Path | None
    total_steps: int
    started: float = field(default_factory=time.time)
    losses: list[float] = field(default_factory=list)
    train_started: float | None = None

    def write(self, status: str, **extra: Any) -> None:
        if self.path is None:
            return
        now = time.time()
        step = len(self.losses)
        per_step = (now - self.train_started) / step if self.train_started and step else None
        data: dict[str, Any] = {
            "status": status, "step": step, "total_steps": self.total_steps,
            "loss": self.losses[-1] if self.losses else None,
            "elapsed_s": round(now - self.started, 2),
            "eta_s": round(per_step * (self.total_steps - step), 1) if per_step is not None else None,
            "losses": [round(x, 5) for x in self.losses], **extra,
        }
        write_json_atomically(self.path, data)


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- data

def read_examples(path: Path) -> list[list[dict[str, Any]]]:
    """The `messages` of each line of an OpenAI chat JSONL file."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        item = json.loads(line)
        messages = item.get("messages") if isinstance(item, dict) else None
        if not isinstance(messages, list) or not any(m.get("role") == "assistant" for m in messages):
            raise ValueError(f"{path}:{n}: expected {{\"messages\": [...]}} with an assistant message")
        out.append(messages)
    if not out:
        raise ValueError(f"{path}: no examples")
    return out


def render(tokenizer: Any, messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    return str(tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=add_generation_prompt))


def encode(tokenizer: Any, messages: list[dict[str, Any]]) -> Encoded:
    """Token ids of the rendered conversation, with labels on the assistant turns only.

    The text is cut where generation would start (after the template's assistant header) and
    each piece is tokenised on its own, as llama.cpp sees a prompt and then generates. An
    assistant message with "weight": 0 (OpenAI's convention) is not trained on."""
    ids: list[int] = []
    labels: list[int] = []
    done = ""

    def add(text: str, train: bool) -> None:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        ids.extend(piece)
        labels.extend(piece if train else [IGNORE] * len(piece))

    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(tokenizer, messages[:i], add_generation_prompt=True)
        full = render(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise ValueError("the chat template does not render a conversation as a sequence of turns")
        answer = full[len(prompt):]
        # Train on the answer and its end-of-turn token, not on the template's newline after it.
        tail = len(answer) - len(answer.rstrip("\n"))
        add(prompt[len(done):], False)
        add(answer[: len(answer) - tail], message.get("weight", 1) != 0)
        add(answer[len(answer) - tail:], False)
        done = full
    return Encoded(ids, labels)


def epoch_batches(lengths: Sequence[int], batch: int, rng: random.Random) -> list[list[int]]:
    """One epoch: shuffle, group examples of similar length (less padding), shuffle the batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch * 8
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: lengths[i])
        batches += [chunk[j:j + batch] for j in range(0, len(chunk), batch)]
    rng.shuffle(batches)
    return batches


def batch_stream(lengths: Sequence[int], batch: int, seed: int) -> Iterator[list[int]]:
    rng = random.Random(seed)
    while True:
        yield from epoch_batches(lengths, batch, rng)


def collate(items: list[Encoded], pad_id: int) -> tuple[Any, Any, Any]:
    import torch

    width = max(len(x.input_ids) for x in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, x in enumerate(items):
        n = len(x.input_ids)
        ids[row, :n] = torch.tensor(x.input_ids)
        labels[row, :n] = torch.tensor(x.labels)
        mask[row, :n] = 1
    return ids, labels, mask


def assistant_loss(causal_lm: Any, ids: Any, labels: Any, mask: Any) -> Any:
    """Mean cross-entropy over the labelled tokens; the vocabulary projection runs only
    where a label is (a fifth of the model's compute saved on prompt-heavy batches)."""
    import torch.nn.functional as F

    hidden = causal_lm.model(input_ids=ids, attention_mask=mask).last_hidden_state
    target = labels[:, 1:]
    keep = target != IGNORE
    logits = causal_lm.lm_head(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), target[keep])


# ---------------------------------------------------------------- training

@dataclass(frozen=True)
class Options:
    data: Path
    out: Path
    steps: int
    seed: int = 42
    rank: int = 16
    alpha: float | None = None  # default: 2 x rank
    lr: float = 2e-4
    batch: int = 4
    max_len: int = 512
    targets: tuple[str, ...] = DEFAULT_TARGETS
    dropout: float = 0.0
    warmup: int | None = None  # default: 5% of the steps
    base: Path | None = None  # default: the bundled GGUF
    base_dir: Path | None = None  # the same model's weights as transformers saves them (a catalogue model's .train/)
    progress_file: Path | None = None
    threads: int | None = None
    cache: bool = True

    @property
    def lora_alpha(self) -> float:
        return float(self.alpha) if self.alpha is not None else 2.0 * self.rank


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def lr_at(step: int, opts: Options) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    warmup = opts.warmup if opts.warmup is not None else max(1, round(opts.steps * 0.05))
    if step < warmup:
        return opts.lr * (step + 1) / warmup
    t = (step - warmup) / max(1, opts.steps - warmup)
    return opts.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def train(opts: Options) -> dict[str, Any]:
    """Train, export the adapter and its sidecar; returns the sidecar's content."""
    progress = Progress(opts.progress_file, opts.steps)
    progress.write("loading")
    import torch
    from peft import LoraConfig, get_peft_model

    from training.base_model import bundled_gguf, file_sha256, load_base, load_pretrained

    if opts.threads:
        torch.set_num_threads(opts.threads)
    seed_everything(opts.seed)
    base_path = opts.base or bundled_gguf()
    base_sha = file_sha256(base_path)
    if opts.base_dir is not None:  # a downloaded model: trained on its safetensors, applied to its GGUF
        model, tokenizer = load_pretrained(opts.base_dir)
    else:
        model, tokenizer = load_base(base_path, cache=opts.cache, sha256=base_sha)

    conversations = read_examples(opts.data)
    encoded = [encode(tokenizer, c) for c in conversations]
    kept = [e for e in encoded if len(e.input_ids) <= opts.max_len and e.trained_tokens]
    if len(kept) < len(encoded):
        print(f"skipped {len(encoded) - len(kept)} of {len(encoded)} examples longer than {opts.max_len} tokens "
              "(or with nothing to train on)", flush=True)
    if not kept:
        raise ValueError(f"no example fits in {opts.max_len} tokens")

    config = LoraConfig(r=opts.rank, lora_alpha=opts.lora_alpha, lora_dropout=opts.dropout,
                        target_modules=list(opts.targets), bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    print(f"{len(kept)} examples, {sum(e.trained_tokens for e in kept)} trained tokens; LoRA r={opts.rank} "
          f"alpha={opts.lora_alpha:g} on {', '.join(opts.targets)}: {trainable:,} trainable parameters "
          f"of {total:,}", flush=True)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=opts.lr, weight_decay=0.0)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    causal_lm = model.get_base_model()
    batches = batch_stream([len(e.input_ids) for e in kept], opts.batch, opts.seed)
    model.train()
    progress.train_started = time.time()
    progress.write("training")
    for step in range(opts.steps):
        ids, labels, mask = collate([kept[i] for i in next(batches)], pad_id)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, opts)
        loss = assistant_loss(causal_lm, ids, labels, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        progress.losses.append(float(loss.item()))
        progress.write("training")
        if step == 0 or (step + 1) % 10 == 0 or step + 1 == opts.steps:
            print(f"step {step + 1}/{opts.steps} loss {progress.losses[-1]:.4f} "
                  f"({time.time() - progress.train_started:.0f}s)", flush=True)
    seconds = time.time() - progress.train_started
    model.eval()

    progress.write("exporting")
    with _sigterm_ignored():  # a second's work; a cancel now would leave an adapter without its sidecar
        return _export(opts, model, progress, base_path, base_sha, kept, len(encoded), trainable, seconds)


@contextlib.contextmanager
def _sigterm_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _export(opts: Options, model: Any, progress: Progress, base_path: Path, base_sha: str, kept: list[Encoded],
            n_read: int, trainable: int, seconds: float) -> dict[str, Any]:
    import peft
    import torch
    import transformers

    from lib.gguf_meta import read_gguf
    from training.base_model import file_sha256
    from training.gguf_lora import write_adapter

    size = write_adapter(model, opts.out, name=opts.out.stem, arch=read_gguf(base_path).architecture)
    last = progress.losses[-min(10, len(progress.losses)):]
    meta: dict[str, Any] = {
        "adapter": opts.out.name, "adapter_bytes": size, "adapter_sha256": file_sha256(opts.out),
        "base_model": base_path.name, "base_model_sha256": base_sha,
        "base_weights": str(opts.base_dir) if opts.base_dir else "dequantised from the base GGUF",
        "data": _display_path(opts.data), "data_sha256": file_sha256(opts.data),
        "examples": len(kept), "examples_skipped": n_read - len(kept),
        "trained_tokens": sum(e.trained_tokens for e in kept),
        "steps": opts.steps, "batch": opts.batch, "max_len": opts.max_len, "rank": opts.rank,
        "alpha": opts.lora_alpha, "dropout": opts.dropout, "lr": opts.lr, "seed": opts.seed,
        "schedule": "linear warm-up, cosine to 10%", "target_modules": list(opts.targets),
        "trainable_parameters": trainable, "final_loss": round(progress.losses[-1], 5),
        "final_loss_mean_last10": round(sum(last) / len(last), 5),
        "losses": [round(x, 5) for x in progress.losses],
        "train_seconds": round(seconds, 1), "seconds_per_step": round(seconds / opts.steps, 3),
        "threads": torch.get_num_threads(), "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "transformers": transformers.__version__, "peft": peft.__version__,
                     "gguf": _version("gguf")},
    }
    write_json_atomically(opts.out.with_name(opts.out.name + ".json"), meta)
    progress.write("done", adapter=str(opts.out), train_seconds=meta["train_seconds"])
    print(f"trained {opts.steps} steps in {seconds:.1f}s ({seconds / opts.steps:.2f}s/step); final loss "
          f"{progress.losses[-1]:.4f} (mean of last {len(last)}: {meta['final_loss_mean_last10']:.4f}); "
          f"{trainable:,} LoRA parameters; adapter {opts.out} ({size / 1e6:.1f} MB)", flush=True)
    return meta


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


# ---------------------------------------------------------------- CLI

def parse_args(argv: Sequence[str] | None = None) -> Options:
    p = argparse.ArgumentParser(prog="python -m training.train_lora", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="chat JSONL ({\"messages\": [...]} per line)")
    p.add_argument("--out", type=Path, required=True, help="adapter to write (.gguf); a .json sidecar goes next to it")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=None, help="LoRA alpha (default: 2 x rank)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--max-len", type=int, default=512, help="longer examples are skipped")
    p.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                   help=f"comma-separated modules among {','.join(ALL_TARGETS)}")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default: 5%% of --steps)")
    p.add_argument("--base", type=Path, default=None, help="base GGUF (default: the bundled SmolLM2)")
    p.add_argument("--base-dir", type=Path, default=None,
                   help="train on these weights (a folder with config.json and safetensors: the same model as --base)")
    p.add_argument("--progress-file", type=Path, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-cache", action="store_true", help="do not cache the converted base model")
    a = p.parse_args(argv)
    targets = tuple(t.strip() for t in a.targets.split(",") if t.strip())
    unknown = set(targets) - set(ALL_TARGETS)
    if unknown or not targets:
        p.error(f"--targets: unknown modules {sorted(unknown)}; choose among {','.join(ALL_TARGETS)}")
    if a.steps < 1 or a.rank < 1 or a.batch < 1:
        p.error("--steps, --rank and --batch must be positive")
    return Options(data=a.data, out=a.out, steps=a.steps, seed=a.seed, rank=a.rank, alpha=a.alpha, lr=a.lr,
                   batch=a.batch, max_len=a.max_len, targets=targets, dropout=a.dropout, warmup=a.warmup,
                   base=a.base, base_dir=a.base_dir, progress_file=a.progress_file, threads=a.threads,
                   cache=not a.no_cache)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Cancelled()


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    signal.signal(signal.SIGTERM, _on_sigterm)
    progress = Progress(opts.progress_file, opts.steps)
    try:
        train(opts)
    except (Cancelled, KeyboardInterrupt):
        _final_status(opts, progress, "cancelled")
        print("cancelled; no adapter was written", file=sys.stderr)
        return 130
    except Exception as exc:
        _final_status(opts, progress, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    return 0


def _final_status(opts: Options, fallback: Progress, status: str, **extra: Any) -> None:
    """Keep the last step's numbers in the status file and mark how it ended."""
    if opts.progress_file is None:
        return
    try:
        last = json.loads(opts.progress_file.read_text())
    except (OSError, json.JSONDecodeError):
        last = {"step": 0, "total_steps": fallback.total_steps, "loss": None, "elapsed_s": None, "eta_s": None}
    write_json_atomically(opts.progress_file, {**last, "status": status, "eta_s": None, **extra})


if __name__ == "__main__":
    sys.exit(main())
