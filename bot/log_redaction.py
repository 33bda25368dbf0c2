"""Keep users' message text out of Rasa's logs.

Rasa 3.6 logs the user's text in some structured log events, including at ERROR level when
handling a message fails (``rest.message.received.failure text=…``) and at DEBUG level for every
parse (``parse_data_text=…``). Signpost logs no message text (DESIGN.md §4), so this structlog
processor replaces the value of every text-carrying key with ``<redacted>`` before Rasa's own
processors render the event. It is installed when our NLU components load in the Rasa process
(bot/nlu/__init__.py). ``SIGNPOST_LOG_TEXT=1`` turns it off for local debugging.
"""
from __future__ import annotations

import os
from typing import Any, Dict

import structlog

REDACTED = "<redacted>"
SENSITIVE_KEYS = {"text", "message", "user_message", "utterance", "parse_data_text",
                  "parse_data", "tracker_state", "events", "slots"}


def redact(logger: Any, method_name: str, event_dict: Dict[str, Any]) -> Dict[str, Any]:
    """structlog processor: replace message text (any key above, or ending in ``_text``)."""
    for key in list(event_dict):
        if key in SENSITIVE_KEYS or key.endswith("_text"):
            event_dict[key] = REDACTED
    return event_dict


def apply() -> bool:
    """Put :func:`redact` first in structlog's processor chain; return True if installed."""
    if os.environ.get("SIGNPOST_LOG_TEXT") == "1":
        return False
    processors = list(structlog.get_config().get("processors") or [])
    if redact in processors:
        return True
    structlog.configure(processors=[redact] + processors)
    return True
