"""The response bodies of the JSON API as marshmallow schemas, for the OpenAPI document only (app/openapi.py).

The handlers build plain dicts; tests/app/test_openapi.py checks real responses against these schemas.
"""

from __future__ import annotations

from marshmallow import Schema, fields

from models.tables import BatchStatus


class ErrorDetailSchema(Schema):
    field = fields.Str(required=True)
    message = fields.Str(required=True)


class ErrorBodySchema(Schema):
    code = fields.Str(required=True)
    message = fields.Str(required=True)
    details = fields.List(fields.Raw(), required=True)


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)
    correlation_id = fields.Str(allow_none=True, required=True)


class EventErrorSchema(Schema):
    index = fields.Int(required=True)
    event_id = fields.Str(allow_none=True, required=True)
    code = fields.Str(required=True)
    field = fields.Str(required=True)
    message = fields.Str(required=True)


class IngestResultSchema(Schema):
    batch_id = fields.UUID(required=True)
    correlation_id = fields.Str(required=True)
    status = fields.Str(required=True, metadata={"enum": ["accepted", "partially_accepted", "duplicate", "rejected"]})
    received = fields.Int(required=True)
    accepted = fields.Int(required=True)
    duplicates = fields.Int(required=True)
    rejected = fields.Int(required=True)
    errors = fields.List(fields.Nested(EventErrorSchema), required=True)
    duplicate_event_ids = fields.List(fields.Str(), required=True)
    supported_schema_versions = fields.List(fields.Str())
    stored_unprocessed = fields.Int(metadata={"description": "accepted events of a type a newer 1.x minor added, "
                                                             "stored and processed once the server knows the type"})
    # A 200 duplicate: the counts, errors and duplicate ids above are the first reply's, replayed.
    original_correlation_id = fields.Str()
    replay_of_first_reply = fields.Bool()
    original_status = fields.Str(metadata={"enum": ["accepted", "partially_accepted"]})
    original_received_at = fields.Str()
    first_reply_details_unknown = fields.Bool()


class JobSchema(Schema):
    status = fields.Str(required=True)
    attempts = fields.Int(required=True)
    task_id = fields.Str(allow_none=True)
    is_replay = fields.Bool()
    started_at = fields.Str(allow_none=True)
    finished_at = fields.Str(allow_none=True)
    duration_ms = fields.Int(allow_none=True)
    error = fields.Str(allow_none=True)


class BatchSchema(Schema):
    batch_id = fields.UUID(required=True)
    developer_id = fields.Str(required=True)
    correlation_id = fields.Str(required=True)
    status = fields.Str(required=True, metadata={"enum": [s.value for s in BatchStatus]})
    source = fields.Str(required=True)
    received = fields.Int(required=True)
    accepted = fields.Int(required=True)
    duplicates = fields.Int(required=True)
    rejected = fields.Int(required=True)
    quarantined = fields.Int(required=True, metadata={
        "description": "Accepted events that a job could not process: recorded, alerted and skipped"})
    first_ts = fields.Str(allow_none=True, required=True)
    last_ts = fields.Str(allow_none=True, required=True)
    received_at = fields.Str(allow_none=True, required=True)
    sent_at = fields.Str(allow_none=True, required=True)
    dispatched_at = fields.Str(allow_none=True, required=True)
    processing_started_at = fields.Str(allow_none=True, required=True)
    completed_at = fields.Str(allow_none=True, required=True)
    updated_at = fields.Str(allow_none=True, required=True)
    replay_count = fields.Int(required=True)
    dispatch_count = fields.Int(required=True)
    last_error = fields.Str(allow_none=True, required=True)
    jobs = fields.Dict(keys=fields.Str(), values=fields.Nested(JobSchema), required=True)
    correlation_id_of_request = fields.Str(required=True)


class AuditRecordSchema(Schema):
    id = fields.Int(required=True)
    created_at = fields.Str(required=True)
    correlation_id = fields.Str(allow_none=True, required=True)
    batch_id = fields.Str(required=True)
    step = fields.Str(required=True)
    is_replay = fields.Bool(required=True)
    details = fields.Dict(allow_none=True, required=True)
    sealed = fields.Bool(required=True)
    seal_seq = fields.Int(allow_none=True, required=True)
    content_hash = fields.Str(allow_none=True, required=True)
    prev_hash = fields.Str(allow_none=True, required=True)
    sealed_at = fields.Str(allow_none=True, required=True)
    intact = fields.Bool(allow_none=True, required=True)


