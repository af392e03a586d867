"""Random valid workflow definitions and a simulated world that runs them through fold + next_actions.

The world plays the executors: it records each action's event, and, in an order drawn by hypothesis, starts
the sent tasks and ends them (succeeded, or failed with a drawn kind/status). Time moves only when nothing
else can happen, to the planner's next wake-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from automation.definition import Definition
from automation.history import EventKind, HistoryEvent, chain_event
from automation.planner import Action, RunStep, next_actions, next_wake
from automation.state import ExecutionState, fold, parse_key
from automation.validation import parse_definition

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LEAF_TYPES = ("transform", "conditional", "http_request", "wait")


@st.composite
def step_lists(draw: st.DrawFn, prefix: str, depth: int, max_steps: int) -> list[dict[str, Any]]:
    """A scope: steps depending only on earlier ones (acyclic), conditionals naming later ones."""
    count = draw(st.integers(1, max_steps))
    steps: list[dict[str, Any]] = []
    listed: set[str] = set()
    for i in range(count):
        sid = f"{prefix}{i}"
        kinds = LEAF_TYPES + (("parallel", "for_each") if depth < 2 else ())
        kind = draw(st.sampled_from(kinds))
        deps = sorted(draw(st.sets(st.sampled_from([s["id"] for s in steps]), max_size=3))) if steps else []
        step: dict[str, Any] = {"id": sid, "type": kind, "depends_on": deps}
        if kind == "transform":
            step["config"] = {"expression": "input"}
        elif kind == "http_request":
            step["config"] = {"url": "https://receiver.example/{{ execution.id }}"}
        elif kind == "wait":
            step["config"] = {"seconds": draw(st.integers(0, 5))}
        elif kind == "conditional":
            later = [f"{prefix}{j}" for j in range(i + 1, count) if f"{prefix}{j}" not in listed]
            chosen = draw(st.lists(st.sampled_from(later), unique=True, max_size=3)) if later else []
            cut = draw(st.integers(0, len(chosen)))
            listed.update(chosen)
            step["config"] = {"condition": "input.flag == true", "then": chosen[:cut], "else": chosen[cut:]}
        elif kind == "parallel":
            count_branches = draw(st.integers(1, 3))
            step["config"] = {"branches": [draw(step_lists(f"{sid}b{n}_", depth + 1, 3))
                                           for n in range(count_branches)]}
        else:
            step["config"] = {"items": "input.items", "max_parallel": draw(st.integers(1, 3)),
                              "steps": draw(step_lists(f"{sid}e", depth + 1, 3))}
        if draw(st.booleans()):
            step["retry"] = {"strategy": draw(st.sampled_from(["exponential", "linear", "fixed", "none"])),
                             "max_attempts": draw(st.integers(1, 3)), "delay_seconds": 1, "max_delay_seconds": 4}
        steps.append(step)
    return steps


@st.composite
def definitions(draw: st.DrawFn) -> Definition:
    steps = draw(step_lists("s", 0, 6))
    document = {"name": "generated", "trigger": {"type": "manual"}, "timeout_seconds": 100_000,
                "retry": {"strategy": "fixed", "max_attempts": 2, "delay_seconds": 1, "max_delay_seconds": 1},
                "steps": steps}
    return parse_definition(document)


@dataclass
class World:
    definition: Definition
    execution_id: str = "e1"
    now: datetime = T0
    events: list[HistoryEvent] = field(default_factory=list)
    sent: list[tuple[str, int]] = field(default_factory=list)  # tasks sent and not yet ended
    started: set[tuple[str, int]] = field(default_factory=set)
    actions_seen: list[tuple[ExecutionState, Action]] = field(default_factory=list)
    _state: ExecutionState | None = None
    _folded: int = 0

    def record(self, kind: EventKind, data: dict[str, Any]) -> None:
        previous = self.events[-1] if self.events else None
        self.events.append(chain_event(previous, kind, data, self.now, execution_id=self.execution_id))

    def state(self) -> ExecutionState:
        """The fold of all events so far, kept incrementally (fold's `start` argument)."""
        self._state = fold(self.definition, self.events[self._folded:], self._state)
        self._folded = len(self.events)
        return self._state

    def start(self, execution_input: dict[str, Any]) -> None:
        self.record(EventKind.EXECUTION_STARTED, {"input": execution_input, "trigger": {"type": "manual"},
                                                  "workflow_id": 1, "version": 1})

    def plan(self) -> list[Action]:
        state = self.state()
        actions = next_actions(self.definition, state, self.now)
        for action in actions:
            # the state each action was decided on: the fold plus the actions before it in this batch (a skip
            # decided first can settle a later step in the same call)
            self.actions_seen.append((self.state(), action))
            kind, data = action.event()
            self.record(kind, data)
            if isinstance(action, RunStep):
                self.sent.append((action.key, action.attempt))
        return actions

    def work(self, draw: st.DrawFn) -> None:
        """One task makes progress: it starts, or it ends."""
        index = draw(st.integers(0, len(self.sent) - 1))
        key, attempt = self.sent[index]
        if (key, attempt) not in self.started:
            self.started.add((key, attempt))
            self.record(EventKind.STEP_STARTED, {"key": key, "attempt": attempt})
            return
        self.sent.pop(index)
        step_id, _ = parse_key(key)
        if draw(st.integers(0, 4)) == 0:
            kind = draw(st.sampled_from(["timeout", "connection", "http_status", "circuit_open", "expression"]))
            error: dict[str, Any] = {"kind": kind, "message": "drawn"}
            if kind == "http_status":
                error["http_status"] = draw(st.sampled_from([404, 408, 429, 500, 503]))
            self.record(EventKind.STEP_FAILED, {"key": key, "attempt": attempt, "error": error})
            return
        output: Any = {"v": key}
        if self.definition.step(step_id).type == "conditional":
            output = {"result": draw(st.booleans())}
        self.record(EventKind.STEP_SUCCEEDED, {"key": key, "attempt": attempt, "output": output})

    def advance(self) -> bool:
        wake = next_wake(self.state(), self.definition)
        if wake is None:
            return False
        self.now = max(self.now + timedelta(milliseconds=1), wake)
        return True


def run(world: World, draw: st.DrawFn, *, cancel_at: int | None = None, max_rounds: int = 5_000) -> ExecutionState:
    """Drive the world until the execution ends; `cancel_at`: record a cancellation after that many rounds."""
    for round_number in range(max_rounds):
        if cancel_at is not None and round_number == cancel_at:
            world.record(EventKind.EXECUTION_CANCELLED, {"reason": "test"})
        state = world.state()
        if state.status in ("succeeded", "failed", "cancelled") and not world.sent:
            return state
        if world.plan():
            continue
        if world.sent:
            world.work(draw)
        elif not world.advance():
            return world.state()
    raise AssertionError("the execution did not end")
