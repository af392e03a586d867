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
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import pybreaker

from core.breakers import breakers

log = logging.getLogger("devpulse.webhooks")

SIGNATURE_HEADER = "X-Devpulse-Signature"
# How old a signature's timestamp may be before a receiver rejects it (replay protection).
SIGNATURE_TOLERANCE_SECONDS = 300
_SCHEMES = ("http", "https")
MAX_REDIRECTS = 3


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """`t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: the time is signed with the body, so a captured
    request cannot be replayed later than the receiver's tolerance."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode("utf-8"), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(header: str, body: bytes, secret: str, *, tolerance: float = SIGNATURE_TOLERANCE_SECONDS,
           now: float | None = None) -> bool:
    """What a receiver does: the signature matches the body and its timestamp is within `tolerance` of now."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        t = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    expected = sign(body, secret, t).split(",v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


class RedirectRefused(urllib.error.HTTPError):
    """The receiver redirected somewhere a signed alert must not follow (another host, another scheme, or a
    redirect that would turn the POST into a GET and drop the body)."""


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follows 307/308 (which keep method and body) to the same scheme, host and port only."""

    max_redirections = MAX_REDIRECTS

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        old, new = urlsplit(req.full_url), urlsplit(newurl)
        same_place = (new.scheme, new.hostname, new.port) == (old.scheme, old.hostname, old.port)
        if code not in (307, 308) or new.scheme not in _SCHEMES or not same_place:
            raise RedirectRefused(req.full_url, code, f"redirect ({code}) not followed", headers, fp)
        return urllib.request.Request(newurl, data=req.data, method=req.get_method(),
                                      headers=dict(req.header_items()))


# Built by hand rather than with build_opener: http(s) handlers only (no file://, ftp://, data:), no proxy taken
# from the environment, and the redirect rule above.
_opener = urllib.request.OpenerDirector()
for _handler in (urllib.request.UnknownHandler(), urllib.request.HTTPHandler(), urllib.request.HTTPSHandler(),
                 urllib.request.HTTPDefaultErrorHandler(), _SameHostRedirects(), urllib.request.HTTPErrorProcessor()):
    _opener.add_handler(_handler)


def post_json(url: str, body: bytes, *, user_agent: str, secret: str | None = None, timeout: float = 5.0,
              headers: dict[str, str] | None = None) -> int:
    """POST `body` as JSON (signed when a secret is given); returns the status. Raises OSError/ValueError
    (urllib.error.HTTPError for a non-2xx answer, RedirectRefused for a redirect that is not followed)."""
    if urlsplit(url).scheme not in _SCHEMES:
        raise ValueError("only http:// and https:// webhook URLs are allowed")
    sent = {"Content-Type": "application/json", "User-Agent": user_agent, **(headers or {})}
    if secret is not None:
        sent[SIGNATURE_HEADER] = sign(body, secret)
    request = urllib.request.Request(url, data=body, method="POST", headers=sent)
    with _opener.open(request, timeout=timeout) as response:
        return int(response.status)


def public_reason(exc: BaseException) -> str:
    """A delivery failure as a developer may see it: the kind of failure, never the exception text (which can
    name internal hosts, addresses and paths; it stays in the admin view)."""
    if isinstance(exc, RedirectRefused):
        return "the receiver redirected the request; redirects to other hosts are not followed"
    if isinstance(exc, urllib.error.HTTPError):
        return f"the receiver answered HTTP {exc.code}"
    if isinstance(exc, pybreaker.CircuitBreakerError):
        return "deliveries are paused after repeated failures; they resume automatically"
    if isinstance(exc, TimeoutError) or "timed out" in str(exc):
        return "the receiver did not answer in time"
    if isinstance(exc, (urllib.error.URLError, OSError)):
        return "the receiver could not be reached"
    return "the delivery failed"


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
