"""A fine-tuned arm says what it was trained on, and warns when this knowledge base is something else."""

import json
from dataclasses import replace

import pytest

from lib import provenance
from lib.finetune.registry import FineTunedModel, shipped_model
from lib.store import DocumentInfo


def _doc(name, sha):
    return DocumentInfo(name, sha, "md", 3, 100, 0.0)


MODEL = FineTunedModel(id="m1", name="my-adapter", provider="local", model="smollm2-135m-instruct",
                       base_model="SmolLM2-135M-Instruct", lora="/tmp/a.gguf", created_at=1_700_000_000,
                       examples=40, training_cost_usd=0.0, workspace="alice", knowledge_base="licenses",
                       trained_on=({"name": "mit.txt", "sha256": "aaa"}, {"name": "gpl.txt", "sha256": "bbb"}),
                       method="LoRA r=16, 40 steps, lr 0.003", train_seconds=300.0)


def test_no_warning_on_the_documents_it_was_trained_on():
    assert provenance.warnings(MODEL, "licenses", [_doc("mit.txt", "aaa"), _doc("gpl.txt", "bbb")]) == []


def test_another_knowledge_base_is_named_plainly():
    [w] = provenance.warnings(MODEL, "specs", [_doc("spec.pdf", "ccc")])
    assert "knowledge base 'licenses'" in w and "not on knowledge base 'specs'" in w


def test_added_removed_and_edited_documents_are_named():
    [w] = provenance.warnings(MODEL, "licenses", [_doc("mit.txt", "zzz"), _doc("apache.txt", "ddd")])
    assert "edited mit.txt" in w and "added apache.txt" in w and "removed gpl.txt" in w


def test_an_unregistered_model_says_nothing_is_known():
    [w] = provenance.warnings(None, "licenses", [])
    assert "Nothing is recorded" in w


def test_the_shipped_adapter_says_it_was_trained_on_the_sample_company():
    shipped = shipped_model()
    info = provenance.trained_on(shipped)
    assert info["knowledge_base"] == "sample" and "sample company" in info["description"]
    assert {d["name"] for d in info["documents"]} >= {"refund_policy.md", "warranty.pdf"}
    card = provenance.model_card(shipped)
    assert "fine-tuned on the sample company" in card and "125 steps" in card and "14 min" in card
    sample = [_doc(d["name"], d["sha256"]) for d in info["documents"]]
    assert provenance.warnings(shipped, "sample", sample) == []
    assert provenance.warnings(shipped, "default", sample) == [
        f"Fine-tuned on {provenance.SAMPLE_DESCRIPTION}; knowledge base 'default' holds the same documents."]
    edited = [replace(d, sha256="changed") if d.name == "refund_policy.md" else d for d in sample]
    [w] = provenance.warnings(shipped, "sample", edited)
    assert "edited refund_policy.md" in w


def test_ask_json_carries_warnings_and_trained_on(sample_kb_dir, openai_server, monkeypatch, capsys):
    from lib.__main__ import main

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-provenance")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("WORKBENCH_FT_MODEL", "ft:gpt-4o-mini-2024-07-18:acme::unregistered")
    assert main(["ask", "How long is the refund window?", "--arms", "rag,finetuned", "--data-dir",
                 str(sample_kb_dir), "--json"]) == 0
    rows = {r["arm"]: r for r in (json.loads(x) for x in capsys.readouterr().out.splitlines())}
    assert rows["rag"]["warnings"] == [] and rows["rag"]["trained_on"] is None
    assert rows["finetuned"]["trained_on"] is None and "Nothing is recorded" in rows["finetuned"]["warnings"][0]


def test_offline_examples_are_built_from_the_documents_without_a_model(settings, embedder, tmp_path):
    from lib import engine
    from lib.finetune import from_kb

    doc = tmp_path / "zorblat.md"
    doc.write_text("# Zorblat policy\n\nThe Zorblat warranty lasts 7 years from purchase. Repairs are free.\n\n"
                   "Zorblat units weigh 12 kg and ship within 3 business days.\n")
    kb = engine.open_kb(settings, "zorblat", embedder=embedder)
    engine.ingest_paths(kb, [doc])
    examples, kinds = from_kb.offline_examples(kb)
    assert kinds["document_text"] == 1 and kinds["house_style_sentences"] == 2
    answers = [e["messages"][-1]["content"] for e in examples]
    assert any("7 years" in a and "\nReason: the zorblat.md states this." in a for a in answers)
    assert any("Zorblat units weigh 12 kg" in a for a in answers)
    assert from_kb.trained_on(kb) == ({"name": "zorblat.md", "sha256": kb.documents()[0].sha256},)
    est = from_kb.estimate(engine.workspace_for(settings), 10)
    assert est["seconds"] == pytest.approx(10 * est["seconds_per_step"]) and est["source"]


