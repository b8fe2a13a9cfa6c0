"""Fine-tune on this knowledge base in one action, without writing pairs by hand.

- With a hosted model configured: question/answer pairs (answer line, then a 'Reason:' line, the
  house style) written by that model from the knowledge base's chunks (lib.finetune.data.generate_pairs).
- Offline, where the 135M model cannot write good pairs: a training set built without any model:
  * continued training on the documents' own text (each chunk as the answer to "what does DOCUMENT
    say"), the "unsupervised fine-tuning" that knowledge-injection studies (Ovadia et al. 2023)
    compare with RAG; and
  * format examples made from the documents' own sentences that state a number (a question naming
    the document and the sentence's subject; the answer is the sentence, then a 'Reason:' line), so
    answers keep the house style.

What this can and cannot teach (said in the app too): it exposes the model to the text, so wording
and frequent facts may stick; it does not teach the model to answer questions it never saw asked,
and a 135M model retains little of what it reads once. Retrieval remains the reliable way to answer
from documents; this makes the fine-tuned arm a fair comparison on *these* documents rather than
the sample company's.
"""

from __future__ import annotations

import re
from typing import Any

from lib.arms import SYSTEM_PLAIN
from lib.finetune.data import Example
from lib.settings import child_env

CAN_AND_CANNOT = (
    "Offline fine-tuning trains on your documents' own text (and on sentences from them in the house style): the "
    "model sees the wording and may keep frequent facts, but it is not taught to answer questions it never saw, "
    "and a 135M model retains little of what it reads once. Retrieval stays the reliable way to answer from "
    "documents; this makes the fine-tuned arm a fair comparison on your documents instead of the sample company's.")
MAX_CHUNK_EXAMPLES = 400
MAX_SENTENCE_EXAMPLES = 200


def _sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+|\n{2,}|\n(?=[-*•]\s)", text)
    return [" ".join(p.split()) for p in parts if 30 <= len(" ".join(p.split())) <= 300]


def _subject(sentence: str) -> str:
    """The words before the first number: what the sentence is about (e.g. 'The refund window is')."""
    head = re.split(r"[$€£]?\d", sentence, maxsplit=1)[0]
    words = re.findall(r"[A-Za-z][\w'-]*", head)
    words = [w for w in words if w.lower() not in {"the", "a", "an", "is", "are", "of", "for", "to", "within"}]
    return " ".join(words[-6:])


def offline_examples(kb: Any, documents: list[str] | None = None) -> tuple[list[Example], dict[str, int]]:
    """Examples from a knowledge base's stored chunks, with no model involved; and counts by kind."""
    from lib.store import document_text

    chunk_examples: list[Example] = []
    sentence_examples: list[Example] = []
    names = documents or [d.name for d in kb.documents()]
    for name in names:
        for i, chunk in enumerate(kb.chunks_of(name)):
            chunk_examples.append({"messages": [
                {"role": "system", "content": SYSTEM_PLAIN},
                {"role": "user", "content": f"Question: What does {name} say (part {i + 1})?"},
                {"role": "assistant", "content": chunk.text.strip()}]})
        for sentence in _sentences(document_text(kb, name)):
            if not re.search(r"\d", sentence):
                continue
            subject = _subject(sentence)
            if len(subject) < 6:
                continue
            sentence_examples.append({"messages": [
                {"role": "system", "content": SYSTEM_PLAIN},
                {"role": "user", "content": f"Question: What does {name} say about {subject.lower()}?"},
                {"role": "assistant", "content": f"{sentence}\nReason: the {name} states this."}]})
    chunk_examples = chunk_examples[:MAX_CHUNK_EXAMPLES]
    sentence_examples = sentence_examples[:MAX_SENTENCE_EXAMPLES]
    # Interleave, so a short run sees both kinds.
    mixed: list[Example] = []
    for i in range(max(len(chunk_examples), len(sentence_examples))):
        mixed += chunk_examples[i:i + 1] + sentence_examples[i:i + 1]
    return mixed, {"document_text": len(chunk_examples), "house_style_sentences": len(sentence_examples)}


def trained_on(kb: Any) -> tuple[dict[str, str], ...]:
    return tuple({"name": d.name, "sha256": d.sha256} for d in kb.documents())


