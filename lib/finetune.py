"""Fine-tuning: training data (parse, validate like OpenAI does, export, generate
from chunks), a registry of fine-tuned models, local LoRA training as a
background process, and OpenAI fine-tuning jobs."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lib.errors import ConfigError
from lib.settings import LOCAL_BASE_MODEL, PROJECT_ROOT, ModelSpec

SHIPPED_ADAPTER = PROJECT_ROOT / "assets" / "adapters" / "quillmere-smollm2-lora.gguf"
SAMPLE_TRAINING_SET = PROJECT_ROOT / "training" / "data" / "train.jsonl"
MIN_EXAMPLES = 10  # OpenAI refuses fewer
# Tokens per training example: OpenAI's limit for current models; the local trainer's window.
EXAMPLE_TOKEN_LIMIT = {"openai": 65_536, "local": 512}
ROLES = {"system", "user", "assistant"}
TRAIN_DEPS = ("torch", "transformers", "peft", "gguf")

Example = dict[str, Any]


# ---------------------------------------------------------------- training data

def parse_jsonl(data: bytes | str) -> tuple[list[Example], list[tuple[int, str]]]:
    """Examples from OpenAI chat JSONL, and (row, problem) for lines that are not JSON objects."""
    text = data.decode("utf-8-sig", errors="replace") if isinstance(data, bytes) else data
    examples: list[Example] = []
    problems: list[tuple[int, str]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append((n, f"not valid JSON ({exc.msg})"))
            continue
        if not isinstance(item, dict):
            problems.append((n, "each line must be a JSON object with a 'messages' list"))
            continue
        examples.append(item)
    return examples, problems


def from_pairs(pairs: list[tuple[str, str]], system: str | None = None) -> list[Example]:
    """Chat examples from (question, answer) pairs, framed like the fine-tuned arm's prompt."""
    from lib.arms import build_prompt

    out = []
    for question, answer in pairs:
        messages = build_prompt(question, None).messages()
        if system is not None:
            messages[0]["content"] = system
        out.append({"messages": [*messages, {"role": "assistant", "content": answer.strip()}]})
    return out


def parse_csv(data: bytes | str) -> tuple[list[Example], list[tuple[int, str]]]:
    """Examples from a CSV with `question` and `answer` columns (a header row is required)."""
    text = data.decode("utf-8-sig", errors="replace") if isinstance(data, bytes) else data
    reader = csv.DictReader(io.StringIO(text))
    fields = {f.strip().lower(): f for f in reader.fieldnames or []}
    if "question" not in fields or "answer" not in fields:
        return [], [(1, "the CSV needs a header row with 'question' and 'answer' columns")]
    pairs, problems = [], []
    for n, row in enumerate(reader, 2):
        q, a = (row.get(fields["question"]) or "").strip(), (row.get(fields["answer"]) or "").strip()
        if not q or not a:
            problems.append((n, "empty question or answer"))
            continue
        pairs.append((q, a))
    return from_pairs(pairs), problems


def parse_upload(name: str, data: bytes) -> tuple[list[Example], list[tuple[int, str]]]:
    if name.lower().endswith(".csv"):
        return parse_csv(data)
    if name.lower().endswith((".jsonl", ".json")):
        return parse_jsonl(data)
    return [], [(0, f"{name}: upload a .jsonl file (OpenAI chat format) or a .csv with question,answer columns")]


def count_example_tokens(example: Example, model: str) -> int:
    from lib.tokens import count_chat

    return count_chat([{"role": m.get("role", ""), "content": str(m.get("content", ""))}
                       for m in example.get("messages", []) if isinstance(m, dict)], model)