@pytest.mark.slow
def test_finetune_cli_trains_offline_on_a_knowledge_base_and_registers_provenance(tmp_path, capsys):
    from lib import engine
    from lib.__main__ import main
    from lib.settings import load_settings
    from tests.test_training import needs_training_deps

    needs_training_deps()
    doc = tmp_path / "zorblat.md"
    doc.write_text("# Zorblat policy\n\nThe Zorblat warranty lasts 7 years from purchase.\n\n"
                   "Zorblat units weigh 12 kg and ship within 3 business days.\n")
    common = ["--data-dir", str(tmp_path / "data"), "--json"]
    assert main(["ingest", str(doc), "--collection", "zorblat", *common]) == 0
    capsys.readouterr()
    assert main(["finetune", "--kb", "zorblat", "--steps", "3", "--rank", "4", *common]) == 0
    head, done = (json.loads(x) for x in capsys.readouterr().out.splitlines())
    assert head["examples"] == 3 and head["estimate"]["seconds"] > 0 and "not taught" in head["can_and_cannot"]
    assert done["status"] == "succeeded"
    info = done["model"]
    assert info["knowledge_base"] == "zorblat" and [d["name"] for d in info["documents"]] == ["zorblat.md"]
    assert "3 steps" in info["method"] and "offline" in info["method"] and info["train_seconds"] > 0
    s = load_settings(env={}, secrets_file=None, data_dir=tmp_path / "data")
    ws = engine.workspace_for(s)
    assert ws.active_model().id == done["job"]  # registered and selected
    tuned = engine.resolve_finetuned(s, ws)
    kb = engine.open_kb(tuned, "zorblat")
    c = engine.ask(tuned, "How long is the Zorblat warranty?", ["finetuned"], kb)
    assert c.results[0].warnings == () and c.results[0].trained_on["knowledge_base"] == "zorblat"


@pytest.mark.slow
def test_a_speed_probe_measures_this_machine_and_feeds_the_estimate(settings, embedder, tmp_path):
    from lib import engine
    from lib.finetune import from_kb
    from tests.test_training import needs_training_deps

    needs_training_deps()
    doc = tmp_path / "zorblat.md"
    doc.write_text("The Zorblat warranty lasts 7 years from purchase.\n\nZorblat units weigh 12 kg.\n")
    kb = engine.open_kb(settings, "zorblat", embedder=embedder)
    engine.ingest_paths(kb, [doc])
    ws = engine.workspace_for(settings)
    assert "shipped adapter" in from_kb.estimate(ws, 10)["source"]
    measured = from_kb.probe(ws, from_kb.offline_examples(kb)[0], steps=2)
    assert measured["seconds_per_step"] > 0 and measured["steps"] == 2
    est = from_kb.estimate(ws, 10)
    assert "speed probe on this machine" in est["source"]
    assert est["seconds"] == pytest.approx(10 * measured["seconds_per_step"])
    assert ws.models() == [m for m in ws.models() if m.builtin]  # nothing registered


def test_an_evaluation_run_carries_what_the_fine_tuned_model_was_trained_on(fake_settings, embedder, tmp_path,
                                                                           monkeypatch):
    """An evaluation run's fine-tuned answers carry the model card and the warnings Compare shows, so the Evaluate
    and Decide pages and the report can say the fine-tuned model was trained on other documents."""
    from lib import engine, evalrun, report
    from lib.finetune import registry

    monkeypatch.setattr(registry, "PROVIDER_KINDS", registry.PROVIDER_KINDS | {"fake"})
    ws = engine.workspace_for(fake_settings)
    ws.add_model(replace(MODEL, provider="fake", model="tuned-model", lora=None), activate=False)
    (tmp_path / "spec.md").write_text("The Zorblat warranty lasts 7 years from purchase.")
    kb = engine.open_kb(fake_settings, "specs", embedder=embedder)
    engine.ingest_paths(kb, [tmp_path / "spec.md"])
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"id": "z1", "question": "How long is the Zorblat warranty?",
                                     "answer": "7 years", "keywords": ["7"]}) + "\n")
    run_id, _, _ = evalrun.start(fake_settings, ws, kb, str(questions), ["rag", "finetuned", "hybrid"], "prov")
    evalrun.resume(fake_settings, ws, kb, run_id)
    answers = {a.arm: a.result for a in ws.answers(run_id)}
    for arm in ("finetuned", "hybrid"):
        assert answers[arm].trained_on and answers[arm].trained_on["knowledge_base"] == "licenses"
        assert any("not on knowledge base 'specs'" in w for w in answers[arm].warnings), answers[arm].warnings
    assert answers["rag"].trained_on is None and not answers["rag"].warnings
    told = report.run_provenance(ws.answers(run_id), "specs")
    assert told and told["other_documents"] and told["trained_on_kb"] == "licenses"
