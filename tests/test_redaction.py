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


# ---------------------------------------------------------------- issue 18: every form, answers included

KEY_SHAPES = {
    "openai project key": "sk-proj-Q3v9LmTz0aBcDeFgHiJkLmNoPqRsTuVw",
    "azure-style hex key": "3f9a7c1e5b2d4f6a8c0e1b3d5f7a9c2e",
    "key with URL-special characters": "Zk+9/qW=t0p~s3cr3t!xyz",
}


def leaked_forms(key: str) -> tuple[list[str], list[str]]:
    """(forms to look for in any letter case, forms to look for exactly) of a planted key."""
    import base64
    from urllib.parse import quote, quote_plus

    b64 = base64.b64encode(key.encode()).decode()
    basic = base64.b64encode(f"user:{key}".encode()).decode()
    return [key, quote(key, safe=""), quote_plus(key)], [b64, basic, basic[8:-4]]


def assert_clean(text: str | bytes, key: str, where: str) -> None:
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    folded, exact = leaked_forms(key)
    for form in folded:
        assert form.lower() not in text.lower(), f"{form!r} in {where}"
    for form in exact:
        assert form not in text, f"{form!r} in {where}"


def test_redact_catches_every_form_of_a_configured_key():
    from lib.errors import remember_secret

    key = "Zk+9/qW=t0p~s3cr3t!abc"
    remember_secret(key)
    import base64
    from urllib.parse import quote

    text = (f"k={key} K={key.upper()} u={quote(key, safe='')} b={base64.b64encode(key.encode()).decode()} "
            f"inside={base64.b64encode(b'Authorization: ' + key.encode()).decode()} "
            f"Authorization: Basic {base64.b64encode(('user:' + key).encode()).decode()}")
    out = redact(text)
    assert_clean(out, key, "redacted text")
    assert base64.b64encode(b"Authorization: " + key.encode()).decode()[16:-4] not in out  # base64 at any offset


def test_a_key_split_across_streamed_chunks_never_comes_out_and_plain_text_is_not_delayed():
    import random

    from lib.errors import RedactingStream, remember_secret

    key = "k3y-0f-any-shape-98765XYZ"
    remember_secret(key)
    text = f"The refund window is 45 days. Your key is {key}, or {key.upper()}. Thanks [1]."
    rng = random.Random(18)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 25)))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
        scrub = RedactingStream()
        out = [scrub.feed(p) for p in pieces] + [scrub.flush()]
        assert "".join(out) == redact(text, answer=True)
        for i in range(len(out)):  # no prefix of the output, as shown while streaming, holds the key
            assert key.lower() not in "".join(out[:i + 1]).lower()
    scrub = RedactingStream()
    assert scrub.feed("The refund window ") == "The refund window "  # ordinary text goes through at once
    prose = "Password: at least 12 characters. Basic coverage lasts 24 months. Token: one per visit."
    assert scrub.feed(prose) + scrub.flush() == prose  # an answer's words that merely look like credentials stay


@pytest.mark.parametrize("key", list(KEY_SHAPES.values()), ids=list(KEY_SHAPES))
def test_a_server_echoing_the_key_in_answers_errors_and_streams_leaks_it_nowhere(
        key, tmp_path, sample_kb_dir, openai_server, monkeypatch, capsys):
    """The test server puts the request's key into its streamed answers (3 characters a chunk) and error bodies,
    plain, URL-encoded, base64, upper- and lower-case and in a Basic header; then every output, record, export,
    report and log is searched for every form."""
    import shutil

    from lib import evalrun, history
    from lib.workspace import Workspace

    data = tmp_path / "data"
    shutil.copytree(sample_kb_dir, data)
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("WORKBENCH_BASE_MODEL", "echo-key")
    monkeypatch.setenv("WORKBENCH_FT_MODEL", "openai:echo-key-error")
    d = ["--data-dir", str(data)]
    main(["ask", "How long is the refund window?", "--arms", "baseline,rag,finetuned", "--json", *d])
    main(["ask", "How long is the refund window?", "--arms", "baseline,finetuned", *d])
    main(["eval", "--limit", "2", "--arms", "baseline,rag,finetuned", "--run-name", "leak", "--json", *d])
    report_md, report_html = tmp_path / "r.md", tmp_path / "r.html"
    for out in (report_md, report_html):
        main(["report", "--run", "leak", "--out", str(out), *d])
    main(["decide", "--run", "leak", "--json", *d])
    printed = capsys.readouterr()
    shown = printed.out + printed.err
    assert "[REDACTED]" in shown and "The refund window is 45 days" in shown  # the answer came, without the key
    assert_clean(shown, key, "the CLI's output")
    ws = Workspace(data)
    comparisons, _ = ws.comparisons()
    assert comparisons and any("[REDACTED]" in r.answer for c in comparisons for r in c.results)
    _, _, graded = evalrun.summary(ws, "leak")
    exports = {"history CSV": history.export_csv(comparisons), "evaluation CSV": evalrun.export_csv(graded),
               "evaluation JSON": json.dumps(evalrun.export_json(ws, "leak")),
               "report (Markdown)": report_md.read_text(), "report (HTML)": report_html.read_text()}
    for where, text in exports.items():
        assert_clean(text, key, where)
    for f in data.rglob("*"):  # the workspace database (and its WAL), the store, job logs: every file
        if f.is_file():
            assert_clean(f.read_bytes(), key, str(f))
