"""Build the binary sample documents (PDF, DOCX) of the fictional company
Quillmere Outdoor Co. into sample_docs/, and optionally check the corpus.

    python scripts/build_sample_docs.py           # (re)write warranty.pdf and employee_travel_policy.docx
    python scripts/build_sample_docs.py --check   # build, then verify sample_docs/questions.jsonl
    python scripts/build_sample_docs.py --check-only

The Markdown, text and HTML documents are kept as plain files in sample_docs/;
only the two binary documents are generated here, from the text below. Output is
byte-stable: reportlab runs with invariant=1 and the DOCX gets fixed core
properties and fixed zip timestamps.

--check extracts the text of every document (md/txt/html/pdf/docx) and asserts
that every keyword of every question occurs (case-insensitively) in the text of
its source document, that the source exists, and that each document is 150-600
words long.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import re
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS_DIR = ROOT / "sample_docs"
QUESTIONS_FILE = "questions.jsonl"
COMPANY = "Quillmere Outdoor Co."
FIXED_DATE = dt.datetime(2025, 1, 15, 9, 0, 0)
ZIP_DATE = (2025, 1, 15, 9, 0, 0)

# Each block: ("title" | "h" | "p" | "bullets" | "table", content)
WARRANTY: list[tuple[str, object]] = [
    ("title", "Quillmere Limited Warranty"),
    ("p", "Quillmere Outdoor Co. - Warranty Terms for Own-Brand Products. Version 5, effective 1 January 2025."),
    ("h", "1. Scope"),
    ("p", "This limited warranty covers products designed and sold under the Quillmere brand: the Ridgeline E7 "
          "and Kestrel K3 e-bikes, the Fjordlite tent family and Quillmere-branded accessories. Products from "
          "other brands sold in our shop are covered by their manufacturer's own warranty, and we help you "
          "contact the manufacturer. The warranty protects the original purchaser against defects in materials "
          "and workmanship under normal use. It is not transferable to a new owner."),
    ("h", "2. Warranty periods"),
    ("table", [
        ["Component", "Warranty period"],
        ["E-bike frame (Ridgeline E7, Kestrel K3)", "8 years"],
        ["E-bike motor and display", "2 years"],
        ["E-bike battery", "3 years or 850 full charge cycles, whichever comes first"],
        ["Fjordlite tents (fabric, poles, zips)", "6 years"],
        ["Quillmere-branded accessories", "2 years"],
        ["Wear parts (tyres, chain, brake pads, cassette)", "not covered"],
    ]),
    ("p", "All periods start on the delivery date shown on your order. A battery is considered defective if "
          "its usable capacity falls below 70 percent of its rated capacity within the warranty period. The "
          "number of full charge cycles is read from the battery management system, and you can see it on the "
          "Battery health screen of the Quillmere Ride app."),
    ("h", "3. How to make a claim"),
    ("p", "Claims must be made within 30 days of discovering the defect. Fill in warranty claim form WC-7, "
          "available in your account under Orders, and attach photos or a short video of the fault, the frame "
          "serial number for e-bikes, and your order number as proof of purchase. The Quillmere Care Centre in "
          "Larchford reviews every claim and replies within 3 business days with a decision or a request for "
          "more information."),
    ("p", "If the claim is accepted, we either repair the product, replace the defective part, or replace the "
          "product with the same or an equivalent model. We choose the remedy. Accepted claims are repaired "
          "within 10 business days of the product arriving at the Care Centre. For accepted e-bike claims we "
          "collect and return the bike at no cost to you; tents and accessories are sent in with a prepaid "
          "label."),
    ("h", "4. What is not covered"),
    ("bullets", [
        "Normal wear and tear, fading, scratches and wear parts.",
        "Damage from accidents, crashes, misuse, jumps or racing.",
        "Towing trailers with the Kestrel K3, which voids its frame warranty.",
        "Commercial use, including rental fleets and delivery work.",
        "Modifications such as speed tuning kits, non-Quillmere batteries or chargers.",
        "Repairs carried out by anyone other than the Care Centre or an authorised partner workshop.",
        "Water damage to e-bikes from pressure washing or submersion.",
    ]),
    ("h", "5. Replacement parts and repairs outside warranty"),
    ("p", "After the warranty ends, the Care Centre still repairs Quillmere products at cost. The labour rate "
          "for out-of-warranty repairs is $72 per hour, billed in 15-minute steps. Replacement batteries and "
          "parts carry their own 2-year warranty from the date of the repair."),
    ("h", "6. Your legal rights"),
    ("p", "This warranty is in addition to, and does not limit, your statutory rights as a consumer. For "
          "warranty questions contact the Quillmere Care Centre through the Trail Desk and mention the claim "
          "number you received, which always starts with the letters WQ."),
]

TRAVEL_POLICY: list[tuple[str, object]] = [
    ("title", "Employee Travel and Expenses Policy"),
    ("p", "Quillmere Outdoor Co. - Internal policy HR-11, revision 3, effective 1 March 2025. "
          "Policy owner: Finance. Applies to all employees and contractors travelling on company business."),
    ("h", "1. Before you travel"),
    ("p", "Every business trip must be approved before anything is booked. Trips with an estimated total cost "
          "up to $1,500 are approved by your line manager. Trips above $1,500 need approval from your "
          "department head, and trips above $5,000 also need approval from the Chief Financial Officer, "
          "Oskar Meadowcroft. All flights, trains and hotels are booked through the Skyledger travel portal; "
          "bookings made elsewhere are reimbursed only if they were at least 10 percent cheaper than the "
          "portal price at the time of booking."),
    ("p", "Flights must be booked at least 14 days before departure unless the trip is urgent and your "
          "department head confirms this in writing."),
    ("h", "2. Transport"),
    ("bullets", [
        "Rail is preferred for journeys under 4 hours door to door.",
        "Flights shorter than 6 hours are booked in economy class.",
        "Flights of 6 hours or longer may be booked in premium economy.",
        "Business class is never reimbursed.",
        "Rental cars are limited to compact class; electric cars are preferred where available.",
        "Use of a private car is reimbursed at $0.61 per mile.",
    ]),
    ("h", "3. Accommodation and daily allowances"),
    ("table", [
        ["Item", "Limit"],
        ["Hotel, standard", "$210 per night"],
        ["Hotel, designated major cities", "$265 per night"],
        ["Per diem, domestic travel", "$68 per day"],
        ["Per diem, international travel", "$95 per day"],
    ]),
    ("p", "The per diem covers meals, snacks, local transport and tips. The first and last day of a trip are "
          "paid at 75 percent of the daily rate. Alcohol is never reimbursed. Designated major cities are listed "
          "on the Finance intranet page and reviewed every January."),
    ("h", "4. Expense claims"),
    ("p", "Submit expense claims in the expense system within 30 days after returning from the trip. Attach an "
          "itemised receipt for every expense above $25. Claims submitted later than 30 days need a written "
          "explanation and may be rejected. Approved claims are paid with the next monthly payroll run."),
    ("h", "5. Safety and insurance"),
    ("p", "All travellers are covered by the company travel insurance policy; the emergency assistance number "
          "is printed on the back of your employee badge. Travellers must share their itinerary in Skyledger "
          "so that the company can locate them in an emergency. Questions about this policy go to "
          "travel@quillmere.example."),
]


# ----------------------------------------------------------------------------- PDF

def build_pdf(blocks: list[tuple[str, object]], path: Path, title: str) -> None:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import ListFlowable, ListItem, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    story = []
    for kind, content in blocks:
        if kind == "title":
            story.append(Paragraph(str(content), styles["Title"]))
        elif kind == "h":
            story.append(Spacer(1, 0.3 * cm))
            story.append(Paragraph(str(content), styles["Heading2"]))
        elif kind == "p":
            story.append(Paragraph(str(content), styles["BodyText"]))
            story.append(Spacer(1, 0.2 * cm))
        elif kind == "bullets":
            items = [ListItem(Paragraph(b, styles["BodyText"])) for b in content]  # type: ignore[union-attr]
            story.append(ListFlowable(items, bulletType="bullet", start="-"))
        elif kind == "table":
            rows = [[Paragraph(c, styles["BodyText"]) for c in row] for row in content]  # type: ignore[union-attr]
            table = Table(rows, colWidths=[8 * cm, 8 * cm])
            table.setStyle(TableStyle([
                ("GRID", (0, 0), (-1, -1), 0.5, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]))
            story.append(table)
            story.append(Spacer(1, 0.3 * cm))
        else:
            raise ValueError(kind)

    def footer(canvas, doc):  # page numbers
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        canvas.drawString(2 * cm, 1.2 * cm, f"{COMPANY} - {title} - page {doc.page}")
        canvas.restoreState()

    doc = SimpleDocTemplate(
        str(path), pagesize=A4, invariant=1, title=title, author=COMPANY, subject=title,
        creator="scripts/build_sample_docs.py", leftMargin=2 * cm, rightMargin=2 * cm,
        topMargin=2 * cm, bottomMargin=2 * cm,
    )
    doc.build(story, onFirstPage=footer, onLaterPages=footer)


# ----------------------------------------------------------------------------- DOCX

def build_docx(blocks: list[tuple[str, object]], path: Path, title: str) -> None:
    import docx

    document = docx.Document()
    for kind, content in blocks:
        if kind == "title":
            document.add_heading(str(content), level=0)
        elif kind == "h":
            document.add_heading(str(content), level=1)
        elif kind == "p":
            document.add_paragraph(str(content))
        elif kind == "bullets":
            for b in content:  # type: ignore[union-attr]
                document.add_paragraph(b, style="List Bullet")
        elif kind == "table":
            rows = content  # type: ignore[assignment]
            table = document.add_table(rows=len(rows), cols=len(rows[0]))
            table.style = "Table Grid"
            for r, row in enumerate(rows):
                for c, cell in enumerate(row):
                    table.cell(r, c).text = cell
        else:
            raise ValueError(kind)

    props = document.core_properties
    props.title = title
    props.author = COMPANY
    props.last_modified_by = COMPANY
    props.created = FIXED_DATE
    props.modified = FIXED_DATE
    props.last_printed = FIXED_DATE
    props.revision = 1

    buf = io.BytesIO()
    document.save(buf)
    _write_stable_zip(buf.getvalue(), path)


def _write_stable_zip(data: bytes, path: Path) -> None:
    """Rewrite a zip with fixed timestamps so the DOCX is byte-stable."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            zi = zipfile.ZipInfo(info.filename, date_time=ZIP_DATE)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            dst.writestr(zi, src.read(info.filename))
    path.write_bytes(out.getvalue())


