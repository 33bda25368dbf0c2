"""Custom Rasa NLU components: LanguageDetector and SafetyGate (referenced from config.yml)."""
from bot import rasa_speedups

# Rasa imports this package whenever it loads a model with our components: apply the Rasa
# speed-ups there (they keep Rasa's behaviour; see bot/rasa_speedups.py).
rasa_speedups.apply()

# No message text in Rasa's logs (bot/log_redaction.py).
from bot import log_redaction  # noqa: E402

log_redaction.apply()
