"""Bad input loses nothing and cannot take the app down (issue 9, items 6 and 13)."""

import io
import json
import os
import zipfile

import pytest

from lib import engine
from lib.documents import DocumentError, load_bytes
from lib.errors import ConfigError
from lib.store import check_name
from tests.conftest import SAMPLE_DOCS


def _docx_with(member: str, data: bytes) -> bytes:
    src = zipfile.ZipFile(SAMPLE_DOCS / "employee_travel_policy.docx")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for item in src.infolist():
            z.writestr(item, data if item.filename == member else src.read(item.filename))
        if member not in src.namelist():
            z.writestr(member, data)
    return out.getvalue()


def test_a_docx_that_would_expand_past_the_limit_is_refused_before_parsing():
    bomb = _docx_with("word/media/padding.bin", b"\0" * (80 * 1024 * 1024))
    assert len(bomb) < 1024 * 1024  # under 1 MB on the wire
    with pytest.raises(DocumentError, match=r"expands to 80\.\d MB.*limit is 64\.0 MB"):
        load_bytes("bomb.docx", bomb)


def test_a_docx_whose_xml_would_take_gigabytes_to_parse_is_refused():
    paragraphs = b"<w:p><w:r><w:t>lorem ipsum dolor sit amet</w:t></w:r></w:p>" * 300_000  # 18 MB of XML
    big = _docx_with("word/document.xml", b"<w:document><w:body>" + paragraphs + b"</w:body></w:document>")
    assert len(big) < 1024 * 1024
    with pytest.raises(DocumentError, match=r"of XML when unpacked; the limit is 10\.0 MB"):
        load_bytes("paragraphs.docx", big)
    assert load_bytes("ok.docx", (SAMPLE_DOCS / "employee_travel_policy.docx").read_bytes()).text


def test_a_docx_with_damaged_xml_gets_a_plain_message():
    broken = _docx_with("word/document.xml", b"<w:document><w:body><w:p>unterminated")
    with pytest.raises(DocumentError, match="damaged or not a Word") as info:
        load_bytes("broken.docx", broken)
    assert "XMLSyntaxError" not in str(info.value)


def test_text_past_the_limit_is_refused_with_the_limit_named():
    with pytest.raises(DocumentError, match=r"5\.2 million characters.*limit is 5 million"):
        load_bytes("huge.txt", ("word " * 1_040_000).encode())


def test_knowledge_base_names_chroma_would_refuse_are_refused_with_the_rule():
    for bad in ("a..b", "192.168.1.1", "x" * 64, "-ab", "ab"):
        with pytest.raises(ConfigError, match="not a valid knowledge base name: use 3-63"):
            check_name(bad)
    assert check_name("v1.2-docs") == "v1.2-docs"


