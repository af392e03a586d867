"""JMESPath, CEL conditions and {{ }} templates; secrets only through the resolver."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from automation.expressions import (
    ExpressionError,
    condition_problem,
    evaluate_condition,
    jmespath_problem,
    render,
    search,
    template_problems,
)

CONTEXT = {"input": {"count": 3, "name": "ada", "tags": ["a", "b"]}, "steps": {"fetch": {"output": {"ok": True}}}}


def test_search_and_parse_problems() -> None:
    assert search("input.tags[1]", CONTEXT) == "b"
    assert search("input.missing", CONTEXT) is None
    assert jmespath_problem("input.tags[") is not None and jmespath_problem("input.tags[0]") is None


def test_conditions() -> None:
    assert evaluate_condition("input.count > 2 && input.tags.exists(t, t == 'a')", CONTEXT) is True
    assert evaluate_condition("size(input.tags) == 3", CONTEXT) is False
    with pytest.raises(ExpressionError, match="not a bool"):
        evaluate_condition("input.count + 1", CONTEXT)
    with pytest.raises(ExpressionError):
        evaluate_condition("input.nothing > 1", CONTEXT)


def test_condition_cost_is_bounded_at_parse_time() -> None:
    assert condition_problem("[1].all(x, [2].exists(y, x < y))") is None
    assert "nested deeper" in (condition_problem("[1].all(x, [1].all(y, [1].map(z, z).size() > 0))") or "")
    assert "longer than" in (condition_problem("1 == 1 && " * 200 + "true") or "")


def test_a_whole_substitution_keeps_its_type_and_text_is_interpolated() -> None:
    rendered = render({"n": "{{ input.count }}", "s": "hi {{ input.name }} x{{ input.count }}",
                       "list": ["{{ input.tags }}", 7], "obj": "{{ steps.fetch.output }}", "none": "<{{ nope }}>"},
                      CONTEXT)
    assert rendered == {"n": 3, "s": "hi ada x3", "list": [["a", "b"], 7], "obj": {"ok": True}, "none": "<>"}


def test_secrets_come_only_from_the_resolver() -> None:
    headers = {"Authorization": "Bearer {{ secret('CHAT_TOKEN') }}"}
    assert render(headers, CONTEXT, {"CHAT_TOKEN": "s3cr3t"}.__getitem__) == {"Authorization": "Bearer s3cr3t"}
    with pytest.raises(ExpressionError, match="secret"):
        render(headers, CONTEXT)


def test_template_problems() -> None:
    assert template_problems("plain {{ input.name }}", allow_secrets=False) == []
    assert template_problems("{{ secret('X') }}", allow_secrets=False) == ["secret() is allowed only in header values"]
    assert template_problems("{{ secret(X) }}", allow_secrets=True)
    assert "unclosed" in template_problems("a {{ b", allow_secrets=False)[0]


@given(st.text(max_size=40).filter(lambda s: "{{" not in s))
def test_strings_without_substitutions_are_left_alone(text: str) -> None:
    assert render({"k": text, "l": [text]}, CONTEXT) == {"k": text, "l": [text]}
