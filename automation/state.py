"""The state of an execution: a pure fold of its history (`fold(definition, events) -> ExecutionState`).

Step instances: a step outside any for_each runs once and its instance key is its id; a step inside for_each
containers runs once per item and its key adds the item indices, innermost last: `notify[3]`, `inner[1][0]`
(`instance_key`, `parse_key`). Task ids are `<execution_id>.<key>.<attempt>`.

What each event does (stale or repeated events, e.g. a redelivered task recording twice, change nothing):
- execution_started: status running; input, trigger, workflow_id, version and started_at recorded.
- step_scheduled {key, attempt}: a new attempt (attempt > attempts so far) -> "scheduled".
- step_started {key, attempt, fire_at?, items?}: "running" (waits carry fire_at, for_each carries its items;
  containers and waits start straight from "pending", the planner decides them without a task).
- step_succeeded {key, attempt, output} / wait_fired {key, attempt}: "succeeded".
- step_failed {key, attempt, error{kind, message, http_status?}}: "retry_wait" when the step's policy retries
  it (automation.retry_policy.should_retry; containers never retry), else "failed".
- step_retried {key, attempt, not_before}: the retry's time is fixed (still "retry_wait").
- step_skipped {key, reason}: "skipped".
- execution_cancelled: status cancelled; pending and retry_wait instances and running waits become
  "cancelled" (no further step starts); tasks already sent may still record their outcome.
- execution_finished {status, output?, error?}: the final status; steps still waiting for a retry become
  "failed" and running waits "cancelled" (a failed execution ends while they wait, or at its timeout).
- execution_resumed {reason}: a failed execution runs again from its failed steps: they (and failed
  containers, and waits cut short) go back to "pending" keeping their attempt count, so their next attempt
  has the next number (task ids stay unique) with a fresh retry budget; succeeded steps keep their outputs.
  The execution timeout counts from here (`running_since`).
Step statuses for the API: scheduled, running and retry_wait are shown as "running".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal

from automation.definition import CONTAINER_TYPES, Definition, ForEachConfig
from automation.history import EventKind, HistoryEvent
from automation.retry_policy import should_retry

ExecutionStatus = Literal["pending", "running", "succeeded", "failed", "cancelled"]
StepStatus = Literal["pending", "scheduled", "running", "retry_wait", "succeeded", "failed", "skipped", "cancelled"]
TERMINAL_STEP: frozenset[str] = frozenset({"succeeded", "failed", "skipped", "cancelled"})
TERMINAL_EXECUTION: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
API_STEP_STATUS: Mapping[str, str] = MappingProxyType({"scheduled": "running", "retry_wait": "running"})

_KEY = re.compile(r"^([^\[\]]+)((?:\[\d+\])*)$")


def instance_key(step_id: str, indices: tuple[int, ...] = ()) -> str:
    return step_id + "".join(f"[{i}]" for i in indices)


def parse_key(key: str) -> tuple[str, tuple[int, ...]]:
    match = _KEY.match(key)
    if match is None:
        raise ValueError(f"not a step instance key: {key!r}")
    return match.group(1), tuple(int(i) for i in re.findall(r"\d+", match.group(2)))


@dataclass(frozen=True)
class StepState:
    key: str
    step_id: str
    indices: tuple[int, ...]
    status: StepStatus = "pending"
    attempts: int = 0  # attempts scheduled or started so far (the current one's number)
    output: Any = None
    error: Mapping[str, Any] | None = None
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    not_before: datetime | None = None  # retry_wait: when the next attempt may start
    fire_at: datetime | None = None  # wait: when it fires
    items: tuple[Any, ...] | None = None  # for_each: the items it iterates
    skip_reason: str | None = None
    resumed_after: int = 0  # attempts made before the last resume: the retry budget counts from there


@dataclass(frozen=True)
class ExecutionState:
    execution_id: str
    status: ExecutionStatus = "pending"
    input: Any = None
    trigger: Any = None
    workflow_id: Any = None
    version: Any = None
    started_at: datetime | None = None
    running_since: datetime | None = None  # started_at, or the last resume
    finished_at: datetime | None = None
    output: Any = None
    error: Mapping[str, Any] | None = None
    last_seq: int = 0
    steps: Mapping[str, StepState] = field(default_factory=lambda: MappingProxyType({}))

    def step(self, key: str) -> StepState:
        """The instance's state; one without events yet is pending (cancelled once the execution is)."""
        found = self.steps.get(key)
        if found is not None:
            return found
        step_id, indices = parse_key(key)
        return StepState(key, step_id, indices, "cancelled" if self.status == "cancelled" else "pending")


