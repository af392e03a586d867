"""Workflow definitions as typed, immutable values.

A definition is JSON (see README "Automations"); `automation.validation.parse_definition(document)` turns a
valid one into a `Definition` and an invalid one into `InvalidDefinition` listing every `Problem` with its
JSON path. Everything here is what the rest of the system reads: the API stores the JSON and re-parses it,
executors read a step's typed `config`, the planner walks `Definition.steps` and the index below.

Scopes: the top-level `steps` list, each `parallel` branch and each `for_each` body are scopes. `depends_on`
and a conditional's `then`/`else` name steps of the same scope (ids are unique in the whole definition, so
a step is found by id alone). A step listed in a conditional's `then` or `else` implicitly depends on the
conditional. The output of a scope (a branch, or one for_each item) is the output of its LAST step in list
order.

JSON values inside configs (headers, body, schemas) are plain dicts and lists: treat them as read-only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from automation.retry_policy import DEFAULT_POLICY, RetryPolicy

StepType = Literal["http_request", "transform", "conditional", "parallel", "for_each", "wait", "webhook_call",
                   "validation"]
STEP_TYPES: tuple[StepType, ...] = ("http_request", "transform", "conditional", "parallel", "for_each", "wait",
                                    "webhook_call", "validation")
CONTAINER_TYPES: frozenset[str] = frozenset({"parallel", "for_each"})
EVENT_NAMES: tuple[str, ...] = ("alert.raised", "batch.processed", "batch.failed")
HTTP_METHODS: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")

# Limits of the issue: each a validation problem (400) here, or a recorded step failure at run time.
MAX_STEPS = 200  # all steps, nested ones included
MAX_FOR_EACH_ITEMS = 1_000  # checked when the items are evaluated: more fails the for_each step
MAX_OUTPUT_BYTES = 256 * 1024  # a step output larger than this is truncated (automation.outputs)
MAX_HISTORY_EVENTS = 10_000  # per execution (automation.history)
MAX_PARALLEL_LIMIT = 100
DEFAULT_MAX_PARALLEL = 10
MAX_EXECUTION_TIMEOUT_SECONDS = 7 * 86_400
DEFAULT_EXECUTION_TIMEOUT_SECONDS = 3_600
MAX_STEP_TIMEOUT_SECONDS = 3_600
DEFAULT_STEP_TIMEOUT_SECONDS = 30
MAX_WAIT_SECONDS = 7 * 86_400


@dataclass(frozen=True)
class ManualTrigger:
    type: Literal["manual"] = "manual"


@dataclass(frozen=True)
class EventTrigger:
    event: str
    filter: str | None  # CEL over the variable `event` (the alert or batch as JSON); None: every event
    type: Literal["event"] = "event"


@dataclass(frozen=True)
class ScheduleTrigger:
    cron: str  # five fields, local time of `timezone` (automation.schedule.next_fire)
    timezone: str  # an IANA name, e.g. "Europe/Berlin"
    type: Literal["schedule"] = "schedule"


Trigger = ManualTrigger | EventTrigger | ScheduleTrigger


@dataclass(frozen=True)
class HttpRequestConfig:
    """`http_request` and `webhook_call` (the latter signed with the secret named by `secret_ref`)."""
    method: str
    url: str  # may contain {{ }} substitutions, like every string value below
    headers: Mapping[str, str]  # values may be {{ secret('NAME') }}
    body: Any  # JSON, substituted recursively; None: no body
    timeout_seconds: float
    expect_status: tuple[int, ...]  # empty: any 2xx
    service: str | None  # circuit-breaker name; None: the URL's host
    secret_ref: str | None = None  # webhook_call only (required there)


@dataclass(frozen=True)
class TransformConfig:
    expression: str  # JMESPath over the context; the step's output is its result


@dataclass(frozen=True)
class ConditionalConfig:
    condition: str  # CEL over input, trigger, steps, execution (and item, index inside a for_each)
    then: tuple[str, ...]
    else_: tuple[str, ...]


@dataclass(frozen=True)
class ParallelConfig:
    branches: tuple[tuple[Step, ...], ...]


@dataclass(frozen=True)
class ForEachConfig:
    items: str  # JMESPath giving a list of at most MAX_FOR_EACH_ITEMS items
    steps: tuple[Step, ...]
    max_parallel: int


@dataclass(frozen=True)
class WaitConfig:
    seconds: float | None  # exactly one of seconds and until
    until: str | None  # JMESPath giving an ISO-8601 timestamp with an offset, or epoch seconds


@dataclass(frozen=True)
class ValidationConfig:
    schema: Mapping[str, Any]  # a JSON Schema (checked with jsonschema's check_schema)
    data: str  # JMESPath giving the data to check


StepConfig = (HttpRequestConfig | TransformConfig | ConditionalConfig | ParallelConfig | ForEachConfig | WaitConfig
              | ValidationConfig)


@dataclass(frozen=True)
class Step:
    id: str
    type: StepType
    config: StepConfig
    depends_on: tuple[str, ...] = ()
    retry: RetryPolicy | None = None  # None: the definition's policy
    timeout_seconds: float = DEFAULT_STEP_TIMEOUT_SECONDS
    path: str = ""  # its JSON path in the document, e.g. "$.steps[2].config.branches[0][1]"

    def nested_scopes(self) -> tuple[tuple[Step, ...], ...]:
        """The scopes this step contains: each branch of a parallel, the body of a for_each; else none."""
        if isinstance(self.config, ParallelConfig):
            return self.config.branches
        if isinstance(self.config, ForEachConfig):
            return (self.config.steps,)
        return ()


@dataclass(frozen=True)
class StepPlace:
    """Where a step sits: its container (None at the top), its scope's steps, its conditional if any."""
    step: Step
    container: str | None
    scope: tuple[Step, ...]
    conditional: str | None  # the conditional whose then/else lists this step
    branch_taken_when: bool | None  # True: listed in `then`; False: in `else`
    for_each_depth: int  # how many for_each containers enclose it (the length of its item indices)