def validate(examples: list[Example], target: str = "openai", model: str = "gpt-4.1-mini") -> list[tuple[int, str]]:
    """Problems per row (1-based), checked the way OpenAI checks a file before a job."""
    problems: list[tuple[int, str]] = []
    limit = EXAMPLE_TOKEN_LIMIT.get(target, EXAMPLE_TOKEN_LIMIT["openai"])
    for n, ex in enumerate(examples, 1):
        messages = ex.get("messages") if isinstance(ex, dict) else None
        if not isinstance(messages, list) or not messages:
            problems.append((n, "missing 'messages' list"))
            continue
        bad = False
        for i, m in enumerate(messages, 1):
            if not isinstance(m, dict):
                problems.append((n, f"message {i} is not an object"))
                bad = True
            elif m.get("role") not in ROLES:
                problems.append((n, f"message {i} has role {m.get('role')!r}; use system, user or assistant"))
                bad = True
            elif not isinstance(m.get("content"), str) or not m["content"].strip():
                problems.append((n, f"message {i} ({m['role']}) has no text content"))
                bad = True
            elif set(m) - {"role", "content", "name", "weight"}:
                problems.append((n, f"message {i} has unknown keys: {', '.join(sorted(set(m) - {'role', 'content', 'name', 'weight'}))}"))
                bad = True
        if bad:
            continue
        roles = [m["role"] for m in messages]
        if "user" not in roles:
            problems.append((n, "no user message"))
        if roles[-1] != "assistant":
            problems.append((n, "the last message must be the assistant's answer"))
        tokens = count_example_tokens(ex, model)
        if tokens > limit:
            problems.append((n, f"{tokens} tokens; the limit per example is {limit}"))
    if len(examples) < MIN_EXAMPLES:
        problems.append((0, f"{len(examples)} examples; at least {MIN_EXAMPLES} are needed"))
    return problems


def to_jsonl(examples: list[Example]) -> str:
    return "".join(json.dumps(ex, ensure_ascii=False) + "\n" for ex in examples)


def table_rows(examples: list[Example]) -> list[dict[str, str]]:
    """(system, question, answer) per example, for an editable table."""
    rows = []
    for ex in examples:
        msgs = ex.get("messages", []) if isinstance(ex, dict) else []
        by = {m.get("role"): m.get("content", "") for m in msgs if isinstance(m, dict)}
        rows.append({"system": by.get("system", ""), "question": by.get("user", ""),
                     "answer": by.get("assistant", "")})
    return rows


def from_table(rows: list[dict[str, Any]]) -> list[Example]:
    out = []
    for r in rows:
        msgs = []
        if str(r.get("system") or "").strip():
            msgs.append({"role": "system", "content": str(r["system"])})
        msgs.append({"role": "user", "content": str(r.get("question") or "")})
        msgs.append({"role": "assistant", "content": str(r.get("answer") or "")})
        out.append({"messages": msgs})
    return out


_PAIR_PROMPT = (
    "Write {n} question and answer pairs that a customer or employee could ask about the passage below, "
    "answerable from it alone. Answer in one line, then a line starting with 'Reason: '. Reply with JSON only: "
    '[{{"question": "...", "answer": "..."}}]\n\nPassage (from {doc}):\n{text}'
)


def generate_pairs(chunks: list[Any], provider: Any, per_chunk: int = 2,
                   on_progress: Callable[[int, int], None] | None = None) -> tuple[list[Example], list[str]]:
    """Question/answer pairs written by a (hosted) model from chunks; (examples, problems)."""
    from lib.providers import Delta, GenParams

    pairs: list[tuple[str, str]] = []
    problems: list[str] = []
    for i, chunk in enumerate(chunks, 1):
        prompt = _PAIR_PROMPT.format(n=per_chunk, doc=chunk.document, text=chunk.text)
        text = "".join(e.text for e in provider.stream([{"role": "user", "content": prompt}],
                                                       GenParams(temperature=0.3, max_tokens=600, stop=()))
                       if isinstance(e, Delta))
        match = re.search(r"\[.*\]", text, re.S)
        try:
            items = json.loads(match.group(0)) if match else None
            pairs += [(str(x["question"]), str(x["answer"])) for x in items if x.get("question") and x.get("answer")]
        except (json.JSONDecodeError, TypeError, KeyError, AttributeError):
            problems.append(f"{chunk.document} chunk {chunk.chunk}: the model's reply was not the JSON asked for")
        if on_progress:
            on_progress(i, len(chunks))
    return from_pairs(pairs), problems


# ---------------------------------------------------------------- registry

