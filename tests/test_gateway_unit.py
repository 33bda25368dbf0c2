"""Gateway logic without servers: text cleaning, intent injection, fail-safe, HTTP limits."""
import json
import uuid

import httpx
import pytest
from starlette.testclient import TestClient

from bot.app import create_app
from bot.conversation import clean_text, load_payloads
from bot.rasa_client import RasaClient
from bot.settings import ROOT, Settings


def fake_rasa(reply):
    """An httpx transport standing in for Rasa: ``reply(body) -> (status, json)``."""
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        result = reply(body)
        if isinstance(result, Exception):
            raise result
        status, data = result
        return httpx.Response(status, json=data)

    return httpx.MockTransport(handler), seen


def make_client(tmp_path, reply, **overrides):
    transport, seen = fake_rasa(reply)
    settings = Settings(rasa_urls=["http://rasa.test"], tracker_store_url=f"sqlite:///{tmp_path/'t.db'}",
                        **overrides)
    app = create_app(settings, rasa=RasaClient(settings.rasa_urls, timeout_s=2, transport=transport))
    return TestClient(app), seen


def post(client, message, session=None, **meta):
    return client.post("/api/chat", json={"session_id": session or str(uuid.uuid4()),
                                          "message": message, "metadata": meta})


def test_clean_text():
    assert clean_text("i\u200bwant\u200bto\u200bdie", 100) == "i want to die"
    assert clean_text("a\x00b\u202eevil\u202c  c", 100) == "a b evil c"
    assert clean_text("x" * 50, 10) == "x" * 10


def test_payloads_come_from_the_domain():
    payloads = load_payloads(ROOT / "domain")
    assert "/safe_now" in payloads and '/set_language{"language":"de"}' in payloads


def test_chat_passes_pseudonymous_sender_and_metadata(tmp_path):
    client, seen = make_client(tmp_path, lambda b: (200, [{"text": "hello", "buttons": [
        {"title": "A", "payload": "/safe_now"}]}]))
    session = str(uuid.uuid4())
    r = post(client, "hi there", session, browser_language="de-DE", language_choice="fr")
    assert r.status_code == 200
    assert r.json() == {"messages": [{"text": "hello", "buttons": [{"title": "A", "payload": "/safe_now"}]}],
                        "failsafe": False}
    body = seen[0]
    assert body["sender"].startswith("web-") and session not in body["sender"]
    assert body["metadata"] == {"channel": "web", "audience_hint": "parent",
                                "language_choice": "fr", "language_hint": "de-DE"}
    post(client, "again", session)
    assert seen[1]["sender"] == body["sender"]


@pytest.mark.parametrize("typed,sent", [
    ("/restart", "restart"),
    ('/crisis_self_harm{"country": "XX"}', 'crisis_self_harm{"country": "XX"}'),
    ("//stop", "stop"),
    ("/safe_now", "/safe_now"),
])
def test_users_cannot_inject_intents(tmp_path, typed, sent):
    client, seen = make_client(tmp_path, lambda b: (200, [{"text": "ok"}]))
    assert post(client, typed).status_code == 200
    assert seen[0]["message"] == sent


def test_session_start_sends_greet(tmp_path):
    client, seen = make_client(tmp_path, lambda b: (200, [{"text": "Hi, I'm Signpost"}]))
    r = post(client, "", event="session_start")
    assert r.status_code == 200 and seen[0]["message"] == "/greet"


@pytest.mark.parametrize("reply", [
    lambda b: (200, []),
    lambda b: (500, {"error": "boom"}),
    lambda b: httpx.ConnectError("refused"),
    lambda b: httpx.ReadTimeout("slow"),
])
def test_failsafe_when_rasa_fails(tmp_path, reply):
    client, _ = make_client(tmp_path, reply)
    r = post(client, "how do recruiters work")
    assert r.status_code == 200 and r.json()["failsafe"] is True
    text = r.json()["messages"][0]["text"]
    assert "999" in text and "112" in text and "911" in text


def test_failsafe_crisis_in_users_language(tmp_path):
    client, _ = make_client(tmp_path, lambda b: httpx.ConnectError("refused"))
    r = post(client, "i want to kill myself")
    text = r.json()["messages"][0]["text"]
    assert text.startswith("Thank you for telling me") and "116 123" in text
    r = post(client, "ich will nicht mehr leben", language_choice="de")
    assert "112" in r.json()["messages"][0]["text"] and "116 111" in r.json()["messages"][0]["text"]


