"""The fake OpenAI server, exercised with the real `openai` client."""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Iterator

import openai
import pytest

from tests.openai_server import FakeOpenAIServer

TRAINING_JSONL = "\n".join(
    json.dumps({"messages": [{"role": "user", "content": f"Question {i}?"},
                             {"role": "assistant", "content": f"Answer number {i}."}]})
    for i in range(3)
) + "\n"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def client(server: FakeOpenAIServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0) as oai:
        yield oai


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


# ------------------------------------------------------------ chat completions

def test_non_streaming_reply_and_usage(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    result = client.chat.completions.create(model="gpt-4o-mini", messages=ask("What is retrieval augmented generation?"))
    choice = result.choices[0]
    assert choice.message.content == "Answer about: What is retrieval augmented generation? [1]"
    assert choice.finish_reason == "stop"
    assert result.model == "gpt-4o-mini"
    assert result.id.startswith("chatcmpl-")
    assert result.usage is not None
    # prompt: 2 + 5 words plus 3 per message; completion: the 8 words of the reply
    assert result.usage.prompt_tokens == 13
    assert result.usage.completion_tokens == 8
    assert result.usage.total_tokens == 21
    recorded = server.requests_to("/chat/completions")[-1]
    assert recorded["method"] == "POST"
    assert recorded["headers"]["authorization"] == "Bearer sk-test"
    assert recorded["json"]["messages"][1]["content"] == "What is retrieval augmented generation?"


def test_streaming_with_usage(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.reply = "one two three four five"
    stream = client.chat.completions.create(model="gpt-4.1-mini", messages=ask("hi"), stream=True,
                                            stream_options={"include_usage": True})
    deltas, finish, usage = [], None, None
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        assert chunk.model == "gpt-4.1-mini"
        if chunk.choices:
            deltas.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    assert "".join(deltas) == "one two three four five"
    assert len([d for d in deltas if d]) == 5
    assert finish == "stop"
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (9, 5, 14)


def test_streaming_without_usage_has_no_usage_chunk(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.reply_fn = lambda body: f"{len(body['messages'])} messages"
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=ask("x"), stream=True))
    assert all(c.usage is None and c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "2 messages"


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_truncates(client: openai.OpenAI, server: FakeOpenAIServer, param: str) -> None:
    server.reply = "a b c d e f"
    result = client.chat.completions.create(model="gpt-4o-mini", messages=ask("x"), **{param: 3})
    assert result.choices[0].message.content == "a b c"
    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None and result.usage.completion_tokens == 3

    stream = client.chat.completions.create(model="gpt-4o-mini", messages=ask("x"), stream=True,
                                            stream_options={"include_usage": True}, **{param: 2})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "a b"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2


def test_first_token_delay(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.first_token_delay = 0.3
    began = time.monotonic()
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=ask("x"), stream=True)
    next(iter(stream))
    assert time.monotonic() - began >= 0.3
    stream.close()


def test_stream_error_mid_stream(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="stream-error", messages=ask("one two three four"), stream=True)
    with pytest.raises(openai.APIError, match="streaming"):
        list(stream)


# ------------------------------------------------------------ errors

def test_bad_key_is_401(server: FakeOpenAIServer) -> None:
    with openai.OpenAI(api_key="sk-invalid", base_url=server.base_url, max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as info:
            bad.chat.completions.create(model="gpt-4o-mini", messages=ask("x"))
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    assert "Incorrect API key provided" in info.value.message


def test_bad_keys_are_configurable(server: FakeOpenAIServer) -> None:
    server.bad_keys = {"sk-revoked"}
    with openai.OpenAI(api_key="sk-revoked", base_url=server.base_url, max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()


def test_missing_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="missing-model", messages=ask("x"))
    assert info.value.code == "model_not_found"
    assert "missing-model" in info.value.message


def test_rate_limited_is_429(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="rate-limited", messages=ask("x"))
    assert info.value.response.headers["retry-after"] == "0"
    assert server.rate_limit_hits == 1


def test_rate_limited_is_retried_by_the_client(server: FakeOpenAIServer) -> None:
    with openai.OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=1) as retrying:
        with pytest.raises(openai.RateLimitError):
            retrying.chat.completions.create(model="rate-limited", messages=ask("x"))
    assert server.rate_limit_hits == 2


def test_server_error_is_500(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="server-error", messages=ask("x"))


def test_slow_model_times_out(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    began = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.5).chat.completions.create(model="slow-model", messages=ask("x"))
    assert time.monotonic() - began < server.slow_seconds


def test_slow_model_answers_when_patient(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.slow_seconds = 0.2
    result = client.chat.completions.create(model="slow-model", messages=ask("x"), timeout=5)
    assert result.choices[0].message.content


# ------------------------------------------------------------ Azure

def test_azure_route(server: FakeOpenAIServer) -> None:
    server.reply = "from azure"
    with openai.AzureOpenAI(api_key="azure-key", azure_endpoint=server.azure_endpoint,
                            api_version="2024-10-21", max_retries=0) as azure:
        result = azure.chat.completions.create(model="my-deployment", messages=ask("x"))
        stream = azure.chat.completions.create(model="my-deployment", messages=ask("x"), stream=True,
                                               stream_options={"include_usage": True})
        chunks = list(stream)
    assert result.choices[0].message.content == "from azure"
    assert result.model == "my-deployment"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "from azure"
    assert chunks[-1].usage is not None
    recorded = server.requests_to("/chat/completions")
    assert {r["path"] for r in recorded} == {"/openai/deployments/my-deployment/chat/completions"}
    assert recorded[0]["query"]["api-version"] == "2024-10-21"
    assert recorded[0]["headers"]["api-key"] == "azure-key"


def test_azure_bad_key(server: FakeOpenAIServer) -> None:
    with openai.AzureOpenAI(api_key="sk-invalid", azure_endpoint=server.azure_endpoint,
                            api_version="2024-10-21", max_retries=0) as azure:
        with pytest.raises(openai.AuthenticationError):
            azure.chat.completions.create(model="dep", messages=ask("x"))


# ------------------------------------------------------------ embeddings and models

def test_embeddings(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    texts = ["the cat sat", "the cat sat", "quantum chromodynamics lecture"]
    result = client.embeddings.create(model="text-embedding-3-small", input=texts)
    vectors = [item.embedding for item in result.data]
    assert [item.index for item in result.data] == [0, 1, 2]
    assert all(len(v) == 16 for v in vectors)
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-5) for v in vectors)
    assert vectors[0] == vectors[1] != vectors[2]
    assert result.usage.prompt_tokens == 9

    server.embedding_dim = 8
    single = client.embeddings.create(model="text-embedding-3-small", input="the cat sat", encoding_format="float")
    assert len(single.data) == 1 and len(single.data[0].embedding) == 8
    assert client.embeddings.create(model="x", input="a", dimensions=4).data[0].embedding.__len__() == 4


def test_models(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.models.append("my-local-model")
    ids = [m.id for m in client.models.list()]
    assert {"gpt-4o-mini", "gpt-4.1-mini", "text-embedding-3-small", "my-local-model"} <= set(ids)
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_unknown_route_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.get("/nowhere", cast_to=object)


# ------------------------------------------------------------ files and fine-tuning

def upload(client: openai.OpenAI) -> str:
    file = client.files.create(file=("train.jsonl", io.BytesIO(TRAINING_JSONL.encode())), purpose="fine-tune")
    return file.id


def test_file_upload(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    file = client.files.create(file=("train.jsonl", io.BytesIO(TRAINING_JSONL.encode())), purpose="fine-tune")
    assert file.id.startswith("file-")
    assert (file.object, file.filename, file.purpose, file.status) == ("file", "train.jsonl", "fine-tune", "processed")
    assert file.bytes == len(TRAINING_JSONL.encode())
    assert client.files.retrieve(file.id).filename == "train.jsonl"
    assert client.files.content(file.id).read() == TRAINING_JSONL.encode()
    assert [f.id for f in client.files.list()] == [file.id]
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("file-nope")


def test_fine_tuning_job_succeeds(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    file_id = upload(client)
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=file_id, suffix="faq",
                                         hyperparameters={"n_epochs": 2})
    assert job.status == "validating_files"
    assert job.fine_tuned_model is None
    assert job.hyperparameters.n_epochs == 2
    statuses = [client.fine_tuning.jobs.retrieve(job.id).status for _ in range(4)]
    assert statuses == ["queued", "running", "succeeded", "succeeded"]

    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.fine_tuned_model == f"ft:gpt-4o-mini-2024-07-18:fake-org:faq:{job.id.removeprefix('ftjob-')[:8]}"
    assert done.trained_tokens == len(TRAINING_JSONL.split()) * 2
    assert done.finished_at is not None and done.error is None
    assert done.fine_tuned_model in [m.id for m in client.models.list()]

    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    assert all(e.object == "fine_tuning.job.event" for e in events)
    messages = [e.message for e in reversed(events)]  # the API lists newest first
    assert messages[0].startswith("Validating training file")
    assert "Step 3/10: training loss=" in " ".join(messages)
    assert messages[-1] == "The job has successfully completed"
    metrics = [e.data for e in events if e.type == "metrics"]
    assert len(metrics) == 10

    results = client.files.content(done.result_files[0]).text
    assert results.splitlines()[0] == "step,train_loss"
    assert [j.id for j in client.fine_tuning.jobs.list()] == [job.id]


def test_fine_tuning_events_grow(client: openai.OpenAI) -> None:
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=upload(client))
    counts = [len(client.fine_tuning.jobs.list_events(job.id, limit=100).data)]
    for _ in range(3):
        client.fine_tuning.jobs.retrieve(job.id)
        counts.append(len(client.fine_tuning.jobs.list_events(job.id, limit=100).data))
    assert counts == sorted(counts) and len(set(counts)) == 4
    assert len(client.fine_tuning.jobs.list_events(job.id, limit=2).data) == 2
    tuned = client.fine_tuning.jobs.retrieve(job.id)
    assert tuned.fine_tuned_model is not None and tuned.fine_tuned_model.split(":")[3] == "custom"
    assert tuned.trained_tokens == len(TRAINING_JSONL.split()) * 3


def test_fine_tuning_job_fails(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.fail_jobs = True
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=upload(client))
    statuses = [client.fine_tuning.jobs.retrieve(job.id).status for _ in range(3)]
    assert statuses == ["queued", "running", "failed"]
    failed = client.fine_tuning.jobs.retrieve(job.id)
    assert failed.error is not None and failed.error.code and failed.error.message
    assert failed.fine_tuned_model is None
    assert client.fine_tuning.jobs.list_events(job.id).data[0].level == "error"


def test_fine_tuning_job_cancel(client: openai.OpenAI) -> None:
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=upload(client))
    client.fine_tuning.jobs.retrieve(job.id)
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"


def test_fine_tuning_bad_requests(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file="file-missing")
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-missing")
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=upload(client))
    for _ in range(3):
        client.fine_tuning.jobs.retrieve(job.id)
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.cancel(job.id)


# ------------------------------------------------------------ server lifecycle

def test_start_stop_and_request_log() -> None:
    server = FakeOpenAIServer().start()
    try:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        with openai.OpenAI(api_key="k", base_url=server.base_url, max_retries=0) as oai:
            oai.models.list()
        assert server.requests[0]["method"] == "GET"
        assert server.requests[0]["path"] == "/v1/models"
        server.reply, server.fail_jobs = "x", True
        server.reset()
        assert server.requests == []
        assert (server.reply, server.fail_jobs, server.bad_keys) == (None, False, {"sk-invalid"})
    finally:
        server.stop()
    server.stop()  # idempotent
