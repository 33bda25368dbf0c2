"""Rasa's structured log events never carry the user's text (bot/log_redaction.py)."""
import structlog

from bot import log_redaction


def test_text_is_redacted_before_rendering():
    captured = []

    def capture(logger, method_name, event_dict):
        captured.append(dict(event_dict))
        raise structlog.DropEvent

    old = structlog.get_config()
    try:
        structlog.configure(processors=[capture], cache_logger_on_first_use=False)
        assert log_redaction.apply() is True
        assert log_redaction.apply() is True  # idempotent
        logger = structlog.get_logger()
        logger.error("rest.message.received.failure", text="i want to die", sender_id="web-x")
        logger.debug("processor.message.parse", parse_data_text="my name is Zelda")
    finally:
        structlog.configure(**old)
    assert captured[0]["text"] == "<redacted>" and captured[0]["sender_id"] == "web-x"
    assert captured[1]["parse_data_text"] == "<redacted>"
    assert "Zelda" not in repr(captured) and "die" not in repr(captured)