@pytest.mark.parametrize("body,status", [
    (b"{not json", 400),
    (b"\xff\xfe\x00", 400),
    (json.dumps({"session_id": "abc", "message": "hi"}).encode(), 400),
    (json.dumps({"session_id": str(uuid.uuid4()), "message": 5}).encode(), 400),
    (json.dumps([1, 2]).encode(), 400),
    (b"x" * 20_000, 413),
])
def test_bad_requests_get_clear_4xx(tmp_path, body, status):
    client, seen = make_client(tmp_path, lambda b: (200, [{"text": "ok"}]))
    r = client.post("/api/chat", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status and r.json()["message"]
    assert seen == []


def test_empty_and_emoji_messages(tmp_path):
    client, seen = make_client(tmp_path, lambda b: (200, [{"text": "ok"}]))
    r = post(client, "   \n\t ")
    assert r.status_code == 200 and "empty" in r.json()["messages"][0]["text"]
    assert seen == []
    assert post(client, "😂😂😂").status_code == 200 and seen[0]["message"] == "😂😂😂"


def test_rate_limit_per_session(tmp_path):
    client, _ = make_client(tmp_path, lambda b: (200, [{"text": "ok"}]), rate_limit_per_minute=3)
    session = str(uuid.uuid4())
    codes = [post(client, f"m{i}", session).status_code for i in range(5)]
    assert codes == [200, 200, 200, 429, 429]


def test_security_headers_and_page(tmp_path):
    client, _ = make_client(tmp_path, lambda b: (200, []))
    r = client.get("/")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"


def test_forget_deletes_only_that_conversation(tmp_path):
    from bot import privacy

    client, seen = make_client(tmp_path, lambda b: (200, [{"text": "ok"}]))
    url = f"sqlite:///{tmp_path/'t.db'}"
    privacy.ensure_events_table(url)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    post(client, "x", a), post(client, "y", b)
    sender_a, sender_b = seen[0]["sender"], seen[1]["sender"]
    import sqlalchemy as sa
    with privacy.engine_for(url).begin() as conn:
        for s in (sender_a, sender_a, sender_b):
            conn.execute(sa.insert(privacy.EVENTS).values(sender_id=s, type_name="user", timestamp=1.0, data="{}"))
    assert client.post("/api/forget", json={"session_id": a}).json() == {"ok": True}
    with privacy.engine_for(url).connect() as conn:
        left = [r[0] for r in conn.execute(sa.select(privacy.EVENTS.c.sender_id))]
    assert left == [sender_b]


def test_safety_net_when_rasa_answers_a_crisis_off_script(tmp_path):
    client, _ = make_client(tmp_path, lambda b: (200, [{"text": "Here is the topic menu."}]))
    r = post(client, "i want to kill myself")
    texts = [m["text"] for m in r.json()["messages"]]
    assert texts[0].startswith("Thank you for telling me") and "999" in texts[0]
    assert texts[1] == "Here is the topic menu."
    # when Rasa gave the crisis answer (its marker is present), nothing is added
    client, _ = make_client(tmp_path, lambda b: (200, [
        {"text": "In danger right now? Call 999."}, {"custom": {"signpost": "crisis"}}]))
    r = post(client, "i want to kill myself")
    assert [m["text"] for m in r.json()["messages"]] == ["In danger right now? Call 999."]
    assert r.json()["failsafe"] is False


async def test_rasa_client_sticky_per_conversation_with_failover():
    hosts = []
    down = set()

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host in down:
            raise httpx.ConnectError("refused")
        return httpx.Response(200, json=[{"text": request.url.host}])

    client = RasaClient(["http://a.test", "http://b.test"], timeout_s=2,
                        transport=httpx.MockTransport(handler))
    senders = [f"web-{i:032x}" for i in range(40)]
    first = {s: (await client.send(s, "hi"))[0]["text"] for s in senders}
    assert set(first.values()) == {"a.test", "b.test"}  # spread over both instances
    for s in senders[:10]:
        assert (await client.send(s, "again"))[0]["text"] == first[s]  # sticky
    victim = next(s for s in senders if first[s] == "a.test")
    down.add("a.test")
    assert (await client.send(victim, "still there?"))[0]["text"] == "b.test"  # fail-over
    await client.close()


def test_failsafe_crisis_uses_the_language_of_the_message(tmp_path):
    client, _ = make_client(tmp_path, lambda b: httpx.ConnectError("refused"))
    r = post(client, "ich will nicht mehr leben, es ist alles zu viel")
    assert r.json()["messages"][0]["text"].startswith("Danke, dass du es mir sagst")
    r = post(client, "أريد أن أموت")
    assert r.json()["messages"][0]["text"].startswith("شكرًا")
    # an explicit choice wins over detection
    r = post(client, "i want to die", language_choice="fr")
    assert r.json()["messages"][0]["text"].startswith("Merci de me l'avoir dit")
