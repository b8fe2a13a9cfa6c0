"""The benchmark's functions on a tiny input, in quick mode: structure only, never the targets."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from bench import cases
from bench.offline import _loopback, chroma_default_embedder
from bench.report import table, write_json
from bench.timing import Measurement, Reps
from lib.embeddings import model_file

ROOT = Path(__file__).resolve().parent.parent
QUICK = Reps(2, warmup=0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> tuple[cases.Corpus, Any, Path]:
    folder = tmp_path_factory.mktemp("bench-tiny")
    docs = folder / "docs"
    docs.mkdir()
    shutil.copy(ROOT / "sample_docs" / "refund_policy.md", docs)
    questions = folder / "questions.jsonl"
    questions.write_text('{"question": "How long is the refund window?"}\n{"question": "Who pays return postage?"}\n')
    corpus = cases.load_corpus(embedder, [docs], questions)
    return corpus, chroma_default_embedder(folder / "chroma-onnx"), folder


def _check(m: Measurement) -> None:
    for value in (m.ours, m.reference, m.ratio):
        assert isinstance(value, float) and value > 0 and math.isfinite(value)
    d = m.to_dict()
    assert d["passed"] in (True, False) and d["target_text"] in m.target_text
    assert len(d["details"]["seconds"]["ours"]) == len(d["details"]["seconds"]["reference"]) == m.reps


def test_chroma_runs_offline_on_our_model_file(tiny: Any) -> None:
    _, _, folder = tiny
    onnx = folder / "chroma-onnx" / "onnx"
    assert (onnx / "model.onnx").resolve() == model_file().resolve()
    assert not (folder / "chroma-onnx" / "onnx.tar.gz").exists()
    assert len((onnx / "vocab.txt").read_text().splitlines()) == 30522


def test_embedding_benchmarks_like_for_like(tiny: Any, embedder: Any) -> None:
    corpus, chroma, _ = tiny
    assert corpus.texts and corpus.questions
    assert cases.min_cosine(embedder, chroma, corpus.texts + corpus.questions) > 0.99
    docs = cases.document_embedding(embedder, chroma, corpus.texts, reps=QUICK)
    queries = cases.query_embedding(embedder, chroma, corpus.questions, reps=QUICK)
    for m in (docs, queries):
        _check(m)
        assert m.higher_is_better and m.unit.endswith("/s")


def test_ingest_benchmark_and_report(tiny: Any, embedder: Any, tmp_path: Path) -> None:
    corpus, _, _ = tiny
    m, kb = cases.ingest(embedder, corpus, tmp_path / "data", reps=QUICK)
    _check(m)
    assert not m.higher_is_better and kb.count() == len(corpus.texts)
    out = write_json([m], {"tiny": 1.0}, {"quick": True}, tmp_path / "r.json")
    assert json.loads(out.read_text())["results"][0]["key"] == "ingest"
    assert "Ingest end to end" in table([m], {"tiny": 1.0}, 0.99)


@pytest.mark.slow
def test_app_overhead_benchmark(tiny: Any, embedder: Any, tmp_path: Path) -> None:
    corpus, _, _ = tiny
    _, kb = cases.ingest(embedder, corpus, tmp_path / "data", reps=Reps(1, 1, warmup=0))
    m = cases.app_overhead(kb, corpus.questions[0], max_tokens=4, reps=QUICK, top_k=1)
    _check(m)
    assert m.unit == "ms" and 0 < m.details["completion_tokens"] <= 4


@pytest.mark.slow
def test_fair_timing_and_memory_benchmarks(tiny: Any, embedder: Any, tmp_path: Path) -> None:
    corpus, _, _ = tiny
    _, kb = cases.ingest(embedder, corpus, tmp_path / "data", reps=Reps(1, 1, warmup=0))
    fair = cases.fair_timing(kb, corpus.questions[0], max_tokens=4, reps=QUICK, top_k=1)
    _check(fair)
    assert fair.unit == "ms" and not fair.higher_is_better
    mem = cases.memory(kb, corpus.questions[0], max_tokens=4)
    assert mem.ours > 0 and mem.reference > 0 and mem.ratio == pytest.approx(mem.ours / mem.reference)
    assert len(mem.details["adapters"]) == 1


@pytest.mark.slow
def test_batching_and_workshop_forecast_benchmarks(tiny: Any, embedder: Any, tmp_path: Path) -> None:
    corpus, _, _ = tiny
    _, kb = cases.ingest(embedder, corpus, tmp_path / "data", reps=Reps(1, 1, warmup=0))
    m = cases.batching(kb, corpus.questions, Reps(1, 1, warmup=0), rag=True, max_tokens=4, requests=3, top_k=1)
    assert m.higher_is_better and m.target == 1.1 and m.details["same_output"] is True
    assert m.ours > 0 and m.reference > 0 and m.details["prompt_tokens_mean"] > 0
    f = cases.workshop_forecast(kb, corpus.questions, participants=2, max_tokens=4, capacity_questions=2)
    assert f.unit == "s" and not f.higher_is_better and f.ratio >= 1.0
    assert f.details["forecast"]["participants"] == 2 and len(f.details["waits_s"]) == 2


def test_evaluation_concurrency_benchmark(tiny: Any, embedder: Any, tmp_path: Path) -> None:
    corpus, _, _ = tiny
    _, kb = cases.ingest(embedder, corpus, tmp_path / "data", reps=Reps(1, 1, warmup=0))
    m = cases.eval_concurrency(kb, questions=2, delay_s=0.01, concurrency=4)
    assert m.ours > 0 and m.reference > 0 and not m.higher_is_better


def test_only_loopback_counts_as_offline() -> None:
    assert _loopback(("127.0.0.1", 80)) and _loopback(("::1", 80, 0, 0)) and _loopback("/tmp/socket")
    assert not _loopback(("52.216.1.1", 443)) and not _loopback(("chroma-onnx-models.s3.amazonaws.com", 443))
