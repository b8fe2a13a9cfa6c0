"""End-to-end: the real Streamlit app in a real headless chromium.

One Streamlit server (a subprocess on a free 127.0.0.1 port, a fresh data folder,
no hosted API keys) serves the whole module. The tests upload documents, ask
the bundled local model a question on the Compare page (and save a full-page
screenshot; with WORKBENCH_UPDATE_SCREENSHOT=1 it replaces the README's docs/compare.png), check that text from uploaded documents is shown
as text, never run as HTML, and follow the Start page's one-click path.

Chromium: $WORKBENCH_CHROMIUM, else the system's chromium (Debian's
/usr/bin/chromium), else Playwright's own download. A chromium that does not start fails
the tests (`make test` installs Debian's); it never skips them.
Run: pytest tests/test_e2e_browser.py  (or -m browser)."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Error, Locator, Page, expect, sync_playwright

from tests.streamlit_server import ROOT, StreamlitServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
VIEWPORT = {"width": 1600, "height": 1000}
README_SCREENSHOT = ROOT / "docs" / "compare.png"  # rewritten only with WORKBENCH_UPDATE_SCREENSHOT=1

S = 1000  # Playwright timeouts are in milliseconds
APP_START_MS = 90 * S  # first page: imports, the embedder and the store load
INGEST_MS = 240 * S  # the sample corpus is ~15 files embedded on CPU
ANSWER_MS = 330 * S  # every arm of the local model, one after another, on a small CPU

PARROT_FACT = "The Quillmere office parrot is called Juniper and is 14 years old."
QUESTION = "How long is the refund window?"


def chromium_path() -> str | None:
    """A chromium to drive: the environment's choice, then the system's; None means Playwright's own."""
    if os.environ.get("WORKBENCH_CHROMIUM"):
        return os.environ["WORKBENCH_CHROMIUM"]
    for candidate in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(candidate)
        if found:
            return found
    return None


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app served by `streamlit run app.py` on a free loopback port, with an empty data folder."""
    base = tmp_path_factory.mktemp("e2e")
    server = StreamlitServer(base / "data", base / "streamlit.log")
    server.start(timeout_s=60)
    try:
        yield server.url
    finally:
        server.stop()
        # The server's own log helps most when a browser test fails.
        print(f"\n--- streamlit log (tail) ---\n{server.log_tail(3000)}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = chromium_path()
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        except Error as exc:
            pytest.fail(f"no chromium could be started ({path or 'Playwright download'}): {exc.message[:300]}. "
                        "`make test` installs Debian's chromium; or point WORKBENCH_CHROMIUM at one.")
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser, app_url: str) -> Iterator[Page]:
    """A fresh browser context (so a fresh Streamlit session) on the app's start page."""
    context = browser.new_context(viewport=VIEWPORT, base_url=app_url)
    pg = context.new_page()
    pg.set_default_timeout(30 * S)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto("/")
    expect(pg.get_by_role("heading", name="RAG, fine-tuning, or both?")).to_be_visible(timeout=APP_START_MS)
    try:
        yield pg
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


# ---------------------------------------------------------------- helpers


def go_to(page: Page, title: str) -> None:
    """Follow the sidebar navigation link `title` and wait for the page's title."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    expect(page.get_by_role("heading", name=title, level=1, exact=True)).to_be_visible(timeout=APP_START_MS)


def upload(page: Page, files: dict[str, str]) -> None:
    """Put `files` (name -> text) into the Documents page's uploader and add them to the knowledge base."""
    page.get_by_test_id("stFileUploader").locator("input[type=file]").set_input_files(
        [{"name": name, "mimeType": "text/plain", "buffer": text.encode()} for name, text in files.items()])
    for name in files:
        expect(page.get_by_role("button", name=f"Remove {name}", exact=True)).to_be_visible()
    add = page.get_by_role("button", name="Add to knowledge base")
    expect(add).to_be_enabled()
    add.click()
    for name in files:
        expect(alert(page, f"{name}: ingested")).to_be_visible(timeout=INGEST_MS)


def alert(page: Page, text: str) -> Locator:
    return page.get_by_test_id("stAlert").filter(has_text=text)


def choose_document(page: Page, name: str) -> None:
    """Pick `name` in the Documents page's "Document" selectbox."""
    box = page.get_by_role("combobox", name="Document", exact=True)
    box.click()
    box.fill(name)  # filter: with many documents the list is virtualised and `name` may not be rendered
    page.get_by_role("option", name=name, exact=True).click()
    expect(box).to_have_value(name)


