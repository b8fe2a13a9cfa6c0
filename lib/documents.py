"""Load a file into text with its metadata. Every unreadable input raises
`DocumentError` with a message a person can act on; nothing else escapes."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lib.settings import document_limits

SUPPORTED = {".txt": "text", ".md": "markdown", ".markdown": "markdown",
             ".pdf": "pdf", ".docx": "docx", ".html": "html", ".htm": "html"}
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
# What one document may expand to (a shared server must survive a decompression bomb): lib.settings.DocumentLimits.
_LIMITS = document_limits()
MAX_EXPANDED_BYTES = _LIMITS.expanded_bytes
MAX_TEXT_CHARS = _LIMITS.text_chars
MAX_XML_BYTES = _LIMITS.xml_bytes
# Files a folder scan passes over without complaint (the sample corpus's question file).
IGNORED_NAMES = {"questions.jsonl"}


class DocumentError(Exception):
    """A file that cannot be turned into text; str(exc) says why and what to do."""


@dataclass(frozen=True)
class Document:
    name: str
    text: str
    kind: str
    sha256: str  # of the file's bytes: the same content is recognised under any name
    size_bytes: int
    title: str | None = None
    pages: int | None = None


def _human(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB"


def sizes(size: int, limit: int) -> tuple[str, str]:
    """A size and its limit for a message, never the same text for two different sizes (20,971,521 bytes, not
    "20.0 MB; the limit is 20.0 MB")."""
    a, b = _human(size), _human(limit)
    return (a, b) if a != b else (f"{size:,} bytes", f"{limit:,} bytes")


# How deeply an upload may nest: web pages (Chromium's own HTML parser stops nesting at 512 levels) and JSON lines
# (question sets, answers to grade, training data: a few levels are all they need).
MAX_HTML_NESTING = 512
MAX_JSON_NESTING = 64


def parse_json(text: str) -> object:
    """One JSON value, nested at most MAX_JSON_NESTING levels; anything else is a ValueError with a plain message
    (a JSONDecodeError for text that is not JSON)."""
    import json

    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"nested more than {MAX_JSON_NESTING} levels deep (the limit is {MAX_JSON_NESTING})") from None
    depth, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        depth = max(depth, level)
        if depth > MAX_JSON_NESTING:
            raise ValueError(f"nested more than {MAX_JSON_NESTING} levels deep (the limit is {MAX_JSON_NESTING})")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return value


_UNSAFE_IN_NAMES = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029"
                                            "\u202a-\u202e\u2066-\u2069]")


def display_safe(text: str) -> str:
    """Text for one line of a listing: control characters (newlines included) and the bidirectional controls that
    reorder what is shown ("invoice\u202efdp.txt" would show as "invoicetxt.pdf") written as escapes."""
    def escape(m: re.Match[str]) -> str:
        ch = m.group(0)
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100
                                                                    else f"\\u{ord(ch):04x}")
    return _UNSAFE_IN_NAMES.sub(escape, text)


def _looks_binary(data: bytes) -> bool:
    sample = data[:8192]
    if b"\x00" in sample:
        return True
    control = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13))
    return control > len(sample) * 0.1


def decode_text(name: str, data: bytes) -> str:
    """An upload's bytes as text, or DocumentError: UTF-8 (or UTF-16 with its mark), never guessed."""
    return _decode_text(name, data)


