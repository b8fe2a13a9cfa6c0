"""No API key, bearer token or URL credential reaches the data folder or any output (issue 9, item 11)."""

import json

import pytest

from lib.__main__ import main
from lib.errors import redact

KEY = "sk-planted-0123456789abcdefXYZ"
PASSWORD = "hunter2-planted"


def test_redact_covers_keys_tokens_and_url_credentials():
    text = (f"Authorization: Bearer {KEY} at https://bob:{PASSWORD}@api.example/v1?api-key=abc123456&x=1 "
            "api-key: 0123456789abcdef0123456789abcdef")
    out = redact(text)
    assert KEY not in out and PASSWORD not in out and "abc123456" not in out and "0123456789abcdef0123" not in out
    assert "x=1" in out and "api.example/v1" in out
    assert redact("The refund window is 45 days [1].") == "The refund window is 45 days [1]."
    assert redact("uses my-secret-value here", ("my-secret-value",)) == "uses [REDACTED] here"
    from lib.errors import remember_secret

    remember_secret("azure0123456789plainkey")  # a configured key of any shape is redacted verbatim
    assert redact("the server said: azure0123456789plainkey is wrong") == "the server said: [REDACTED] is wrong"


@pytest.mark.parametrize(("model", "base_url_fmt"), [
    ("echo-auth", "{url}"),  # a server that echoes the Authorization header and the URL in its error
    ("gpt-4o-mini", "http://bob:{pw}@127.0.0.1:9/v1?api-key={key}"),  # unreachable, credentials in the URL
])
def test_a_planted_key_never_reaches_the_data_folder_or_the_output(tmp_path, sample_kb_dir, openai_server,
                                                                   monkeypatch, capsys, model, base_url_fmt):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(sample_kb_dir, data)
    base_url = base_url_fmt.format(url=openai_server.base_url, pw=PASSWORD, key=KEY)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", base_url)
    monkeypatch.setenv("WORKBENCH_BASE_MODEL", model)
    monkeypatch.setenv("WORKBENCH_TIMEOUT", "3")
    for argv in (["ask", "How long is the refund window?", "--arms", "baseline,rag"],
                 ["eval", "--limit", "1", "--arms", "baseline", "--run-name", "faulty"]):
        main([*argv, "--data-dir", str(data), "--json"])
        main([*argv, "--data-dir", str(data)])
    out = capsys.readouterr()
    printed = out.out + out.err
    assert "error" in printed  # the fault was reported...
    for secret in (KEY, PASSWORD):
        assert secret not in printed  # ...without the secret
        for f in data.rglob("*"):
            if f.is_file():
                assert secret.encode() not in f.read_bytes(), f
    if model == "echo-auth":
        assert "[REDACTED]" in printed and json.dumps(KEY) not in printed