def preview(page: Page, name: str) -> Locator:
    """Open the chunk preview of document `name` on the Documents page; returns the expander."""
    choose_document(page, name)
    expander = page.get_by_test_id("stExpander").filter(has_text=f"Preview the chunks of {name}")
    expander.locator("summary").click()
    expect(expander.get_by_test_id("stExpanderDetails")).to_be_visible()
    return expander


def arm_column(page: Page, label: str) -> Locator:
    """The result column of one arm on the Compare page (found by its header)."""
    header = page.get_by_role("heading", name=label, level=3, exact=True)
    return page.get_by_test_id("stColumn").filter(has=header)


# The height of everything on the page: Streamlit scrolls inside its own container, not the document.
CONTENT_HEIGHT_JS = """() => Math.max(document.documentElement.scrollHeight,
    ...[...document.querySelectorAll('*')]
        .filter(e => /(auto|scroll)/.test(getComputedStyle(e).overflowY) && e.scrollHeight > e.clientHeight)
        .map(e => e.scrollHeight + e.getBoundingClientRect().top))"""


# Where the main area's last element ends, once the viewport is tall enough that nothing scrolls.
CONTENT_BOTTOM_JS = """() => Math.max(...[...document.querySelectorAll(
    '[data-testid="stMain"] [data-testid="stElementContainer"]')].map(e => e.getBoundingClientRect().bottom))"""


