"""A real local webhook endpoint for the delivery tests: answers `status`, keeps every request it gets, and does
what a careful receiver does (verify the signature, drop repeats by idempotency key)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from core.webhooks import SIGNATURE_HEADER, verify


class Receiver(ThreadingHTTPServer):
    """Serving on 127.0.0.1 from construction until `stop()`; `received` is set by the first request.

    `redirect`: (code, location) answered to requests at the hook's own path (`url`); other paths get `status`.
    """

    PATH = "/hooks/devpulse"

    def __init__(self, status: int = 200, *, redirect: tuple[int, str] | None = None) -> None:
        self.status = status
        self.redirect = redirect
        self.hits: list[tuple[dict[str, str], bytes]] = []
        self.paths: list[str] = []
        self.received = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.hits.append((dict(self.headers.items()), body))
                outer.paths.append(self.path)
                if outer.redirect is not None and self.path == outer.PATH:
                    self.send_response(outer.redirect[0])
                    self.send_header("Location", outer.redirect[1])
                else:
                    self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                outer.received.set()

            do_GET = do_POST  # a redirect that turned the POST into a GET shows up too

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}{self.PATH}"

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(raw) for _, raw in self.hits]

    def keys(self) -> list[str]:
        """The idempotency keys of every alert received, repeats included, in arrival order."""
        return [item["idempotency_key"] for p in self.payloads() for item in p["alerts"]]

    def accepted(self, secret: str) -> dict[str, dict[str, Any]]:
        """What a receiver keeps: alerts of correctly signed, fresh requests, once per idempotency key."""
        kept: dict[str, dict[str, Any]] = {}
        for headers, raw in self.hits:
            if verify(headers.get(SIGNATURE_HEADER, ""), raw, secret):
                for item in json.loads(raw)["alerts"]:
                    kept.setdefault(item["idempotency_key"], item["alert"])
        return kept

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