class AuditTrailSchema(Schema):
    batch_id = fields.UUID(required=True)
    developer_id = fields.Str(required=True)
    records = fields.List(fields.Nested(AuditRecordSchema), required=True)


class MetricBucketSchema(Schema):
    bucket_start = fields.Str(required=True, metadata={
        "description": "Start of the bucket with its UTC offset: a UTC hour, or local midnight in the developer's "
                       "time zone for days and ISO weeks (Monday)"})
    events = fields.Int(required=True, metadata={"description": "Stored events in the bucket (every type)"})
    active_seconds = fields.Float(required=True, metadata={
        "description": "Sum of the gaps between consecutive events that are at most the idle timeout, split across "
                       "buckets by wall clock; never more than the bucket's length"})
    edits = fields.Int(required=True, metadata={"description": "file.edit events"})
    lines_added = fields.Int(required=True, metadata={"description": "Sum of file.edit lines_added"})
    lines_deleted = fields.Int(required=True, metadata={"description": "Sum of file.edit lines_deleted"})
    saves = fields.Int(required=True, metadata={"description": "file.save events"})
    error_events = fields.Int(required=True, metadata={
        "description": "Failed builds, test runs with failures, non-zero terminal exits, diagnostics with errors"})
    builds = fields.Int(required=True, metadata={"description": "build.result events"})
    build_failures = fields.Int(required=True, metadata={"description": "build.result events with success false"})
    tests_passed = fields.Int(required=True, metadata={"description": "Sum of test.result passed"})
    tests_failed = fields.Int(required=True, metadata={"description": "Sum of test.result failed"})
    debug_seconds = fields.Float(required=True, metadata={
        "description": "Wall-clock time covered by at least one debug session (start to the earliest of its stop, "
                       "the developer's first idle gap, 8 hours) or debugging-heartbeat run"})
    typed_chars = fields.Int(required=True, metadata={"description": "Sum of file.edit chars_typed"})
    ai_chars_inserted = fields.Int(required=True, metadata={
        "description": "Sum of chars_inserted of ai.suggestion_accepted and ai.chat_insert"})
    ai_share = fields.Float(required=True, allow_none=True, metadata={
        "description": "ai_chars_inserted / (ai_chars_inserted + typed_chars); null when both are 0"})
    commits = fields.Int(required=True, metadata={"description": "git.commit events"})


_ECHO_FROM = {"description": "The query's `from` as given (inclusive bound); null when not given"}
_ECHO_TO = {"description": "The query's `to` as given (exclusive bound); null when not given"}


class MetricsSchema(Schema):
    developer_id = fields.Str(required=True, metadata={"description": "Whose metrics"})
    granularity = fields.Str(required=True, metadata={
        "enum": ["hour", "day", "week"],
        "description": "hour: UTC hours; day: the developer's local days; week: local ISO weeks (Monday)"})
    timezone = fields.Str(required=True, metadata={"description": "The developer's IANA time zone"})
    from_ = fields.Str(data_key="from", allow_none=True, required=True, metadata=_ECHO_FROM)
    to = fields.Str(allow_none=True, required=True, metadata=_ECHO_TO)
    buckets = fields.List(fields.Nested(MetricBucketSchema), required=True, metadata={
        "description": "Oldest first; only buckets holding at least one event (absent buckets are all zero)"})


class BreakdownItemSchema(Schema):
    name = fields.Str(required=True, metadata={
        "description": "Language (the payload's, else the file's extension) or project (the event's top-level "
                       "`project`, or a heartbeat's); 'unknown' when none was sent"})
    active_seconds = fields.Float(required=True, metadata={
        "description": "active_seconds of the day (see Metrics) whose gap started at an event of this language "
                       "or project: an active gap belongs to the earlier event"})


class BreakdownDaySchema(Schema):
    day_start = fields.Str(required=True, metadata={"description": "Local midnight with its UTC offset"})
    total_seconds = fields.Float(required=True, metadata={"description": "Sum of the items' active_seconds"})
    items = fields.List(fields.Nested(BreakdownItemSchema), required=True, metadata={
        "description": "One per language or project active that day"})