def full_page_screenshot(page: Page, path: Path) -> None:
    """A screenshot of the whole page. Playwright's full_page sees only the viewport, because Streamlit's
    main area scrolls inside its own container, so the viewport grows to the content's height first
    (and the picture stops a little below the last element, without Streamlit's bottom padding)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    page.mouse.move(0, 0)  # no hover effects in the picture
    size = page.viewport_size or VIEWPORT
    height = min(max(int(page.evaluate(CONTENT_HEIGHT_JS)), size["height"]), 8000)
    page.set_viewport_size({"width": size["width"], "height": height})
    try:
        page.wait_for_timeout(1500)  # let the charts and columns settle at the new size
        bottom = min(height, int(page.evaluate(CONTENT_BOTTOM_JS)) + 48)
        page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": size["width"], "height": bottom},
                        animations="disabled")
    finally:
        page.set_viewport_size(size)


# ---------------------------------------------------------------- tests


def test_upload_compare_and_screenshot(page: Page, tmp_path: Path) -> None:
    go_to(page, "Documents")
    expect(page.get_by_text("No documents yet")).to_be_visible()

    upload(page, {"quillmere_parrot.md": f"# Office animals\n\n{PARROT_FACT}\n"})
    preview(page, "quillmere_parrot.md")
    expect(page.get_by_test_id("stText").filter(has_text="Juniper")).to_be_visible()

    page.get_by_role("button", name="Load the sample documents").click()
    expect(alert(page, "refund_policy.md: ingested")).to_be_visible(timeout=INGEST_MS)
    expect(alert(page, "warranty.pdf: ingested")).to_be_visible()
    expect(page.get_by_role("combobox", name="Document", exact=True)).to_be_visible()  # the run got past the alerts
    errors = page.get_by_test_id("stAlert").filter(has_text="⚠️").all_inner_texts()
    assert not errors, f"sample documents failed: {errors}"
    assert page.get_by_test_id("stAlert").filter(has_text=": ingested").count() >= 10

    go_to(page, "Compare")
    question = page.get_by_label("Question", exact=True)
    question.fill(QUESTION)
    question.press("Enter")
    # st.toggle: role "switch" (older Streamlit: "checkbox"); its input is visually hidden, so click the label
    baseline = page.get_by_role("switch", name="Include baseline").or_(
        page.get_by_role("checkbox", name="Include baseline"))
    expect(baseline).not_to_be_checked()
    page.get_by_test_id("stCheckbox").filter(has_text="Include baseline").locator("label").first.click()
    expect(baseline).to_be_checked()
    ask = page.get_by_role("button", name="Ask", exact=True)
    expect(ask).to_be_enabled()
    t0 = time.monotonic()
    ask.click()

    # The comparison is done when its download button appears.
    expect(page.get_by_role("button", name="Download this comparison (JSON)")).to_be_visible(timeout=ANSWER_MS)
    print(f"\ncomparison took {time.monotonic() - t0:.1f} s")
    expect(page.get_by_role("heading", name=QUESTION, level=4)).to_be_visible()

    for label in ("Baseline", "RAG", "Fine-tuned", "Hybrid"):
        column = arm_column(page, label)
        expect(column).to_have_count(1)
        alerts = column.get_by_test_id("stAlert")
        if label in ("Fine-tuned", "Hybrid"):
            # The shipped adapter was trained on the sample company; the parrot document added above is new to it,
            # and its columns say so by name, under its model card.
            expect(alerts).to_have_count(1)
            expect(alerts).to_contain_text("added quillmere_parrot.md")
            expect(column).to_contain_text("Model card: Quillmere house style")
        else:
            assert alerts.count() == 0, f"{label}: {alerts.all_inner_texts()}"
        key = {"Baseline": "baseline", "RAG": "rag", "Fine-tuned": "finetuned", "Hybrid": "hybrid"}[label]
        answer = page.locator(f".st-key-compare_answer_{key}").inner_text().strip()
        assert answer and answer != "(empty answer)", f"{label} gave no answer"
        expect(column).to_contain_text("First token")
        expect(column).to_contain_text("Cost")

    sources = arm_column(page, "RAG").locator("details.wb-source > summary")
    expect(sources.first).to_have_text(re.compile(r"^\[1\] "))
    expect(sources.first).to_contain_text("refund_policy.md")

    charts = page.get_by_test_id("stPlotlyChart")
    expect(charts.nth(2)).to_be_visible(timeout=30 * S)
    expect(page.locator(".js-plotly-plot").nth(2)).to_be_visible()
    assert charts.count() >= 3

    shot = README_SCREENSHOT if os.environ.get("WORKBENCH_UPDATE_SCREENSHOT") else tmp_path / "compare.png"
    full_page_screenshot(page, shot)
    assert shot.stat().st_size > 10_000


def test_uploaded_html_is_shown_as_text(page: Page) -> None:
    body = ("# Evil notes\n\nThis is <b>bold?</b> text.\n\n"
            "<script>window.__xss = 1</script>\n\n<img src=x onerror=\"window.__xss=2\">\n")
    go_to(page, "Documents")
    upload(page, {"evil.md": body, "evil.html": f"<html><body><p>Hi</p>{body}</body></html>"})

    expander = preview(page, "evil.md")
    expect(expander.get_by_test_id("stText").filter(has_text="<b>bold?</b>")).to_be_visible()
    expect(expander.get_by_test_id("stText").filter(has_text="<script>window.__xss = 1</script>")).to_be_visible()
    assert page.locator("b", has_text="bold?").count() == 0
    assert page.locator("img[src=x]").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"

    expander = preview(page, "evil.html")  # the HTML loader keeps the text and drops scripts and tags
    expect(expander.get_by_test_id("stText").filter(has_text="bold?")).to_be_visible()
    expect(expander).not_to_contain_text("window.__xss")
    assert page.locator("b", has_text="bold?").count() == 0
    assert page.locator("img[src=x]").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_one_click_start_asks_a_first_question(page: Page) -> None:
    """The Start page's button loads the samples, switches to Compare and asks there without another click."""
    page.get_by_role("button", name="Load the sample documents and ask a first question").click()
    expect(page.get_by_role("heading", name="Compare", level=1, exact=True)).to_be_visible(timeout=INGEST_MS)
    expect(page.get_by_label("Question", exact=True)).to_have_value(QUESTION)
    expect(page.get_by_role("heading", name=QUESTION, level=4)).to_be_visible(timeout=ANSWER_MS)
    # the samples went into their own knowledge base, and the sidebar shows it
    expect(page.get_by_role("combobox", name="Knowledge base")).to_have_value("sample")
    expect(alert(page, "Switched to knowledge base sample")).to_be_visible()
    rag = arm_column(page, "RAG")
    expect(rag.locator("details.wb-source").first).to_be_visible()
    expect(rag.get_by_test_id("stAlert")).to_have_count(0)
    assert rag.get_by_test_id("stMarkdown").nth(2).inner_text().strip()
    expect(arm_column(page, "Baseline")).to_have_count(0)  # the baseline is off by default


def test_deep_link_on_a_fresh_server(browser: Browser, tmp_path: Path) -> None:
    """A bookmark (or a tab that reconnects after a restart) opens /compare as the server's first session."""
    with StreamlitServer(tmp_path / "data", tmp_path / "streamlit.log") as server:
        context = browser.new_context(viewport=VIEWPORT)
        try:
            pg = context.new_page()
            pg.goto(f"{server.url}/compare")
            title = pg.get_by_role("heading", name="Compare", level=1, exact=True)
            crash = pg.get_by_test_id("stException").or_(pg.get_by_text("This app has encountered an error"))
            expect(title.or_(crash).first).to_be_visible(timeout=APP_START_MS)
            expect(crash).to_have_count(0)
            expect(title).to_be_visible()
        finally:
            context.close()


