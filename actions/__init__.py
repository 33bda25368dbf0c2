"""Signpost custom actions (rasa-sdk 3.6). One module per concern; actions are thin."""