def test_a_file_name_that_is_not_utf8_is_ingested_and_found(settings, embedder, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/caf\xe9-menu.txt"
    with open(raw, "wb") as f:
        f.write(b"The cafe opens at 8 in the morning and closes at 6 in the evening.")
    kb = engine.open_kb(settings, "names", embedder=embedder)
    [result] = engine.ingest_paths(kb, [folder])
    assert result.status == "ingested", result
    [doc] = kb.documents()
    assert doc.name == "caf\ufffd-menu.txt"
    assert kb.query("When does the cafe open?", 1)[0].document == doc.name
    assert kb.remove_document(doc.name) == 1


def test_an_aes_encrypted_pdf_without_a_user_password_opens():
    import pypdf

    reader = pypdf.PdfReader(str(SAMPLE_DOCS / "warranty.pdf"))
    writer = pypdf.PdfWriter()
    for page in reader.pages:
        writer.add_page(page)
    writer.encrypt(user_password="", owner_password="owner-secret", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    doc = load_bytes("protected.pdf", out.getvalue())
    assert "warranty" in doc.text.lower()


def test_a_server_answering_invalid_json_is_explained():
    import json

    from lib.errors import explain

    try:
        json.loads("<html>")
    except json.JSONDecodeError as exc:
        message = explain(exc, "gpt-4o-mini", "http://127.0.0.1:9/v1")
    assert "not valid JSON" in message and "Check the base URL" in message and "JSONDecodeError" not in message


# ---------------------------------------------------------------- issue 18: validated input

@pytest.mark.parametrize(("argv", "message"), [
    (["ask", "q", "--top-k", "-1"], "-1 is out of range: use 1 to 50"),
    (["ask", "q", "--top-k", "0"], "0 is out of range: use 1 to 50"),
    (["ask", "q", "--temperature", "nan"], "use a number from 0 to 2"),
    (["ask", "q", "--arms", ""], "name at least one arm"),
    (["ask", "q", "--arms", "rag,rag"], "rag named more than once"),
    (["ask", "q", "--max-tokens", "0"], "use 1 to 16,384"),
    (["eval", "--limit", "-1"], "use 1 to 1,000,000"),
    (["eval", "--concurrency", "0"], "use 1 to 64"),
    (["project", "--run", "r", "--per-day", "-1"], "use 1 to 1,000,000,000"),
    (["project", "--run", "r", "--months", "0"], "use 1 to 120"),
    (["project", "--run", "r", "--hardware-usd-per-hour", "-2"], "use a number from 0 to 10000"),
    (["decide", "--run", "r", "--latency-ms", "inf"], "use a number above 0, at most 3.6e+06"),
    (["finetune", "--kb", "k", "--steps", "1000000000"], "use 1 to 20,000"),
    (["finetune", "--kb", "k", "--steps", "0"], "use 1 to 20,000"),
    (["finetune", "--kb", "k", "--rank", "0"], "use 1 to 256"),
    (["finetune", "--kb", "k", "--lr", "nan"], "use a number above 0, at most 1"),
    (["ingest", "x.md", "--chunk-size", "5000"], "use 16 to 254"),
])
def test_every_cli_flag_with_a_range_is_checked_before_anything_runs(tmp_path, capsys, argv, message):
    from lib.__main__ import main

    data = tmp_path / "data"
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--data-dir", str(data)])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert not data.exists()  # nothing ran: not even the workspace was opened


def test_deeply_nested_html_and_json_get_a_plain_message():
    from lib import finetune
    from lib.evalsets import read_rows

    with pytest.raises(DocumentError, match="more than 512 levels deep"):
        load_bytes("deep.html", b"<div>" * 1500 + b"text" + b"</div>" * 1500)
    assert "inner" in load_bytes("fine.html", b"<div>" * 200 + b"inner" + b"</div>" * 200).text
    deep = b"[" * 200 + b"]" * 200
    line = b'{"question": "q", "reference": "r"}\n' + deep + b"\n" + b"[" * 100_000 + b"\n"
    rows, _ = read_rows(line, "set.jsonl")
    assert "error" not in rows[0] and "nested more than 64 levels" in rows[1]["error"]
    assert "nested more than 64 levels" in rows[2]["error"]  # past what Python's reader can take
    examples, problems = finetune.parse_upload("train.jsonl", deep + b"\n")  # the Fine-tune page's upload
    assert not examples and "nested more than 64 levels" in problems[0][1]


def test_file_names_are_shown_safely_and_json_output_stays_valid(tmp_path, capsys):
    from lib.__main__ import main

    folder = tmp_path / "docs"
    folder.mkdir()
    names = [b"invoice\xe2\x80\xaefdp.txt", b"two\nlines.txt", b"caf\xe9.txt"]  # RLO, a newline, not UTF-8
    for raw in names:
        with open(os.fsencode(folder) + b"/" + raw, "wb") as f:
            f.write(b"The cafe opens at 8 in the morning.")
    data = ["--data-dir", str(tmp_path / "data")]
    files = [str(folder / os.fsdecode(raw)) for raw in names]
    assert main(["ingest", *files, "--json", *data]) == 0
    out = capsys.readouterr().out
    out.encode("utf-8")  # valid UTF-8 (no lone surrogate)
    shown = [json.loads(line)["file"] for line in out.splitlines()]
    assert shown == ["invoice\\u202efdp.txt", "two\\nlines.txt", "caf\ufffd.txt"]
    assert main(["list", *data]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 3 and any(line.startswith("invoice\\u202efdp.txt:") for line in listed)
    assert not any("\u202e" in line for line in listed)


def test_a_latin1_question_set_is_refused_like_a_latin1_document(tmp_path):
    from lib.evalsets import read_rows

    latin1 = "question,reference\nQuel est le délai?,45 jours\n".encode("latin-1")
    _, problems = read_rows(latin1, "set.csv")
    with pytest.raises(DocumentError) as as_document:
        load_bytes("set.txt", latin1)
    assert problems == [(1, str(as_document.value).replace("set.txt", "set.csv"))]
    assert "is not UTF-8 text (byte 0xe9" in problems[0][1]
    path = tmp_path / "set.csv"
    path.write_bytes(latin1)
    from lib.evalrun import load_set

    with pytest.raises(ValueError, match="is not UTF-8 text"):  # what `eval --set set.csv` reports
        load_set(None, str(path))


def test_size_messages_state_the_actual_size():
    limit = 20 * 1024 * 1024
    with pytest.raises(DocumentError) as refused:
        load_bytes("big.txt", b"a" * (limit + 1), limit)
    assert "is 20,971,521 bytes; the limit is 20,971,520 bytes" in str(refused.value)
    with pytest.raises(DocumentError, match=r"is 30\.0 MB; the limit is 20\.0 MB"):
        load_bytes("bigger.txt", b"a" * (30 * 1024 * 1024), limit)
