"""Bad input loses nothing and cannot take the app down (issue 9, items 6 and 13)."""

import io
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
