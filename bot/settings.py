"""Configuration read from the environment, with embedded defaults for one machine.

Every setting has an environment variable of the same name (upper case). Defaults give a
single-machine set-up: SQLite files under ``var/``, in-memory lock store, loopback ports.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"



def _domain_languages() -> tuple:
    """The values of the ``language`` slot in domain/core.yml: adding a language is a data change."""
    try:
        from ruamel.yaml import YAML

        core = YAML(typ="safe").load((ROOT / "domain" / "core.yml").read_text(encoding="utf-8"))
        values = core["slots"]["language"]["values"]
        return tuple(str(v) for v in values)
    except Exception:  # noqa: BLE001 - never fail to start over this; English always works
        return ("en", "de", "fr", "ar")


#: Languages the bot speaks, in the order of the ``language`` slot's values (first = default).
SUPPORTED_LANGUAGES = _domain_languages()


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _hmac_key() -> bytes:
    """The pseudonymisation key: ``SIGNPOST_HMAC_KEY`` or a key file created once under var/.

    Raises:
        OSError: when var/ cannot be written and no key is given in the environment.
    """
    env = os.environ.get("SIGNPOST_HMAC_KEY")
    if env:
        return env.encode("utf-8")
    VAR.mkdir(parents=True, exist_ok=True)
    key_file = VAR / "hmac.key"
    if not key_file.exists():
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    return key_file.read_text().strip().encode("utf-8")


@dataclass(frozen=True)
class Settings:
    """Runtime settings (see README "Configuration" for each variable)."""

    rasa_urls: List[str] = field(default_factory=list)
    rasa_token: str = ""
    rasa_timeout_s: float = 8.0
    tracker_store_url: str = ""
    directory_db_url: str = ""
    retention_days: int = 30
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    max_message_chars: int = 1000
    max_body_bytes: int = 16_384
    rate_limit_per_minute: int = 30
    telegram_token: str = ""
    telegram_api_url: str = "https://api.telegram.org"
    telegram_webhook_secret: str = ""
    telegram_webhook_url: str = ""

    @classmethod
    def from_env(cls) -> "Settings":
        rasa_urls = [
            u.strip().rstrip("/")
            for u in _env("RASA_URLS", _env("RASA_URL", "http://127.0.0.1:5005")).split(",")
            if u.strip()
        ]
        return cls(
            rasa_urls=rasa_urls,
            rasa_token=_env("RASA_TOKEN", ""),
            rasa_timeout_s=float(_env("RASA_TIMEOUT", "8")),
            tracker_store_url=_env("TRACKER_STORE_URL", f"sqlite:///{VAR / 'tracker.db'}"),
            directory_db_url=_env("DIRECTORY_DB_URL", f"sqlite:///{VAR / 'directory.db'}"),
            retention_days=int(_env("RETENTION_DAYS", "30")),
            gateway_host=_env("GATEWAY_HOST", "127.0.0.1"),
            gateway_port=int(_env("GATEWAY_PORT", "8000")),
            max_message_chars=int(_env("MAX_MESSAGE_CHARS", "1000")),
            max_body_bytes=int(_env("MAX_BODY_BYTES", "16384")),
            rate_limit_per_minute=int(_env("RATE_LIMIT_PER_MINUTE", "30")),
            telegram_token=_env("TELEGRAM_BOT_TOKEN", ""),
            telegram_api_url=_env("TELEGRAM_API_URL", "https://api.telegram.org").rstrip("/"),
            telegram_webhook_secret=_env("TELEGRAM_WEBHOOK_SECRET", ""),
            telegram_webhook_url=_env("TELEGRAM_WEBHOOK_URL", ""),
        )

    @property
    def hmac_key(self) -> bytes:
        return _hmac_key()
