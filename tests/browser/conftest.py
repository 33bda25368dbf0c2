"""Fixtures for the web chat's browser tests.

- `gateway`: the fake gateway (fake_gateway.py) on a free loopback port, run by uvicorn in a thread.
- `browser`-level: Playwright (sync API) driving the system Chromium. If Chromium or Playwright is
  missing the tests FAIL with a message saying what to install; they never skip.
- `make_chat(**context_options)` / `chat`: a fresh browser context + page per test, with
    * every request checked: only the gateway's own origin is allowed; the Quick-exit target
      (EXIT_URL) is answered locally with a neutral page;
      anything else is aborted and reported;
    * JavaScript dialogs (alert/confirm/prompt), page errors and Content-Security-Policy / Trusted
      Types violations recorded, and checked when the test ends.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

import pytest

from fake_gateway import EXIT_URL, FakeGateway
NEUTRAL_PAGE = (
    "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Weather</title></head>"
    "<body><h1>Weather</h1><p>Neutral page standing in for the Quick-exit target.</p></body></html>"
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CSP_CONSOLE_RE = re.compile(
    r"Content Security Policy|Content-Security-Policy|Refused to|Trusted ?Type|TrustedHTML|TrustedScript",
    re.IGNORECASE,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: drives the web chat page in headless Chromium through Playwright"
    )


# --------------------------------------------------------------------------- fake gateway


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def gateway() -> FakeGateway:
    import uvicorn

    fake = FakeGateway()
    port = _free_port()
    config = uvicorn.Config(fake.app, host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, lifespan="off", ws="none",
                            loop="asyncio", http="h11")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fake-gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail(f"the fake gateway did not start on 127.0.0.1:{port}", pytrace=False)
        time.sleep(0.05)
    fake.base_url = f"http://127.0.0.1:{port}"
    yield fake
    server.should_exit = True
    thread.join(timeout=10)


# --------------------------------------------------------------------------- browser


def _chromium_path() -> str:
    path = os.environ.get("SIGNPOST_CHROMIUM", "/usr/bin/chromium")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(
            f"Chromium not found at {path}. The browser tests need Debian's Chromium: "
            "`apt-get install -y chromium` (or set SIGNPOST_CHROMIUM to a Chromium binary). "
            "Do not use `playwright install`.",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def playwright_instance():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is not installed: `pip install playwright` (the Python package only; "
                    "the browser is the system Chromium).", pytrace=False)
    manager = sync_playwright().start()
    yield manager
    manager.stop()


@pytest.fixture(scope="session")
def chromium(playwright_instance):
    path = _chromium_path()
    try:
        browser = playwright_instance.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
    except Exception as exc:  # noqa: BLE001 - report any launch failure as a clear test failure
        pytest.fail(f"Chromium at {path} could not be started by Playwright: {exc}", pytrace=False)
    yield browser
    browser.close()


# --------------------------------------------------------------------------- per-test page


@dataclass
class Problems:
    dialogs: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp_console: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)


class ChatPage:
    """A page on the fake gateway, with helpers for the chat."""

    def __init__(self, page, context, gateway: FakeGateway, problems: Problems) -> None:
        self.page = page
        self.context = context
        self.gateway = gateway
        self.problems = problems
        self.exit_requests: list[str] = []

    # ----- navigation -----

    def url(self, path: str = "/") -> str:
        return self.gateway.base_url + path

    def goto(self, path: str = "/") -> None:
        self.page.goto(self.url(path))

    def open(self, path: str = "/") -> None:
        """Opens the chat and waits for the greeting."""
        from playwright.sync_api import expect

        self.goto(path)
        expect(self.page.locator("#log .msg--bot").first).to_be_visible()

    # ----- chat -----

    @property
    def log(self):
        return self.page.locator("#log")

    def bot(self):
        return self.page.locator("#log .msg--bot")

    def user(self):
        return self.page.locator("#log .msg--user")

    def send(self, text: str) -> None:
        self.page.locator("#message").fill(text)
        self.page.locator("#message").press("Enter")

    def ask(self, text: str) -> None:
        """Sends `text` and waits until the answer (or an error notice) is in (typing indicator gone)."""
        from playwright.sync_api import expect

        before = self.user().count()
        self.send(text)
        expect(self.user()).to_have_count(before + 1)
        expect(self.page.locator("#typing")).to_be_hidden()

    def session_id(self) -> str | None:
        return self.page.evaluate("() => sessionStorage.getItem('signpost.session_id')")

    def visible_text(self, locator) -> str:
        """textContent without the visually-hidden helper texts (speaker labels, 'opens in a new tab')."""
        return locator.evaluate(
            """(node) => { const c = node.cloneNode(true);
                 c.querySelectorAll('.visually-hidden, .quick-replies').forEach(n => n.remove());
                 return c.textContent; }"""
        )

    # ----- request routing (see the module docstring) -----

    def _route(self, route) -> None:
        url = route.request.url
        if url.split("#")[0].rstrip("/") == EXIT_URL.rstrip("/"):
            self.exit_requests.append(url)
            route.fulfill(status=200, content_type="text/html; charset=utf-8", body=NEUTRAL_PAGE)
            return
        parts = urlsplit(url)
        own = urlsplit(self.gateway.base_url)
        if (parts.scheme, parts.netloc) == (own.scheme, own.netloc) or parts.scheme in ("data", "blob"):
            route.fallback()
            return
        self.problems.external_requests.append(url)
        route.abort()

    # ----- checks -----

    def csp_violations_in_page(self) -> list[dict]:
        return self.page.evaluate("() => (window.__cspViolations || []).slice()")


# Injected into every document before its own scripts (not subject to the page's CSP):
# records CSP violations seen by the page.
INIT_SCRIPT = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push({directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample});
});
"""


@pytest.fixture
def make_chat(chromium, gateway) -> Callable[..., ChatPage]:
    """Factory: make_chat(viewport=..., locale=..., reduced_motion=..., bypass_csp=...) -> ChatPage."""
    gateway.reset()
    made: list[tuple[Any, ChatPage]] = []

    def factory(**options: Any) -> ChatPage:
        options.setdefault("viewport", {"width": 1280, "height": 800})
        options.setdefault("locale", "en-GB")
        context = chromium.new_context(**options)
        context.add_init_script(INIT_SCRIPT)
        problems = Problems()
        page = context.new_page()
        chat = ChatPage(page, context, gateway, problems)
        context.route("**/*", chat._route)

        def on_dialog(dialog) -> None:
            problems.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        def on_console(message) -> None:
            text = message.text
            if CSP_CONSOLE_RE.search(text):
                problems.csp_console.append(text)
            if message.type == "error":
                problems.console_errors.append(text)

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda error: problems.page_errors.append(str(error)))
        page.on("console", on_console)
        made.append((context, chat))
        return chat

    yield factory

    failures = []
    for context, chat in made:
        p = chat.problems
        if p.dialogs:
            failures.append(f"JavaScript dialogs fired: {p.dialogs}")
        if p.page_errors:
            failures.append(f"uncaught page errors: {p.page_errors}")
        if p.csp_console:
            failures.append(f"CSP / Trusted Types violations in the console: {p.csp_console}")
        if p.external_requests:
            failures.append(f"requests to other hosts: {p.external_requests}")
        context.close()
    if failures:
        pytest.fail("; ".join(failures), pytrace=False)


@pytest.fixture
def chat(make_chat) -> ChatPage:
    return make_chat()
