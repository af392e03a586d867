"""Expressions of workflow definitions: JMESPath queries, CEL conditions and `{{ }}` string templates.

Three languages, none of them Python (no `eval` anywhere):
- JMESPath (library `jmespath`) for values: `transform.expression`, `for_each.items`, `wait.until`,
  `validation.data`, and the inside of every `{{ ... }}` substitution.
- CEL (library `cel-python`, module `celpy`) for conditions: `conditional.condition` and an event
  trigger's `filter`. CEL has no loops or recursion; its only iteration is the comprehension macros
  (`all`, `exists`, `exists_one`, `map`, `filter`). Cost is bounded statically at parse time: at most
  `MAX_CONDITION_CHARS` characters and comprehensions nested at most `MAX_MACRO_DEPTH` deep, so an
  evaluation is O(length x n^depth) over a context whose parts are each capped (step outputs: 256 KB).
- Templates: any string value of a step's config may contain `{{ <JMESPath> }}`. A string that is exactly
  one substitution takes the value's own type (`"{{ input.count }}"` -> 3); substitutions inside longer
  text are written as text (strings as they are, other values as compact JSON, null as "").
  `{{ secret('NAME') }}` is the one non-JMESPath form: it asks the resolver the executor passes in. Secrets
  are resolved only into the rendered config that is sent; never render secrets into anything stored
  (history, outputs, API answers) — `render(..., secrets=None)` refuses them.

Public functions:
- parse checks (used by validation; each returns a reason string, or None when the text parses):
  `jmespath_problem(text)`, `condition_problem(text)`, `template_problems(text, allow_secrets)`.
- evaluation (used by executors and the planner): `search(expression, context)`,
  `evaluate_condition(expression, variables)`, `render(value, context, secrets)`.
Evaluation failures raise `ExpressionError` (an attempt of kind "expression": not retried).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import celpy
import celpy.celtypes
import jmespath
import jmespath.exceptions
import jmespath.parser
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError
from lark import Tree

MAX_CONDITION_CHARS = 1_000
MAX_MACRO_DEPTH = 2
MAX_JMESPATH_CHARS = 1_000
CEL_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})

TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
SECRET_CALL = re.compile(r"^\s*secret\(\s*'([A-Za-z_][A-Za-z0-9_.-]{0,127})'\s*\)\s*$")

SecretResolver = Callable[[str], str]


class ExpressionError(Exception):
    """An expression that parsed at validation time failed on this context (or a secret was refused)."""


@lru_cache(maxsize=1024)
def _compiled_jmespath(text: str) -> jmespath.parser.ParsedResult:
    return jmespath.compile(text)


def jmespath_problem(text: str) -> str | None:
    """Why `text` is not a usable JMESPath expression, or None."""
    if not text.strip():
        return "empty JMESPath expression"
    if len(text) > MAX_JMESPATH_CHARS:
        return f"JMESPath expression longer than {MAX_JMESPATH_CHARS} characters"
    try:
        _compiled_jmespath(text)
    except jmespath.exceptions.JMESPathError as exc:
        return f"JMESPath does not parse: {exc}".replace("\n", " ")
    return None


def search(expression: str, context: Mapping[str, Any]) -> Any:
    """The JMESPath `expression` over `context` (None where a path does not exist, as JMESPath has it)."""
    try:
        return _compiled_jmespath(expression).search(context)
    except jmespath.exceptions.JMESPathError as exc:
        raise ExpressionError(f"JMESPath {expression!r} failed: {exc}") from exc


_CEL_ENV = celpy.Environment()


@lru_cache(maxsize=1024)
def _compiled_condition(text: str) -> celpy.Runner:
    return _CEL_ENV.program(_CEL_ENV.compile(text))


def _macro_depth(tree: Tree[Any]) -> int:
    """Deepest nesting of comprehension macros in a celpy parse tree."""
    deepest = 0
    for child in tree.children:
        if isinstance(child, Tree):
            deepest = max(deepest, _macro_depth(child))
    if tree.data == "member_dot_arg" and len(tree.children) > 1 and str(tree.children[1]) in CEL_MACROS:
        return deepest + 1
    return deepest


def condition_problem(text: str) -> str | None:
    """Why `text` is not an acceptable CEL condition (does not parse, or exceeds the cost bounds), or None."""
    if not text.strip():
        return "empty CEL condition"
    if len(text) > MAX_CONDITION_CHARS:
        return f"CEL condition longer than {MAX_CONDITION_CHARS} characters"
    try:
        tree = _CEL_ENV.compile(text)
    except CELParseError as exc:
        return f"CEL does not parse: {exc}".replace("\n", " ")
    if _macro_depth(tree) > MAX_MACRO_DEPTH:
        return f"CEL comprehensions nested deeper than {MAX_MACRO_DEPTH} (cost bound)"
    return None


def evaluate_condition(expression: str, variables: Mapping[str, Any]) -> bool:
    """The CEL `expression` over JSON `variables` (e.g. input, trigger, steps, execution, item, index).

    Raises ExpressionError when the expression errs on this data or gives something other than a bool.
    """
    problem = condition_problem(expression)
    if problem is not None:
        raise ExpressionError(problem)
    activation = {name: json_to_cel(value) for name, value in variables.items()}
    try:
        result = _compiled_condition(expression).evaluate(activation)
    except CELEvalError as exc:
        raise ExpressionError(f"CEL {expression!r} failed: {exc}") from exc
    if isinstance(result, CELEvalError):
        raise ExpressionError(f"CEL {expression!r} failed: {result}")
    if not isinstance(result, celpy.celtypes.BoolType | bool):
        raise ExpressionError(f"CEL {expression!r} gave {type(result).__name__}, not a bool")
    return bool(result)


def template_problems(text: str, *, allow_secrets: bool) -> list[str]:
    """Why the `{{ }}` substitutions in `text` are unusable (empty list: all parse)."""
    problems: list[str] = []
    for match in TEMPLATE.finditer(text):
        inner = match.group(1)
        if SECRET_CALL.match(inner):
            if not allow_secrets:
                problems.append("secret() is allowed only in header values")
            continue
        if "secret(" in inner:
            problems.append("secret() takes one quoted name: {{ secret('NAME') }}")
            continue
        problem = jmespath_problem(inner.strip())
        if problem is not None:
            problems.append(f"substitution {{{{{inner}}}}}: {problem}")
    if "{{" in TEMPLATE.sub("", text):
        problems.append("unclosed {{ substitution")
    return problems


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _substitute(inner: str, context: Mapping[str, Any], secrets: SecretResolver | None) -> Any:
    secret = SECRET_CALL.match(inner)
    if secret is not None:
        if secrets is None:
            raise ExpressionError("secret() is not available here")
        return secrets(secret.group(1))
    return search(inner.strip(), context)


def render_string(text: str, context: Mapping[str, Any], secrets: SecretResolver | None = None) -> Any:
    """`text` with its substitutions done; exactly one substitution keeps the value's type."""
    whole = TEMPLATE.fullmatch(text)
    if whole is not None:
        return _substitute(whole.group(1), context, secrets)
    return TEMPLATE.sub(lambda m: _as_text(_substitute(m.group(1), context, secrets)), text)


def render(value: Any, context: Mapping[str, Any], secrets: SecretResolver | None = None) -> Any:
    """A copy of the JSON `value` with substitutions done in every string value (not in keys), recursively."""
    if isinstance(value, str):
        return render_string(value, context, secrets) if "{{" in value else value
    if isinstance(value, Mapping):
        return {key: render(item, context, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [render(item, context, secrets) for item in value]
    return value
