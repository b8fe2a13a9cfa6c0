"""The model catalogue: downloads through huggingface_hub against a stand-in hub on 127.0.0.1 (tests/hub_server.py)
that serves the bundled SmolLM2-135M GGUF under a catalogue name; a complete download, a resume after a killed
download (a real process killed with SIGKILL), a checksum mismatch, too little disk, a cancel, an unreachable hub;
the downloaded model chosen for a workspace and answering a comparison; parameter counts and context windows from
GGUF headers; Ollama's model list and its OpenAI-compatible endpoint.

conftest.py sets HF_HUB_OFFLINE=1 for the whole run: the download tests turn it off explicitly, for the download
code path only (in subprocesses through the environment, in this process on huggingface_hub's constant), and point
HF_ENDPOINT at 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lib import catalogue, engine, modelhub
from lib.gguf_meta import GGUFError, params_label, read_gguf
from lib.providers import bundled_model_path
from lib.settings import ModelSpec, Settings, load_settings
from tests.hub_server import StandInHub

ROOT = Path(__file__).resolve().parent.parent
NAME = "smollm2-360m"  # a catalogue name; the stand-in serves the bundled 135M file under it
MODEL = catalogue.find(NAME)
PART = f"{MODEL.file}.part"


@pytest.fixture(scope="module")
def hub() -> Iterator[StandInHub]:
    server = StandInHub().start()
    server.serve(MODEL.repo, MODEL.file, bundled_model_path())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def online(hub: StandInHub, monkeypatch: pytest.MonkeyPatch) -> StandInHub:
    """The download path in this process may reach the stand-in hub (and nothing else: pytest-socket)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # read by lib.settings, for the CLI run in this process
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    hub.state.requests.clear()
    hub.state.bytes_per_s = None
    hub.state.drop_after = None
    for served in hub.state.files.values():
        served.wrong_checksum = False
    return hub


def _settings(data: Path, hub: StandInHub | None = None, **extra: str) -> Settings:
    env = {"HF_ENDPOINT": hub.endpoint} if hub else {}
    return load_settings(env={**env, **extra}, secrets_file=None, data_dir=data)


def _env(hub: StandInHub) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.endpoint, "PYTHONPATH": str(ROOT)}


def _cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lib", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _last_json(text: str) -> dict[str, Any]:
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


def _main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    from lib.__main__ import main

    code = main(args)
    return code, _last_json(capsys.readouterr().out)


