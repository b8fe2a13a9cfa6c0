"""Shared fixtures. Outbound network other than loopback is blocked for the
whole run (pytest-socket, see pyproject.toml), so an accidental download fails loudly."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Belt and braces: libraries that know these variables never try a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT"):
    os.environ.pop(var, None)  # tests must not pick up a developer's real key

from lib.providers import PROVIDERS, Delta, Done, Started  # noqa: E402
from lib.records import GenParams  # noqa: E402
from lib.settings import ModelSpec, Settings, load_settings  # noqa: E402

SAMPLE_DOCS = ROOT / "sample_docs"


@pytest.fixture(autouse=True)
def no_bug_reported(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    """A bug the app or the CLI caught and logged (lib.errors.report_bug) fails the test that caused it, as an
    uncaught exception would; a test of the logging itself is marked `bug_expected`."""
    yield
    if request.node.get_closest_marker("bug_expected"):
        return
    logs = sorted(tmp_path.rglob("logs/errors.log"))
    if logs:
        pytest.fail("a bug was logged:\n" + "\n".join(p.read_text(encoding="utf-8")[-3000:] for p in logs))


class FakeProvider:
    """A provider that answers from a queue and records every call (cf. llm's fake model)."""

    kind = "fake"
    queue: list[str] = []
    history: list[tuple[str, list[dict[str, str]], GenParams]] = []
    fail_with: dict[str, Exception] = {}

    def __init__(self, spec: ModelSpec, settings: Settings | None = None) -> None:
        self.spec = spec

    @classmethod
    def enqueue(cls, *answers: str) -> None:
        cls.queue.extend(answers)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(self, messages: list[dict[str, str]], params: GenParams) -> Iterator[Any]:
        FakeProvider.history.append((self.spec.name, messages, params))
        if self.spec.name in FakeProvider.fail_with:
            raise FakeProvider.fail_with[self.spec.name]
        yield Started()
        answer = FakeProvider.queue.pop(0) if FakeProvider.queue else f"{self.spec.name} says hello [1]"
        for word in answer.split(" "):
            yield Delta(word + " ")
        prompt = sum(len(m["content"].split()) for m in messages) + 2
        yield Done("stop", prompt, len(answer.split(" ")))


@pytest.fixture
def fake_provider() -> Iterator[type[FakeProvider]]:
    PROVIDERS["fake"] = FakeProvider
    FakeProvider.queue, FakeProvider.history, FakeProvider.fail_with = [], [], {}
    try:
        yield FakeProvider
    finally:
        PROVIDERS.pop("fake", None)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(env={}, secrets_file=None, data_dir=tmp_path / "data")


@pytest.fixture
def fake_settings(settings: Settings, fake_provider: type[FakeProvider]) -> Settings:
    return settings.with_overrides(base=ModelSpec("fake", "base-model"), finetuned=ModelSpec("fake", "tuned-model"))


@pytest.fixture(scope="session")
def embedder() -> Any:
    from lib.embeddings import MiniLMEmbedder

    return MiniLMEmbedder()


@pytest.fixture(scope="session")
def _openai_server_session() -> Iterator[Any]:
    from tests.openai_server import FakeOpenAIServer

    server = FakeOpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def openai_server(_openai_server_session: Any) -> Any:
    """The OpenAI-compatible test server on 127.0.0.1, reset to its defaults for each test."""
    _openai_server_session.reset()
    return _openai_server_session


@pytest.fixture(scope="session")
def sample_kb_dir(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    """A data folder with the sample corpus ingested once for the session (read-only for tests)."""
    from lib import engine

    data = tmp_path_factory.mktemp("sample-data")
    s = load_settings(env={}, secrets_file=None, data_dir=data)
    results = engine.ingest_paths(engine.open_kb(s, embedder=embedder), [SAMPLE_DOCS])
    assert all(r.status in ("ingested", "skipped") for r in results), results
    return data