def probe_key(base: str | None) -> str:
    """Where a speed probe's result is kept in the workspace: per base model (the bundled one keeps its old key)."""
    return "training_probe" if base in (None, "", "smollm2-135m") else f"training_probe:{base}"


def probe(workspace: Any, examples: list[Example], steps: int = 3, base: str | None = None) -> dict[str, Any]:
    """Measure this machine's training speed on these examples: a few real LoRA steps in a temporary folder
    (nothing is registered), on `base` (a downloaded catalogue model with its training weights; None: the bundled
    model). The result is kept in the workspace for the next estimates for that model."""
    import json
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    from lib.catalogue import training_base
    from lib.errors import ConfigError
    from lib.finetune.data import to_jsonl
    from lib.finetune.local import missing_training_deps
    from lib.settings import PROJECT_ROOT

    missing = missing_training_deps()
    if missing:
        raise ConfigError(f"Measuring the training speed needs {', '.join(missing)}: "
                          ".venv/bin/pip install -r requirements-train.txt")
    info = training_base(workspace.data_dir, base)
    if info is not None and not info["train_dir"]:
        raise ConfigError(f"Measuring the training speed of {info['label']} needs its training weights: "
                          f"python -m lib models pull {info['name']} --training")
    extra = ["--base", info["gguf"], "--base-dir", info["train_dir"]] if info else []
    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        data, out = Path(tmp) / "probe.jsonl", Path(tmp) / "probe.gguf"
        data.write_text(to_jsonl(examples[:16]))
        env = child_env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        t0 = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "training.train_lora", "--data", str(data), "--out", str(out),
                               "--steps", str(steps), "--seed", "42", *extra], cwd=PROJECT_ROOT, env=env,
                              capture_output=True, text=True, timeout=900)
        sidecar = out.with_name(out.name + ".json")
        if done.returncode != 0 or not sidecar.is_file():
            raise ConfigError(f"The speed probe failed (exit {done.returncode}): {done.stdout[-300:]}{done.stderr[-300:]}")
        meta = json.loads(sidecar.read_text())
    result = {"seconds_per_step": float(meta["seconds_per_step"]), "steps": steps, "examples": len(examples[:16]),
              "setup_seconds": round(time.monotonic() - t0 - float(meta["train_seconds"]), 1),
              "measured_at": time.time(), "threads": meta.get("threads")}
    result["base"] = base or "smollm2-135m"
    workspace.set_meta(probe_key(base), json.dumps(result))
    return result


def seconds_per_step(workspace: Any, base: str | None = None) -> tuple[float, str]:
    """Measured training speed on this machine for `base` (None: the bundled model): the last local training run
    of that model in this workspace, else a speed probe of it run here; for the bundled model, else the shipped
    adapter's run (batch 4, examples up to 512 tokens); for another model, else the bundled model's speed scaled
    by the parameter ratio (a rough guide, said so, until a probe runs)."""
    import json

    from lib.finetune.registry import SHIPPED_ADAPTER

    bundled = base in (None, "", "smollm2-135m")
    for job in workspace.jobs("local"):
        job_base = (job.params.get("base") or {}).get("name")
        if job.status == "succeeded" and (job_base is None if bundled else job_base == base):
            side = workspace.adapter_sidecar(job.id) or {}
            if side.get("seconds_per_step"):
                return float(side["seconds_per_step"]), f"the last local training run here ({job.name})"
    stored = workspace.meta(probe_key(base))
    if stored:
        measured = json.loads(stored)
        return float(measured["seconds_per_step"]), (f"a {measured['steps']}-step speed probe on this machine, on "
                                                     "this knowledge base's examples")
    if not bundled:
        from lib.catalogue import estimate_training, find

        per_step, source = seconds_per_step(workspace)
        scaled = estimate_training(per_step, find(str(base)).params)
        return float(scaled or per_step), (f"a rough estimate: the bundled model's {per_step:.1f} s per step ({source}) "
                                           f"x the parameter ratio; measure the speed for a real figure")
    try:
        meta = json.loads(SHIPPED_ADAPTER.with_name(SHIPPED_ADAPTER.name + ".json").read_text())
        return float(meta["seconds_per_step"]), (f"the shipped adapter's training run ({meta.get('threads', '?')} "
                                                 "cores, batch 4)")
    except (OSError, ValueError, KeyError):
        return 6.5, "a default of 6.5 s per step (no run measured yet)"


