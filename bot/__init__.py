"""Signpost: an awareness chatbot about online recruitment and grooming (Rasa 3.6)."""

__version__ = "0.1.0"
