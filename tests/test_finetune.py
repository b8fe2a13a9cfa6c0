import json

import pytest

from lib import finetune
from lib.errors import ConfigError
from lib.providers import openai_client

GOOD = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Refund window?"},
                     {"role": "assistant", "content": "45 days.\nReason: the refund policy says so."}]}


def _many(n=10):
    return [json.loads(json.dumps(GOOD)) for _ in range(n)]


def test_good_examples_pass():
    assert finetune.validate(_many()) == []


@pytest.mark.parametrize(("example", "fragment"), [
    ({"prompt": "x"}, "missing 'messages'"),
    ({"messages": [{"role": "user", "content": "q"}]}, "last message must be the assistant"),
    ({"messages": [{"role": "assistant", "content": "a"}]}, "no user message"),
    ({"messages": [{"role": "robot", "content": "q"}, {"role": "assistant", "content": "a"}]}, "role 'robot'"),
    ({"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "a"}]}, "no text content"),
    ({"messages": [{"role": "user", "content": "q", "extra": 1}, {"role": "assistant", "content": "a"}]},
     "unknown keys: extra"),
    ({"messages": ["hi", {"role": "assistant", "content": "a"}]}, "not an object"),
])
def test_bad_rows_are_reported_by_row(example, fragment):
    examples = _many(10)
    examples.insert(3, example)
    problems = finetune.validate(examples)
    assert [row for row, _ in problems] == [4] and fragment in problems[0][1]


def test_too_few_and_too_long():
    assert any("at least 10" in p for _, p in finetune.validate(_many(3)))
    long = {"messages": [{"role": "user", "content": "word " * 700}, {"role": "assistant", "content": "a"}]}
    problems = finetune.validate([*_many(10), long], target="local")
    assert problems == [(11, problems[0][1])] and "limit per example is 512" in problems[0][1]
    assert finetune.validate([*_many(10), long], target="openai") == []


def test_parse_jsonl_and_csv():
    examples, problems = finetune.parse_jsonl(json.dumps(GOOD) + "\nnot json\n[1]\n\n")
    assert len(examples) == 1 and [r for r, _ in problems] == [2, 3]
    examples, problems = finetune.parse_csv("question,answer\nRefund window?,45 days.\n,missing\n")
    assert len(examples) == 1 and problems == [(3, "empty question or answer")]
    assert examples[0]["messages"][-1] == {"role": "assistant", "content": "45 days."}
    assert examples[0]["messages"][1]["content"] == "Question: Refund window?"  # framed like the arm's prompt
    assert finetune.parse_csv("q,a\nx,y\n")[1][0][1].startswith("the CSV needs a header")
    assert finetune.parse_upload("x.txt", b"")[1][0][1].endswith("question,answer columns")


def test_table_round_trip_and_export():
    rows = finetune.table_rows(_many(2))
    assert rows[0] == {"system": "Be brief.", "question": "Refund window?",
                       "answer": "45 days.\nReason: the refund policy says so."}
    assert finetune.from_table(rows) == _many(2)
    lines = finetune.to_jsonl(_many(2)).splitlines()
    assert len(lines) == 2 and json.loads(lines[0]) == GOOD


def test_sample_training_set_is_valid_for_local_training():
    examples, problems = finetune.parse_jsonl(finetune.SAMPLE_TRAINING_SET.read_bytes())
    assert problems == [] and len(examples) >= 100
    assert finetune.validate(examples, "local") == []


def test_registry_tracks_the_active_model_per_workspace(tmp_path):
    from lib.workspace import Workspace

    ws = Workspace(tmp_path, "default")
    shipped = finetune.shipped_model()
    assert ws.active_model() == shipped  # nothing chosen: the shipped adapter (if present)
    model = finetune.FineTunedModel(id="m1", name="mine", provider="openai", model="ft:gpt-4.1-mini:x::1",
                                    base_model="gpt-4.1-mini", trained_on=({"document": "a.md", "sha256": "x"},),
                                    workspace="default", knowledge_base="kb", method="OpenAI job j1")
    ws.add_model(model)
    assert ws.active_model() == model and ws.active_model().spec.name == "ft:gpt-4.1-mini:x::1"
    assert Workspace(tmp_path, "default").active_model() == model  # survives a reopen, provenance included
    ws.remove_model("m1")
    assert ws.active_model() == shipped
    with pytest.raises(ConfigError, match="No fine-tuned model"):
        ws.activate("m1")


def test_registry_is_a_leaf():
    """lib.finetune.registry imports no other part of lib but the configuration."""
    import ast

    from tests.conftest import ROOT

    tree = ast.parse((ROOT / "lib" / "finetune" / "registry.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert {m for m in imported if m and m.startswith("lib")} == {"lib.settings"}


def test_training_cost_estimate():
    est = finetune.estimate_training_cost(_many(10), "gpt-4.1-mini-2025-04-14", epochs=3)
    per = finetune.count_example_tokens(GOOD, "gpt-4.1-mini")
    assert est["tokens"] == 10 * per and est["trained_tokens"] == 30 * per
    assert est["usd"] == pytest.approx(30 * per * 5.0 / 1e6)
    assert finetune.estimate_training_cost(_many(10), "unknown-model")["usd"] is None


def test_local_training_says_what_to_install(tmp_path, monkeypatch):
    from lib.finetune import local
    from lib.workspace import Workspace

    monkeypatch.setattr(local, "missing_training_deps", lambda: ["torch", "peft"])
    ws = Workspace(tmp_path, "default")
    with pytest.raises(ConfigError, match="requirements-train.txt"):
        finetune.start_local_training(ws, _many(), "x")
    assert ws.jobs() == []  # nothing recorded


@pytest.fixture
def client(settings, openai_server):
    """OpenAI fine-tuning through the gateway (the only way to it)."""
    from lib import gateway

    return gateway.fine_tuning(settings.with_overrides(openai_api_key="sk-test", openai_base_url=openai_server.base_url,
                                                       max_retries=0))


def test_openai_job_to_success_and_registration(client, tmp_path):
    from lib.workspace import Workspace

    ws = Workspace(tmp_path, "default")
    job = finetune.start_openai_job(client, _many(), "gpt-4.1-mini-2025-04-14", epochs=2, suffix="wb", ws=ws,
                                    trained_on=({"document": "a.md", "sha256": "x"},), knowledge_base="kb")
    [record] = ws.jobs("openai")
    assert record.id == job.id and record.params["examples"] == 10 and not record.finished
    seen = []
    for _ in range(6):
        # any session (here: a second handle on the same workspace) can follow the job
        job, events = finetune.refresh_openai_job(ws, client, Workspace(tmp_path, "default").job(job.id))
        seen.append(job.status)
        if job.status == "succeeded":
            break
    assert seen[-1] == "succeeded" and "running" in seen
    assert events and job.fine_tuned_model.startswith("ft:gpt-4.1-mini-2025-04-14:")
    model = ws.active_model()
    assert model.id == job.id and model.model == job.fine_tuned_model and ws.job(job.id).status == "succeeded"
    assert model.trained_on == ({"document": "a.md", "sha256": "x"},) and model.knowledge_base == "kb"
    assert model.training_cost_usd == pytest.approx(job.trained_tokens * 5.0 / 1e6)
    finetune.refresh_openai_job(ws, client, ws.job(job.id))  # refreshing again registers nothing twice
    assert [m.id for m in ws.models()].count(job.id) == 1
    from lib.pricing import cost_for
    from lib.records import Usage

    usd, _ = cost_for(model.spec, Usage(1_000_000, 0, 0, 0, 0, 0))
    assert usd == pytest.approx(0.80)  # inference at the fine-tuned price, not the base price


def test_openai_job_failure_and_cancel(client, openai_server):
    openai_server.fail_jobs = True
    job = finetune.start_openai_job(client, _many(), "gpt-4.1-mini-2025-04-14")
    for _ in range(6):
        job, _ = finetune.poll_openai_job(client, job.id)
    assert job.status == "failed" and job.error.message
    openai_server.fail_jobs = False
    job = finetune.start_openai_job(client, _many(), "gpt-4.1-mini-2025-04-14")
    client.cancel(job.id)
    assert finetune.poll_openai_job(client, job.id)[0].status == "cancelled"


class _Chunk:
    document, chunk, text = "refund_policy.md", 0, "Returns are accepted within 45 days."


def test_generate_pairs_with_a_hosted_model(settings, openai_server):
    from lib.providers import OpenAICompatible
    from lib.settings import ModelSpec

    openai_server.reply = '[{"question": "How long to return?", "answer": "45 days.\\nReason: the policy."}]'
    provider = OpenAICompatible(ModelSpec("openai", "gpt-4.1-mini"), openai_client(
        settings.with_overrides(openai_api_key="sk-t", openai_base_url=openai_server.base_url)))
    examples, problems = finetune.generate_pairs([_Chunk()], provider, per_chunk=1)
    assert problems == [] and examples[0]["messages"][-1]["content"].startswith("45 days.")
    openai_server.reply = "sorry, no JSON today"
    examples, problems = finetune.generate_pairs([_Chunk()], provider)
    assert examples == [] and "not the JSON asked for" in problems[0]


def test_the_first_estimate_scales_the_shipped_speed_by_the_length_of_the_examples(tmp_path):
    from lib.finetune import from_kb
    from lib.workspace import Workspace

    ws = Workspace(tmp_path / "data", "default")
    per_step, source = from_kb.seconds_per_step(ws)
    assert source.startswith("the shipped adapter")
    short = [{"messages": [{"role": "user", "content": "Question: How long?"},
                           {"role": "assistant", "content": "45 days.\nReason: the policy says so."}]}] * 10
    long = [{"messages": [{"role": "user", "content": "Question: What does manual.txt say (part 1)?"},
                          {"role": "assistant", "content": "The warranty covers parts and labour. " * 40}]}] * 10
    slow = from_kb.estimate(ws, 100, long)
    assert slow["seconds_per_step"] > per_step * 1.3 and "scaled x" in slow["source"] and "estimate" in slow["note"]
    assert from_kb.estimate(ws, 100, short)["seconds_per_step"] == pytest.approx(per_step)  # never scaled down
    # a measured speed is used as it is
    ws.set_meta("training_probe", '{"seconds_per_step": 12.5, "steps": 3}')
    measured = from_kb.estimate(ws, 100, long)
    assert measured["seconds"] == pytest.approx(1250) and "speed probe" in measured["source"]
