"""What every channel does with a user message before and after Rasa.

- clean the text (control characters, bidi overrides, length) and stop users from injecting
  intents: text starting with ``/`` reaches Rasa as a command only when it is one of the button
  payloads defined in the domain;
- send it to Rasa through :class:`bot.rasa_client.RasaClient`;
- if Rasa cannot answer (down, slow, or an empty reply because the action server failed),
  answer with the fail-safe text, and with the crisis text when the gateway's own copy of the
  safety patterns matches.
"""
from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Set

from ruamel.yaml import YAML

from bot import settings as settings_mod
from bot.rasa_client import RasaClient, RasaUnavailable

logger = logging.getLogger(__name__)

# C0/DEL controls, bidi embeddings/overrides/isolates, and lone UTF-16 surrogates (JSON allows
# "\ud800", but such a string cannot be encoded as UTF-8: sending it on to Rasa failed)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
#: What a language hint from a channel may look like (a BCP 47 tag such as "de" or "pt-BR").
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,8}(?:[-_][A-Za-z0-9]{1,8}){0,4}")
_ZERO_WIDTH = re.compile(r"[\u200b-\u200f\u2060\ufeff]")


def clean_text(text: str, max_chars: int) -> str:
    """Normalise user text for the bot.

    Removes NUL and other control characters, bidirectional overrides and lone surrogates,
    turns zero-width characters into spaces (so "i\\u200bwant" reads as two words), applies NFC,
    collapses runs of whitespace and cuts to ``max_chars`` characters.
    """
    text = _CONTROL.sub(" ", text)
    text = unicodedata.normalize("NFC", text)
    text = _ZERO_WIDTH.sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text[:max_chars]


def language_tag(value: Any) -> Optional[str]:
    """``value`` if it looks like a language tag (``"de"``, ``"pt-BR"``), else None.

    Channel hints (browser language, Telegram ``language_code``) are passed on to Rasa as
    metadata; anything else (control characters, lone surrogates, free text) is dropped.
    """
    if isinstance(value, str) and len(value) <= 35 and _LANGUAGE_TAG.fullmatch(value):
        return value
    return None


def load_payloads(domain_dir: Path) -> Set[str]:
    """Collect every button payload in the domain's responses (``domain/**/*.yml``)."""
    yaml = YAML(typ="safe")
    payloads: Set[str] = set()
    for path in sorted(Path(domain_dir).rglob("*.yml")):
        data = yaml.load(path.read_text(encoding="utf-8")) or {}
        for variations in (data.get("responses") or {}).values():
            for variation in variations or []:
                for button in (variation or {}).get("buttons") or []:
                    if isinstance(button, dict) and button.get("payload"):
                        # Rasa formats payloads like texts: "{{" in the YAML is sent as "{"
                        payloads.add(str(button["payload"]).replace("{{", "{").replace("}}", "}"))
    return payloads


def load_failsafe(path: Path) -> Dict[str, Dict[str, str]]:
    """Load ``data/failsafe.yml``: ``{"unavailable": {lang: text}, "crisis": {lang: text}}``."""
    data = YAML(typ="safe").load(Path(path).read_text(encoding="utf-8"))
    for kind in ("unavailable", "crisis"):
        if "en" not in (data.get(kind) or {}):
            raise ValueError(f"{path}: '{kind}' needs at least an English text")
    return data


@dataclass
class Reply:
    """What a channel shows the user: bot messages, and whether they are the fail-safe."""

    messages: List[Dict[str, Any]]
    failsafe: bool = False
    crisis: Optional[str] = None