def _decode_text(name: str, data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DocumentError(f"{name} starts like UTF-16 text but is damaged. Save it as UTF-8.") from exc
    if _looks_binary(data):
        raise DocumentError(f"{name} looks like a binary file, not text. "
                            "Upload the original document (PDF, DOCX, HTML) or a plain-text export.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(
            f"{name} is not UTF-8 text (byte 0x{data[exc.start]:02x} at position {exc.start}). "
            "Save it as UTF-8 and upload it again.") from exc


def _pdf_text(name: str, data: bytes) -> tuple[str, int, str | None]:
    import pypdf
    from pypdf.errors import PdfReadError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(f"{name} is password-protected. Remove the password and upload it again.")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except DocumentError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
        raise DocumentError(f"{name} is damaged or not a PDF ({type(exc).__name__}). "
                            "Open it in a PDF viewer and save a fresh copy.") from exc
    except Exception as exc:  # pypdf raises assorted errors on broken files
        if "crypt" in str(exc).lower() or "password" in str(exc).lower():
            raise DocumentError(f"{name} is encrypted in a way that cannot be opened here. "
                                "Remove the protection and upload it again.") from exc
        raise DocumentError(f"{name} could not be read as a PDF ({type(exc).__name__}: {exc}).") from exc
    text = "\n\n".join(p.strip() for p in pages)
    if not text.strip():
        raise DocumentError(f"{name} has no extractable text (a scanned PDF?). "
                            "Run OCR on it first, or upload a text version.")
    return text, len(pages), title


def check_archive(name: str, data: bytes, limit: int | None = None) -> None:
    """Refuse a zip-based file (.docx) that would expand past `limit` bytes, before anything is parsed:
    the members' sizes are read from the archive's directory, not by inflating them."""
    limit = MAX_EXPANDED_BYTES if limit is None else limit
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DocumentError(f"{name} is damaged or not a Word (.docx) file. "
                            "Open it in Word and save it again as .docx.") from exc
    total = sum(m.file_size for m in members)
    biggest = max(members, key=lambda m: m.file_size, default=None)
    xml = sum(m.file_size for m in members if m.filename.endswith((".xml", ".rels")))
    if xml > MAX_XML_BYTES:
        held, most = sizes(xml, MAX_XML_BYTES)
        raise DocumentError(f"{name} holds {held} of XML when unpacked; the limit is {most} "
                            "(WORKBENCH_MAX_DOCX_XML_MB), to keep parsing it within memory. Split the document.")
    if total > limit:
        expands, most = sizes(total, limit)
        raise DocumentError(f"{name} expands to {expands} when unpacked ({biggest.filename if biggest else ''} "
                            f"alone is {_human(biggest.file_size if biggest else 0)}); the limit is {most} "
                            "(WORKBENCH_MAX_EXPANDED_MB). Split the document, or remove large embedded files.")


def _docx_text(name: str, data: bytes) -> tuple[str, str | None]:
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from lxml.etree import XMLSyntaxError

    check_archive(name, data)
    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, XMLSyntaxError) as exc:
        raise DocumentError(f"{name} is damaged or not a Word (.docx) file. "
                            "Open it in Word and save it again as .docx.") from exc
    parts = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.append(" | ".join(cell.text.strip() for cell in row.cells))
    return "\n".join(parts), (document.core_properties.title or None)


# Elements that start a new line in a browser (CSS display: block, list-item, table-row...); everything else
# is inline and joins its neighbours, as a browser shows it ("nas@debian.org", not "nas / @ / debian").
_HTML_BLOCKS = {
    "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details", "dialog", "div",
    "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
    "header", "hgroup", "hr", "html", "legend", "li", "main", "menu", "ol", "p", "pre", "section", "summary",
    "table", "tbody", "thead", "tfoot", "tr", "ul", "title",
}
_HTML_PARAGRAPHS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "table", "ul", "ol", "dl",
                    "section", "article", "figure", "hr"}
_HTML_DROPPED = ["script", "style", "noscript", "template", "head", "nav", "svg", "button", "select", "iframe",
                 "object", "canvas"]
# Permalink anchors next to headings (Sphinx's "¶", GitHub's and MkDocs' "#", "🔗").
_PERMALINK_TEXT = {"¶", "#", "🔗", "§", "\uf0c1"}


def _is_navigation(tag: object) -> bool:
    from bs4 import Tag

    if not isinstance(tag, Tag) or tag.attrs is None:
        return False
    role = str(tag.get("role") or "").lower()
    classes = {str(c).lower() for c in (tag.get("class") or [])}
    if role in ("navigation", "search", "menubar", "menu") or classes & {"headerlink", "sphinxsidebar", "related",
                                                                       "navbar", "breadcrumbs", "skip-link"}:
        return True
    href = str(tag.get("href") or "")
    return tag.name == "a" and href.startswith("#") and tag.get_text(strip=True) in _PERMALINK_TEXT


