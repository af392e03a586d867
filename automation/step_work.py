"""The work of the pure step types, for their executors: transform, conditional, validation.

Each takes the step's config and its context (automation.state.build_context) and returns the step's output,
or raises `StepFailure(kind, message)`, which the executor records as a failed attempt of that kind (both
kinds here are deterministic and not retried). Outputs still go through automation.outputs.cap_output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema

from automation import expressions
from automation.definition import ConditionalConfig, TransformConfig, ValidationConfig
from automation.problems import json_path

MAX_VIOLATIONS = 100


class StepFailure(Exception):
    def __init__(self, kind: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.details = kind, message, details

    def as_error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"kind": self.kind, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return error


def _cel_variables(context: Mapping[str, Any]) -> dict[str, Any]:
    return {name: context[name] for name in ("input", "trigger", "steps", "execution", "item", "index")
            if name in context}


def run_transform(config: TransformConfig, context: Mapping[str, Any]) -> Any:
    try:
        return expressions.search(config.expression, context)
    except expressions.ExpressionError as exc:
        raise StepFailure("expression", str(exc)) from exc


def run_conditional(config: ConditionalConfig, context: Mapping[str, Any]) -> dict[str, bool]:
    try:
        return {"result": expressions.evaluate_condition(config.condition, _cel_variables(context))}
    except expressions.ExpressionError as exc:
        raise StepFailure("expression", str(exc)) from exc


def run_validation(config: ValidationConfig, context: Mapping[str, Any]) -> dict[str, Any]:
    """{"valid": true, "data": ...}; a failure lists every violation (path and message)."""
    try:
        data = expressions.search(config.data, context)
    except expressions.ExpressionError as exc:
        raise StepFailure("expression", str(exc)) from exc
    validator = jsonschema.validators.validator_for(config.schema)(dict(config.schema))
    violations = [{"path": json_path("$", error.absolute_path), "message": error.message}
                  for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))]
    if violations:
        raise StepFailure("validation", f"{len(violations)} violation(s)", violations[:MAX_VIOLATIONS])
    return {"valid": True, "data": data}