@dataclass(frozen=True)
class FineTunedModel:
    id: str
    name: str
    provider: str  # "local" | "openai" | "azure"
    model: str  # base GGUF for local, the ft: id for OpenAI
    base_model: str
    lora: str | None = None
    created_at: float = 0.0
    training_file: str = ""
    training_sha256: str = ""
    examples: int = 0
    training_cost_usd: float | None = None
    trained_on: tuple[dict[str, str], ...] = ()  # documents (name, sha256) of the knowledge base
    notes: str = ""
    builtin: bool = False

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(self.provider, self.model, self.lora)


def shipped_model() -> FineTunedModel | None:
    """The LoRA adapter that ships with the project, trained on the sample corpus."""
    if not SHIPPED_ADAPTER.is_file():
        return None
    meta_file = SHIPPED_ADAPTER.with_suffix(SHIPPED_ADAPTER.suffix + ".json")
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    return FineTunedModel(
        id="shipped", name="Quillmere house style (shipped LoRA)", provider="local", model=LOCAL_BASE_MODEL,
        base_model="SmolLM2-135M-Instruct", lora=str(SHIPPED_ADAPTER), created_at=meta_file.stat().st_mtime
        if meta_file.is_file() else 0.0, training_file="training/data/train.jsonl",
        training_sha256=str(meta.get("data_sha256", meta.get("training_data_sha256", ""))),
        examples=int(meta.get("examples", 0) or 0), training_cost_usd=0.0,
        notes="Trained by training/train_lora.py on the sample corpus (see README).", builtin=True)


class Registry:
    """Fine-tuned models and the active one, in data/models.json (written atomically)."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / "models.json"

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".models-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, self.path)

    def models(self) -> list[FineTunedModel]:
        out = [m for m in [shipped_model()] if m]
        for item in self._read().get("models", []):
            item = dict(item)
            item["trained_on"] = tuple(item.get("trained_on", ()))
            out.append(FineTunedModel(**item))
        return out

    def add(self, model: FineTunedModel, activate: bool = True) -> None:
        data = self._read()
        data.setdefault("models", []).append(asdict(model))
        if activate:
            data["active"] = model.id
        self._write(data)

    def remove(self, model_id: str) -> None:
        data = self._read()
        data["models"] = [m for m in data.get("models", []) if m["id"] != model_id]
        if data.get("active") == model_id:
            data.pop("active")
        self._write(data)

    def activate(self, model_id: str) -> None:
        data = self._read()
        data["active"] = model_id
        self._write(data)

    def active(self) -> FineTunedModel | None:
        models = self.models()
        chosen = self._read().get("active")
        return next((m for m in models if m.id == chosen), None) or (models[0] if models else None)


def new_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------- local LoRA training

def missing_training_deps() -> list[str]:
    return [m for m in TRAIN_DEPS if importlib.util.find_spec(m) is None]


@dataclass
class LocalTraining:
    """`python -m training.train_lora` in a child process; progress comes from a JSON file it rewrites."""

    data_dir: Path
    examples: list[Example]
    name: str
    steps: int = 60
    rank: int = 16
    lr: float = 1e-3
    trained_on: tuple[dict[str, str], ...] = ()
    id: str = field(default_factory=new_id)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    @property
    def folder(self) -> Path:
        return Path(self.data_dir) / "training" / self.id

    @property
    def adapter(self) -> Path:
        return Path(self.data_dir) / "adapters" / f"{self.id}.gguf"

    def start(self) -> LocalTraining:
        missing = missing_training_deps()
        if missing:
            raise ConfigError(f"Local training needs {', '.join(missing)}, which are not installed. Run: "
                              ".venv/bin/pip install -r requirements-train.txt (CPU-only torch, about 1 GB).")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.adapter.parent.mkdir(parents=True, exist_ok=True)
        (self.folder / "train.jsonl").write_text(to_jsonl(self.examples))
        cmd = [sys.executable, "-m", "training.train_lora", "--data", str(self.folder / "train.jsonl"),
               "--out", str(self.adapter), "--steps", str(self.steps), "--rank", str(self.rank),
               "--lr", str(self.lr), "--seed", "42", "--progress-file", str(self.folder / "progress.json")]
        log = (self.folder / "log.txt").open("wb")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self.process = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.started_at = time.time()
        return self

    def progress(self) -> dict[str, Any]:
        try:
            status = json.loads((self.folder / "progress.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            status = {"status": "starting", "step": 0, "total_steps": self.steps}
        code = self.process.poll() if self.process else None
        if code not in (None, 0) and status.get("status") not in ("failed", "cancelled"):
            tail = (self.folder / "log.txt").read_text(errors="replace")[-600:] if (self.folder / "log.txt").exists() else ""
            status = {**status, "status": "failed", "error": f"training stopped with exit code {code}. {tail}"}
        return status

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cancel(self) -> None:
        """Stop training; the previous models stay as they were (the adapter is written atomically)."""
        if self.running and self.process:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        (self.folder / "progress.json").write_text(json.dumps({**self.progress(), "status": "cancelled"}))

    def register(self, registry: Registry) -> FineTunedModel:
        if not self.adapter.is_file():
            raise ConfigError("Training did not produce an adapter; nothing was registered.")
        data = to_jsonl(self.examples)
        model = FineTunedModel(
            id=self.id, name=self.name, provider="local", model=LOCAL_BASE_MODEL, base_model="SmolLM2-135M-Instruct",
            lora=str(self.adapter), created_at=time.time(), training_file=str(self.folder / "train.jsonl"),
            training_sha256=sha256_text(data), examples=len(self.examples), training_cost_usd=0.0,
            trained_on=self.trained_on, notes=f"LoRA r={self.rank}, {self.steps} steps, lr {self.lr}")
        registry.add(model)
        return model


# ---------------------------------------------------------------- OpenAI fine-tuning

def estimate_training_cost(examples: list[Example], base_model: str, epochs: int = 3) -> dict[str, Any]:
    """Training tokens x epochs x the model's training price (from the dated price file)."""
    from lib.pricing import extra_prices, training_price_per_mtok

    tokens = sum(count_example_tokens(ex, base_model) for ex in examples)
    price = training_price_per_mtok(base_model)
    return {"tokens": tokens, "epochs": epochs, "trained_tokens": tokens * epochs, "price_per_mtok": price,
            "usd": None if price is None else tokens * epochs * price / 1_000_000,
            "source": f"{extra_prices()['source']} (checked {extra_prices()['checked']})"}


