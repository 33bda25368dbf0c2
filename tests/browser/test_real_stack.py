"""The web chat page against the REAL gateway, Rasa and action server (one smoke journey).

A parent opens the page, sees the real greeting, presses a quick reply, asks a question and
gets Rasa's answer, asks for help in France and gets the French services, then deletes the
conversation (checked in the tracker store).
"""
import re

import pytest
import sqlalchemy as sa

from bot import privacy

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def wait_until(predicate, timeout_s=30.0):
    """Poll from Python (the page's CSP forbids Playwright's string evaluation)."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met within %.0f s" % timeout_s)


def test_parent_journey_on_the_real_stack(chromium, stack):
    # bypass_csp only so the test can read sessionStorage; the CSP is tested in test_webchat.py
    context = chromium.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True)
    page = context.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(stack.gateway + "/")
        bot = page.locator("#log .msg--bot")
        bot.first.wait_for(timeout=30_000)
        assert "not a person" in bot.first.inner_text().lower() or "police" in bot.first.inner_text().lower()
        # quick reply from the real Rasa buttons
        parent_button = page.get_by_role("button", name=re.compile("worried about a young person", re.I))
        typing = page.locator("#typing")
        wait_until(lambda: typing.is_hidden())
        count = bot.count()
        parent_button.first.click()
        wait_until(lambda: bot.count() > count and typing.is_hidden())
        # a real question
        count = bot.count()
        page.fill("#message", "how do extremists recruit teenagers online?")
        page.click("#send")
        wait_until(lambda: bot.count() > count and typing.is_hidden())
        answer = bot.nth(count).inner_text()
        assert len(answer) > 200 and "sorry" not in answer.lower()[:40]
        # the support finder: France
        count = bot.count()
        page.fill("#message", "I need help in France")
        page.click("#send")
        wait_until(lambda: bot.count() > count and typing.is_hidden())
        need = page.get_by_role("button", name=re.compile("drawn in", re.I))
        wait_until(lambda: need.count() > 0)  # the form's question may come a moment later
        need.last.click()
        wait_until(lambda: "0 800 005 696" in page.locator("#log").inner_text())
        session = page.evaluate("() => Object.values(sessionStorage).find(v => /^[0-9a-f-]{36}$/.test(v))")
        assert session, "the page keeps a UUID session id in sessionStorage"
        sender = privacy.sender_id(stack.env["SIGNPOST_HMAC_KEY"].encode(), "web", session)
        engine = privacy.engine_for(stack.tracker_url)
        count_events = lambda: engine.connect().execute(  # noqa: E731
            sa.select(sa.func.count()).where(privacy.EVENTS.c.sender_id == sender)).scalar()
        assert count_events() > 0
        # delete my conversation
        page.click("#delete-open")
        page.click("#delete-confirm")
        page.wait_for_selector("#log .msg--notice", timeout=15_000)
        assert count_events() == 0
        assert "0 800 005 696" not in page.locator("#log").inner_text()
        assert dialogs == []
    finally:
        context.close()
