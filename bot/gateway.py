"""Run the gateway with uvicorn: ``python -m bot.gateway`` (host/port from the environment).

Starts the Telegram channel too when ``TELEGRAM_BOT_TOKEN`` is set.
"""
from __future__ import annotations

import logging

import uvicorn

from bot.app import create_app
from bot.settings import Settings


def build_app(settings: Settings):
    telegram = None
    if settings.telegram_token:
        from bot.channels.telegram import TelegramChannel

        telegram = TelegramChannel(settings)
    return create_app(settings, telegram=telegram)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    uvicorn.run(build_app(settings), host=settings.gateway_host, port=settings.gateway_port,
                log_level="info", access_log=False, proxy_headers=False,
                ws="none")  # no websockets here; rasa pins websockets 10, which uvicorn's "auto" cannot load


if __name__ == "__main__":
    main()