def start_openai_job(client: Any, examples: list[Example], base_model: str, epochs: int = 3,
                     suffix: str | None = None) -> Any:
    """Upload the training file and create the job; returns the job object."""
    data = to_jsonl(examples).encode()
    uploaded = client.files.create(file=("training.jsonl", data), purpose="fine-tune")
    kwargs: dict[str, Any] = {"model": base_model, "training_file": uploaded.id,
                              "hyperparameters": {"n_epochs": epochs}}
    if suffix:
        kwargs["suffix"] = suffix
    return client.fine_tuning.jobs.create(**kwargs)


def poll_openai_job(client: Any, job_id: str) -> tuple[Any, list[str]]:
    """The job's current state and its events, oldest first."""
    job = client.fine_tuning.jobs.retrieve(job_id)
    events = client.fine_tuning.jobs.list_events(job_id, limit=50)
    return job, [e.message for e in reversed(list(events.data))]


def register_openai_job(registry: Registry, job: Any, examples: list[Example],
                        trained_on: tuple[dict[str, str], ...] = (), provider: str = "openai") -> FineTunedModel:
    from lib.pricing import training_price_per_mtok

    price = training_price_per_mtok(job.model)
    trained = getattr(job, "trained_tokens", None)
    model = FineTunedModel(
        id=job.id, name=job.fine_tuned_model, provider=provider, model=job.fine_tuned_model, base_model=job.model,
        created_at=time.time(), training_file=job.training_file, training_sha256=sha256_text(to_jsonl(examples)),
        examples=len(examples), training_cost_usd=None if price is None or trained is None else trained * price / 1e6,
        trained_on=trained_on, notes=f"OpenAI job {job.id}")
    registry.add(model)
    return model