class BreakdownSchema(Schema):
    developer_id = fields.Str(required=True, metadata={"description": "Whose breakdown"})
    by = fields.Str(required=True, metadata={"enum": ["language", "project"],
                                             "description": "The dimension the items are split by"})
    timezone = fields.Str(required=True, metadata={"description": "The developer's IANA time zone (local days)"})
    from_ = fields.Str(data_key="from", allow_none=True, required=True, metadata=_ECHO_FROM)
    to = fields.Str(allow_none=True, required=True, metadata=_ECHO_TO)
    days = fields.List(fields.Nested(BreakdownDaySchema), required=True, metadata={
        "description": "Local days oldest first; only days with activity"})


class AlertSchema(Schema):
    alert_id = fields.UUID(required=True)
    developer_id = fields.Str(required=True)
    pattern = fields.Str(required=True)
    severity = fields.Str(required=True, metadata={"enum": ["low", "medium", "high", "critical"]})
    window_start = fields.Str(required=True)
    window_end = fields.Str(required=True)
    details = fields.Dict(required=True)
    recommendation = fields.Str(required=True)
    batch_id = fields.UUID(required=True, allow_none=True, metadata={
        "description": "The batch whose processing last changed the alert; null when a background recompute did"})
    correlation_id = fields.Str(required=True)
    detected_at = fields.Str(required=True)
    updated_at = fields.Str(allow_none=True, required=True)
    status = fields.Str(required=True, metadata={"enum": ["open", "acknowledged", "withdrawn"]})
    acknowledged_at = fields.Str(allow_none=True, required=True)
    stale = fields.Bool(required=True)
    version = fields.Int(required=True, metadata={"description": "Bumped by every change of the alert"})
    deliveries = fields.List(fields.Raw(), required=True)


class StoredEventSchema(Schema):
    event_id = fields.UUID(required=True)
    batch_id = fields.UUID(required=True)
    seq = fields.Int(required=True, metadata={"description": "Position of the event in its batch"})
    type = fields.Str(required=True)
    schema_version = fields.Str(required=True)
    corrected_timestamp = fields.Str(required=True, metadata={"description": "Clock-skew corrected time (UTC)"})
    received_at = fields.Str(required=True)
    event = fields.Dict(required=True, metadata={"description": "The event exactly as the client sent it"})


class EventPageSchema(Schema):
    events = fields.List(fields.Nested(StoredEventSchema), required=True)
    next_cursor = fields.Str(allow_none=True, required=True, metadata={
        "description": "Pass as `cursor` for the next page; null on the last page"})
    batch_id = fields.UUID()
    alert_id = fields.UUID()
    pattern = fields.Str()
    window_start = fields.Str()
    window_end = fields.Str()


class RecomputeSchema(Schema):
    pending = fields.Bool(required=True)
    progress = fields.Float(required=True, metadata={"description": "0..1 of the history recomputed"})
    from_ = fields.Str(data_key="from")
    until = fields.Str()
    done_until = fields.Str()


class DeveloperSettingsSchema(Schema):
    developer_id = fields.Str(required=True)
    timezone = fields.Str(required=True, metadata={"description": "IANA time zone of the developer's local days"})
    idle_timeout_seconds = fields.Int(required=True, metadata={"minimum": 60, "maximum": 3600})
    recompute = fields.Nested(RecomputeSchema, required=True)


class ImportJobSchema(Schema):
    job_id = fields.UUID(required=True)
    developer_id = fields.Str(required=True)
    source = fields.Str(required=True)
    status = fields.Str(required=True, metadata={"enum": ["pending", "running", "done", "failed"]})
    file_bytes = fields.Int(required=True)
    bytes_read = fields.Int(required=True)
    progress = fields.Float(required=True, metadata={"description": "0..1 of the file read and stored"})
    batches_done = fields.Int(required=True)
    read = fields.Int(required=True, metadata={"description": "Heartbeats read from the file"})
    accepted = fields.Int(required=True)
    duplicates = fields.Int(required=True, metadata={"description": "Already stored (an earlier import or live)"})
    rejected = fields.Int(required=True)
    errors = fields.List(fields.Dict(), required=True, metadata={
        "description": "The first 100 rejections: day_index, date, heartbeat_index, code, field, message"})
    failure = fields.Str(allow_none=True, required=True, metadata={"description": "Why the file could not be read"})
    created_at = fields.Str(required=True)
    started_at = fields.Str(allow_none=True, required=True)
    finished_at = fields.Str(allow_none=True, required=True)


class AlertListSchema(Schema):
    developer_id = fields.Str(required=True)
    alerts = fields.List(fields.Nested(AlertSchema), required=True)
