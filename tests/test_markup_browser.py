"""No markup from names, in a real browser (issue 18): with every user-supplied name carrying a canary image and
address, an upload's progress bar, the Fine-tune, Evaluate, Decide and History pages make the browser request
nothing that the canary points at, and show no image or link from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.streamlit_server import StreamlitServer
from tests.test_e2e_browser import APP_START_MS, CHROMIUM_ARGS, INGEST_MS, VIEWPORT, S, alert, chromium_path, go_to
from tests.test_markup_from_names import canary_workspace  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]

UPLOAD = "![c](canary-upload.png) www.canary-upload.example.md"  # a file name cannot hold "/": a relative image


def test_no_surface_loads_or_links_what_a_name_points_at(canary_workspace: Path, openai_server: Any,  # noqa: F811
                                                        tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": "sk-test-canary", "OPENAI_BASE_URL": openai_server.base_url,
           "WORKBENCH_BASE_MODEL": "gpt-4o-mini"}
    with StreamlitServer(canary_workspace, tmp_path / "streamlit.log", extra_env=env) as server, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport=VIEWPORT, base_url=server.url)
        requested: list[str] = []
        context.on("request", lambda r: requested.append(r.url))
        try:
            page = context.new_page()
            page.set_default_timeout(30 * S)
            page.goto("/")
            expect(page.get_by_role("heading", name="RAG, fine-tuning, or both?")).to_be_visible(timeout=APP_START_MS)
            go_to(page, "Documents")
            page.get_by_test_id("stFileUploader").locator("input[type=file]").set_input_files(
                [{"name": UPLOAD, "mimeType": "text/plain", "buffer": b"The office cat is called Pixel."}])
            page.get_by_role("button", name="Add to knowledge base").click()
            expect(alert(page, "ingested")).to_be_visible(timeout=INGEST_MS)  # its progress bar came and went
            tabs = {"Fine-tune": ["2a. Train locally", "2b. Train on OpenAI", "3. Models"],
                    "Evaluate": ["Question set", "Run", "Results"], "Decide": [None], "History": [None]}
            for title, names in tabs.items():
                go_to(page, title)
                shown = ""
                for tab in names:
                    if tab:
                        page.get_by_role("tab", name=tab, exact=True).click()
                    page.wait_for_timeout(1500)  # fragments, tabs and charts settle
                    main = page.get_by_test_id("stMain")
                    assert main.locator("img[src*='canary']").count() == 0, (title, tab)
                    assert main.locator("a[href*='canary']").count() == 0, (title, tab)
                    shown += main.inner_text()
                if title in ("Fine-tune", "Evaluate"):  # (elsewhere names are in pickers and tables, drawn on a canvas)
                    assert "canary" in shown, f"{title} shows no canary name: nothing was tested"
            fetched = [u for u in requested if "canary" in u]
            assert not fetched, f"the browser requested what a name points at: {fetched}"
        finally:
            context.close()
            browser.close()
