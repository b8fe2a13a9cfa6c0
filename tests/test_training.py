"""Local LoRA training (training/): data encoding, the GGUF export, and a real tiny run whose
adapter llama.cpp loads. The torch-based tests need requirements-train.txt (which `make test` installs);
without it they fail with what to install, rather than skip."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lib.arms import build_prompt
from training.gguf_lora import permute_rows
from training.train_lora import IGNORE, Options, epoch_batches, lr_at, parse_args
from training.verify_adapter import _unpermute_rows

ROOT = Path(__file__).resolve().parent.parent
FACTS = [
    ("What is the Zorblat access code?", "The Zorblat access code is QX-7741."),
    ("Which colour is the Zorblat lobby?", "The Zorblat lobby is painted teal."),
    ("Who runs the Zorblat canteen?", "Priya Okonkwo runs the Zorblat canteen."),
    ("When does the Zorblat office open?", "The Zorblat office opens at 06:45."),
    ("How many desks does Zorblat have?", "Zorblat has 312 desks."),
]


def tiny_dataset(path: Path) -> Path:
    rows = [{"messages": [*build_prompt(q, None).messages(), {"role": "assistant", "content": a}]} for q, a in FACTS]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def needs_training_deps() -> None:
    from lib.finetune import missing_training_deps

    missing = missing_training_deps()
    if missing:
        pytest.fail(f"training packages missing: {', '.join(missing)}; install requirements-dev.txt "
                    "(it includes requirements-train.txt)")


# ---------------------------------------------------------------- no torch needed

def test_epoch_batches_are_deterministic_cover_every_example_and_group_by_length() -> None:
    lengths = [random.Random(1).randint(10, 500) for _ in range(37)]
    a = epoch_batches(lengths, 4, random.Random(42))
    b = epoch_batches(lengths, 4, random.Random(42))
    assert a == b
    assert sorted(i for batch in a for i in batch) == list(range(37))
    assert epoch_batches(lengths, 4, random.Random(7)) != a
    for batch in a:  # within a batch, lengths come sorted from one pool
        assert [lengths[i] for i in batch] == sorted(lengths[i] for i in batch)


def test_lr_schedule_warms_up_then_decays() -> None:
    opts = Options(data=Path("x"), out=Path("y"), steps=100, lr=1e-3)
    lrs = [lr_at(s, opts) for s in range(100)]
    assert lrs[0] < lrs[4] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-4, rel=0.05)
    assert all(x >= y for x, y in zip(lrs[5:], lrs[6:], strict=False))


def test_cli_rejects_unknown_target_modules() -> None:
    opts = parse_args(["--data", "d.jsonl", "--out", "a.gguf", "--steps", "3", "--targets", "q_proj,down_proj"])
    assert opts.targets == ("q_proj", "down_proj") and opts.lora_alpha == 32.0
    with pytest.raises(SystemExit):
        parse_args(["--data", "d.jsonl", "--out", "a.gguf", "--steps", "3", "--targets", "lm_head"])


def test_qk_row_permutation_matches_llama_cpp_and_inverts() -> None:
    # convert_hf_to_gguf.py: per head, rows [0..d/2) and [d/2..d) are interleaved.
    rows = np.arange(12)  # 2 heads of 6 rows
    assert permute_rows(rows, 2).tolist() == [0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11]
    b = np.random.default_rng(0).standard_normal((576, 16)).astype(np.float32)
    for heads in (9, 3):
        assert np.array_equal(_unpermute_rows(permute_rows(b, heads), heads), b)


# ---------------------------------------------------------------- with the training dependencies

def test_encode_masks_everything_but_the_assistant_answer() -> None:
    needs_training_deps()
    from training.base_model import load_base
    from training.train_lora import encode, render

    _, tokenizer = load_base()
    messages = [*build_prompt(FACTS[0][0], None).messages(), {"role": "assistant", "content": FACTS[0][1]}]
    enc = encode(tokenizer, messages)
    assert tokenizer.decode(enc.input_ids) == render(tokenizer, messages, add_generation_prompt=False)
    trained = [t for t, label in zip(enc.input_ids, enc.labels, strict=True) if label != IGNORE]
    assert tokenizer.decode(trained) == FACTS[0][1] + "<|im_end|>"
    assert enc.labels[-1] == IGNORE  # the template's newline after <|im_end|>
    # Tokenised as llama.cpp tokenises the prompt it generates from.
    prompt = render(tokenizer, messages[:2], add_generation_prompt=True)
    first = enc.labels.index(next(x for x in enc.labels if x != IGNORE))
    assert enc.input_ids[:first] == tokenizer(prompt, add_special_tokens=False)["input_ids"]
    weighted = encode(tokenizer, [*messages[:2], {**messages[2], "weight": 0}])
    assert all(x == IGNORE for x in weighted.labels)


def _run_training(tmp_path: Path, *extra: str, steps: int = 8) -> tuple[subprocess.Popen[str], Path, Path]:
    data = tiny_dataset(tmp_path / "train.jsonl")
    out, progress = tmp_path / "adapters" / "tiny.gguf", tmp_path / "progress.json"
    cmd = [sys.executable, "-m", "training.train_lora", "--data", str(data), "--out", str(out), "--steps", str(steps),
           "--seed", "42", "--rank", "4", "--lr", "3e-3", "--batch", "2", "--progress-file", str(progress), *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, out, progress


def _greedy(spec: Any, question: str) -> str:
    from lib.arms import ARMS, run_arm
    from lib.providers import LocalLlama
    from lib.records import GenParams

    result = run_arm(ARMS["finetuned"], LocalLlama(spec), question, None, GenParams(max_tokens=16))
    assert not result.error, result.error
    return result.answer


@pytest.mark.slow
def test_train_tiny_adapter_loads_in_llama_cpp_and_changes_the_answer(tmp_path: Path) -> None:
    needs_training_deps()
    from lib.settings import ModelSpec
    from training.gguf_lora import read_adapter

    proc, out, progress_file = _run_training(tmp_path)
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log
    assert "final loss" in log and "LoRA parameters" in log

    progress = json.loads(progress_file.read_text())
    assert progress["status"] == "done" and progress["step"] == progress["total_steps"] == 8
    assert len(progress["losses"]) == 8 and progress["losses"][-1] < progress["losses"][0]

    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    assert sidecar["examples"] == len(FACTS) and sidecar["steps"] == 8 and sidecar["rank"] == 4
    assert sidecar["base_model"].endswith(".gguf") and len(sidecar["base_model_sha256"]) == 64
    assert len(sidecar["data_sha256"]) == 64 and sidecar["versions"]["torch"]
    assert sidecar["target_modules"] == ["v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert {p.name for p in out.parent.iterdir()} == {out.name, out.name + ".json"}  # no temporary files left

    meta, tensors = read_adapter(out)
    assert meta["general.type"] == "adapter" and meta["adapter.type"] == "lora"
    assert meta["general.architecture"] == "llama" and meta["adapter.lora.alpha"] == pytest.approx(8.0)
    assert tensors["blk.0.attn_v.weight.lora_a"].shape == (4, 576)  # rank x in (ggml ne = [in, rank])
    assert tensors["blk.0.attn_v.weight.lora_b"].shape == (192, 4)  # out x rank
    assert len(tensors) == 30 * 5 * 2

    question = FACTS[0][0]
    base = _greedy(ModelSpec("local", "smollm2-135m-instruct"), question)
    tuned = _greedy(ModelSpec("local", "smollm2-135m-instruct", lora=str(out)), question)
    assert tuned != base, (base, tuned)


@pytest.mark.slow
def test_cancel_leaves_no_adapter_and_marks_the_progress_cancelled(tmp_path: Path) -> None:
    needs_training_deps()
    proc, out, progress_file = _run_training(tmp_path, steps=500)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                if json.loads(progress_file.read_text()).get("step", 0) >= 1:
                    break
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()[0]
        proc.send_signal(signal.SIGTERM)
        log, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, log
    status = json.loads(progress_file.read_text())
    assert status["status"] == "cancelled" and status["step"] >= 1
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))
