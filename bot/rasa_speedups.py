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
    try:
        _patch_action_result_validation()
    except Exception:  # noqa: BLE001 - a speed-up must never stop Rasa from starting
        logger.exception("could not apply the action-result validation speed-up")