_EXECUTION_FIELDS = ("status", "input", "trigger", "workflow_id", "version", "started_at", "running_since",
                     "finished_at", "output", "error", "last_seq")


def _dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def fold(definition: Definition, events: Iterable[HistoryEvent], start: ExecutionState | None = None) -> ExecutionState:
    """The state after `events` (in seq order). Deterministic: the same events give an equal state.

    `start`: the state after the events before these (fold(d, a + b) == fold(d, b, fold(d, a))), so a caller
    holding a state need not re-read the whole history for each new event.
    """
    execution: dict[str, Any] = {}
    steps: dict[str, StepState] = {}
    execution_id = ""
    if start is not None:
        execution_id = start.execution_id
        execution = {name: getattr(start, name) for name in _EXECUTION_FIELDS}
        steps = dict(start.steps)
    for event in events:
        execution_id = execution_id or event.execution_id
        execution["last_seq"] = event.seq
        _apply(definition, execution, steps, event)
    return ExecutionState(execution_id=execution_id, steps=MappingProxyType(steps), **execution)


def _apply(definition: Definition, execution: dict[str, Any], steps: dict[str, StepState],
           event: HistoryEvent) -> None:
    kind, data, at = event.kind, event.data, event.at
    status = execution.get("status", "pending")
    if kind == EventKind.EXECUTION_STARTED:
        if status == "pending":
            execution.update(status="running", input=data.get("input"), trigger=data.get("trigger"),
                             workflow_id=data.get("workflow_id"), version=data.get("version"), started_at=at,
                             running_since=at)
        return
    if kind == EventKind.EXECUTION_RESUMED:
        if status == "failed":
            execution.update(status="running", running_since=at, finished_at=None, output=None, error=None)
            for key, st in steps.items():
                if st.status in ("failed", "cancelled"):
                    steps[key] = replace(st, status="pending", error=None, finished_at=None, items=None,
                                         fire_at=None, resumed_after=st.attempts)
        return
    if kind == EventKind.EXECUTION_CANCELLED:
        if status in ("pending", "running"):
            execution.update(status="cancelled", finished_at=at, error={"kind": "cancelled",
                                                                        "message": data.get("reason", "")})
            for key, st in steps.items():
                waiting = st.status in ("pending", "retry_wait")
                if waiting or (st.status == "running" and st.fire_at is not None):
                    steps[key] = replace(st, status="cancelled", finished_at=at)
        return
    if kind == EventKind.EXECUTION_FINISHED:
        if status == "running":
            execution.update(status=data["status"], output=data.get("output"), error=data.get("error"),
                             finished_at=at)
            for key, st in steps.items():  # a failed execution leaves no step waiting for a time
                if st.status == "retry_wait":
                    steps[key] = replace(st, status="failed", finished_at=at)
                elif st.status == "running" and st.fire_at is not None:
                    steps[key] = replace(st, status="cancelled", finished_at=at)
        return
    key = str(data["key"])
    step_id, indices = parse_key(key)
    if step_id not in definition.places:
        raise ValueError(f"history names step {step_id!r}, which the definition does not have")
    st = steps.get(key) or StepState(key, step_id, indices)
    attempt = int(data.get("attempt", st.attempts))
    current = attempt == st.attempts
    new: StepState | None = None
    if kind == EventKind.STEP_SCHEDULED:
        if attempt > st.attempts and st.status in ("pending", "retry_wait"):
            new = replace(st, status="scheduled", attempts=attempt, scheduled_at=at, not_before=None, error=None)
    elif kind == EventKind.STEP_STARTED:
        if st.status == "pending" and attempt == st.attempts + 1:
            # containers and waits: started by the planner itself, no task in between
            new = replace(st, status="running", attempts=attempt, started_at=at, fire_at=_dt(data.get("fire_at")),
                          items=tuple(data["items"]) if isinstance(data.get("items"), list) else None)
        elif st.status == "scheduled" and current:
            new = replace(st, status="running", started_at=at)
    elif kind in (EventKind.STEP_SUCCEEDED, EventKind.WAIT_FIRED):
        if current and st.status in ("scheduled", "running"):
            output = {"fired_at": at.isoformat()} if kind == EventKind.WAIT_FIRED else data.get("output")
            new = replace(st, status="succeeded", output=output, finished_at=at)
    elif kind == EventKind.STEP_FAILED:
        if (st.status in ("scheduled", "running") and current) or (st.status == "pending"
                                                                     and attempt == st.attempts + 1):
            error = dict(data.get("error") or {})
            step = definition.step(step_id)
            retried = (step.type not in CONTAINER_TYPES and status == "running"
                       and should_retry(definition.policy_of(step_id), attempt - st.resumed_after,
                                        str(error.get("kind", "internal")), error.get("http_status")))
            new = replace(st, status="retry_wait" if retried else "failed", attempts=attempt, error=error,
                          finished_at=None if retried else at)
    elif kind == EventKind.STEP_RETRIED:
        if st.status == "retry_wait" and attempt == st.attempts + 1:
            new = replace(st, not_before=_dt(data.get("not_before")))
    elif kind == EventKind.STEP_SKIPPED and st.status == "pending":
        new = replace(st, status="skipped", skip_reason=data.get("reason"), finished_at=at)
    if new is not None:
        steps[key] = new


