"""Outbound webhooks: signing, one POST with a timeout, and the fire-and-forget admin-alert notifier.

The URLs come from `Settings` (configured once at start-up by the web factory and the Celery app);
nothing here reads the environment.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.request
from typing import Any

import pybreaker

from core.breakers import breakers

log = logging.getLogger("devpulse.webhooks")

SIGNATURE_HEADER = "X-Devpulse-Signature"


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def post_json(url: str, body: bytes, *, user_agent: str, secret: str | None = None, timeout: float = 5.0) -> int:
    """POST `body` as JSON (signed when a secret is given); returns the status. Raises OSError/ValueError."""
    headers = {"Content-Type": "application/json", "User-Agent": user_agent}
    if secret is not None:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)


class AdminNotifier:
    """Sends admin alerts to ADMIN_ALERT_WEBHOOK_URL, on a daemon thread, behind the `admin_webhook` breaker.

    Fire-and-forget: an alert about a failure must never add a failure (or a wait) of its own.
    """

    THROTTLE_SECONDS = 30.0

    def __init__(self) -> None:
        self.url = ""
        self._last_sent: dict[str, float] = {}
        self._lock = threading.Lock()

    def configure(self, url: str) -> None:
        self.url = url

    def notify(self, payload: dict[str, Any]) -> None:
        if self.url:
            threading.Thread(target=self._post, args=(self.url, payload), daemon=True).start()

    def notify_throttled(self, kind: str, payload: dict[str, Any]) -> None:
        """At most one webhook per kind every 30 s: an outage that fails every request is not a flood."""
        now = time.monotonic()
        with self._lock:
            if now - self._last_sent.get(kind, -self.THROTTLE_SECONDS) < self.THROTTLE_SECONDS:
                return
            self._last_sent[kind] = now
        self.notify(payload)

    @staticmethod
    def _post(url: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, default=str).encode("utf-8")
        try:
            breakers.get("admin_webhook", fail_max=3, reset_timeout=60).call(
                post_json, url, body, user_agent="devpulse-admin/1", timeout=3)
        except (pybreaker.CircuitBreakerError, OSError, ValueError) as exc:
            log.warning("admin alert webhook failed: %s", exc)


admin_notifier = AdminNotifier()
