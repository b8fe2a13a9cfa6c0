"""Workshop mode in a real headless chromium: a participant joins with the join code, finds the providers locked
(nothing to change: no provider, base URL, key or model field), spends their allowance with a capped hosted
request, fails to get a fresh one by joining again under the same name in another browser, hides their link
from the address bar, and keeps their workspace across a restart of the app (the browser kept the link).
The hosted model is tests/openai_server.py on 127.0.0.1; the host's key must never reach a page or the log.
Run: pytest tests/test_workshop_browser.py  (or -m browser)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from lib.pricing import price_tokens
from lib.tokens import count_chat
from lib.workshop import Workshop
from tests.streamlit_server import StreamlitServer
from tests.test_e2e_browser import CHROMIUM_ARGS, VIEWPORT, chromium_path

pytestmark = [pytest.mark.browser, pytest.mark.slow]

S = 1000
START_MS = 120 * S
HOST_KEY = "sk-host-browser-secret-0123456789"


@pytest.fixture
def workshop_server(tmp_path: Path, openai_server: Any) -> Iterator[StreamlitServer]:
    # Room for one connection test ("Say OK.", 3 tokens reserved) and not a second.
    one, _ = price_tokens("gpt-4o-mini", count_chat([{"role": "user", "content": "Say OK."}], "gpt-4o-mini"), 3)
    server = StreamlitServer(tmp_path / "data", tmp_path / "streamlit.log", extra_env={
        "WORKBENCH_WORKSHOP": "1", "WORKBENCH_HOST_CODE": "host-code", "WORKBENCH_JOIN_CODE": "owl-42",
        "OPENAI_API_KEY": HOST_KEY, "OPENAI_BASE_URL": openai_server.base_url, "WORKBENCH_BASE_MODEL": "gpt-4o-mini",
        "WORKBENCH_CAP_PARTICIPANT_USD": f"{one * 1.2:.10f}", "WORKBENCH_JOIN_RATE": "20"})
    server.start(timeout_s=120)
    try:
        yield server
    finally:
        server.stop()
        print(f"\n--- streamlit log (tail) ---\n{server.log_tail(3000)}")


def _join(page: Page, name: str) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", name="Join the workshop")).to_be_visible(timeout=START_MS)
    page.get_by_role("textbox", name="Your name").fill(name)
    page.get_by_role("textbox", name="Join code").fill("owl-42")
    page.get_by_role("button", name="Join", exact=True).click()


def _go(page: Page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    expect(page.get_by_role("heading", name=title, level=1, exact=True)).to_be_visible(timeout=START_MS)


def test_restart_rejoin_over_the_cap_and_locked_providers(workshop_server: StreamlitServer, openai_server: Any,
                                                           tmp_path: Path) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            ada = browser.new_context(viewport=VIEWPORT, base_url=workshop_server.url).new_page()
            ada.set_default_timeout(60 * S)
            _join(ada, "Ada")
            expect(ada.get_by_role("heading", name="RAG, fine-tuning, or both?")).to_be_visible(timeout=START_MS)
            assert re.search(r"[?&]t=[A-Za-z0-9_-]{20,}", ada.url)

            # The providers are the host's: nothing to change, and the one capped request spends the allowance.
            _go(ada, "Settings")
            expect(ada.get_by_text("the workshop host chose the providers")).to_be_visible()
            for label in ("OpenAI-compatible base URL", "API key (this session only)", "Azure endpoint",
                          "Base model provider", "Base model"):
                expect(ada.get_by_label(label, exact=True)).to_have_count(0)
            test = ada.get_by_role("button", name="Test the base model")
            test.click()
            expect(ada.get_by_test_id("stAlert").filter(has_text="answered in")).to_be_visible()
            test.click()
            expect(ada.get_by_test_id("stAlert").filter(has_text="Spend cap reached")).to_be_visible()
            assert len(openai_server.requests_to("/chat/completions")) == 1

            # Joining again under the same name, in another browser, brings no fresh allowance.
            again = browser.new_context(viewport=VIEWPORT, base_url=workshop_server.url).new_page()
            _join(again, "ada")
            expect(again.get_by_test_id("stAlert").filter(has_text="allowance is used up")).to_be_visible()
            expect(again.get_by_role("heading", name="Join the workshop")).to_be_visible()
            again.context.close()

            # Screen sharing: the link leaves the address bar; the browser keeps it.
            ada.get_by_text("Hide my link from the address bar").click()
            expect(ada).not_to_have_url(re.compile(r"[?&]t="))
            ada.wait_for_timeout(1000)
            workspace = Workshop(tmp_path / "data").participants()[0].workspace

            # The app restarts mid-session: the same browser comes back to the same workspace, not to Join.
            workshop_server.stop()
            workshop_server.start(timeout_s=120)
            ada.goto("/compare")
            expect(ada.get_by_role("heading", name="Compare", level=1)).to_be_visible(timeout=START_MS)
            expect(ada.get_by_test_id("stSidebar").get_by_text("Ada, this is your own workspace.")).to_be_visible()
            assert "t=" not in ada.url
            _go(ada, "History")
            expect(ada.get_by_test_id("stMain").get_by_text(workspace, exact=True)).to_be_visible()
            page_text = ada.get_by_test_id("stMain").inner_text()
        finally:
            browser.close()
    assert HOST_KEY not in page_text and HOST_KEY not in workshop_server.log_tail(10**6)
    assert [p.name for p in Workshop(tmp_path / "data").participants()] == ["Ada"]