def scope_output(definition: Definition, state: ExecutionState, scope_last_step: str,
                 indices: tuple[int, ...]) -> Any:
    """The output of a scope (a branch, an item): its last step's output (None when skipped)."""
    return state.step(instance_key(scope_last_step, indices)).output


def item_statuses(definition: Definition, state: ExecutionState, for_each_key: str) -> tuple[str, ...]:
    """Per item of a started for_each: pending | running | succeeded | failed | skipped, in item order."""
    step_id, indices = parse_key(for_each_key)
    config = definition.step(step_id).config
    items = state.step(for_each_key).items or ()
    if not isinstance(config, ForEachConfig):
        raise ValueError(f"{step_id!r} is not a for_each step")
    return tuple(_scope_status(state, config.steps, (*indices, i)) for i in range(len(items)))


def branch_statuses(definition: Definition, state: ExecutionState, parallel_key: str) -> tuple[str, ...]:
    """Per branch of a parallel step: pending | running | succeeded | failed | skipped."""
    step_id, indices = parse_key(parallel_key)
    return tuple(_scope_status(state, branch, indices) for branch in definition.step(step_id).nested_scopes())


def _scope_status(state: ExecutionState, scope: Iterable[Any], indices: tuple[int, ...]) -> str:
    statuses = [state.step(instance_key(step.id, indices)).status for step in scope]
    if "failed" in statuses:
        return "failed"
    if all(s == "pending" for s in statuses):
        return "pending"
    if all(s in TERMINAL_STEP for s in statuses):
        return "skipped" if all(s == "skipped" for s in statuses) else "succeeded"
    return "running"


def build_context(definition: Definition, state: ExecutionState, key: str) -> dict[str, Any]:
    """The context a step instance sees: input, trigger, steps (by id), execution, and item/index in a for_each.

    `steps` holds every step whose instance is visible from here: steps outside for_each loops, and the
    instances of the same item(s) for steps in the enclosing loops. Each entry: {"output", "status"}.
    """
    step_id, indices = parse_key(key)
    visible: dict[str, Any] = {}
    for other, place in definition.places.items():
        if place.for_each_depth <= len(indices):
            st = state.step(instance_key(other, indices[: place.for_each_depth]))
            visible[other] = {"output": st.output, "status": API_STEP_STATUS.get(st.status, st.status)}
    context: dict[str, Any] = {
        "input": state.input, "trigger": state.trigger, "steps": visible,
        "execution": {"id": state.execution_id, "workflow_id": state.workflow_id, "version": state.version,
                      "started_at": state.started_at.isoformat() if state.started_at else None},
    }
    container = definition.places[step_id].container
    while container is not None and not isinstance(definition.step(container).config, ForEachConfig):
        container = definition.places[container].container
    if container is not None and indices:
        items = state.step(instance_key(container, indices[:-1])).items or ()
        context["index"] = indices[-1]
        context["item"] = items[indices[-1]] if indices[-1] < len(items) else None
    return context