@dataclass
class Conversation:
    """Channel-independent message handling (see module docstring)."""

    rasa: RasaClient
    payloads: Set[str]
    failsafe_texts: Dict[str, Dict[str, str]]
    max_chars: int = 1000
    safety: Any = None  # bot.safety.SafetyPatterns, loaded lazily
    extra_payloads: Set[str] = field(default_factory=lambda: {"/greet", "/stop", "/help_menu"})

    def prepare(self, text: str) -> str:
        """Clean the text and neutralise commands that are not our own button payloads."""
        cleaned = clean_text(text or "", self.max_chars)
        if cleaned.startswith("/") and cleaned not in self.payloads | self.extra_payloads:
            cleaned = cleaned.lstrip("/").strip()
        return cleaned

    def load_safety(self) -> None:
        """Load the safety patterns now (at start-up) instead of on the first message.

        Loading them takes one to three seconds of CPU; done lazily, the first message after a
        start (or the first fail-safe) blocked the event loop, and with it every other request.
        """
        self._safety_match("")

    def _safety_match(self, text: str):
        if self.safety is None:
            try:
                from bot.safety import default_patterns

                self.safety = default_patterns()
            except Exception:  # noqa: BLE001 - the fail-safe must work even without patterns
                logger.exception("safety patterns could not be loaded")
                return None
        try:
            return self.safety.match(text)
        except Exception:  # noqa: BLE001
            logger.exception("safety pattern matching failed")
            return None

    def failsafe(self, text: str, language: Optional[str], explicit: bool = False) -> Reply:
        """The reply when Rasa cannot answer: crisis text if the safety patterns match.

        The language is the explicit choice if there is one (``explicit``), else the language
        the message itself is written in when that is clear, else ``language`` (the hint).
        """
        if not explicit and text and not text.startswith("/"):
            try:
                from bot.language import LanguageIdentifier

                detected = LanguageIdentifier().detect(text)
                if detected.language and detected.supported:
                    language = detected.language
            except Exception:  # noqa: BLE001 - never let detection stop the fail-safe
                logger.exception("language detection failed in the fail-safe")
        lang = language if language in settings_mod.SUPPORTED_LANGUAGES else "en"
        match = self._safety_match(text) if text else None
        kind = "crisis" if match else "unavailable"
        texts = self.failsafe_texts[kind]
        return Reply([{"text": texts.get(lang) or texts["en"]}], failsafe=True,
                     crisis=match.category if match else None)

    async def handle(self, sender: str, text: str, metadata: Dict[str, Any],
                     language: Optional[str] = None) -> Reply:
        """Send one (already prepared) message to Rasa and return what to show the user.

        Args:
            sender: pseudonymous conversation id.
            text: prepared text (see :meth:`prepare`); must not be empty.
            metadata: channel metadata passed on to Rasa.
            language: best guess of the user's language for the fail-safe text.
        """
        explicit = (metadata or {}).get("language_choice") in settings_mod.SUPPORTED_LANGUAGES
        if explicit:
            language = metadata["language_choice"]
        try:
            messages = await self.rasa.send(sender, text, metadata)
        except RasaUnavailable as exc:
            logger.warning("Rasa unavailable, sending the fail-safe reply (%s)", exc)
            return self.failsafe(text, language, explicit)
        crisis_answered = any(isinstance(m.get("custom"), dict)
                              and m["custom"].get("signpost") == "crisis" for m in messages)
        messages = [m for m in messages if m.get("text") or m.get("buttons")]
        if not messages:
            logger.warning("Rasa returned no message, sending the fail-safe reply")
            return self.failsafe(text, language, explicit)
        if not crisis_answered and not text.startswith("/"):
            # Safety net under Rasa: if our own patterns see a crisis but Rasa's answer was not a
            # crisis answer (e.g. the action server failed at session start), the crisis
            # numbers still come first.
            match = self._safety_match(text)
            if match is not None:
                logger.warning("crisis not answered by Rasa; adding the fail-safe crisis reply")
                safe = self.failsafe(text, language, explicit)
                return Reply(safe.messages + messages, failsafe=True, crisis=match.category)
        return Reply(messages)


def guess_language(metadata: Dict[str, Any], supported: Iterable[str] = settings_mod.SUPPORTED_LANGUAGES) -> str:
    """Pick a language for gateway-made texts from channel metadata (choice, then hint)."""
    for key in ("language_choice", "language_hint"):
        value = str(metadata.get(key) or "").split("-")[0].lower()
        if value in supported:
            return value
    return "en"
