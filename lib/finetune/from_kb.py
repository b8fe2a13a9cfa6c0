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


def seconds_per_step(workspace: Any) -> tuple[float, str]:
    """Measured training speed on this machine: the last local training run in this workspace, else the
    shipped adapter's run (batch 4, examples up to 512 tokens)."""
    import json

    from lib.finetune.registry import SHIPPED_ADAPTER

    for job in workspace.jobs("local"):
        if job.status == "succeeded":
            side = workspace.adapter_sidecar(job.id) or {}
            if side.get("seconds_per_step"):
                return float(side["seconds_per_step"]), f"the last local training run here ({job.name})"
    try:
        meta = json.loads(SHIPPED_ADAPTER.with_name(SHIPPED_ADAPTER.name + ".json").read_text())
        return float(meta["seconds_per_step"]), (f"the shipped adapter's training run ({meta.get('threads', '?')} "
                                                 "cores, batch 4)")
    except (OSError, ValueError, KeyError):
        return 6.5, "a default of 6.5 s per step (no run measured yet)"


def estimate(workspace: Any, steps: int) -> dict[str, Any]:
    per_step, source = seconds_per_step(workspace)
    return {"steps": steps, "seconds_per_step": per_step, "seconds": steps * per_step, "source": source,
            "note": "document chunks are longer than short question/answer pairs: expect this to take longer"}
