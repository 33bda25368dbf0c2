"""Performance fixes for Rasa 3.6 internals, applied in the Rasa process (issue #10).

Imported by ``bot.nlu`` (so every process that loads our model gets them: ``rasa run``,
``rasa test``, bench/nlu_eval.py). Each fix keeps Rasa's behaviour exactly, checks that the
code it replaces is the one it expects, and does nothing on any other Rasa version. Set
``SIGNPOST_RASA_SPEEDUPS=0`` to switch them off (e.g. to measure them: bench/results/perf.md).

1. Action-server replies: Rasa validates every reply with ``jsonschema.validate(result,
   schema)``, which re-checks the (constant) schema against the JSON-Schema meta-schema and
   builds a new validator on every call: 30-60 ms of CPU per custom action on 2 busy cores,
   more than the action itself. Here the schema is checked once and the validator reused; the
   same ``best_match`` error is raised for an invalid reply, with Rasa's message.
2. Event types: turning a stored event (a dict) back into an ``Event`` calls
   ``Event.resolve_by_type``, which walks every subclass of ``Event`` again (recursively, with
   ``inspect.isabstract`` on each, ~30 classes) for every event. Loading a conversation's
   tracker does it once per event, so a message's cost grew with the conversation: at turn 200
   (1,355 events) this walk was about 60 % of reading the tracker (bench/results/
   long_conversation.md). Here the class found for a type name is remembered; a name not found
   yet (e.g. the legacy "topic", an unknown name) still goes through Rasa's own code, so the
   result and the errors are the same. The one difference: an event class defined after
   start-up that reuses an existing type name would not be picked up (neither Rasa nor
   Signpost defines one).
"""
from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)
_applied = False


def _patch_action_result_validation() -> bool:
    import jsonschema
    import rasa
    from rasa.core.actions import action as action_mod

    remote = action_mod.RemoteAction
    original = remote.__dict__.get("_validate_action_result")
    if not rasa.__version__.startswith("3.6.") or original is None \
            or "validate(result, self.action_response_format_spec())" not in _source(original):
        logger.info("Rasa %s: action-result validation left as it is", rasa.__version__)
        return False
    schema = remote.action_response_format_spec()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)

    def _validate_action_result(self, result):
        # same as jsonschema.validate(result, schema) with the schema checked once
        if self.action_response_format_spec() != schema:  # never expected: stay correct
            return original(self, result)
        error = jsonschema.exceptions.best_match(validator.iter_errors(result))
        if error is not None:
            error.message += (
                ". Failed to validate Action server response from API, make sure your "
                "response from the Action endpoint is valid. For more information about the "
                f"format visit {action_mod.DOCS_BASE_URL}/custom-actions")
            raise error
        return True

    _validate_action_result.__wrapped__ = original  # type: ignore[attr-defined]
    remote._validate_action_result = _validate_action_result
    return True


def _patch_event_type_lookup() -> bool:
    import rasa
    from rasa.shared.core import events as events_mod

    event = events_mod.Event
    entry = event.__dict__.get("resolve_by_type")
    original = getattr(entry, "__func__", None)
    if not rasa.__version__.startswith("3.6.") or original is None \
            or "all_subclasses(Event)" not in _source(original):
        logger.info("Rasa %s: event type lookup left as it is", rasa.__version__)
        return False
    found: dict = {}

    def resolve_by_type(type_name, default=None):
        cls = found.get(type_name)
        if cls is None:
            cls = original(type_name, default)
            # only what Rasa found by name (not the default, not None for "topic")
            if cls is not None and getattr(cls, "type_name", None) == type_name \
                    and cls is not default:
                found[type_name] = cls
        return cls

    resolve_by_type.__wrapped__ = original  # type: ignore[attr-defined]
    resolve_by_type.__doc__ = original.__doc__
    event.resolve_by_type = staticmethod(resolve_by_type)
    return True


def _source(func) -> str:
    import inspect

    try:
        return inspect.getsource(func)
    except (OSError, TypeError):
        return ""


def apply() -> None:
    """Apply the fixes once per process (see module docstring)."""
    global _applied
    if _applied or os.environ.get("SIGNPOST_RASA_SPEEDUPS", "1") == "0":
        return
    _applied = True
    for name, patch in (("action-result validation", _patch_action_result_validation),
                        ("event type lookup", _patch_event_type_lookup)):
        try:
            patch()
        except Exception:  # noqa: BLE001 - a speed-up must never stop Rasa from starting
            logger.exception("could not apply the %s speed-up", name)
