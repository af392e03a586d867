"""Definition validation: every problem reported, each with its JSON path and a reason."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from automation.definition import MAX_STEPS, ConditionalConfig, ForEachConfig, HttpRequestConfig, ScheduleTrigger
from automation.validation import InvalidDefinition, definition_problems, input_problems, parse_definition

EXAMPLES = Path(__file__).resolve().parents[2] / "automation" / "examples"

BASE: dict[str, Any] = {
    "name": "w",
    "trigger": {"type": "manual"},
    "steps": [
        {"id": "a", "type": "transform", "config": {"expression": "input.x"}},
        {"id": "b", "type": "transform", "config": {"expression": "steps.a.output"}, "depends_on": ["a"]},
    ],
}


def doc(**changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(BASE)
    document.update(changes)
    return document


def paths(document: Any) -> dict[str, str]:
    return {p.path: p.reason for p in definition_problems(document)}


@pytest.mark.parametrize("name", ["critical_alert_to_chat", "weekday_summary", "build_failure_streak"])
def test_readme_examples_validate(name: str) -> None:
    definition = parse_definition(json.loads((EXAMPLES / f"{name}.json").read_text()))
    assert definition.name == name.replace("_", "-")


def test_a_valid_definition_is_typed() -> None:
    definition = parse_definition(json.loads((EXAMPLES / "weekday_summary.json").read_text()))
    assert isinstance(definition.trigger, ScheduleTrigger) and definition.trigger.timezone == "Europe/Berlin"
    loop = definition.step("per_developer").config
    assert isinstance(loop, ForEachConfig) and loop.max_parallel == 5 and [s.id for s in loop.steps] == [
        "metrics", "line"]
    assert definition.places["line"].container == "per_developer" and definition.places["line"].for_each_depth == 1
    fetch = definition.step("developers").config
    assert isinstance(fetch, HttpRequestConfig) and fetch.expect_status == (200,)
    streak = parse_definition(json.loads((EXAMPLES / "build_failure_streak.json").read_text()))
    assert isinstance(streak.step("streak").config, ConditionalConfig)
    assert streak.implicit_depends_on("open_issue") == ("streak",)


def test_unknown_step_type() -> None:
    document = doc()
    document["steps"][1]["type"] = "teleport"
    assert "unknown step type 'teleport'" in paths(document)["$.steps[1].type"]


def test_duplicate_ids_are_found_across_nesting() -> None:
    document = doc()
    document["steps"].append({"id": "loop", "type": "for_each", "config": {
        "items": "input.list", "steps": [{"id": "a", "type": "transform", "config": {"expression": "item"}}]}})
    assert "duplicate step id 'a'" in paths(document)["$.steps[2].config.steps[0].id"]


def test_unknown_and_cyclic_depends_on() -> None:
    document = doc()
    document["steps"][0]["depends_on"] = ["b"]
    document["steps"][1]["depends_on"] = ["a", "ghost"]
    found = paths(document)
    assert "unknown step 'ghost'" in found["$.steps[1].depends_on[1]"]
    assert any("cyclic dependency" in reason for reason in found.values())


def test_depends_on_may_not_reach_into_another_scope() -> None:
    document = doc()
    document["steps"].append({"id": "p", "type": "parallel", "config": {"branches": [
        [{"id": "inner", "type": "transform", "config": {"expression": "input"}, "depends_on": ["a"]}]]}})
    assert "not in this scope" in paths(document)["$.steps[2].config.branches[0][0].depends_on[0]"]


def test_conditional_then_else_must_name_steps_of_the_scope_once() -> None:
    document = doc()
    document["steps"].append({"id": "c", "type": "conditional",
                              "config": {"condition": "input.x > 1", "then": ["b", "nope"], "else": ["b"]}})
    found = paths(document)
    assert "unknown step 'nope'" in found["$.steps[2].config.then[1]"]
    assert "already listed" in found["$.steps[2].config.else[0]"]


def test_expressions_that_do_not_parse() -> None:
    document = doc()
    document["steps"][0]["config"]["expression"] = "input.["
    document["steps"].append({"id": "c", "type": "conditional", "config": {"condition": "input.x >", "then": []}})
    document["steps"].append({"id": "h", "type": "http_request", "config": {
        "url": "https://x.example/{{ input.[ }}", "body": {"deep": ["ok", "{{ ]] }}"]},
        "headers": {"Authorization": "Bearer {{ secret('TOKEN') }}"}}})
    found = paths(document)
    assert "JMESPath does not parse" in found["$.steps[0].config.expression"]
    assert "CEL does not parse" in found["$.steps[2].config.condition"]
    assert "JMESPath does not parse" in found["$.steps[3].config.url"]
    assert "JMESPath does not parse" in found["$.steps[3].config.body.deep[1]"]
    assert "$.steps[3].config.headers.Authorization" not in found


def test_secrets_only_in_header_values() -> None:
    document = doc()
    document["steps"].append({"id": "h", "type": "http_request", "config": {
        "url": "https://x.example/", "body": {"token": "{{ secret('TOKEN') }}"}}})
    assert "only in header values" in paths(document)["$.steps[2].config.body.token"]


def test_cel_cost_bound() -> None:
    deep = "[1].all(x, [1].all(y, [1].all(z, true)))"
    document = doc(trigger={"type": "event", "event": "alert.raised", "filter": deep})
    assert "nested deeper" in paths(document)["$.trigger.filter"]


def test_bad_cron_and_unknown_time_zone() -> None:
    found = paths(doc(trigger={"type": "schedule", "cron": "61 9 * * 1-5", "timezone": "Mars/Olympus"}))
    assert "cron" in found["$.trigger.cron"]
    assert "unknown time zone" in found["$.trigger.timezone"]


def test_unknown_trigger_type_and_event() -> None:
    assert "manual, event, schedule" in paths(doc(trigger={"type": "sometimes"}))["$.trigger.type"]
    assert "unknown event" in paths(doc(trigger={"type": "event", "event": "alert.fixed"}))["$.trigger.event"]


def test_input_schema_must_be_a_json_schema() -> None:
    found = paths(doc(input_schema={"type": "object", "properties": {"x": {"type": "integer", "minimum": "zero"}}}))
    assert "not a valid JSON Schema" in found["$.input_schema.properties.x.minimum"]


def test_validation_step_schema_is_checked() -> None:
    document = doc()
    document["steps"].append({"id": "v", "type": "validation", "config": {"schema": {"type": "nonsense"},
                                                                          "data": "input"}})
    assert any(p.startswith("$.steps[2].config.schema") for p in paths(document))


def test_retry_policy_values() -> None:
    found = paths(doc(retry={"strategy": "sometimes", "max_attempts": 0, "delay_seconds": -1,
                             "max_delay_seconds": 1e9, "jitter": "yes"}))
    assert set(found) >= {"$.retry.strategy", "$.retry.max_attempts", "$.retry.delay_seconds",
                          "$.retry.max_delay_seconds", "$.retry.jitter"}
    step_override = doc()
    step_override["steps"][0]["retry"] = {"delay_seconds": 10, "max_delay_seconds": 5}
    assert "at least delay_seconds" in paths(step_override)["$.steps[0].retry.max_delay_seconds"]


def test_step_limit_counts_nested_steps() -> None:
    nested = [{"id": f"n{i}", "type": "transform", "config": {"expression": "item"}} for i in range(MAX_STEPS)]
    document = doc()
    document["steps"].append({"id": "loop", "type": "for_each", "config": {"items": "input", "steps": nested}})
    assert f"at most {MAX_STEPS}" in paths(document)["$.steps"]


def test_wait_and_for_each_configs() -> None:
    document = doc()
    document["steps"] += [
        {"id": "w", "type": "wait", "config": {"seconds": 5, "until": "input.at"}},
        {"id": "f", "type": "for_each", "config": {"items": "input", "steps": [], "max_parallel": 0}},
    ]
    found = paths(document)
    assert "exactly one of seconds and until" in found["$.steps[2].config"]
    assert "non-empty list" in found["$.steps[3].config.steps"]


def test_every_problem_is_reported_at_once() -> None:
    document = doc(trigger={"type": "schedule", "cron": "bad", "timezone": "Nowhere/Here"},
                   retry={"strategy": "never"})
    document["steps"][0]["type"] = "teleport"
    document["steps"][1]["config"]["expression"] = "a.["
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition(document)
    assert {p.path for p in caught.value.problems} >= {"$.trigger.cron", "$.trigger.timezone", "$.retry.strategy",
                                                       "$.steps[0].type", "$.steps[1].config.expression"}


def test_not_an_object_and_missing_fields() -> None:
    assert paths([]) == {"$": "must be an object"}
    found = paths({})
    assert found["$.name"] == "required" and found["$.trigger"] == "required" and "$.steps" in found


def test_execution_input_is_checked_against_the_input_schema() -> None:
    definition = parse_definition(doc(input_schema={"type": "object", "required": ["team"], "properties": {
        "team": {"type": "string"}, "days": {"type": "array", "items": {"type": "integer"}}}}))
    found = {p.path: p.reason for p in input_problems(definition.input_schema, {"days": [1, "two"]})}
    assert "'team' is a required property" in found["$.input"]
    assert "is not of type 'integer'" in found["$.input.days[1]"]
    assert input_problems(definition.input_schema, {"team": "core", "days": [1]}) == []
    assert input_problems(None, "anything") == []