def _html_text(name: str, data: bytes) -> tuple[str, str | None]:
    """The text of a web page as a browser shows it: inline elements joined, one paragraph per block,
    scripts, styles, navigation menus and permalink anchors ("¶") dropped, <pre> kept as written."""
    from bs4 import BeautifulSoup, NavigableString, Tag
    from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction

    soup = BeautifulSoup(_decode_text(name, data), "html.parser")
    stack = [(soup, 0)]
    while stack:  # measured without recursion: a page nested 1,500 levels deep must not overflow the stack
        node, level = stack.pop()
        if level > MAX_HTML_NESTING:
            raise DocumentError(f"{name} nests its elements more than {MAX_HTML_NESTING} levels deep (browsers stop "
                                "nesting there too). Save the page again from a browser, or as plain text.")
        stack.extend((child, level + 1) for child in getattr(node, "contents", ()) if isinstance(child, Tag))
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    for tag in soup(_HTML_DROPPED):
        tag.decompose()
    for tag in soup.find_all(_is_navigation):
        tag.decompose()
    out: list[str] = []

    def walk(node: Tag, pre: bool) -> None:
        for child in node.children:
            if isinstance(child, (Comment, Declaration, Doctype, ProcessingInstruction)):
                continue
            if isinstance(child, NavigableString):
                out.append(str(child) if pre else re.sub(r"\s+", " ", str(child)))
            elif isinstance(child, Tag):
                tag = child.name.lower()
                if tag == "br":
                    out.append("\n")
                    continue
                block = tag in _HTML_BLOCKS
                if block:
                    out.append("\n\n" if tag in _HTML_PARAGRAPHS else "\n")
                elif tag in ("td", "th") and child.find_previous_sibling(["td", "th"]) is not None:
                    out.append(" | ")
                walk(child, pre or tag in ("pre", "textarea"))
                if block and tag not in ("li", "tr", "dt", "dd"):  # list items and rows: one per line
                    out.append("\n\n" if tag in _HTML_PARAGRAPHS else "\n")

    walk(soup, False)
    lines = [line.strip() if line.strip() else "" for line in "".join(out).split("\n")]
    return "\n".join(lines), title


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[ \t\f\v]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def safe_name(name: str) -> str:
    """A document name that is valid text and safe to show: bytes that were not UTF-8 (surrogates) become
    U+FFFD, control and bidirectional characters are written as escapes (`display_safe`)."""
    return display_safe(name.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))


def load_bytes(name: str, data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Document:
    """Turn a file's bytes into a Document, or raise DocumentError."""
    name = safe_name(name)
    suffix = Path(name).suffix.lower()
    kind = SUPPORTED.get(suffix)
    if kind is None:
        allowed = ", ".join(sorted({s for s in SUPPORTED if s not in (".htm", ".markdown")}))
        raise DocumentError(f"{name}: {suffix or 'files without an extension'} is not supported. "
                            f"Use one of {allowed}.")
    if len(data) > max_bytes:
        size, limit = sizes(len(data), max_bytes)
        raise DocumentError(f"{name} is {size}; the limit is {limit}. Split it into smaller files.")
    if not data.strip():
        raise DocumentError(f"{name} is empty.")
    title = pages = None
    if kind == "pdf":
        text, pages, title = _pdf_text(name, data)
    elif kind == "docx":
        text, title = _docx_text(name, data)
    elif kind == "html":
        text, title = _html_text(name, data)
    else:
        text = _decode_text(name, data)
    if len(text) > MAX_TEXT_CHARS:
        raise DocumentError(f"{name} holds {len(text) / 1e6:.1f} million characters of text; the limit is "
                            f"{MAX_TEXT_CHARS / 1e6:g} million per document (WORKBENCH_MAX_TEXT_CHARS; about "
                            f"{MAX_TEXT_CHARS // 4 // 1000:,}k tokens). Split it into smaller files.")
    text = _tidy(text)
    if not text:
        raise DocumentError(f"{name} contains no text.")
    return Document(name=name, text=text, kind=kind, sha256=hashlib.sha256(data).hexdigest(),
                    size_bytes=len(data), title=title, pages=pages)


def load_path(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES, name: str | None = None) -> Document:
    """Load a file; the document is named `name`, or the file's name."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:  # refuse before reading a huge file into memory
            shown, limit = sizes(size, max_bytes)
            raise DocumentError(f"{safe_name(path.name)} is {shown}; the limit is {limit}. Split it into smaller "
                                "files.")
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise DocumentError(f"{path} cannot be read: {exc.strerror or exc}.") from exc
    return load_bytes(name or path.name, data, max_bytes)


def expand_paths(paths: list[str | Path]) -> tuple[list[tuple[Path, str]], list[Path]]:
    """(path, document name) pairs to ingest, and files skipped. Folders are walked
    (sorted), keeping supported types, each named by its path inside the folder;
    a file named explicitly is always kept (and may then fail) under its own name."""
    files: list[tuple[Path, str]] = []
    skipped: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                if any(part.startswith(".") for part in child.relative_to(path).parts):
                    continue
                if child.suffix.lower() in SUPPORTED and child.name not in IGNORED_NAMES:
                    files.append((child, safe_name(child.relative_to(path).as_posix())))
                else:
                    skipped.append(child)
        else:
            files.append((path, safe_name(path.name)))
    return files, skipped
