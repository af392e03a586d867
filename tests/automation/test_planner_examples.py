"""next_actions on the README example workflows and on hand-made histories: fan-out, retries, waits, limits."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from automation.definition import MAX_FOR_EACH_ITEMS, MAX_OUTPUT_BYTES, TransformConfig
from automation.expressions import evaluate_condition, render
from automation.history import EventKind
from automation.outputs import cap_output, is_truncated, output_size
from automation.planner import (
    LEASE_GRACE_SECONDS,
    QUEUE_GRACE_SECONDS,
    FailStep,
    FinishExecution,
    FireWait,
    RunStep,
    ScheduleRetry,
    SkipStep,
    StartContainer,
    StartWait,
    TimeOutStep,
)
from automation.state import build_context, parse_key
from automation.step_work import StepFailure, run_conditional, run_transform, run_validation
from automation.validation import parse_definition
from tests.automation.workflow_simulation import T0, World

EXAMPLES = Path(__file__).resolve().parents[2] / "automation" / "examples"


def example(name: str) -> World:
    return World(parse_definition(json.loads((EXAMPLES / f"{name}.json").read_text())))


def finish(world: World, key: str, output: Any = None, error: dict[str, Any] | None = None) -> None:
    """Play the executor of a sent task: pure steps do their real work, HTTP steps answer `output`/`error`."""
    attempt = next(a for k, a in world.sent if k == key)
    world.sent.remove((key, attempt))
    world.record(EventKind.STEP_STARTED, {"key": key, "attempt": attempt})
    step = world.definition.step(parse_key(key)[0])
    context = build_context(world.definition, world.state(), key)
    try:
        if step.type == "transform":
            output = run_transform(step.config, context)  # type: ignore[arg-type]
        elif step.type == "conditional":
            output = run_conditional(step.config, context)  # type: ignore[arg-type]
        elif step.type == "validation":
            output = run_validation(step.config, context)  # type: ignore[arg-type]
    except StepFailure as failure:
        error = failure.as_error()
    if error is not None:
        world.record(EventKind.STEP_FAILED, {"key": key, "attempt": attempt, "error": error})
    else:
        world.record(EventKind.STEP_SUCCEEDED, {"key": key, "attempt": attempt, "output": cap_output(output)})


def settle(world: World) -> list[Any]:
    """Plan, then run every sent pure step, until only HTTP steps (or nothing) are left to do."""
    actions: list[Any] = []
    while True:
        planned = world.plan()
        actions += planned
        pure = [k for k, _ in world.sent if world.definition.step(parse_key(k)[0]).type not in (
            "http_request", "webhook_call")]
        if not planned and not pure:
            return actions
        for key in pure:
            finish(world, key)


def builds(*statuses: str) -> dict[str, Any]:
    return {"status": 200, "headers": {}, "body": {"events": [{"payload": {"status": s}} for s in statuses]}}


def test_three_failed_builds_open_an_issue() -> None:
    world = example("build_failure_streak")
    world.start({})
    assert world.plan() == [RunStep("builds", 1)]
    finish(world, "builds", builds("failure", "failure", "failure"))
    actions = settle(world)
    assert RunStep("open_issue", 1) in actions and SkipStep("nothing_to_do", actions[-1].reason) in actions
    finish(world, "open_issue", {"status": 201, "headers": {}, "body": {"number": 7}})
    assert world.plan() == [FinishExecution("succeeded", None)]  # the last step (nothing_to_do) was skipped
    assert world.state().status == "succeeded"


def test_a_build_that_passed_opens_no_issue() -> None:
    world = example("build_failure_streak")
    world.start({})
    world.plan()
    finish(world, "builds", builds("failure", "success", "failure"))
    actions = settle(world)
    assert any(isinstance(a, SkipStep) and a.key == "open_issue" for a in actions)
    assert world.state().step("nothing_to_do").output == "no streak"
    assert actions[-1] == FinishExecution("succeeded", "no streak")


def test_validation_failure_lists_every_violation_and_is_not_retried() -> None:
    world = example("build_failure_streak")
    world.start({})
    world.plan()
    finish(world, "builds", {"status": 200, "body": {"events": [{"payload": {"status": 1}}] * 4}})
    actions = settle(world)
    check = world.state().step("check")
    assert check.status == "failed" and check.error["kind"] == "validation"  # type: ignore[index]
    assert {v["path"] for v in check.error["details"]} == {"$", "$[0]", "$[1]", "$[2]", "$[3]"}  # type: ignore[index]
    assert isinstance(actions[-1], FinishExecution) and actions[-1].status == "failed"
    assert actions[-1].error["step"] == "check"  # type: ignore[index]


def test_weekday_summary_fans_out_at_most_max_parallel_and_keeps_item_order() -> None:
    world = example("weekday_summary")
    world.start({})
    world.plan()
    team = [{"id": i, "name": f"dev{i}"} for i in range(7)]
    finish(world, "developers", {"status": 200, "headers": {}, "body": {"developers": team}})
    assert world.plan() == [StartContainer("per_developer", tuple(team))]
    assert world.plan() == [RunStep(f"metrics[{i}]", 1) for i in range(5)]  # max_parallel 5
    for i in reversed(range(5)):
        finish(world, f"metrics[{i}]", {"status": 200, "body": {"active_minutes": 10 * i, "builds_failed": i}})
    settle(world)
    for i in (5, 6):
        finish(world, f"metrics[{i}]", {"status": 200, "body": {"active_minutes": 10 * i, "builds_failed": i}})
    actions = settle(world)
    assert RunStep("post", 1) in actions
    lines = world.state().step("per_developer").output
    assert lines == [f"dev{i}: {10 * i} active min, {i} failed builds" for i in range(7)]
    post = world.definition.step("post").config
    body = render(post.body, build_context(world.definition, world.state(), "post"))  # type: ignore[union-attr]
    assert body["text"].splitlines()[1] == "dev0: 0 active min, 0 failed builds"


ALERT = {"id": 9, "developer_id": 4, "pattern": "no_break", "recommendation": "take a break",
         "severity": "critical"}


def start_alert(world: World) -> None:
    world.record(EventKind.EXECUTION_STARTED, {"input": {}, "trigger": ALERT})
    settle(world)


def test_critical_alert_renders_the_chat_message() -> None:
    world = example("critical_alert_to_chat")
    start_alert(world)
    context = build_context(world.definition, world.state(), "post")
    post = world.definition.step("post").config
    assert render(post.body, context) == {  # type: ignore[union-attr]
        "text": "Critical alert for developer 4: no_break (take a break)", "alert_id": 9}
    event_filter = world.definition.trigger.filter  # type: ignore[union-attr]
    assert evaluate_condition(event_filter, {"event": ALERT})
    assert not evaluate_condition(event_filter, {"event": {**ALERT, "severity": "high"}})


def test_a_503_is_retried_when_due_and_a_404_fails_the_execution() -> None:
    world = example("critical_alert_to_chat")
    start_alert(world)
    finish(world, "post", error={"kind": "http_status", "http_status": 503, "message": "unavailable"})
    retry = world.plan()
    assert len(retry) == 1 and isinstance(retry[0], ScheduleRetry) and retry[0].attempt == 2
    delay = (retry[0].not_before - world.now).total_seconds()
    assert 1.0 <= delay <= 2.0  # exponential from 2 s, equal jitter
    assert world.plan() == []
    world.now = retry[0].not_before
    assert world.plan() == [RunStep("post", 2)]
    finish(world, "post", error={"kind": "http_status", "http_status": 404, "message": "gone"})
    assert world.state().step("post").status == "failed"
    final = world.plan()
    assert len(final) == 1 and isinstance(final[0], FinishExecution) and final[0].status == "failed"


def test_execution_timeout_and_lost_workers() -> None:
    world = example("critical_alert_to_chat")
    start_alert(world)
    world.record(EventKind.STEP_STARTED, {"key": "post", "attempt": 1})
    world.now = T0 + timedelta(seconds=15 + LEASE_GRACE_SECONDS)
    assert world.plan() == [TimeOutStep("post", 1)]  # its worker died: a failed attempt, retried
    assert world.state().step("post").status == "retry_wait"
    world.now = T0 + timedelta(seconds=300)
    assert world.plan()[0].status == "failed"  # type: ignore[union-attr]
    assert world.state().error["kind"] == "timeout"  # type: ignore[index]


def definition_with(steps: list[dict[str, Any]]) -> World:
    return World(parse_definition({"name": "t", "trigger": {"type": "manual"}, "steps": steps}))


def test_a_wait_fires_when_due_and_cancel_stops_everything() -> None:
    world = definition_with([{"id": "w", "type": "wait", "config": {"seconds": 60}},
                             {"id": "after", "type": "transform", "config": {"expression": "input"},
                              "depends_on": ["w"]}])
    world.start({})
    assert world.plan() == [StartWait("w", T0 + timedelta(seconds=60))]
    world.now = T0 + timedelta(seconds=59)
    assert world.plan() == []
    world.now = T0 + timedelta(seconds=60)
    assert world.plan() == [FireWait("w", 1)]
    world.record(EventKind.EXECUTION_CANCELLED, {"reason": "operator"})
    assert world.plan() == [] and world.state().status == "cancelled"
    assert world.state().step("after").status == "cancelled"


def test_for_each_item_limit_and_non_list_items_fail_the_step() -> None:
    steps = [{"id": "loop", "type": "for_each", "config": {"items": "input.items", "steps": [
        {"id": "each", "type": "transform", "config": {"expression": "item"}}]}}]
    world = definition_with(steps)
    world.start({"items": list(range(MAX_FOR_EACH_ITEMS + 1))})
    [failed] = world.plan()
    assert isinstance(failed, FailStep) and "more than 1000" in failed.error["message"]
    world = definition_with(steps)
    world.start({"items": "not a list"})
    assert isinstance(world.plan()[0], FailStep)
    world = definition_with(steps)
    world.start({"items": []})
    settle(world)
    assert world.state().status == "succeeded" and world.state().step("loop").output == []


def test_outputs_over_256_kb_are_truncated_with_a_marker() -> None:
    small = {"a": "b" * 100}
    assert cap_output(small) is small
    big = {"rows": ["x" * 1000] * 400, "quote": '"\\' * 10_000}
    capped = cap_output(big)
    assert is_truncated(capped) and capped["original_bytes"] == output_size(big)
    assert output_size(capped) <= MAX_OUTPUT_BYTES


def test_transform_errors_are_expression_failures() -> None:
    try:
        run_transform(TransformConfig("abs(input)"), {"input": [1]})
    except StepFailure as failure:
        assert failure.kind == "expression"
    else:
        raise AssertionError("expected a StepFailure")


def test_a_failed_execution_resumes_from_its_failed_steps_keeping_succeeded_outputs() -> None:
    world = example("critical_alert_to_chat")
    start_alert(world)
    finish(world, "post", error={"kind": "http_status", "http_status": 400, "message": "bad"})
    world.plan()
    failed = world.state()
    assert failed.status == "failed"
    world.now += timedelta(hours=1)
    world.record(EventKind.EXECUTION_RESUMED, {"reason": "operator retry"})
    resumed = world.state()
    assert resumed.status == "running" and resumed.step("message").status == "succeeded"
    assert resumed.step("message").output == failed.step("message").output
    assert world.plan() == [RunStep("post", 2)]  # a new task id: <execution>.post.2
    finish(world, "post", error={"kind": "http_status", "http_status": 503, "message": "later"})
    assert world.state().step("post").status == "retry_wait"  # a fresh retry budget
    assert isinstance(world.plan()[0], ScheduleRetry)


def test_skips_propagate_to_steps_depending_only_on_skipped_steps() -> None:
    world = definition_with([
        {"id": "c", "type": "conditional", "config": {"condition": "input.go == true", "then": ["x"]}},
        {"id": "x", "type": "transform", "config": {"expression": "input"}},
        {"id": "only_x", "type": "transform", "config": {"expression": "input"}, "depends_on": ["x"]},
        {"id": "after_only_x", "type": "transform", "config": {"expression": "input"}, "depends_on": ["only_x"]},
        {"id": "w", "type": "transform", "config": {"expression": "input"}},
        {"id": "x_and_w", "type": "transform", "config": {"expression": "`1`"}, "depends_on": ["x", "w"]},
    ])
    world.start({"go": False})
    settle(world)
    final = world.state()
    assert [final.step(k).status for k in ("x", "only_x", "after_only_x", "x_and_w")] == [
        "skipped", "skipped", "skipped", "succeeded"]
    assert final.status == "succeeded" and final.output == 1


def test_a_task_lost_before_it_started_is_a_failed_attempt() -> None:
    world = definition_with([{"id": "post", "type": "http_request", "timeout_seconds": 15,
                              "config": {"url": "https://chat.example.com/hooks/x"}}])
    world.start({})
    assert world.plan() == [RunStep("post", 1)]  # sent, never started: its message was lost with Redis
    world.now = T0 + timedelta(seconds=15 + QUEUE_GRACE_SECONDS - 1)
    assert world.plan() == []
    world.now = T0 + timedelta(seconds=15 + QUEUE_GRACE_SECONDS)
    assert world.plan() == [TimeOutStep("post", 1, "the task never started")]
    assert world.state().step("post").status == "retry_wait"


def test_a_failed_execution_leaves_no_step_waiting_and_resume_reruns_them() -> None:
    world = definition_with([{"id": "a", "type": "http_request", "config": {"url": "https://a.example/"}},
                             {"id": "b", "type": "http_request", "config": {"url": "https://b.example/"}}])
    world.start({})
    assert world.plan() == [RunStep("a", 1), RunStep("b", 1)]
    finish(world, "b", error={"kind": "http_status", "http_status": 503, "message": "later"})
    finish(world, "a", error={"kind": "http_status", "http_status": 404, "message": "gone"})
    [finished] = world.plan()  # a failed for good: b's retry is not scheduled, the execution ends
    assert isinstance(finished, FinishExecution) and finished.error["step"] == "a"  # type: ignore[index]
    assert [world.state().step(k).status for k in ("a", "b")] == ["failed", "failed"]
    world.record(EventKind.EXECUTION_RESUMED, {"reason": "operator retry"})
    assert world.plan() == [RunStep("a", 2), RunStep("b", 2)]
