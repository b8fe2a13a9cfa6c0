import io

import pytest

from lib.documents import DocumentError, expand_paths, load_bytes, load_path
from tests.conftest import SAMPLE_DOCS


def _pdf(text: str | None, encrypt: str | None = None) -> bytes:
    from pypdf import PdfWriter
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, invariant=1)
    if text:
        c.drawString(72, 720, text)
    else:
        c.rect(72, 600, 200, 100, fill=1)  # a "scan": ink, no text
    c.showPage()
    c.save()
    if not encrypt:
        return buf.getvalue()
    writer = PdfWriter(clone_from=io.BytesIO(buf.getvalue()))
    writer.encrypt(user_password=encrypt, owner_password=encrypt)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _docx(paragraphs: list[str]) -> bytes:
    import docx

    d = docx.Document()
    for p in paragraphs:
        d.add_paragraph(p)
    table = d.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "Plan"
    table.rows[0].cells[1].text = "Gold"
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def test_text_and_markdown_keep_their_content_and_hash():
    doc = load_bytes("a.md", b"# Title\r\n\r\n\r\n\r\nBody   \r\nline")
    assert doc.text == "# Title\n\nBody\nline"
    assert doc.kind == "markdown"
    assert len(doc.sha256) == 64
    assert load_bytes("b.txt", b"# Title\r\n\r\n\r\n\r\nBody   \r\nline").sha256 == doc.sha256


def test_pdf_text_is_extracted():
    doc = load_bytes("w.pdf", _pdf("Warranty lasts 27 months"))
    assert "Warranty lasts 27 months" in doc.text
    assert doc.pages == 1


def test_pdf_with_empty_user_password_opens():
    assert "Open sesame" in load_bytes("e.pdf", _pdf("Open sesame", encrypt="")).text


@pytest.mark.parametrize(
    ("name", "data", "fragment"),
    [
        ("broken.pdf", b"%PDF-1.7\n1 0 obj <</Type /Catalog>> garbage", "damaged or not a PDF"),
        ("notpdf.pdf", b"hello, I am plain text", "damaged or not a PDF"),
        ("scan.pdf", None, "no extractable text"),
        ("locked.pdf", "secret", "password-protected"),
        ("empty.txt", b"", "is empty"),
        ("blank.md", b"  \n\n  ", "is empty"),
        ("image.txt", bytes(range(256)) * 10, "binary file"),
        ("latin1.txt", "Café prices".encode("latin-1"), "not UTF-8"),
        ("sheet.xlsx", b"PK\x03\x04data", "not supported"),
        ("noext", b"text", "not supported"),
        ("broken.docx", b"PK\x03\x04 not really a zip", "not a Word"),
        ("plain.docx", b"just some text", "not a Word"),
    ],
)
def test_bad_input_gets_a_clear_error(name, data, fragment):
    if name == "scan.pdf":
        data = _pdf(None)
    elif name == "locked.pdf":
        data = _pdf("hidden", encrypt=data)
    with pytest.raises(DocumentError) as err:
        load_bytes(name, data)
    assert fragment in str(err.value)
    assert name in str(err.value)


def test_oversized_file_is_refused_before_reading(tmp_path):
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * 2048)
    with pytest.raises(DocumentError, match="the limit is"):
        load_path(big, max_bytes=1024)
    with pytest.raises(DocumentError, match="the limit is"):
        load_bytes("big.txt", b"a" * 2048, max_bytes=1024)


def test_missing_file_is_a_document_error(tmp_path):
    with pytest.raises(DocumentError, match="cannot be read"):
        load_path(tmp_path / "nope.txt")


def test_docx_paragraphs_and_tables():
    doc = load_bytes("p.docx", _docx(["Travel is booked 14 days ahead.", "Economy class only."]))
    assert "14 days ahead" in doc.text and "Plan | Gold" in doc.text


def test_html_drops_scripts_and_keeps_text():
    html = b"<html><head><title>Support</title><script>alert('x')</script></head>" \
           b"<body><h1>Hours</h1><p>Open 9&ndash;17</p><style>p{}</style></body></html>"
    doc = load_bytes("s.html", html)
    assert doc.title == "Support"
    assert "alert" not in doc.text and "p{}" not in doc.text
    assert "Hours" in doc.text and "Open 9–17" in doc.text


def test_utf16_with_bom_is_read():
    assert load_bytes("u.txt", "héllo wörld".encode("utf-16")).text == "héllo wörld"


def test_expand_paths_walks_folders_and_skips_unsupported(tmp_path):
    (tmp_path / "a.md").write_text("a")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("b")
    (tmp_path / "c.png").write_bytes(b"\x89PNG")
    (tmp_path / ".hidden.md").write_text("h")
    (tmp_path / "questions.jsonl").write_text("{}")
    files, skipped = expand_paths([tmp_path])
    assert [(f.name, name) for f, name in files] == [("a.md", "a.md"), ("b.txt", "sub/b.txt")]
    assert sorted(s.name for s in skipped) == ["c.png", "questions.jsonl"]
    named, _ = expand_paths([tmp_path / "c.png"])
    assert [name for _, name in named] == ["c.png"]  # named explicitly: kept, and will fail with a reason


def test_every_sample_document_loads():
    files, _ = expand_paths([SAMPLE_DOCS])
    kinds = {load_path(f).kind for f, _ in files}
    assert {"pdf", "docx", "html"} <= kinds
    assert 10 <= len(files) <= 20


def test_html_joins_inline_text_and_drops_navigation_and_permalinks():
    html = (b"<html><head><title>Policy</title></head><body>"
            b"<nav><a href='/'>Home</a> <a href='/docs'>Docs</a></nav>"
            b"<div class='sphinxsidebar' role='navigation'><h3>Table of Contents</h3><ul><li>Intro</li></ul></div>"
            b"<h1>Copyright<a class='headerlink' href='#copyright' title='Permalink'>\xc2\xb6</a></h1>"
            b"<p>Written by Neil &lt;<a href='mailto:x'>nas<span>@</span>debian<span>.</span>org</a>&gt; and\n"
            b"   <em>others</em>.</p>"
            b"<h2 id='x'>Scope <a href='#x'>#</a></h2><ul><li>one <b>bold</b> item</li><li>two</li></ul>"
            b"<pre>keep   this\n  as written</pre><table><tr><th>key</th><th>value</th></tr></table></body></html>")
    text = load_bytes("policy.html", html).text
    assert "Neil <nas@debian.org> and others." in text  # inline elements joined, as a browser shows them
    assert "¶" not in text and "Home" not in text and "Table of Contents" not in text
    assert text.startswith("Copyright\n\nWritten by") and "Scope\n\none bold item\ntwo" in text
    assert "keep   this" in text and "key | value" in text
