"""The pure domain of automations: workflows as data (issue 14).

No Flask, Celery, SQLAlchemy, Redis, network or file I/O here: the API, executors and triggers build on these
modules, and their rules are property-tested in milliseconds (tests/automation/).

- definition: the typed, immutable `Definition` and its limits; validation: `parse_definition(document)`
  (every problem with its JSON path), `input_problems`; problems: `Problem` and the collecting readers.
- expressions: JMESPath, CEL conditions (bounded cost) and `{{ }}` templates, secrets through a resolver.
- retry_policy: `retry_delay`, `should_retry`.
- history: hash-chained events, `chain_event`, `verify`; state: `fold(definition, events)`, `build_context`.
- planner: `next_actions(definition, state, now)`, `next_wake`; schedule: `next_fire(cron, timezone, after)`.
- outputs: the 256 KB step output cap; step_work: the pure steps' work (transform, conditional, validation).
"""
