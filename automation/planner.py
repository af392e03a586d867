"""What happens next in an execution: `next_actions(definition, state, now) -> list[Action]`, a pure decision.

The orchestrating task folds the history (automation.state.fold), calls `next_actions`, records each action's
event (`action.event()` gives its kind and data; append them with automation.history.chain_event) in the same
transaction as the state it changes, sends the tasks of the RunStep actions after commit, and repeats until
no action is returned. Times the planner waits for (retries' not_before, waits' fire_at, the execution's
timeout) are in the state: a beat job calls `next_actions` again when one of them is due (`next_wake`).

Decisions, per scope (the top-level steps, each parallel branch, each for_each item):
- a pending step whose dependencies (explicit, and its conditional) have all ended:
  skipped when it is on a conditional's branch not taken (or its conditional was skipped: no branch was
  taken), or when all its dependencies were skipped;
  otherwise, if every dependency succeeded or was skipped: RunStep (a task: http_request, webhook_call,
  transform, conditional, validation), StartContainer (parallel; for_each with its items evaluated here,
  at most MAX_FOR_EACH_ITEMS) or StartWait (its fire_at evaluated here).
- a failed attempt the policy retries: ScheduleRetry (not_before = now + retry_delay, jitter seeded by
  execution, step and attempt, so replaying the decision gives the same time); when due: RunStep.
- a running wait whose fire_at has come: FireWait.
- a running leaf step past its timeout + LEASE_GRACE_SECONDS (its worker died), or a sent one not started
  after its timeout + QUEUE_GRACE_SECONDS (its message was lost): TimeOutStep (a failed attempt of kind
  "timeout", retried per policy).
- a running parallel: its branches are scopes; when all have ended, CompleteContainer with the list of each
  branch's last step output (FailStep if any failed).
- a running for_each: items start in index order, at most max_parallel items running at once; when all have
  ended, CompleteContainer with each item's last step output in item order (FailStep if any failed).
- once any step has failed for good, nothing new starts (no first attempts, no retries); when nothing is in
  flight any more, FinishExecution(failed). When every top-level step has ended without failure,
  FinishExecution(succeeded) with the output of the last top-level step in the list (None if it was skipped).
- past running_since + timeout_seconds (the start, or the last resume): FinishExecution(failed, "timeout").
- a cancelled, finished or not yet started execution: no action.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from automation import expressions
from automation.definition import (
    MAX_FOR_EACH_ITEMS,
    Definition,
    ForEachConfig,
    ParallelConfig,
    Step,
    WaitConfig,
)
from automation.history import EventKind
from automation.outputs import cap_output
from automation.retry_policy import retry_delay
from automation.state import TERMINAL_STEP, ExecutionState, build_context, instance_key

LEASE_GRACE_SECONDS = 30.0
# A sent task that has not started after its timeout + this was lost (Redis lost its queue): a failed attempt,
# retried per policy under a new task id. Executors drop a task whose attempt is no longer the step's current
# one, and receivers drop repeats by the Idempotency-Key, so a late original does no harm.
QUEUE_GRACE_SECONDS = 300.0
TASK_STEP_TYPES = frozenset({"http_request", "webhook_call", "transform", "conditional", "validation"})


@dataclass(frozen=True)
class RunStep:
    """Send the task `<execution_id>.<key>.<attempt>` for this step instance (record step_scheduled)."""
    key: str
    attempt: int

    def event(self) -> tuple[EventKind, dict[str, Any]]:
        return EventKind.STEP_SCHEDULED, {"key": self.key, "attempt": self.attempt}


@dataclass(frozen=True)
class StartContainer:
    key: str
    items: tuple[Any, ...] | None  # for_each: its items; parallel: None
    attempt: int = 1  # more than 1 only when a failed execution was resumed

    def event(self) -> tuple[EventKind, dict[str, Any]]:
        data: dict[str, Any] = {"key": self.key, "attempt": self.attempt}
        if self.items is not None:
            data["items"] = list(self.items)
        return EventKind.STEP_STARTED, data


@dataclass(frozen=True)
class StartWait:
    """Record the wait as started and store a durable timer for fire_at (fired by beat, not a countdown)."""
    key: str
    fire_at: datetime
    attempt: int = 1

    def event(self) -> tuple[EventKind, dict[str, Any]]:
        return EventKind.STEP_STARTED, {"key": self.key, "attempt": self.attempt,
                                        "fire_at": self.fire_at.isoformat()}


@dataclass(frozen=True)
class FireWait:
    key: str
    attempt: int

    def event(self) -> tuple[EventKind, dict[str, Any]]:
        return EventKind.WAIT_FIRED, {"key": self.key, "attempt": self.attempt}


@dataclass(frozen=True)
class ScheduleRetry:
    key: str
    attempt: int  # the attempt to come
    not_before: datetime

    def event(self) -> tuple[EventKind, dict[str, Any]]:
        return EventKind.STEP_RETRIED, {"key": self.key, "attempt": self.attempt,
                                        "not_before": self.not_before.isoformat()}


@dataclass(frozen=True)
class SkipStep:
    key: str
    reason: str

    def event(self) -> tuple[EventKind, dict[str, Any]]:
        return EventKind.STEP_SKIPPED, {"key": self.key, "reason": self.reason}


@dataclass(frozen=True)
class CompleteContainer:
    key: str
    attempt: int
    output: Any

    def event(self) -> tuple[EventKind, dict[str, Any]]:
        return EventKind.STEP_SUCCEEDED, {"key": self.key, "attempt": self.attempt, "output": self.output}


@dataclass(frozen=True)
class FailStep:
    """A container, wait or for_each that fails without a task (nested failure, items or time unusable)."""
    key: str
    attempt: int
    error: Mapping[str, Any]

    def event(self) -> tuple[EventKind, dict[str, Any]]:
        return EventKind.STEP_FAILED, {"key": self.key, "attempt": self.attempt, "error": dict(self.error)}


@dataclass(frozen=True)
class TimeOutStep:
    key: str
    attempt: int
    message: str = "no outcome within the step timeout"

    def event(self) -> tuple[EventKind, dict[str, Any]]:
        return EventKind.STEP_FAILED, {"key": self.key, "attempt": self.attempt,
                                       "error": {"kind": "timeout", "message": self.message}}


@dataclass(frozen=True)
class FinishExecution:
    status: str  # succeeded | failed
    output: Any = None
    error: Mapping[str, Any] | None = None

    def event(self) -> tuple[EventKind, dict[str, Any]]:
        data: dict[str, Any] = {"status": self.status, "output": self.output}
        if self.error is not None:
            data["error"] = dict(self.error)
        return EventKind.EXECUTION_FINISHED, data


Action = (RunStep | StartContainer | StartWait | FireWait | ScheduleRetry | SkipStep | CompleteContainer | FailStep
          | TimeOutStep | FinishExecution)


def next_actions(definition: Definition, state: ExecutionState, now: datetime) -> list[Action]:
    if state.status != "running" or state.running_since is None:
        return []
    if now >= state.running_since + timedelta(seconds=definition.timeout_seconds):
        return [FinishExecution("failed", None, {"kind": "timeout", "message":
                                                 f"execution ran longer than {definition.timeout_seconds:g} s"})]
    planner = _Planner(definition, state, now)
    planner.scope(definition.steps, ())
    if planner.actions:
        return planner.actions
    if planner.failing:
        return [] if planner.in_flight else [FinishExecution("failed", None, planner.first_error())]
    if all(planner.status(instance_key(s.id)) in TERMINAL_STEP for s in definition.steps):
        return [FinishExecution("succeeded", state.step(instance_key(definition.steps[-1].id)).output)]
    return []


def next_wake(state: ExecutionState, definition: Definition) -> datetime | None:
    """The earliest time at which `next_actions` may decide something new without a new event."""
    times = [s.not_before for s in state.steps.values() if s.status == "retry_wait" and s.not_before]
    times += [s.fire_at for s in state.steps.values() if s.status == "running" and s.fire_at]
    times += [s.started_at + timedelta(seconds=definition.step(s.step_id).timeout_seconds + LEASE_GRACE_SECONDS)
              for s in state.steps.values()
              if s.status == "running" and s.started_at and definition.step(s.step_id).type in TASK_STEP_TYPES]
    times += [s.scheduled_at + timedelta(seconds=definition.step(s.step_id).timeout_seconds + QUEUE_GRACE_SECONDS)
              for s in state.steps.values() if s.status == "scheduled" and s.scheduled_at]
    if state.status == "running" and state.running_since is not None:
        times.append(state.running_since + timedelta(seconds=definition.timeout_seconds))
    return min(times, default=None)


def wait_fire_at(config: WaitConfig, context: Mapping[str, Any], now: datetime) -> datetime:
    """When a wait started at `now` fires: now + seconds, or the instant `until` gives (ISO with offset, or epoch)."""
    if config.seconds is not None:
        return now + timedelta(seconds=config.seconds)
    value = expressions.search(config.until or "", context)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise expressions.ExpressionError(f"until gave {value!r}, not an ISO-8601 timestamp") from exc
        if parsed.tzinfo is not None:
            return parsed
        raise expressions.ExpressionError(f"until gave {value!r}, a timestamp without an offset")
    raise expressions.ExpressionError(f"until gave {type(value).__name__}, not a timestamp")


def for_each_items(config: ForEachConfig, context: Mapping[str, Any]) -> tuple[Any, ...]:
    value = expressions.search(config.items, context)
    if not isinstance(value, list):
        raise expressions.ExpressionError(f"items gave {type(value).__name__}, not a list")
    if len(value) > MAX_FOR_EACH_ITEMS:
        raise expressions.ExpressionError(f"items gave {len(value)} items, more than {MAX_FOR_EACH_ITEMS}")
    return tuple(value)


class _Planner:
    def __init__(self, definition: Definition, state: ExecutionState, now: datetime) -> None:
        self.definition, self.state, self.now = definition, state, now
        self.actions: list[Action] = []
        self.overlay: dict[str, str] = {}  # statuses decided in this call (skips), seen by later decisions
        self.in_flight = False
        self.failing = any(s.status == "failed" for s in state.steps.values())

    def status(self, key: str) -> str:
        return self.overlay.get(key) or self.state.step(key).status

    def first_error(self) -> dict[str, Any]:
        failed = sorted((s for s in self.state.steps.values() if s.status == "failed"),
                        key=lambda s: (s.finished_at or self.now, s.key))
        first = failed[0]
        return {"kind": "step_failed", "step": first.key, "cause": dict(first.error or {})}

    def scope(self, steps: tuple[Step, ...], indices: tuple[int, ...]) -> None:
        changed = True
        while changed:  # skips decided here may settle later steps of the same scope in the same call
            before = len(self.overlay)
            for step in steps:
                key = instance_key(step.id, indices)
                if self.status(key) == "pending" and key not in self.overlay:
                    self.pending(step, key)
            changed = len(self.overlay) != before
        for step in steps:
            self.started(step, instance_key(step.id, indices), indices)

    def pending(self, step: Step, key: str) -> None:
        indices_t = self.state.step(key).indices
        deps = [self.status(instance_key(d, indices_t)) for d in self.definition.implicit_depends_on(step.id)]
        if any(d not in TERMINAL_STEP for d in deps):
            return
        place = self.definition.places[step.id]
        if place.conditional is not None:
            conditional = self.state.step(instance_key(place.conditional, indices_t))
            if self.status(conditional.key) == "skipped":
                self.skip(key, f"its conditional {place.conditional!r} was skipped")
                return
            if conditional.status == "succeeded":
                result = conditional.output.get("result") if isinstance(conditional.output, dict) else None
                if bool(result) is not place.branch_taken_when:
                    self.skip(key, f"branch not taken (condition of {place.conditional!r} was {bool(result)})")
                    return
        if deps and all(d == "skipped" for d in deps):
            self.skip(key, "depends only on skipped steps")
            return
        if any(d != "succeeded" and d != "skipped" for d in deps) or self.failing:
            return
        self.start(step, key)

    def skip(self, key: str, reason: str) -> None:
        self.overlay[key] = "skipped"
        self.actions.append(SkipStep(key, reason))

    def start(self, step: Step, key: str) -> None:
        attempt = self.state.step(key).attempts + 1  # 1, or the next after a resumed execution's failure
        if step.type in TASK_STEP_TYPES:
            self.actions.append(RunStep(key, attempt))
            self.overlay[key] = "scheduled"
            return
        context = build_context(self.definition, self.state, key)
        try:
            if isinstance(step.config, ForEachConfig):
                self.actions.append(StartContainer(key, for_each_items(step.config, context), attempt))
            elif isinstance(step.config, ParallelConfig):
                self.actions.append(StartContainer(key, None, attempt))
            elif isinstance(step.config, WaitConfig):
                self.actions.append(StartWait(key, wait_fire_at(step.config, context, self.now), attempt))
        except expressions.ExpressionError as exc:
            self.actions.append(FailStep(key, attempt, {"kind": "expression", "message": str(exc)}))
            self.overlay[key] = "failed"
            self.failing = True
            return
        self.overlay[key] = "running"

    def started(self, step: Step, key: str, indices: tuple[int, ...]) -> None:
        if key in self.overlay:
            return
        st = self.state.step(key)
        if st.status == "scheduled":
            self.in_flight = True
            if st.scheduled_at is not None and self.now >= st.scheduled_at + timedelta(
                    seconds=step.timeout_seconds + QUEUE_GRACE_SECONDS):
                self.actions.append(TimeOutStep(key, st.attempts, "the task never started"))
        elif st.status == "retry_wait" and not self.failing:
            if st.not_before is None:
                policy = self.definition.policy_of(step.id)
                rng = random.Random(f"{self.state.execution_id}:{key}:{st.attempts}")
                delay = retry_delay(policy, st.attempts - st.resumed_after, rng)
                self.actions.append(ScheduleRetry(key, st.attempts + 1, self.now + timedelta(seconds=delay)))
            elif st.not_before <= self.now:
                self.actions.append(RunStep(key, st.attempts + 1))
        elif st.status == "running":
            if isinstance(step.config, WaitConfig):
                if st.fire_at is not None and st.fire_at <= self.now and not self.failing:
                    self.actions.append(FireWait(key, st.attempts))
            elif isinstance(step.config, ParallelConfig):
                for branch in step.config.branches:
                    self.scope(branch, indices)
                self.join(key, st.attempts, [(branch, indices) for branch in step.config.branches])
            elif isinstance(step.config, ForEachConfig):
                self.for_each(step.config, key, indices)
            else:
                self.in_flight = True
                deadline = st.started_at + timedelta(seconds=step.timeout_seconds + LEASE_GRACE_SECONDS) \
                    if st.started_at else None
                if deadline is not None and self.now >= deadline:
                    self.actions.append(TimeOutStep(key, st.attempts))

    def scope_state(self, steps: tuple[Step, ...], indices: tuple[int, ...]) -> tuple[bool, bool, bool]:
        """(started, ended, failed) of one scope instance."""
        statuses = [self.status(instance_key(s.id, indices)) for s in steps]
        return (any(s != "pending" for s in statuses), all(s in TERMINAL_STEP for s in statuses),
                "failed" in statuses)

    def for_each(self, config: ForEachConfig, key: str, indices: tuple[int, ...]) -> None:
        items = self.state.step(key).items or ()
        running = 0
        for i in range(len(items)):
            started, ended, _ = self.scope_state(config.steps, (*indices, i))
            if started and not ended:
                running += 1
        for i in range(len(items)):
            item = (*indices, i)
            started, ended, _ = self.scope_state(config.steps, item)
            if started:
                self.scope(config.steps, item)
            elif running < config.max_parallel and not self.failing:
                self.scope(config.steps, item)
                running += 1
        self.join(key, self.state.step(key).attempts, [(config.steps, (*indices, i)) for i in range(len(items))])

    def join(self, key: str, attempt: int, scopes: list[tuple[tuple[Step, ...], tuple[int, ...]]]) -> None:
        if any(instance_key(s.id, idx) in self.overlay for steps, idx in scopes for s in steps):
            return  # something inside was decided in this call: join on the recorded outcome, next call
        states = [self.scope_state(steps, idx) for steps, idx in scopes]
        if any(failed for _, _, failed in states):
            if not any(started and not ended for started, ended, _ in states):
                self.actions.append(FailStep(key, attempt, {"kind": "nested_step_failed",
                                                            "message": "a nested step failed"}))
                self.overlay[key] = "failed"
                self.failing = True
            return
        if all(ended for _, ended, _ in states):
            outputs = [self.state.step(instance_key(steps[-1].id, idx)).output for steps, idx in scopes]
            self.actions.append(CompleteContainer(key, attempt, cap_output(outputs)))
            self.overlay[key] = "succeeded"
