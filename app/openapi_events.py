"""The event catalog as OpenAPI schemas, generated from activity/catalog.py so the document cannot drift from
the validator.

One schema per (type, version), named `Event_<type>_<version>` (e.g. `Event_file.edit_1.1`), combined into
`Event`: a oneOf with a discriminator on `type`. A discriminator maps one value to one schema, so a type whose
payload differs between versions maps to `Event_<type>`, an anyOf of its versions: which one applies is chosen
by the event's own `schema_version`, else the batch's (anyOf, not oneOf, because unknown payload fields are
allowed, so one payload may satisfy both versions).
"""

from __future__ import annotations

import copy
from typing import Any

from activity.catalog import (
    MAX_COUNT,
    MAX_EPOCH_NUMBER,
    MAX_INT64,
    MIN_INT64,
    SUPPORTED_SCHEMA_VERSIONS,
    FieldSpec,
    event_types,
    field_specs,
)

# What a field's value looks like in the examples Swagger UI shows and pre-fills (valid per the catalog).
_EXAMPLE_STRINGS = {"file": "src/app.py", "entity": "/home/dev/src/app.py", "language": "Python",
                    "editor": "vscode", "editor_version": "1.95.0", "debug_session_id": "dbg-1",
                    "debug_type": "python", "provider": "copilot", "project": "devpulse", "branch": "main",
                    "category": "coding", "user_agent": "wakatime/13.1.0 vscode-wakatime/24.0.0"}
_EXAMPLE_BY_KIND: dict[str, Any] = {"count": 3, "int": 0, "bool": True, "number": 1764240000.5}
EXAMPLE_TIMESTAMP = "2026-11-27T09:30:00+01:00"


def schema_name(event_type: str, version: str) -> str:
    return f"Event_{event_type}_{version}"


def _field_schema(name: str, spec: FieldSpec) -> dict[str, Any]:
    out: dict[str, Any]
    if spec.kind == "str":
        out = {"type": "string", "maxLength": spec.max_length}
        if spec.choices is not None:
            out["enum"] = list(spec.choices)
    elif spec.kind == "count":
        out = {"type": "integer", "minimum": 0, "maximum": MAX_COUNT}
    elif spec.kind == "int":
        out = {"type": "integer", "format": "int64", "minimum": MIN_INT64, "maximum": MAX_INT64}
    elif spec.kind == "bool":
        out = {"type": "boolean"}
    else:
        out = {"type": "number", "minimum": -MAX_EPOCH_NUMBER, "maximum": MAX_EPOCH_NUMBER,
               "description": "epoch seconds"}
    if spec.nullable:
        out["nullable"] = True
    return out


def example_payload(event_type: str, version: str) -> dict[str, Any]:
    """A payload with every field of the type filled in, valid per the catalog."""
    out: dict[str, Any] = {}
    for name, spec in field_specs(event_type, version).items():
        if spec.kind == "str":
            out[name] = spec.choices[0] if spec.choices else _EXAMPLE_STRINGS.get(name, "text")
        else:
            out[name] = _EXAMPLE_BY_KIND[spec.kind]
    return out


def _event_schema(base: dict[str, Any], event_type: str, version: str) -> dict[str, Any]:
    specs = field_specs(event_type, version)
    payload: dict[str, Any] = {
        "type": "object", "additionalProperties": True,
        "description": "Fields of the catalog; unknown extra fields are accepted and kept",
        "properties": {name: _field_schema(name, spec) for name, spec in specs.items()}}
    required_fields = [name for name, spec in specs.items() if spec.required]
    if required_fields:
        payload["required"] = required_fields
    properties = copy.deepcopy(base.get("properties", {}))
    properties["type"] = {"type": "string", "enum": [event_type]}
    properties["payload"] = payload
    return {
        "type": "object",
        "description": f"A `{event_type}` event of schema {version} (the event's `schema_version`, else the "
                       f"batch's, selects the version)",
        "properties": properties,
        "required": sorted({*base.get("required", []), "type"} | ({"payload"} if required_fields else set())),
        "example": {"event_id": "7d9f7a52-3b1e-4a43-9a54-2f6f1d3c9b10", "type": event_type,
                    "timestamp": EXAMPLE_TIMESTAMP, "payload": example_payload(event_type, version)},
    }


def event_union(base: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every per-(type, version) schema, the per-type anyOf where versions differ, and `Event` itself.

    `base` is the OpenAPI form of the fields every event has (app/ingest/schemas.py EventSchema).
    """
    schemas: dict[str, dict[str, Any]] = {}
    versions_of: dict[str, list[str]] = {}
    for version in SUPPORTED_SCHEMA_VERSIONS:
        for event_type in sorted(event_types(version)):
            schemas[schema_name(event_type, version)] = _event_schema(base, event_type, version)
            versions_of.setdefault(event_type, []).append(version)
    mapping: dict[str, str] = {}
    for event_type, versions in sorted(versions_of.items()):
        if len(versions) == 1:
            mapping[event_type] = f"#/components/schemas/{schema_name(event_type, versions[0])}"
            continue
        per_type = f"Event_{event_type}"
        schemas[per_type] = {
            "description": f"A `{event_type}` event in schema {' or '.join(versions)}: the event's "
                           f"`schema_version`, else the batch's, says which",
            "anyOf": [{"$ref": f"#/components/schemas/{schema_name(event_type, v)}"} for v in versions]}
        mapping[event_type] = f"#/components/schemas/{per_type}"
    schemas["Event"] = {
        "description": "One event of the catalog, discriminated by `type`. Its payload is validated against the "
                       "catalog version its `schema_version` (else the batch's) resolves to: 1.0, or 1.1 for 1.1 "
                       "and newer 1.x minors. A newer minor may also send a type this server does not know yet "
                       "(shaped like `namespace.name`): it is stored unprocessed (`stored_unprocessed`) instead "
                       "of rejected.",
        "oneOf": [{"$ref": ref} for ref in dict.fromkeys(mapping.values())],
        "discriminator": {"propertyName": "type", "mapping": mapping},
    }
    return schemas