@pytest.fixture(scope="module")
def pulled(hub: StandInHub, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """One complete download by the CLI, in a process of its own: (data folder, last JSON line, stderr)."""
    data = tmp_path_factory.mktemp("models-data")
    done = _cli(["models", "pull", NAME, "--json", "--data-dir", str(data)], _env(hub))
    assert done.returncode == 0, done.stdout + done.stderr
    return data, _last_json(done.stdout), done.stderr


def _with_pulled(pulled: tuple[Path, dict[str, Any], str], data: Path) -> Path:
    """A data folder of its own that holds the model downloaded once for this module (hard links, no copy)."""
    (data / "models").mkdir(parents=True)
    for suffix in (".gguf", ".json"):
        os.link(pulled[0] / "models" / f"{NAME}{suffix}", data / "models" / f"{NAME}{suffix}")
    return data


# ---------------------------------------------------------------- GGUF headers and the catalogue

def test_the_gguf_header_gives_parameters_and_context_window(tmp_path: Path) -> None:
    info = read_gguf(bundled_model_path())
    assert info.params == 134_515_008  # what llama.cpp's llama_model_n_params reports for this file
    assert params_label(info.params) == "135M"
    assert info.context_length == 8192 and info.architecture == "llama" and info.has_chat_template
    adapter = read_gguf(ROOT / "assets" / "adapters" / "quillmere-smollm2-lora.gguf")
    assert adapter.kind == "adapter" and adapter.params == 3_962_880  # the LoRA's 3.96 M parameters
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(bundled_model_path().read_bytes()[:4096])
    with pytest.raises(GGUFError, match="ends inside its header"):
        read_gguf(cut)
    (tmp_path / "not.gguf").write_text("hello")
    with pytest.raises(GGUFError, match="not a GGUF"):
        read_gguf(tmp_path / "not.gguf")


def test_the_local_model_reads_its_context_window_from_the_gguf(settings: Settings) -> None:
    from lib.providers import make_provider

    provider = make_provider(ModelSpec("local", str(bundled_model_path())), settings)
    assert provider.context_window == 8192  # type: ignore[attr-defined]
    assert provider.n_ctx == 4096 and provider.params == 134_515_008  # type: ignore[attr-defined]
    small = make_provider(ModelSpec("local", str(bundled_model_path())), settings.with_overrides(local_max_ctx=1024))
    assert small.n_ctx == 1024  # type: ignore[attr-defined]


def test_the_catalogue_is_dated_permissive_and_listed_with_the_contract_fields(tmp_path: Path,
                                                                               capsys: pytest.CaptureFixture[str]):
    cat = catalogue.catalogue()
    assert cat.date and cat.sources
    assert {m.license for m in cat.models} == {"Apache-2.0"}
    assert cat.models[0].bundled and max(m.params for m in cat.models) <= 3_500_000_000
    from lib.__main__ import main

    assert main(["models", "list", "--json", "--data-dir", str(tmp_path)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in rows] == catalogue.names()
    for r in rows:
        assert {"name", "repo", "file", "size_bytes", "params", "context", "license", "downloaded"} <= set(r)
        assert isinstance(r["downloaded"], bool)
    assert [r["downloaded"] for r in rows] == [True] + [False] * (len(rows) - 1)  # only the bundled model
    assert rows[0]["params"] == 134_515_008 and rows[0]["params_source"] == "gguf"


def test_expected_speed_is_an_estimate_from_the_bundled_models_measured_speed(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    unknown = catalogue.expected_speed(s, catalogue.find("qwen2.5-1.5b"))
    assert unknown["tokens_per_s"] is None and unknown["source"] == "unknown"
    modelhub.record_speed(tmp_path, "smollm2-135m", {"tokens_per_s": 100.0, "prompt_tokens_per_s": 400.0,
                                                     "measured_at": time.time(), "params": 134_515_008})
    est = catalogue.expected_speed(s, catalogue.find("qwen2.5-1.5b"))
    assert est["source"] == "estimate" and "estimate" in est["note"]
    assert est["tokens_per_s"] == pytest.approx(100.0 * 134_515_008 / 1_540_000_000, abs=0.1)
    modelhub.record_speed(tmp_path, "qwen2.5-1.5b", {"tokens_per_s": 7.5, "measured_at": time.time()})
    assert catalogue.expected_speed(s, catalogue.find("qwen2.5-1.5b"))["source"] == "measured"


# ---------------------------------------------------------------- downloads

def test_a_complete_download_is_checked_and_listed(pulled: tuple[Path, dict[str, Any], str], hub: StandInHub):
    data, out, stderr = pulled
    assert out["status"] == "downloaded" and out["name"] == NAME
    assert out["sha256"] == hub.state.files[f"{MODEL.repo}/{MODEL.file}"].sha256
    assert out["bytes"] == bundled_model_path().stat().st_size
    assert Path(out["path"]) == data / "models" / f"{NAME}.gguf" and Path(out["path"]).is_file()
    assert "MB of 98.4 MB" in stderr  # progress with the size, on stderr
    assert not (data / "models" / ".downloads" / NAME).exists()  # nothing partial left behind
    rows = {r["name"]: r for r in catalogue.rows(_settings(data))}
    row = rows[NAME]
    assert row["downloaded"] and row["sha256"] == out["sha256"]
    # The file is the 135M model: its parameters come from its GGUF, not from the catalogue's name or card.
    assert row["params"] == 134_515_008 and row["params_source"] == "gguf"


def test_a_killed_download_is_never_listed_and_resumes_where_it_stopped(online: StandInHub, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    online.state.bytes_per_s = 12e6  # slow enough to kill it half-way
    proc = subprocess.Popen([sys.executable, "-m", "lib", "models", "pull", NAME, "--json", "--data-dir",
                             str(tmp_path)], cwd=ROOT, env=_env(online), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    part = tmp_path / "models" / ".downloads" / NAME / PART
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not part.exists() or part.stat().st_size < 20_000_000):
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    kept = part.stat().st_size
    assert 20_000_000 <= kept < bundled_model_path().stat().st_size
    s = _settings(tmp_path, online)
    assert NAME not in modelhub.installed(tmp_path)
    assert {r["name"]: r for r in catalogue.rows(s)}[NAME]["downloaded"] is False
    state = modelhub.status(tmp_path, NAME)
    assert state is not None and state.status == "interrupted" and state.done_bytes == kept

    online.state.bytes_per_s = None
    online.state.requests.clear()
    code, out = _main(["models", "pull", NAME, "--json", "--data-dir", str(tmp_path)], capsys)
    assert code == 0 and out["status"] == "downloaded"
    gets = [r for r in online.state.requests if r[0] == "GET"]
    assert gets and gets[0][2] == f"bytes={kept}-"  # resumed with a Range request, not from the start
    assert out["sha256"] == modelhub.file_sha256(bundled_model_path())  # and the whole file checks out
    assert NAME in modelhub.installed(tmp_path)


def test_a_lost_connection_is_resumed_within_the_download(online: StandInHub, tmp_path: Path) -> None:
    online.state.drop_after = 25_000_000  # past two of huggingface_hub's 10 MB chunks
    got = modelhub.pull(_settings(tmp_path, online), NAME)
    ranges = [r[2] for r in online.state.requests if r[0] == "GET"]
    assert ranges == ["", "bytes=20971520-"]  # the second request asks for the rest only
    assert got.sha256 == modelhub.file_sha256(bundled_model_path())


def test_a_checksum_mismatch_is_refused_and_nothing_is_kept(online: StandInHub, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    online.state.files[f"{MODEL.repo}/{MODEL.file}"].wrong_checksum = True
    code, out = _main(["models", "pull", NAME, "--json", "--data-dir", str(tmp_path)], capsys)
    assert code == 1 and out["status"] == "failed" and out["reason"] == "checksum" and out["path"] is None
    assert "checksum" in out["error"] and "nothing was installed" in out["error"]
    assert NAME not in modelhub.installed(tmp_path)
    assert not list((tmp_path / "models").glob("*.gguf"))
    assert not (tmp_path / "models" / ".downloads" / NAME / PART).exists()  # a bad file is not resumed either
    state = modelhub.status(tmp_path, NAME)
    assert state is not None and state.status == "failed" and state.reason == "checksum"


def test_too_little_disk_space_is_refused_before_downloading(online: StandInHub, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(modelhub, "_free_bytes", lambda folder: 50_000_000)
    code, out = _main(["models", "pull", NAME, "--json", "--data-dir", str(tmp_path)], capsys)
    assert code == 1 and out["reason"] == "disk" and "Not enough free disk space" in out["error"]
    assert "0.05 GB free" in out["error"]
    assert not [r for r in online.state.requests if r[0] == "GET"]  # not a byte asked for
    assert NAME not in modelhub.installed(tmp_path)


def test_an_unreachable_hub_says_how_to_copy_a_gguf_in_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    code, out = _main(["models", "pull", NAME, "--json", "--data-dir", str(tmp_path)], capsys)
    assert code == 1 and out["reason"] == "unreachable"
    assert "could not be reached" in out["error"] and "models add FILE.gguf" in out["error"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # and the hub is not even asked when offline mode is set
    code, out = _main(["models", "pull", NAME, "--json", "--data-dir", str(tmp_path)], capsys)
    assert code == 1 and out["reason"] == "unreachable" and "HF_HUB_OFFLINE" in out["error"]
    assert NAME not in modelhub.installed(tmp_path)


def test_a_download_can_be_cancelled_and_keeps_its_part_for_later(online: StandInHub, tmp_path: Path) -> None:
    online.state.bytes_per_s = 20e6
    cancel = threading.Event()
    seen: list[modelhub.Progress] = []

    def progress(p: modelhub.Progress) -> None:
        seen.append(p)
        if p.done_bytes > 8_000_000:
            cancel.set()

    with pytest.raises(modelhub.DownloadCancelled):
        modelhub.pull(_settings(tmp_path, online), NAME, progress, cancel)
    assert NAME not in modelhub.installed(tmp_path)
    state = modelhub.status(tmp_path, NAME)
    assert state is not None and state.status == "cancelled"
    assert (tmp_path / "models" / ".downloads" / NAME / PART).stat().st_size > 8_000_000
    downloading = [p for p in seen if p.status == "downloading" and p.total_bytes]
    assert downloading and downloading[-1].total_bytes == bundled_model_path().stat().st_size
    modelhub.discard(tmp_path, NAME)
    assert modelhub.status(tmp_path, NAME) is None


def test_a_background_download_is_followed_and_cancelled_from_another_process(online: StandInHub,
                                                                               tmp_path: Path) -> None:
    """What the Settings page does: start the CLI in its own process, follow status.json, cancel with SIGTERM."""
    online.state.bytes_per_s = 10e6
    s = _settings(tmp_path, online)
    pid = modelhub.start_pull(s, NAME)
    deadline = time.monotonic() + 60
    state = modelhub.status(tmp_path, NAME)
    while time.monotonic() < deadline and not (state and state.status == "downloading" and state.done_bytes > 1e6):
        time.sleep(0.2)
        state = modelhub.status(tmp_path, NAME)
    assert state is not None and state.pid == pid and state.eta_s is not None and 0 < state.fraction < 1
    with pytest.raises(modelhub.DownloadBusy):
        modelhub.start_pull(s, NAME)
    assert modelhub.cancel(tmp_path, NAME)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and modelhub.status(tmp_path, NAME).active:  # type: ignore[union-attr]
        time.sleep(0.1)
    assert modelhub.status(tmp_path, NAME).status == "cancelled"  # type: ignore[union-attr]
    assert NAME not in modelhub.installed(tmp_path)


# ---------------------------------------------------------------- using a model

def test_a_downloaded_model_becomes_the_workspaces_base_model(pulled: tuple[Path, dict[str, Any], str],
                                                              tmp_path: Path) -> None:
    data = _with_pulled(pulled, tmp_path / "data")
    s = _settings(data)
    alice = engine.create_workspace(s, "alice")
    bob = engine.workspace_for(s)
    catalogue.use(s, alice, NAME, "base")
    assert engine.resolve_models(s.with_overrides(workspace="alice"), alice).base.label == NAME
    assert engine.resolve_models(s, bob).base == s.base  # another workspace keeps the bundled model
    configured = _settings(data, WORKBENCH_BASE_MODEL=f"local:{bundled_model_path()}")
    assert engine.resolve_models(configured, alice).base == configured.base  # the configuration wins
    with pytest.raises(Exception, match="fine-tuned role needs one"):
        catalogue.use(s, alice, NAME, "finetuned")
    with pytest.raises(Exception, match="is not downloaded"):
        catalogue.use(s, alice, "qwen2.5-0.5b", "base")
    modelhub.remove(data, NAME)
    assert engine.resolve_models(s, alice).base == s.base  # removed: back to the configured model


def test_a_lora_trained_for_a_downloaded_model_takes_the_finetuned_role(pulled: tuple[Path, dict[str, Any], str],
                                                                        tmp_path: Path) -> None:
    from lib.finetune.registry import SHIPPED_ADAPTER, FineTunedModel

    s = _settings(pulled[0])
    ws = engine.workspace_for(s.with_overrides(workspace="lora-owner"), create=True)
    path = pulled[1]["path"]
    ws.add_model(FineTunedModel(id="m-360", name="kb-lora", provider="local", model=path, base_model=MODEL.label,
                                lora=str(SHIPPED_ADAPTER), created_at=time.time()), activate=False)
    result = catalogue.use(s, ws, NAME, "finetuned")
    assert result["model_id"] == "m-360" and ws.active_model().id == "m-360"  # type: ignore[union-attr]
    tuned = engine.resolve_models(s.with_overrides(workspace="lora-owner"), ws).finetuned
    assert tuned is not None and tuned.name == path and tuned.label == f"{NAME} + LoRA {SHIPPED_ADAPTER.stem}"


@pytest.mark.slow
def test_the_downloaded_model_answers_a_comparison(pulled: tuple[Path, dict[str, Any], str], hub: StandInHub,
                                                   tmp_path: Path) -> None:
    data = _with_pulled(pulled, tmp_path / "data")
    env = _env(hub)
    doc = tmp_path / "refunds.md"
    doc.write_text("# Refunds\n\nUnused items can be returned within 45 days of delivery for a full refund.\n")
    assert _cli(["workspaces", "create", "trial", "--data-dir", str(data)], env).returncode == 0
    assert _cli(["ingest", str(doc), "--workspace", "trial", "--data-dir", str(data)], env).returncode == 0
    used = _cli(["models", "use", NAME, "--workspace", "trial", "--json", "--data-dir", str(data)], env)
    assert used.returncode == 0 and _last_json(used.stdout)["model"] == NAME, used.stdout + used.stderr
    asked = _cli(["ask", "How long is the refund window?", "--arms", "baseline,rag", "--max-tokens", "12",
                  "--workspace", "trial", "--json", "--data-dir", str(data)], env, timeout=300)
    assert asked.returncode == 0, asked.stdout + asked.stderr
    arms = [json.loads(line) for line in asked.stdout.splitlines() if line.startswith("{")]
    assert [a["arm"] for a in arms] == ["baseline", "rag"]
    for arm in arms:
        assert arm["model"] == NAME and arm["provider"] == "local" and not arm["error"]
        assert arm["answer"].strip() and arm["usage"]["completion_tokens"] > 0
    assert arms[1]["sources"][0]["document"] == "refunds.md"


@pytest.mark.slow
def test_a_gguf_copied_in_by_hand_is_checked_in_the_worker_before_it_is_listed(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    got = modelhub.add_file(s, bundled_model_path(), "my-copy")
    assert got.source == "copied" and got.sha256 == modelhub.file_sha256(bundled_model_path())
    assert {r["name"]: r for r in catalogue.rows(s)}["my-copy"]["params"] == 134_515_008
    adapter = ROOT / "assets" / "adapters" / "quillmere-smollm2-lora.gguf"
    with pytest.raises(Exception, match="not a model"):
        modelhub.add_file(s, adapter, "adapter")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 8)
    with pytest.raises(Exception, match="cannot be used"):
        modelhub.add_file(s, bad, "bad")
    assert set(modelhub.installed(tmp_path)) == {"my-copy"}


# ---------------------------------------------------------------- the small-model caveat

def test_the_small_model_caveat_comes_from_the_parameter_count() -> None:
    from tests.records import spec

    base = {"arms": ["baseline", "rag"], "providers": {"base": "local", "finetuned": "local"},
            "models": {"base": "qwen2.5-1.5b", "finetuned": ""}}
    assert catalogue.small_model_caveat(spec(**{**base, "params": {"base": 1_540_000_000}})) is None
    named_big = {**base, "models": {"base": "smollm2-135m-instruct"}, "params": {"base": 1_540_000_000}}
    assert catalogue.small_model_caveat(spec(**named_big)) is None  # the name says 135m; the count decides
    small = catalogue.small_model_caveat(spec(**{**base, "models": {"base": "tiny"}, "params": {"base": 494_000_000}}))
    assert small is not None and "494M-parameter local model (tiny)" in small and "can invert" in small
    old_run = {**base, "models": {"base": "smollm2-135m-instruct"}}  # recorded before runs kept parameters
    assert "135M offline demo model" in (catalogue.small_model_caveat(spec(**old_run)) or "")
    hosted = {"arms": ["rag"], "providers": {"base": "openai"}, "models": {"base": "gpt-4.1-mini"}}
    assert catalogue.small_model_caveat(spec(**hosted)) is None


# ---------------------------------------------------------------- Ollama

def test_ollama_models_are_listed_and_answer_without_the_openai_key(openai_server: Any, tmp_path: Path) -> None:
    from lib import ollama
    from lib.records import GenParams

    openai_server.ollama_models = ["llama3.2:1b", "qwen2.5:0.5b"]
    openai_server.reply = "45 days"
    s = load_settings(env={"OLLAMA_HOST": openai_server.url.removeprefix("http://"),
                           "OPENAI_API_KEY": "sk-test-owner-key-123456"}, secrets_file=None, data_dir=tmp_path)
    listed = ollama.list_models(s)
    assert listed.reachable and [m.name for m in listed.models] == ["llama3.2:1b", "qwen2.5:0.5b"]
    assert listed.models[0].parameter_size == "1.2B"
    ws = engine.workspace_for(s)
    catalogue.use(s, ws, "ollama:llama3.2:1b", "base")
    catalogue.use(s, ws, "ollama:qwen2.5:0.5b", "finetuned")
    resolved = engine.resolve_models(s.with_overrides(base_explicit=False), ws)
    assert resolved.base == ModelSpec("ollama", "llama3.2:1b")
    assert resolved.finetuned == ModelSpec("ollama", "qwen2.5:0.5b")
    comparison = engine.ask(resolved, "How long is the refund window?", ["baseline", "finetuned"], None,
                            GenParams(max_tokens=8))
    for r in comparison.results:
        assert not r.error and r.answer.strip().startswith("45 days") and r.cost_usd == 0.0
    chats = [q for q in openai_server.requests if q["path"] == "/v1/chat/completions"]
    assert sorted(q["json"]["model"] for q in chats) == ["llama3.2:1b", "qwen2.5:0.5b"]  # arms run at once
    assert all(q["headers"]["authorization"] == "Bearer ollama" for q in chats)  # the OpenAI key stays put


def test_no_ollama_server_is_said_plainly(tmp_path: Path) -> None:
    from lib import ollama

    status = ollama.list_models(load_settings(env={"OLLAMA_HOST": "127.0.0.1:9"}, secrets_file=None,
                                              data_dir=tmp_path))
    assert not status.reachable and "no Ollama server answers at http://127.0.0.1:9" in (status.error or "")


# ---------------------------------------------------------------- fine-tuning a downloaded model

@pytest.fixture(scope="module")
def training_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled model's weights as transformers saves them (bf16 safetensors, config, tokenizer): what the hub
    serves for a catalogue model's training repository."""
    from tests.test_training import needs_training_deps

    needs_training_deps()
    import torch

    from training.base_model import load_base

    model, tokenizer = load_base()
    out = tmp_path_factory.mktemp("hf-weights")
    model.to(torch.bfloat16).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.mark.slow
def test_a_downloaded_model_is_fine_tuned_locally_and_its_lora_registered(
        online: StandInHub, training_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lib import finetune
    from lib.arms import build_prompt
    from lib.finetune import from_kb
    from lib.providers import Done, LocalLlama
    from lib.records import GenParams
    from training.gguf_lora import read_adapter

    spec = MODEL.training
    assert spec is not None
    for file in (*spec.files, *spec.optional):
        if (training_weights / file).is_file():
            online.serve(spec.repo, file, training_weights / file, lfs=file.endswith(".safetensors"))
    s = _settings(tmp_path, online)
    gguf = modelhub.pull(s, NAME)
    code, out = _main(["models", "pull", NAME, "--training", "--json", "--data-dir", str(tmp_path)], capsys)
    assert code == 0 and out["status"] == "downloaded", out
    assert out["sha256"]["model.safetensors"] == modelhub.file_sha256(training_weights / "model.safetensors")
    assert out["sha256"]["config.json"]  # kept in git on the hub: checked by its git blob id
    assert modelhub.training_dir(tmp_path, NAME) == Path(out["path"])

    ws = engine.workspace_for(s)
    facts = [(f"What is the code of locker {i}?", f"Locker {i} opens with code {1000 + 37 * i}.") for i in range(12)]
    examples = [{"messages": [*build_prompt(q, None).messages(), {"role": "assistant", "content": a}]}
                for q, a in facts]
    job_id = finetune.start_local_training(ws, examples, "lockers-lora", steps=2, rank=4, lr=1e-3, base=NAME)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and not ws.job(job_id).finished:  # type: ignore[union-attr]
        time.sleep(1)
    job = ws.job(job_id)
    assert job is not None and job.status == "succeeded", (job, ws.job_log_tail(job_id, 2000))
    model = next(m for m in ws.models() if m.id == job_id)
    assert model.model == gguf.path and model.base_model == MODEL.label  # registered for that base, with provenance
    assert ws.active_model().id == job_id  # type: ignore[union-attr]
    sidecar = ws.adapter_sidecar(job_id) or {}
    assert sidecar["base_weights"] == out["path"] and sidecar["base_model"] == Path(gguf.path).name
    meta, _ = read_adapter(model.lora)  # type: ignore[arg-type]
    assert meta["general.architecture"] == "llama" and meta["general.type"] == "adapter"
    assert "last local training run" in from_kb.estimate(ws, 10, base=NAME)["source"]  # the estimate uses this model's speed
    assert catalogue.use(s, ws, NAME, "finetuned")["model_id"] == job_id
    tuned = LocalLlama(model.spec)
    done = [e for e in tuned.stream(examples[0]["messages"][:-1], GenParams(max_tokens=6)) if isinstance(e, Done)]
    assert done and done[0].completion_tokens  # llama.cpp applies the adapter to the downloaded GGUF


# ---------------------------------------------------------------- Settings > Local models

def test_the_settings_page_downloads_follows_cancels_and_uses_a_model(pulled: tuple[Path, dict[str, Any], str],
                                                                      online: StandInHub, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    data = _with_pulled(pulled, tmp_path / "data")  # smollm2-360m is here; qwen2.5-0.5b is served by the stand-in
    other = catalogue.find("qwen2.5-0.5b")
    online.serve(other.repo, other.file, bundled_model_path())
    online.state.bytes_per_s = 5e6
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(data))
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("views/settings.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["name"]) == catalogue.names()
    assert table.set_index("name").loc[NAME, "status"] == "downloaded"
    assert table.set_index("name").loc[NAME, "parameters"] == "135M"  # read from the file that arrived
    assert any("no Ollama server answers" in c.value for c in at.caption)

    at.selectbox(key="settings_models_pick").set_value("qwen2.5-0.5b").run()
    at.button(key="settings_models_pull").click().run()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = modelhub.status(data, "qwen2.5-0.5b")
        if state and state.status == "downloading" and state.done_bytes > 0:
            break
        time.sleep(0.2)
    at.run()
    assert not at.exception, at.exception
    assert any("MB of 98.4 MB" in p.proto.text.replace("\\", "") for p in at.get("progress"))
    at.button(key="settings_models_cancel_qwen2.5-0.5b").click().run()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and modelhub.status(data, "qwen2.5-0.5b").active:  # type: ignore[union-attr]
        time.sleep(0.1)
    at.run()
    assert any("was cancelled" in w.value and "resumes" in w.value for w in at.warning)
    assert "qwen2.5-0.5b" not in modelhub.installed(data)

    at.selectbox(key="settings_models_pick").set_value(NAME).run()
    assert at.button(key="settings_models_use_ft").disabled  # no LoRA trained for it yet
    at.button(key="settings_models_use_base").click().run()
    assert not at.exception, at.exception
    assert at.session_state["settings"].base.label == NAME
    assert catalogue.chosen(engine.workspace_for(at.session_state["settings"])) == NAME
    assert at.text_input(key="settings_base_name").value.endswith(f"{NAME}.gguf")  # the form shows what is in force


def test_the_settings_for_models_are_read_like_the_rest_of_the_configuration() -> None:
    from lib.settings import DEFAULT_HF_ENDPOINT, ollama_url

    default = load_settings(env={}, secrets_file=None)
    assert default.hf_endpoint == DEFAULT_HF_ENDPOINT and not default.hf_offline and default.local_max_ctx == 4096
    assert not default.base_explicit and default.ollama_host is None
    s = load_settings(env={"HF_ENDPOINT": "http://mirror.local/", "HF_HUB_OFFLINE": "1", "WORKBENCH_LOCAL_CTX": "8192",
                           "OLLAMA_HOST": "0.0.0.0"}, secrets_file=None)
    assert s.hf_endpoint == "http://mirror.local" and s.hf_offline and s.local_max_ctx == 8192
    assert s.ollama_host == "http://127.0.0.1:11434"
    assert ollama_url("gpu-box:8080") == "http://gpu-box:8080" and ollama_url("gpu-box") == "http://gpu-box:11434"
    assert ollama_url("https://o.example/") == "https://o.example"  # a URL keeps its scheme's port
    assert load_settings(env={"WORKBENCH_BASE_MODEL": "local:/m.gguf"}, secrets_file=None).base_explicit
    assert load_settings(env={"OPENAI_API_KEY": "sk-x"}, secrets_file=None).base_explicit  # hosted: configured
    assert load_settings(env={"WORKBENCH_BASE_MODEL": "ollama:llama3.2:1b"}, secrets_file=None).base == \
        ModelSpec("ollama", "llama3.2:1b")
    with pytest.raises(ValueError, match="WORKBENCH_LOCAL_CTX"):
        load_settings(env={"WORKBENCH_LOCAL_CTX": "lots"}, secrets_file=None)
    with pytest.raises(ValueError, match="at least 512"):
        load_settings(env={"WORKBENCH_LOCAL_CTX": "100"}, secrets_file=None)
