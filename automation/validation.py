"""Parse and validate a workflow definition document (JSON already decoded) in one pass.

`parse_definition(document) -> Definition` raises `InvalidDefinition` whose `problems` list EVERY problem
found, each a `Problem(path, reason)` with a JSON path such as `$.steps[3].config.expression`: the API answers
400 with them all. `definition_problems(document)` gives the list without raising, and
`input_problems(definition.input_schema, input)` the problems of an execution's input (paths from `$.input`).

Checked: required fields and types; trigger (event names, CEL filter, cron via croniter, time zone via
zoneinfo); input_schema and validation schemas (jsonschema's check_schema); retry policies; timeouts; the 8
step types and their configs; `{{ }}` substitutions in every string of http configs; unique ids across all
nesting; `depends_on` naming steps of the same scope, without cycles; conditional then/else naming steps
of the same scope, none in both; at most MAX_STEPS steps in all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from automation.definition import (
    DEFAULT_EXECUTION_TIMEOUT_SECONDS,
    DEFAULT_MAX_PARALLEL,
    DEFAULT_STEP_TIMEOUT_SECONDS,
    EVENT_NAMES,
    HTTP_METHODS,
    MAX_EXECUTION_TIMEOUT_SECONDS,
    MAX_PARALLEL_LIMIT,
    MAX_STEP_TIMEOUT_SECONDS,
    MAX_STEPS,
    MAX_WAIT_SECONDS,
    STEP_TYPES,
    ConditionalConfig,
    Definition,
    EventTrigger,
    ForEachConfig,
    HttpRequestConfig,
    ManualTrigger,
    ParallelConfig,
    ScheduleTrigger,
    Step,
    StepConfig,
    TransformConfig,
    Trigger,
    ValidationConfig,
    WaitConfig,
    index_places,
    iter_steps,
)
from automation.problems import InvalidDefinition, Problem, ProblemCollector, input_problems
from automation.retry_policy import (
    DEFAULT_POLICY,
    MAX_ATTEMPTS_LIMIT,
    MAX_DELAY_LIMIT_SECONDS,
    STRATEGIES,
    RetryPolicy,
)

__all__ = ["InvalidDefinition", "Problem", "definition_problems", "input_problems", "parse_definition"]

MAX_ID_LENGTH = 64


def parse_definition(document: Any) -> Definition:
    """The typed definition, or InvalidDefinition listing every problem."""
    parser = _Parser()
    definition = parser.definition(document)
    if parser.problems or definition is None:
        raise InvalidDefinition(parser.problems)
    return definition


def definition_problems(document: Any) -> list[Problem]:
    try:
        parse_definition(document)
    except InvalidDefinition as exc:
        return list(exc.problems)
    return []


class _Parser(ProblemCollector):
    """One pass over a definition document: typed values out, every problem recorded."""

    def definition(self, document: Any) -> Definition | None:
        doc = self.mapping(document, "$")
        if doc is None:
            return None
        self.unknown_keys(doc, {"name", "description", "trigger", "input_schema", "retry", "timeout_seconds",
                                "steps"}, "$")
        name = self.string(doc, "name", "$") or ""
        description = self.string(doc, "description", "$", required=False, default="") or ""
        trigger = self.trigger(doc.get("trigger"), "$.trigger")
        input_schema = self.json_schema(doc["input_schema"], "$.input_schema") if "input_schema" in doc else None
        retry = self.retry(doc["retry"], "$.retry", DEFAULT_POLICY) if "retry" in doc else DEFAULT_POLICY
        timeout = self.number(doc, "timeout_seconds", "$", DEFAULT_EXECUTION_TIMEOUT_SECONDS, 1,
                              MAX_EXECUTION_TIMEOUT_SECONDS)
        raw_steps = doc.get("steps")
        if not isinstance(raw_steps, list) or not raw_steps:
            self.problem("$.steps", "must be a non-empty list of steps")
            return None
        steps = self.scope(raw_steps, "$.steps")
        all_steps = list(iter_steps(steps))
        if len(all_steps) > MAX_STEPS:
            self.problem("$.steps", f"{len(all_steps)} steps in all (nested included): at most {MAX_STEPS}")
        seen: dict[str, str] = {}
        for step in all_steps:
            if step.id in seen:
                self.problem(f"{step.path}.id", f"duplicate step id {step.id!r} (also at {seen[step.id]})")
            else:
                seen[step.id] = step.path
        if self.problems or trigger is None:
            return None
        return Definition(name, description, trigger, input_schema, retry, timeout, steps, index_places(steps))

    def trigger(self, value: Any, path: str) -> Trigger | None:
        if value is None:
            self.problem(path, "required")
            return None
        obj = self.mapping(value, path)
        if obj is None:
            return None
        kind = obj.get("type")
        if kind == "manual":
            self.unknown_keys(obj, {"type"}, path)
            return ManualTrigger()
        if kind == "event":
            self.unknown_keys(obj, {"type", "event", "filter"}, path)
            event = self.string(obj, "event", path)
            if event is not None and event not in EVENT_NAMES:
                self.problem(f"{path}.event", f"unknown event; one of {', '.join(EVENT_NAMES)}")
            condition = self.condition(obj, "filter", path, required=False)
            return EventTrigger(event or "", condition)
        if kind == "schedule":
            self.unknown_keys(obj, {"type", "cron", "timezone"}, path)
            cron = self.string(obj, "cron", path) or ""
            if cron and (len(cron.split()) != 5 or not croniter.is_valid(cron)):
                self.problem(f"{path}.cron", "not a valid five-field cron expression")
            zone = self.string(obj, "timezone", path, required=False, default="UTC") or "UTC"
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                self.problem(f"{path}.timezone", f"unknown time zone {zone!r}")
            return ScheduleTrigger(cron, zone)
        self.problem(f"{path}.type", "must be one of manual, event, schedule")
        return None

    def retry(self, value: Any, path: str, default: RetryPolicy) -> RetryPolicy:
        obj = self.mapping(value, path)
        if obj is None:
            return default
        self.unknown_keys(obj, {"strategy", "max_attempts", "delay_seconds", "max_delay_seconds", "jitter"}, path)
        strategy = obj.get("strategy", default.strategy)
        if strategy not in STRATEGIES:
            self.problem(f"{path}.strategy", f"must be one of {', '.join(STRATEGIES)}")
            strategy = default.strategy
        attempts = self.integer(obj, "max_attempts", path, default.max_attempts, 1, MAX_ATTEMPTS_LIMIT)
        delay = self.number(obj, "delay_seconds", path, default.delay_seconds, 0, MAX_DELAY_LIMIT_SECONDS)
        cap = self.number(obj, "max_delay_seconds", path, max(default.max_delay_seconds, delay), 0,
                          MAX_DELAY_LIMIT_SECONDS)
        if cap < delay:
            self.problem(f"{path}.max_delay_seconds", "must be at least delay_seconds")
        jitter = obj.get("jitter", default.jitter)
        if not isinstance(jitter, bool):
            self.problem(f"{path}.jitter", "must be true or false")
            jitter = default.jitter
        return RetryPolicy(strategy, attempts, delay, cap, jitter)

    def scope(self, raw_steps: list[Any], path: str) -> tuple[Step, ...]:
        steps = [s for i, raw in enumerate(raw_steps) if (s := self.step(raw, f"{path}[{i}]")) is not None]
        ids = {s.id for s in steps}
        # depends_on and then/else name steps of this scope
        graph: dict[str, tuple[str, ...]] = {}
        for step in steps:
            for j, dep in enumerate(step.depends_on):
                if dep not in ids:
                    self.problem(f"{step.path}.depends_on[{j}]", f"unknown step {dep!r} (not in this scope)")
                elif dep == step.id:
                    self.problem(f"{step.path}.depends_on[{j}]", "a step cannot depend on itself")
            graph[step.id] = step.depends_on
        listed: dict[str, str] = {}
        for step in steps:
            if not isinstance(step.config, ConditionalConfig):
                continue
            for key, names in (("then", step.config.then), ("else", step.config.else_)):
                for j, sid in enumerate(names):
                    where = f"{step.path}.config.{key}[{j}]"
                    if sid not in ids:
                        self.problem(where, f"unknown step {sid!r} (not in this scope)")
                    elif sid == step.id:
                        self.problem(where, "a conditional cannot list itself")
                    elif sid in listed:
                        self.problem(where, f"step {sid!r} is already listed by {listed[sid]}")
                    else:
                        listed[sid] = f"{step.path}.config.{key}"
                        graph[sid] = (*graph.get(sid, ()), step.id)
        self.cycles(steps, graph)
        return tuple(steps)

    def cycles(self, steps: list[Step], graph: dict[str, tuple[str, ...]]) -> None:
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        paths = {s.id: s.path for s in steps}

        def visit(node: str, trail: list[str]) -> None:
            state[node] = 1
            for dep in graph.get(node, ()):
                if dep not in paths or dep == node:
                    continue
                if state.get(dep) == 1:
                    cycle = [*trail[trail.index(dep):], dep] if dep in trail else [node, dep]
                    self.problem(f"{paths[node]}.depends_on", "cyclic dependency: " + " -> ".join(cycle))
                elif dep not in state:
                    visit(dep, [*trail, dep])
            state[node] = 2

        for step in steps:
            if step.id not in state:
                visit(step.id, [step.id])

    def step(self, raw: Any, path: str) -> Step | None:
        obj = self.mapping(raw, path)
        if obj is None:
            return None
        self.unknown_keys(obj, {"id", "type", "config", "depends_on", "retry", "timeout_seconds"}, path)
        step_id = self.string(obj, "id", path)
        if step_id is not None and (len(step_id) > MAX_ID_LENGTH or not step_id.replace("_", "a").replace(
                "-", "a").isalnum() or not step_id.isascii()):
            self.problem(f"{path}.id", f"letters, digits, _ and - only, at most {MAX_ID_LENGTH} characters")
        kind = obj.get("type")
        if kind not in STEP_TYPES:
            self.problem(f"{path}.type", f"unknown step type {kind!r}; one of {', '.join(STEP_TYPES)}")
        raw_deps = obj.get("depends_on", [])
        deps: tuple[str, ...] = ()
        if not isinstance(raw_deps, list) or not all(isinstance(d, str) for d in raw_deps):
            self.problem(f"{path}.depends_on", "must be a list of step ids")
        else:
            deps = tuple(dict.fromkeys(raw_deps))
        retry = self.retry(obj["retry"], f"{path}.retry", DEFAULT_POLICY) if "retry" in obj else None
        timeout = self.number(obj, "timeout_seconds", path, DEFAULT_STEP_TIMEOUT_SECONDS, 1,
                              MAX_STEP_TIMEOUT_SECONDS)
        config_obj = self.mapping(obj.get("config", {}), f"{path}.config")
        if config_obj is None or kind not in STEP_TYPES:
            return None
        config = self.config(kind, config_obj, f"{path}.config")
        if config is None or step_id is None:
            return None
        return Step(step_id, kind, config, deps, retry, timeout, path)

    def config(self, kind: str, obj: Mapping[str, Any], path: str) -> StepConfig | None:
        if kind in ("http_request", "webhook_call"):
            return self.http_config(kind, obj, path)
        if kind == "transform":
            self.unknown_keys(obj, {"expression"}, path)
            return TransformConfig(self.jmespath(obj, "expression", path))
        if kind == "conditional":
            self.unknown_keys(obj, {"condition", "then", "else"}, path)
            condition = self.condition(obj, "condition", path) or ""
            branches: list[tuple[str, ...]] = []
            for key in ("then", "else"):
                names = obj.get(key, [])
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    self.problem(f"{path}.{key}", "must be a list of step ids")
                    names = []
                branches.append(tuple(names))
            return ConditionalConfig(condition, branches[0], branches[1])
        if kind == "parallel":
            self.unknown_keys(obj, {"branches"}, path)
            raw = obj.get("branches")
            if not isinstance(raw, list) or not raw or not all(isinstance(b, list) and b for b in raw):
                self.problem(f"{path}.branches", "must be a non-empty list of non-empty lists of steps")
                return None
            return ParallelConfig(tuple(self.scope(b, f"{path}.branches[{i}]") for i, b in enumerate(raw)))
        if kind == "for_each":
            self.unknown_keys(obj, {"items", "steps", "max_parallel"}, path)
            items = self.jmespath(obj, "items", path)
            raw = obj.get("steps")
            if not isinstance(raw, list) or not raw:
                self.problem(f"{path}.steps", "must be a non-empty list of steps")
                return None
            max_parallel = self.integer(obj, "max_parallel", path, DEFAULT_MAX_PARALLEL, 1, MAX_PARALLEL_LIMIT)
            return ForEachConfig(items, self.scope(raw, f"{path}.steps"), max_parallel)
        if kind == "wait":
            self.unknown_keys(obj, {"seconds", "until"}, path)
            if ("seconds" in obj) == ("until" in obj):
                self.problem(path, "exactly one of seconds and until")
                return None
            if "seconds" in obj:
                return WaitConfig(self.number(obj, "seconds", path, 0, 0, MAX_WAIT_SECONDS), None)
            return WaitConfig(None, self.jmespath(obj, "until", path))
        self.unknown_keys(obj, {"schema", "data"}, path)
        schema = self.json_schema(obj.get("schema"), f"{path}.schema") or {}
        return ValidationConfig(schema, self.jmespath(obj, "data", path))

    def http_config(self, kind: str, obj: Mapping[str, Any], path: str) -> HttpRequestConfig:
        allowed = {"method", "url", "headers", "body", "timeout_seconds", "expect_status", "service"}
        self.unknown_keys(obj, allowed | ({"secret_ref"} if kind == "webhook_call" else set()), path)
        method = (self.string(obj, "method", path, required=False, default="POST") or "POST").upper()
        if method not in HTTP_METHODS:
            self.problem(f"{path}.method", f"must be one of {', '.join(HTTP_METHODS)}")
        url = self.string(obj, "url", path) or ""
        if url and not url.startswith(("http://", "https://", "{{")):
            self.problem(f"{path}.url", "must be an http:// or https:// URL")
        self.templates(url, f"{path}.url")
        headers = obj.get("headers", {})
        if not isinstance(headers, Mapping) or not all(isinstance(v, str) for v in headers.values()):
            self.problem(f"{path}.headers", "must be an object of string values")
            headers = {}
        self.templates(headers, f"{path}.headers", allow_secrets=True)
        body = obj.get("body")
        self.templates(body, f"{path}.body")
        timeout = self.number(obj, "timeout_seconds", path, DEFAULT_STEP_TIMEOUT_SECONDS, 0.1,
                              MAX_STEP_TIMEOUT_SECONDS)
        expect = obj.get("expect_status", [])
        if not isinstance(expect, list) or not all(isinstance(s, int) and 100 <= s <= 599 for s in expect):
            self.problem(f"{path}.expect_status", "must be a list of HTTP status codes (100-599)")
            expect = []
        service = self.string(obj, "service", path, required=False)
        secret_ref = self.string(obj, "secret_ref", path) if kind == "webhook_call" else None
        return HttpRequestConfig(method, url, dict(headers), body, timeout, tuple(expect), service, secret_ref)
