"""Custom Rasa NLU components: LanguageDetector and SafetyGate (referenced from config.yml)."""