SHIPPED_DATA = "training/data/train.jsonl"
MAX_LEN = 512  # the trainer's longest example (training/train_lora.py); longer ones are skipped


def mean_example_tokens(examples: list[Example]) -> float | None:
    """Mean length of training examples in the local model's tokens (each capped at MAX_LEN), or None when the
    local tokenizer cannot be loaded. A training step's time grows with the length of its examples."""
    try:
        from lib.providers import _vocab, bundled_model_path

        vocab = _vocab(bundled_model_path())
    except Exception:
        return None
    lengths = []
    for e in examples[:200]:
        text = "\n".join(str(m.get("content", "")) for m in e.get("messages", []))
        lengths.append(min(MAX_LEN, len(vocab.tokenize(text.encode(), add_bos=False, special=False)) + 12))
    return sum(lengths) / len(lengths) if lengths else None


def _shipped_examples() -> list[Example]:
    import json

    from lib.settings import PROJECT_ROOT

    path = PROJECT_ROOT / SHIPPED_DATA
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def estimate(workspace: Any, steps: int, examples: list[Example] | None = None, *,
             base: str | None = None) -> dict[str, Any]:
    """Expected training time for `base` (None: the bundled model): steps x seconds per step measured on this
    machine (see `seconds_per_step`). When only the shipped adapter's speed is known and the examples are given,
    its speed is scaled by how much longer these examples are than its own (an estimate, said so; the speed probe
    measures instead)."""
    per_step, source = seconds_per_step(workspace, base)
    note = "measured speed" if not source.startswith("a rough estimate") else "an estimate"
    if examples and source.startswith(("the shipped adapter", "a default", "a rough estimate")):
        ours, theirs = mean_example_tokens(examples), mean_example_tokens(_shipped_examples())
        if ours and theirs:
            factor = max(1.0, ours / theirs)
            per_step *= factor
            source += (f", scaled x{factor:.1f} for examples of {ours:.0f} tokens on average against its "
                       f"{theirs:.0f}")
            note = "an estimate: measure the speed on this machine for a figure"
        else:
            note = "document chunks are longer than short question/answer pairs: expect this to take longer"
    return {"steps": steps, "seconds_per_step": per_step, "seconds": steps * per_step, "source": source,
            "base": base or "smollm2-135m", "note": note}


# ---------------------------------------------------------------- the use case the Fine-tune page and the CLI share

def training_set(settings: Any, kb: Any, offline: bool = True) -> tuple[list[Example], dict[str, int], str]:
    """(examples, counts by kind, method in words) to fine-tune on a knowledge base: written by the configured
    hosted model from its chunks unless `offline` (or no hosted model); otherwise built from its own text."""
    if settings.hosted_configured and not offline:
        from lib import gateway
        from lib.finetune.data import generate_pairs

        chunks = [c for d in kb.documents() for c in kb.chunks_of(d.name)][:60]
        examples, problems = generate_pairs(chunks, gateway.provider(settings, settings.base, "base"))
        method = f"{len(examples)} question/answer pairs written by {settings.base.label} from {len(chunks)} chunks"
        return examples, {"generated_pairs": len(examples), "problems": len(problems)}, method
    examples, kinds = offline_examples(kb)
    method = (f"offline: {kinds['document_text']} document-text examples + {kinds['house_style_sentences']} "
              "house-style sentences")
    return examples, kinds, method


def start(workspace: Any, kb: Any, examples: list[Example], method: str, steps: int = 125, rank: int = 16,
          lr: float = 3e-3, name: str | None = None, base: Any = None) -> str:
    """Start fine-tuning the local model on a knowledge base's training set (a background job that registers the
    model with what it was trained on); returns the job id."""
    from lib.errors import ConfigError
    from lib.finetune.local import start_local_training

    if kb.count() == 0:
        raise ConfigError(f"Knowledge base {kb.name!r} has no documents to train on.")
    if not examples:
        raise ConfigError("No training examples could be made from this knowledge base.")
    return start_local_training(workspace, examples, name or f"{kb.name}-lora", int(steps), int(rank), float(lr),
                                trained_on(kb), kb.name, method, base=base, origin="knowledge_base")
