"""A tiny stand-in for the Signpost gateway, for the web chat's browser tests.

It serves bot/web/static as the real gateway does (same routes; the security headers are the
real gateway's own, imported from bot.app.SECURITY_HEADERS, plus Trusted Types, see TRUSTED_TYPES)
and answers /api/chat with canned replies instead of asking Rasa. Every request to /api/chat and
/api/forget is recorded so tests can check what the page sent.

Routes (the contract the real gateway, bot/app.py, must keep):
    GET  /                  -> static/index.html
    GET  /static/<path>     -> static/<path>
    GET  /privacy[?lang=xx] -> static/privacy.html, or static/privacy.<xx>.html for xx in de, fr, ar
                               (any other or no lang: privacy.html, English)
    POST /api/chat          -> {"messages": [{"text", "buttons": [{"title", "payload"}]}], "failsafe"}
                               400/413/429 -> {"error": "<code>", "message": "<kind text>"}
    POST /api/forget        -> {"ok": true}

Canned behaviour of /api/chat (chosen by the message text, so tests can steer it):
    metadata.event == "session_start"  greeting with two audience buttons (per language)
    message == PARENT_PAYLOAD          AUDIENCE_REPLY (per language), no buttons
    other message starting with "/"    "You chose <payload>." (a button payload), no buttons
    contains "warning" / "علامات"      a warning-signs answer with a link and two buttons
    contains "429"                     429 with a kind server message
    contains "failsafe"                200 with failsafe: true and the server's failsafe text
    contains "error500"                500 with a non-JSON body
    contains "longurl"                 a reply holding a 300-character URL
    contains "slow"                    waits SLOW_SECONDS before answering
    anything else                      an echo of the text + a reply with links, hostile markup
                                       and two buttons (LINK_REPLY)

Run it by hand to look at the page:  python tests/browser/fake_gateway.py --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import threading
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.app import SECURITY_HEADERS as GATEWAY_HEADERS  # noqa: E402 - the real gateway's headers

STATIC_DIR = ROOT / "bot" / "web" / "static"
EXIT_URL = "https://www.bbc.co.uk/weather"  # index.html's data-exit-url in production

# The page must also work under Trusted Types, which makes every HTML-writing DOM sink
# (innerHTML, outerHTML, insertAdjacentHTML, document.write …) throw. The fake gateway adds it
# to the real gateway's CSP if that does not have it yet, so the tests hold the page to it.
TRUSTED_TYPES = "require-trusted-types-for 'script'; trusted-types 'none'"


def _security_headers() -> dict[str, str]:
    headers = {name.lower(): value for name, value in GATEWAY_HEADERS.items()}
    csp = headers["content-security-policy"].strip().rstrip(";")
    if "require-trusted-types-for" not in csp:
        csp = f"{csp}; {TRUSTED_TYPES}"
    headers["content-security-policy"] = csp
    return headers


SECURITY_HEADERS = _security_headers()
CONTENT_SECURITY_POLICY = SECURITY_HEADERS["content-security-policy"]
NO_STORE = {"cache-control": "no-store"}

PRIVACY_PAGES = {"de": "privacy.de.html", "fr": "privacy.fr.html", "ar": "privacy.ar.html"}
LANGUAGES = ("en", "de", "fr", "ar")
MAX_MESSAGE = 1000
SLOW_SECONDS = 1.0
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

GREETING = {
    "en": "Hi, I'm Signpost, an automated guide: not a person, and not the police. I can explain how "
          "online grooming and recruitment work, the warning signs, how to talk to your child and who "
          "can help. In danger right now? Call 999 (UK), 112 (EU) or 911 (US & Canada).\n\n"
          "Are you asking for yourself or about a young person you care about?",
    "de": "Hallo, ich bin Signpost, ein automatischer Ratgeber – kein Mensch und nicht die Polizei. "
          "Akute Gefahr? Rufen Sie 112 an.\n\nFragen Sie für sich selbst oder für ein Kind, das Ihnen "
          "wichtig ist?",
    "fr": "Bonjour, je suis Signpost, un guide automatique : ni une personne, ni la police. En danger "
          "immédiat ? Appelez le 112.\n\nVous posez la question pour vous ou pour un jeune qui compte "
          "pour vous ?",
    "ar": "مرحبًا، أنا Signpost، دليل آلي: لست شخصًا ولست الشرطة. يمكنني أن أشرح كيف يعمل الاستدراج "
          "والتجنيد عبر الإنترنت، وما هي علامات التحذير، وكيف تتحدث مع طفلك، ومن يمكنه المساعدة. "
          "في خطر الآن؟ اتصل بالرقم 999 (المملكة المتحدة) أو 112 (الاتحاد الأوروبي) أو 911 "
          "(الولايات المتحدة وكندا).\n\nهل تسأل عن نفسك أم عن شاب أو فتاة يهمّك أمرهما؟",
}
AUDIENCE_BUTTONS = {
    "en": ("I'm asking about a young person", "I'm asking for myself"),
    "de": ("Ich frage für ein Kind", "Ich frage für mich"),
    "fr": ("Je pose la question pour un jeune", "Je pose la question pour moi"),
    "ar": ("أسأل عن شاب أو فتاة", "أسأل عن نفسي"),
}
PARENT_PAYLOAD = '/set_audience{"audience":"parent"}'
AUDIENCE_REPLY = {
    "en": "Thank you. I'll answer as a parent or carer. What would you like to know?",
    "de": "Danke. Ich antworte Ihnen als Elternteil oder Bezugsperson. Was möchten Sie wissen?",
    "fr": "Merci. Je vous réponds en tant que parent ou proche. Que voulez-vous savoir ?",
    "ar": "شكرًا لك. سأجيبك بصفتك أحد الوالدين أو مقدّمي الرعاية. ماذا تريد أن تعرف؟",
}
TEEN_PAYLOAD = '/set_audience{"audience":"teen"}'

WARNING_SIGNS = {
    "en": "Some signs that someone may be grooming or recruiting a young person online:\n"
          "• a new online friend they keep secret, or who wants to move to a private app\n"
          "• gifts, money or game items from someone they haven't met\n"
          "• sudden \"us against them\" talk, or pulling away from old friends\n"
          "One sign alone doesn't mean something is wrong. More on what to look for: actearly.uk",
    "ar": "بعض العلامات التي قد تدل على أن شخصًا ما يستدرج شابًا أو يجنّده عبر الإنترنت:\n"
          "• صديق جديد على الإنترنت يخفيه، أو يريد الانتقال إلى تطبيق خاص\n"
          "• هدايا أو أموال أو عناصر في الألعاب من شخص لم يلتقِ به\n"
          "• حديث مفاجئ عن «نحن ضدهم»، أو الابتعاد عن الأصدقاء القدامى\n"
          "علامة واحدة وحدها لا تعني أن هناك مشكلة. للمزيد: actearly.uk",
}
FOLLOW_UP_BUTTONS = {
    "en": [{"title": "How do I talk to my child?", "payload": "/talk_to_child"},
           {"title": "Who can I call?", "payload": "/find_support"}],
    "ar": [{"title": "كيف أتحدث مع طفلي؟", "payload": "/talk_to_child"},
           {"title": "بمن يمكنني الاتصال؟", "payload": "/find_support"}],
}

# The reply to any other text: links in every form the page must recognise, things that must
# NOT become links, and markup that must stay literal text.
LINK_REPLY = (
    "Read more at actearly.uk, report online terrorist content at https://www.gov.uk/report-terrorism. "
    "or gov.uk/report-terrorism — e-mail help@example.org.uk, version 3.5, e.g. node.js, "
    "javascript:alert(2) <img src=x onerror=alert(1)> <script>alert(3)</script> "
    "(see https://en.wikipedia.org/wiki/Grooming_(disambiguation))."
)
LINK_REPLY_HREFS = [
    "https://actearly.uk/",
    "https://www.gov.uk/report-terrorism",
    "https://gov.uk/report-terrorism",
    "https://en.wikipedia.org/wiki/Grooming_(disambiguation)",
]
LINK_REPLY_BUTTONS = [
    {"title": "Tell me more", "payload": "/tell_me_more"},
    {"title": "Who can I call?", "payload": "/find_support"},
]
RATE_LIMIT_MESSAGE = "Slow down a little: please wait a minute before sending another message."
FAILSAFE_TEXT = ("Signpost is having a problem and can't answer properly right now. If you or someone "
                 "else is in danger, call 999 (UK), 112 (EU) or 911 (US & Canada).")
LONG_URL = "https://example.org/" + "a" * 300


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=NO_STORE)


class FakeGateway:
    """Builds the Starlette app and records what the page sends."""

    def __init__(self) -> None:
        self.chat_calls: list[dict[str, Any]] = []
        self.forget_calls: list[dict[str, Any]] = []
        self.base_url = ""
        self._lock = threading.Lock()
        self.app = self._build()

    def reset(self) -> None:
        with self._lock:
            self.chat_calls.clear()
            self.forget_calls.clear()

    # ----- routes -----

    def _build(self) -> Starlette:
        routes = [
            Route("/", self.index, methods=["GET", "HEAD"]),
            Route("/privacy", self.privacy, methods=["GET", "HEAD"]),
            Route("/api/chat", self.chat, methods=["POST"]),
            Route("/api/forget", self.forget, methods=["POST"]),
            Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
        ]
        app = Starlette(routes=routes)
        return SecurityHeaders(app)  # type: ignore[return-value]

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html")

    async def privacy(self, request: Request) -> Response:
        name = PRIVACY_PAGES.get(request.query_params.get("lang", ""), "privacy.html")
        return FileResponse(STATIC_DIR / name)

    async def forget(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "bad_json", "Sorry, that request could not be read.")
        if not isinstance(body, dict) or not UUID_RE.match(str(body.get("session_id", ""))):
            return _error(400, "bad_session", "Sorry, that request could not be read.")
        with self._lock:
            self.forget_calls.append(body)
        return JSONResponse({"ok": True}, headers=NO_STORE)

    async def chat(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "bad_json", "Sorry, that request could not be read.")
        if not isinstance(body, dict):
            return _error(400, "bad_json", "Sorry, that request could not be read.")
        with self._lock:
            self.chat_calls.append(body)
        if not UUID_RE.match(str(body.get("session_id", ""))):
            return _error(400, "bad_session", "Sorry, that request could not be read.")
        message = body.get("message")
        metadata = body.get("metadata") or {}
        if not isinstance(message, str) or not isinstance(metadata, dict):
            return _error(400, "bad_message", "Sorry, that message could not be read.")
        if len(message) > MAX_MESSAGE:
            return _error(413, "too_long", "That message is too long. Please keep it under 1000 characters.")
        lang = self._language(metadata)

        if metadata.get("event") == "session_start":
            first, second = AUDIENCE_BUTTONS[lang]
            return self._reply([{"text": GREETING[lang], "buttons": [
                {"title": first, "payload": PARENT_PAYLOAD},
                {"title": second, "payload": TEEN_PAYLOAD},
            ]}])
        if not message.strip():
            return _error(400, "empty", "Please type a message.")
        lowered = message.lower()
        if "slow" in lowered:
            await asyncio.sleep(SLOW_SECONDS)
        if message == PARENT_PAYLOAD:
            return self._reply([{"text": AUDIENCE_REPLY[lang]}])
        if message.startswith("/"):
            return self._reply([{"text": f"You chose {message}."}])
        if "429" in lowered:
            return _error(429, "rate_limited", RATE_LIMIT_MESSAGE)
        if "failsafe" in lowered:
            return self._reply([{"text": FAILSAFE_TEXT}], failsafe=True)
        if "error500" in lowered:
            return PlainTextResponse("Internal Server Error", status_code=500)
        if "longurl" in lowered:
            return self._reply([{"text": f"A long address: {LONG_URL}"}])
        if "warning" in lowered or "علامات" in message:
            key = "ar" if lang == "ar" else "en"
            return self._reply([{"text": WARNING_SIGNS[key], "buttons": FOLLOW_UP_BUTTONS[key]}])
        return self._reply([
            {"text": f"You asked: {message}"},
            {"text": LINK_REPLY, "buttons": LINK_REPLY_BUTTONS},
        ])

    @staticmethod
    def _language(metadata: dict[str, Any]) -> str:
        choice = metadata.get("language_choice")
        if choice in LANGUAGES:
            return choice
        browser = str(metadata.get("browser_language") or "")[:2].lower()
        return browser if browser in LANGUAGES else "en"

    @staticmethod
    def _reply(messages: list[dict[str, Any]], failsafe: bool = False) -> JSONResponse:
        return JSONResponse({"messages": messages, "failsafe": failsafe}, headers=NO_STORE)


class SecurityHeaders:
    """ASGI middleware: adds SECURITY_HEADERS to every HTTP response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                extra = dict(SECURITY_HEADERS)
                if scope["path"].startswith("/api/"):
                    extra.update(NO_STORE)  # as the real gateway: API answers are never cached
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.decode("latin-1").lower() not in extra]
                headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve the Signpost web chat with canned replies.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    uvicorn.run(FakeGateway().app, host=args.host, port=args.port, log_level="info", ws="none")


if __name__ == "__main__":
    main()