def test_citations_open_their_source_and_untrusted_text_stays_inert(browser: Browser, tmp_path: Path,
                                                                    openai_server: Any, embedder: Any) -> None:
    """Clicking [n] opens and highlights source n (issue 10, item 8). A document name with blank lines and
    Markdown, an answer with an image and a www. address, a question and an error with images: nothing forms a
    link and the browser requests nothing but the app itself (issue 9, item 12). The models are served by the
    OpenAI-compatible test server, so no local model runs."""
    from lib import engine
    from lib.settings import load_settings
    from tests.openai_server import ApiError

    data = tmp_path / "data"
    kb = engine.open_kb(load_settings(env={}, secrets_file=None, data_dir=data), embedder=embedder)
    evil = "notes\n\n![x](http://127.0.0.1:9/doc.png) www.evil.example.md"
    for name, text in ((evil, b"The refund window is 45 days from delivery."),
                       ("shipping.md", b"Refunds of shipping costs take 3 to 5 working days.")):
        assert engine.ingest_upload(kb, name, text).status == "ingested"

    def reply(body: dict[str, Any]) -> str:
        if body["model"] == "ft:evil":
            raise ApiError(400, "bad ![e](http://127.0.0.1:9/e.png) www.err.example")
        return "It is 45 days [1], see also [2]. Visit www.evil.example or ![i](http://127.0.0.1:9/a.png)"

    openai_server.reply_fn = reply
    env = {"OPENAI_API_KEY": "sk-test-browser", "OPENAI_BASE_URL": openai_server.base_url,
           "WORKBENCH_FT_MODEL": "openai:ft:evil"}
    with StreamlitServer(data, tmp_path / "streamlit.log", extra_env=env) as server:
        context = browser.new_context(viewport=VIEWPORT)
        elsewhere: list[str] = []
        context.on("request", lambda r: None if r.url.startswith(server.url) else elsewhere.append(r.url))
        try:
            pg = context.new_page()
            pg.set_default_timeout(30 * S)
            pg.goto(f"{server.url}/compare")
            question = pg.get_by_label("Question", exact=True)
            expect(question).to_be_visible(timeout=APP_START_MS)
            question.fill("How long is the refund window? ![q](http://127.0.0.1:9/q.png) www.q.example")
            question.press("Enter")
            ask = pg.get_by_role("button", name="Ask", exact=True)
            expect(ask).to_be_enabled()
            ask.click()
            expect(pg.get_by_role("button", name="Download this comparison (JSON)")).to_be_visible(timeout=60 * S)

            rag = arm_column(pg, "RAG")

            def shown(locator: Locator) -> str:  # as read: the invisible word joiners (no autolinks) left out
                return locator.inner_text().replace("\u2060", "")

            assert "Visit www.evil.example or ![i](http://127.0.0.1:9/a.png)" in shown(rag)
            assert "bad ![e](http://127.0.0.1:9/e.png) www.err.example" in shown(arm_column(pg, "Fine-tuned"))
            assert "![q](http://127.0.0.1:9/q.png) www.q.example" in shown(pg.get_by_role("heading", level=4))
            main = pg.get_by_test_id("stMain")
            assert main.locator("img").count() == 0
            links = main.locator("a[href]:not([href^='#'])")  # only in-page links (citations, heading anchors)
            assert links.count() == 0, [a.evaluate("e => e.outerHTML") for a in links.all()]
            sources = rag.locator("details.wb-source")
            expect(sources).to_have_count(2)
            # (a newline in a name is stored and shown as an escape, issue 18)
            expect(sources.nth(0).locator("summary")).to_contain_text("notes\\n\\n![x](http://127.0.0.1:9/doc.png)")

            # [1] opens and highlights source 1; then [2] opens source 2, which takes the highlight
            for n, other in ((1, 2), (2, 1)):
                source, text = sources.nth(n - 1), rag.locator(f"#sources-rag-{n}")
                expect(text).not_to_be_visible()
                rag.get_by_role("link", name=f"[{n}]", exact=True).click()
                expect(source).to_have_attribute("open", "")
                expect(text).to_be_visible()
                expect(text).to_be_in_viewport()
                expect(source).to_have_css("outline-style", "solid")
                expect(sources.nth(other - 1)).not_to_have_css("outline-style", "solid")
                if n == 1:
                    sources.nth(0).locator("summary").click()  # close it again by hand
                    expect(text).not_to_be_visible()
            assert not elsewhere, f"the page requested outside the app: {elsewhere}"
        finally:
            context.close()
