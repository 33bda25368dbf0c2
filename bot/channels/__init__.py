"""Messaging channels served by the gateway.

- :mod:`bot.channels.telegram`: Telegram through python-telegram-bot (polling or webhook).

The web chat is served by :mod:`bot.app` itself (``/api/chat``).
"""
