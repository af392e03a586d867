"""gunicorn's threaded worker with deadlines on reading a request (the Procfile's
`--worker-class app.web_worker.BoundedThreadWorker`).

gthread gives a connection a thread once its first bytes arrive (it waits 5 s for them on its poller, without a
thread), then reads the request line, the headers and the body with blocking reads: a client that trickles a
byte every few seconds holds that thread for as long as it likes, and 8 such clients (2 workers x 4 threads)
stop the API. Here every read of a request ends at a deadline: the headers must be complete within
`REQUEST_HEADER_TIMEOUT_SECONDS` of their first byte, the body within `REQUEST_BODY_TIMEOUT_SECONDS` of the end
of the headers. Past it the client gets a 408 in the API's error shape and the connection is closed.

The deadlines live on the connection's socket (`DeadlineSocket`): gunicorn's parser and the application's
body reads both end in its `recv`, so one place bounds both, whatever reads (gunicorn's parser, werkzeug).
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from app.errors import RequestReadTimeout
from core.settings import Settings


class DeadlineSocket:
    """A connection's socket whose reads end at a deadline (everything else is the socket's own)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._timeout: float | None = None  # what gunicorn itself asked for (settimeout / setblocking)
        self._part = ""
        self._seconds = 0.0
        self._deadline: float | None = None
        self._armed = False
        self.expired = False

    def start(self, part: str, seconds: float, *, from_first_byte: bool = False) -> None:
        """Reads of `part` ("headers", "body") end `seconds` from now (or from the first read); 0: no end."""
        self._part, self._seconds = part, seconds
        self._deadline = None if from_first_byte else time.monotonic() + seconds
        self._armed = True

    def stop(self) -> None:
        self._armed = False
        self._deadline = None

    def recv(self, size: int, *flags: int) -> bytes:
        if not self._armed or self._seconds <= 0:
            return self._sock.recv(size, *flags)
        if self._deadline is None:
            # The headers' clock starts at their first read: gthread calls it once bytes are waiting (a new
            # connection after its poller saw them, a kept-alive one when it turns readable).
            self._deadline = time.monotonic() + self._seconds
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            self.expired = True
            raise RequestReadTimeout(self._part, self._seconds)
        outer = self._timeout
        self._sock.settimeout(remaining if outer is None else min(outer, remaining))
        try:
            return self._sock.recv(size, *flags)
        except TimeoutError:
            if outer is not None and outer < remaining:
                raise  # gunicorn's own, shorter bound (draining an unread body): gunicorn handles it
            self.expired = True
            raise RequestReadTimeout(self._part, self._seconds) from None
        finally:
            self._sock.settimeout(outer)

    def settimeout(self, value: float | None) -> None:
        self._timeout = value
        self._sock.settimeout(value)

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0
        self._sock.setblocking(flag)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _timeout_response(exc: RequestReadTimeout) -> bytes:
    body = json.dumps({"error": {"code": "request_timeout", "message": str(exc),
                                 "details": [{"field": exc.field, "message": exc.reason}]},
                       "correlation_id": None}).encode()
    head = ("HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


class BoundedThreadWorker(ThreadWorker):
    """gthread, with the read deadlines above (settings read once per worker process)."""

    def init_process(self) -> None:
        cfg = Settings.from_env()
        self.header_timeout = cfg.request_header_timeout_seconds
        self.body_timeout = cfg.request_body_timeout_seconds
        super().init_process()

    def handle(self, conn: Any) -> Any:
        if not isinstance(conn.sock, DeadlineSocket):
            conn.sock = DeadlineSocket(conn.sock)
        conn.sock.start("headers", self.header_timeout, from_first_byte=True)
        try:
            return super().handle(conn)
        finally:
            conn.sock.stop()

    def handle_request(self, req: Any, conn: Any) -> Any:
        conn.sock.start("body", self.body_timeout)
        return super().handle_request(req, conn)

    def _keepalive_after(self, conn: Any, keepalive: Any) -> bool:
        if conn.sock.expired:
            return False  # the rest of that request is still on its way: the connection cannot be reused
        try:
            return super()._keepalive_after(conn, keepalive)
        except RequestReadTimeout:
            return False

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        if not isinstance(exc, RequestReadTimeout):
            super().handle_error(req, client, addr, exc)
            return
        # The headers did not arrive in time (a late body is answered by the application: app/errors.py).
        self.log.warning("408 from ip=%s: %s", (addr or ("",))[0], exc)
        try:
            util.write(client, _timeout_response(exc))
        except OSError:
            self.log.debug("Failed to send the 408.")