def build() -> list[Path]:
    DOCS_DIR.mkdir(parents=True, exist_ok=True)
    pdf = DOCS_DIR / "warranty.pdf"
    build_pdf(WARRANTY, pdf, "Quillmere Limited Warranty")
    dx = DOCS_DIR / "employee_travel_policy.docx"
    build_docx(TRAVEL_POLICY, dx, "Employee Travel and Expenses Policy")
    return [pdf, dx]


# ----------------------------------------------------------------------------- check

class _HTMLText(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.scripts += 1

    def handle_data(self, data):
        self.parts.append(data)


def extract_text(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in {".md", ".txt"}:
        return path.read_text(encoding="utf-8")
    if suffix in {".html", ".htm"}:
        parser = _HTMLText()
        parser.feed(path.read_text(encoding="utf-8"))
        if parser.scripts:
            raise AssertionError(f"{path.name}: contains <script>")
        return " ".join(parser.parts)
    if suffix == ".pdf":
        import pypdf
        return "\n".join(page.extract_text() or "" for page in pypdf.PdfReader(str(path)).pages)
    if suffix == ".docx":
        import docx
        d = docx.Document(str(path))
        parts = [p.text for p in d.paragraphs]
        for table in d.tables:
            for row in table.rows:
                parts.append(" | ".join(cell.text for cell in row.cells))
        return "\n".join(parts)
    raise ValueError(f"unsupported format: {path.name}")


def _has_token(text: str, keyword: str) -> bool:
    """Keyword present as a whole token (so '12' does not match '120')."""
    return re.search(rf"(?<![\w.]){re.escape(keyword)}(?![\w]|\.\d)", text, re.IGNORECASE) is not None


def check() -> int:
    errors: list[str] = []
    docs = sorted(p for p in DOCS_DIR.iterdir() if p.is_file() and p.name != QUESTIONS_FILE)
    texts: dict[str, str] = {}
    print(f"{len(docs)} documents in {DOCS_DIR.relative_to(ROOT)}/:")
    for p in docs:
        text = extract_text(p)
        texts[p.name] = text
        words = len(re.findall(r"\S+", text))
        print(f"  {p.name:32s} {words:4d} words")
        if not 150 <= words <= 600:
            errors.append(f"{p.name}: {words} words, outside 150-600")
    for needed in (".pdf", ".docx", ".html"):
        if not any(p.suffix == needed for p in docs):
            errors.append(f"no {needed} document")

    lines = [ln for ln in (DOCS_DIR / QUESTIONS_FILE).read_text(encoding="utf-8").splitlines() if ln.strip()]
    questions = [json.loads(ln) for ln in lines]
    if not 20 <= len(questions) <= 30:
        errors.append(f"{len(questions)} questions, expected 20-30")
    ids = [q["id"] for q in questions]
    if len(set(ids)) != len(ids):
        errors.append("duplicate question ids")
    if not any(q["question"] == "How long is the refund window?" for q in questions):
        errors.append("missing 'How long is the refund window?'")
    shared = 0
    for q in questions:
        missing_fields = {"id", "question", "answer", "keywords", "source"} - q.keys()
        if missing_fields:
            errors.append(f"{q.get('id')}: missing fields {sorted(missing_fields)}")
            continue
        src = q["source"]
        if src not in texts:
            errors.append(f"{q['id']}: source {src!r} not found")
            continue
        if not 1 <= len(q["keywords"]) <= 3:
            errors.append(f"{q['id']}: {len(q['keywords'])} keywords, expected 1-3")
        for kw in q["keywords"]:
            if kw.lower() not in texts[src].lower():
                errors.append(f"{q['id']}: keyword {kw!r} not in {src}")
            if kw.lower() not in q["answer"].lower():
                errors.append(f"{q['id']}: keyword {kw!r} not in its own reference answer")
        others = [n for n, t in texts.items() if n != src and all(_has_token(t, k) for k in q["keywords"])]
        if others:  # informational: short numbers naturally recur; the question text pins the document
            shared += 1
            print(f"  note: {q['id']} keywords {q['keywords']} also occur in {others}")

    print(f"{len(questions)} questions checked; {shared} whose keywords also occur as tokens in other documents (info only)")
    if errors:
        print("CHECK FAILED:")
        for e in errors:
            print("  -", e)
        return 1
    print("CHECK OK: every keyword of every question occurs in its source document")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="build, then verify the corpus and questions")
    ap.add_argument("--check-only", action="store_true", help="verify without rebuilding")
    args = ap.parse_args(argv)
    if not args.check_only:
        for p in build():
            print(f"wrote {p.relative_to(ROOT)} ({p.stat().st_size} bytes)")
    if args.check or args.check_only:
        return check()
    return 0


if __name__ == "__main__":
    sys.exit(main())
