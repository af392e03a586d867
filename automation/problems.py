"""Problems of a JSON document with their JSON paths, and the typed readers that collect them.

`Problem(path, reason)` is what a 400 lists; `ProblemCollector` reads fields of a decoded JSON object and,
instead of stopping at the first bad one, records a Problem and returns a fallback so that the caller goes on
(automation.validation builds on it for definitions; `input_problems` checks an execution's input).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
import jsonschema.exceptions

from automation import expressions


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str


class InvalidDefinition(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s): " + "; ".join(f"{p.path}: {p.reason}" for p in problems))
        self.problems = tuple(problems)


def json_path(base: str, parts: Any) -> str:
    """`base` followed by jsonschema-style path parts: ints as [i], names as .name."""
    return base + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def input_problems(schema: Mapping[str, Any] | None, value: Any) -> list[Problem]:
    """Every way an execution's `input` breaks the workflow's input_schema (paths from `$.input`)."""
    if schema is None:
        return []
    validator = jsonschema.validators.validator_for(schema)(dict(schema))
    return [Problem(json_path("$.input", error.absolute_path), error.message)
            for error in sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class ProblemCollector:
    """Typed readers that report a Problem and return a fallback, so one pass finds every problem."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, path: str, reason: str) -> None:
        self.problems.append(Problem(path, reason))

    def string(self, obj: Mapping[str, Any], key: str, path: str, *, required: bool = True,
               default: str | None = None) -> str | None:
        if key not in obj:
            if required:
                self.problem(f"{path}.{key}", "required")
            return default
        value = obj[key]
        if not isinstance(value, str) or (required and not value.strip()):
            self.problem(f"{path}.{key}", "must be a non-empty string")
            return default
        return value

    def number(self, obj: Mapping[str, Any], key: str, path: str, default: float, low: float,
               high: float) -> float:
        if key not in obj:
            return default
        value = obj[key]
        if not _is_number(value) or not low <= value <= high:
            self.problem(f"{path}.{key}", f"must be a number from {low:g} to {high:g}")
            return default
        return float(value)

    def integer(self, obj: Mapping[str, Any], key: str, path: str, default: int, low: int, high: int) -> int:
        value = obj.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            self.problem(f"{path}.{key}", f"must be an integer from {low} to {high}")
            return default
        return value

    def mapping(self, value: Any, path: str) -> Mapping[str, Any] | None:
        if not isinstance(value, Mapping):
            self.problem(path, "must be an object")
            return None
        return value

    def unknown_keys(self, obj: Mapping[str, Any], allowed: set[str], path: str) -> None:
        for key in obj:
            if key not in allowed:
                self.problem(f"{path}.{key}", "unknown field")

    def jmespath(self, obj: Mapping[str, Any], key: str, path: str) -> str:
        text = self.string(obj, key, path) or ""
        if text:
            reason = expressions.jmespath_problem(text)
            if reason is not None:
                self.problem(f"{path}.{key}", reason)
        return text

    def condition(self, obj: Mapping[str, Any], key: str, path: str, *, required: bool = True) -> str | None:
        text = self.string(obj, key, path, required=required)
        if text is not None:
            reason = expressions.condition_problem(text)
            if reason is not None:
                self.problem(f"{path}.{key}", reason)
        return text

    def templates(self, value: Any, path: str, *, allow_secrets: bool = False) -> None:
        if isinstance(value, str):
            for reason in expressions.template_problems(value, allow_secrets=allow_secrets):
                self.problem(path, reason)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                self.templates(item, f"{path}.{key}", allow_secrets=allow_secrets)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.templates(item, f"{path}[{i}]", allow_secrets=allow_secrets)

    def json_schema(self, value: Any, path: str) -> Mapping[str, Any] | None:
        if not isinstance(value, Mapping):
            self.problem(path, "must be a JSON Schema object")
            return None
        try:
            jsonschema.validators.validator_for(value).check_schema(dict(value))
        except jsonschema.exceptions.SchemaError as exc:
            self.problem(json_path(path, exc.path), f"not a valid JSON Schema: {exc.message}")
            return None
        return value
