"""The freshness test: an edited fact in a temporary copy of the knowledge base; the real one is never touched."""

import json
import shutil

import pytest

from lib import engine, freshness
from lib.__main__ import main
from lib.records import Question
from lib.store import document_text, list_knowledge_bases


def test_values_are_compared_as_numbers_and_words():
    assert freshness.contains_value("The window is sixty days [1].", "60")
    assert not freshness.contains_value("The window is 160 days.", "60")
    assert freshness.contains_value("Ships from Carrow Junction.", "Carrow Junction")
    text, n = freshness.edit_text("45 days, not 145 days; 45.", "45", "60")
    assert (text, n) == ("60 days, not 145 days; 60.", 2)


def test_a_question_with_a_number_is_suggested_and_the_number_changed():
    qs = [Question("u1", "Revenue?", (), "", "", answerable=False),
          Question("q1", "How long is the refund window?", ("45",), "45 days", "refund_policy.md")]
    q, old, new = freshness.suggest(qs, ["refund_policy.md"])
    assert q.id == "q1" and (old, new) == ("45", "60")
    assert freshness.suggest(qs, ["faq.md"]) is None


def test_document_text_is_stitched_back_exactly(settings, embedder, tmp_path):
    from tests.conftest import SAMPLE_DOCS

    kb = engine.open_kb(settings, "stitch", embedder=embedder)
    engine.ingest_paths(kb, [SAMPLE_DOCS / "refund_policy.md"], size=64, overlap=16)
    from lib.documents import load_path

    assert document_text(kb, "refund_policy.md") == load_path(SAMPLE_DOCS / "refund_policy.md").text


@pytest.mark.slow
def test_rag_follows_the_edit_and_the_real_knowledge_base_is_unchanged(sample_kb_dir, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(sample_kb_dir, data)
    common = ["--data-dir", str(data), "--json"]
    from lib.settings import load_settings

    settings = load_settings(env={}, secrets_file=None, data_dir=data)
    kb = engine.open_kb(settings)
    before = kb.collection.get(include=["documents", "metadatas"])
    assert main(["freshness", "--document", "refund_policy.md", "--find", "45", "--replace", "60",
                 "--question", "How long is the refund window?", "--arms", "rag,finetuned", "--top-k", "4",
                 *common]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    by_arm = {x["arm"]: x for x in lines if "arm" in x}
    assert by_arm["rag"]["follows_change"] is True and not by_arm["rag"]["keeps_old"], by_arm
    assert by_arm["finetuned"]["follows_change"] is False  # trained before the edit, no retrieval
    assert lines[-1]["reindex_s"] > 0 and lines[-1]["retrain_s"] == 810.0
    after = engine.open_kb(settings).collection.get(include=["documents", "metadatas"])
    assert sorted(zip(before["ids"], before["documents"])) == sorted(zip(after["ids"], after["documents"]))
    assert not [n for n in list_knowledge_bases(kb.client) if n.startswith("fresh-")]
    assert main(["freshness", "--document", "refund_policy.md", "--find", "999", "--replace", "1",
                 "--question", "q?", *common]) == 2
    assert "does not occur" in capsys.readouterr().out
