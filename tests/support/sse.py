"""An alert stream read by a test client, as SSE blocks (the app tests and the fault tests use it)."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.support.factories import auth


class Stream(threading.Thread):
    """One open stream, read on its own thread into SSE blocks: {"event", "id", "data", "comments"}."""

    def __init__(self, port: int, developer_id: str, token: str, *, query: str = "", last_event_id: str = "",
                 timeout: float = 15) -> None:
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        headers = auth(token)
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.opened = time.monotonic()
        self.conn.request("GET", f"/api/developers/{developer_id}/alerts/stream{query}", headers=headers)
        self.sock = self.conn.sock  # the response's reader keeps it open after conn.close(): shut it down to leave
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.blocks: list[dict[str, Any]] = []
        self.arrived: list[float] = []  # seconds after opening, per block
        self.ended_after: float | None = None
        if self.status == 200:
            self.start()
        else:
            self.body = json.loads(self.response.read())
            self.conn.close()

    def run(self) -> None:
        block: dict[str, Any] = {"comments": []}
        try:
            while line := self.response.readline():
                text = line.decode("utf-8").rstrip("\r\n")
                if not text:
                    self.arrived.append(time.monotonic() - self.opened)
                    self.blocks.append(block)
                    block = {"comments": []}
                elif text.startswith(":"):
                    block["comments"].append(text[1:].strip())
                else:
                    name, _, value = text.partition(": ")
                    block[name] = json.loads(value) if name == "data" else value
        except (OSError, ValueError, AttributeError):
            pass  # the test closed the connection under the reader (http.client fails in several ways then)
        finally:
            self.ended_after = time.monotonic() - self.opened
            self.conn.close()

    def alerts(self) -> list[dict[str, Any]]:
        return [b for b in list(self.blocks) if b.get("event") == "alert"]

    def wait(self, predicate: Callable[[Stream], Any], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            assert time.monotonic() < deadline, f"not within {timeout}s: {self.blocks}"
            time.sleep(0.02)

    def close(self) -> None:
        """Leave as a client does: the connection goes down (the server notices at its next write)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()
        self.join(5)
