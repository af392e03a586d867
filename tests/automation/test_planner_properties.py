"""Properties of fold + next_actions over random valid DAG definitions and random interleavings of outcomes."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automation.definition import Definition, ForEachConfig, Step
from automation.planner import RunStep, StartContainer, StartWait
from automation.state import TERMINAL_STEP, ExecutionState, fold, instance_key, parse_key
from tests.automation.workflow_simulation import World, definitions, run

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
inputs = st.fixed_dictionaries({"flag": st.booleans(), "items": st.lists(st.integers(0, 9), max_size=4)})


def _deps_ok(definition: Definition, state: ExecutionState, key: str) -> bool:
    step_id, indices = parse_key(key)
    deps = [state.step(instance_key(d, indices)).status for d in definition.implicit_depends_on(step_id)]
    return all(d in ("succeeded", "skipped") for d in deps) and (not deps or any(d == "succeeded" for d in deps))


def _branch_taken(definition: Definition, state: ExecutionState, key: str) -> bool:
    step_id, indices = parse_key(key)
    place = definition.places[step_id]
    if place.conditional is None:
        return True
    conditional = state.step(instance_key(place.conditional, indices))
    return conditional.status == "succeeded" and bool(conditional.output["result"]) is place.branch_taken_when


@SETTINGS
@given(definitions(), inputs, st.data())
def test_execution_ends_and_every_start_respects_dependencies(definition: Definition, execution_input: Any,
                                                              data: st.DataObject) -> None:
    world = World(definition)
    world.start(execution_input)
    final = run(world, data.draw)
    assert final.status in ("succeeded", "failed")
    runs = [(a.key, a.attempt) for _, a in world.actions_seen if isinstance(a, RunStep)]
    assert len(runs) == len(set(runs)), "a step attempt was scheduled twice"
    for state, action in world.actions_seen:
        if isinstance(action, RunStep | StartContainer | StartWait) and getattr(action, "attempt", 1) == 1:
            assert _deps_ok(definition, state, action.key), action
            assert _branch_taken(definition, state, action.key), action
        if isinstance(action, RunStep) and action.attempt > 1:
            previous = state.step(action.key)
            assert previous.status == "retry_wait" and previous.attempts == action.attempt - 1
            assert previous.not_before is not None and previous.not_before <= world.now
    if final.status == "succeeded":
        for step in definition.steps:
            assert final.step(step.id).status in ("succeeded", "skipped")
        assert not any(s.status == "failed" for s in final.steps.values())
    else:
        assert any(s.status == "failed" for s in final.steps.values())


def _expected_skip(definition: Definition, state: ExecutionState, step: Step, indices: tuple[int, ...]) -> bool:
    place = definition.places[step.id]
    deps = [state.step(instance_key(d, indices)).status for d in definition.implicit_depends_on(step.id)]
    if place.conditional is not None:
        conditional = state.step(instance_key(place.conditional, indices))
        if conditional.status == "skipped":
            return True
        if conditional.status == "succeeded" and bool(conditional.output["result"]) is not place.branch_taken_when:
            return True
    return bool(deps) and all(d == "skipped" for d in deps)


def _check_scope(definition: Definition, state: ExecutionState, steps: tuple[Step, ...],
                 indices: tuple[int, ...]) -> None:
    for step in steps:
        key = instance_key(step.id, indices)
        st_ = state.step(key)
        assert (st_.status == "skipped") == _expected_skip(definition, state, step, indices), key
        if st_.status != "succeeded":
            continue
        if isinstance(step.config, ForEachConfig):
            items = st_.items or ()
            assert len(st_.output) == len(items)
            for i in range(len(items)):
                _check_scope(definition, state, step.config.steps, (*indices, i))
                assert st_.output[i] == state.step(instance_key(step.config.steps[-1].id, (*indices, i))).output
        else:
            for branch_number, branch in enumerate(step.nested_scopes()):
                _check_scope(definition, state, branch, indices)
                assert st_.output[branch_number] == state.step(instance_key(branch[-1].id, indices)).output


@SETTINGS
@given(definitions(), inputs, st.data())
def test_skips_and_join_outputs_are_exact_in_a_successful_execution(definition: Definition, execution_input: Any,
                                                                     data: st.DataObject) -> None:
    world = World(definition)
    world.start(execution_input)
    final = run(world, data.draw)
    if final.status == "succeeded":
        _check_scope(definition, final, definition.steps, ())


@SETTINGS
@given(definitions(), inputs, st.data())
def test_for_each_never_runs_more_items_than_max_parallel(definition: Definition, execution_input: Any,
                                                          data: st.DataObject) -> None:
    world = World(definition)
    world.start(execution_input)
    run(world, data.draw)
    for cut in range(1, len(world.events) + 1):
        state = fold(definition, world.events[:cut])
        for key, st_ in state.steps.items():
            step = definition.step(st_.step_id)
            if not isinstance(step.config, ForEachConfig) or st_.items is None:
                continue
            busy = 0
            for i in range(len(st_.items)):
                statuses = [state.step(instance_key(s.id, (*st_.indices, i))).status for s in step.config.steps]
                if any(s != "pending" for s in statuses) and not all(s in TERMINAL_STEP for s in statuses):
                    busy += 1
            assert busy <= step.config.max_parallel, key


@SETTINGS
@given(definitions(), inputs, st.data())
def test_fold_is_deterministic_and_ignores_repeated_events(definition: Definition, execution_input: Any,
                                                           data: st.DataObject) -> None:
    world = World(definition)
    world.start(execution_input)
    final = run(world, data.draw)
    assert fold(definition, world.events) == final
    # executors record at least once: any step event recorded again (e.g. a redelivered task) changes nothing
    step_events = [i for i, e in enumerate(world.events) if "key" in e.data]
    repeated = list(world.events)
    for _ in range(data.draw(st.integers(0, min(8, len(step_events))))):
        i = data.draw(st.sampled_from(step_events))
        j = data.draw(st.integers(i + 1, len(world.events)))
        at = repeated.index(world.events[j - 1]) + 1 if j > 0 else 0
        repeated.insert(at, world.events[i])
    again = fold(definition, repeated)
    assert again.steps == final.steps and again.status == final.status
    # and at any moment: an event recorded again right away changes nothing either
    for _ in range(5):
        cut = data.draw(st.integers(1, len(world.events)))
        before = fold(definition, world.events[:cut])
        repeat = world.events[data.draw(st.integers(0, cut - 1))]
        after = fold(definition, [repeat], before)
        assert after.steps == before.steps and after.status == before.status


@SETTINGS
@given(definitions(), inputs, st.data())
def test_nothing_starts_after_cancellation(definition: Definition, execution_input: Any, data: st.DataObject) -> None:
    world = World(definition)
    world.start(execution_input)
    cancel_at = data.draw(st.integers(0, 30))
    final = run(world, data.draw, cancel_at=cancel_at)
    cancelled = next((e.seq for e in world.events if e.kind == "execution_cancelled"), None)
    if cancelled is None:
        return
    assert final.status == "cancelled" or (final.status in ("succeeded", "failed") and
                                            any(e.kind == "execution_finished" and e.seq < cancelled
                                                for e in world.events))
    starts = {"step_scheduled", "step_retried", "step_skipped", "wait_fired"}
    assert not [e for e in world.events if e.seq > cancelled and e.kind in starts]
    assert not [a for state, a in world.actions_seen if state.status == "cancelled"]
    # tasks already sent may still end; nothing else moves
    assert all(s.status in ("succeeded", "failed", "skipped", "cancelled") for s in final.steps.values()
               if definition.step(s.step_id).type not in ("parallel", "for_each"))