@dataclass(frozen=True)
class Definition:
    name: str
    description: str
    trigger: Trigger
    input_schema: Mapping[str, Any] | None
    retry: RetryPolicy
    timeout_seconds: float
    steps: tuple[Step, ...]
    places: Mapping[str, StepPlace] = field(default_factory=lambda: MappingProxyType({}), compare=False,
                                            repr=False)

    def step(self, step_id: str) -> Step:
        return self.places[step_id].step

    def policy_of(self, step_id: str) -> RetryPolicy:
        return self.places[step_id].step.retry or self.retry

    def implicit_depends_on(self, step_id: str) -> tuple[str, ...]:
        """Explicit `depends_on` plus the conditional listing the step in `then`/`else`."""
        place = self.places[step_id]
        if place.conditional is not None and place.conditional not in place.step.depends_on:
            return (*place.step.depends_on, place.conditional)
        return place.step.depends_on


def iter_steps(steps: tuple[Step, ...]) -> Iterator[Step]:
    """Every step, nested ones included, depth first in document order."""
    for step in steps:
        yield step
        for scope in step.nested_scopes():
            yield from iter_steps(scope)


def index_places(steps: tuple[Step, ...]) -> Mapping[str, StepPlace]:
    """The `places` index of a definition whose ids are unique (validation guarantees it)."""
    places: dict[str, StepPlace] = {}

    def walk(scope: tuple[Step, ...], container: str | None, depth: int) -> None:
        listed: dict[str, tuple[str, bool]] = {}
        for step in scope:
            if isinstance(step.config, ConditionalConfig):
                listed.update({sid: (step.id, True) for sid in step.config.then})
                listed.update({sid: (step.id, False) for sid in step.config.else_})
        for step in scope:
            conditional, taken = listed.get(step.id, (None, None))
            places[step.id] = StepPlace(step, container, scope, conditional, taken, depth)
            inner_depth = depth + 1 if isinstance(step.config, ForEachConfig) else depth
            for nested in step.nested_scopes():
                walk(nested, step.id, inner_depth)

    walk(steps, None, 0)
    return MappingProxyType(places)


DEFAULT_RETRY = DEFAULT_POLICY
