"""The Flask edge of devpulse: `create_app()` builds the app; nothing is opened at import time."""

from __future__ import annotations

import re
import uuid
from typing import Any

from flask import Flask, g, request

from activity.danger import DangerThresholds
from app.settings import EXTENSION_KEY
from core import logging as json_logging
from core.settings import Settings
from core.webhooks import admin_notifier

_CORRELATION_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    settings = Settings.from_env(**(overrides or {}))
    app = Flask(__name__)
    app.extensions[EXTENSION_KEY] = settings
    admin_notifier.configure(settings.admin_alert_webhook_url)
    # Validated at start-up (the workers use them): a bad DANGER_* value fails here with its name.
    DangerThresholds.from_overrides(settings.danger)
    from app import alert_stream

    alert_stream.check_settings(settings)
    app.config["MAX_CONTENT_LENGTH"] = None  # the ingest endpoint caps bodies itself (also when gzipped)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    from app import (
        data_cli,
        developers_cli,
        errors,
        observability,
        publisher,
        rate_limit,
        serving,
        storage,
        tokens_cli,
        tracing,
    )

    tracing.init_app(app, settings)
    app.wsgi_app = serving.RequestSlots(app.wsgi_app, settings.web_request_slots)  # type: ignore[method-assign]
    errors.init_app(app)
    storage.init_app(app, settings)
    publisher.init_app(app, settings)
    rate_limit.init_app(app)
    tokens_cli.init_app(app)
    data_cli.init_app(app)
    developers_cli.init_app(app)
    observability.init_app(app)

    from app import pages

    pages.init_app(app, settings)

    @app.before_request
    def _correlation_id() -> None:
        incoming = request.headers.get("X-Correlation-ID", "")
        g.correlation_id = incoming if _CORRELATION_RE.match(incoming) else uuid.uuid4().hex
        json_logging.bind(correlation_id=g.correlation_id)

    @app.after_request
    def _echo_correlation_id(response):
        response.headers["X-Correlation-ID"] = getattr(g, "correlation_id", "")
        return response

    from app import (
        admin_developers_api,
        alerts_api,
        batches,
        compat_wakatime,
        developer_settings_api,
        export_api,
        import_api,
        ingest,
        metrics_api,
        openapi,
    )

    app.register_blueprint(ingest.bp)
    app.register_blueprint(batches.bp)
    app.register_blueprint(metrics_api.bp)
    app.register_blueprint(developer_settings_api.bp)
    app.register_blueprint(alerts_api.bp)
    app.register_blueprint(alert_stream.bp)
    app.register_blueprint(compat_wakatime.bp)
    app.register_blueprint(export_api.bp)
    app.register_blueprint(import_api.bp)
    app.register_blueprint(admin_developers_api.bp)
    app.register_blueprint(openapi.bp)
    return app
