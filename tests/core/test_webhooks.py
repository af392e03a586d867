"""core/webhooks.py: the signature receivers verify (with replay protection), http(s) only, no redirects to another
host, and failure reasons fit for developers' eyes; against real local HTTP servers."""

from __future__ import annotations

import hashlib
import hmac
import socket
import time
import urllib.error
from collections.abc import Iterator

import pybreaker
import pytest

from core.webhooks import RedirectRefused, post_json, public_reason, sign, verify
from tests.support.webhooks import Receiver

BODY = b'{"type":"devpulse.alerts","alerts":[]}'


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(204)
    yield server
    server.stop()


def test_signature_is_timestamp_and_hmac_of_timestamp_dot_body() -> None:
    header = sign(BODY, "s3cret", timestamp=1_700_000_000)
    expected = hmac.new(b"s3cret", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_receivers_reject_tampering_other_secrets_and_old_timestamps() -> None:
    now = time.time()
    header = sign(BODY, "s3cret")
    assert verify(header, BODY, "s3cret", now=now)
    assert not verify(header, BODY + b" ", "s3cret", now=now)
    assert not verify(header, BODY, "other", now=now)
    assert not verify("garbage", BODY, "s3cret", now=now)
    # The same request replayed later than the tolerance (300 s) is refused, even though the MAC is right.
    assert not verify(header, BODY, "s3cret", now=now + 301)
    # The timestamp is covered by the MAC: moving it forward breaks the signature.
    t, mac = header.split(",")
    moved = f"t={int(t[2:]) + 400},{mac}"
    assert not verify(moved, BODY, "s3cret", now=now + 400)


def test_post_is_signed_and_sent(receiver: Receiver) -> None:
    assert post_json(receiver.url, BODY, user_agent="t/1", secret="s3cret") == 204
    [(headers, raw)] = receiver.hits
    assert raw == BODY and verify(headers["X-Devpulse-Signature"], raw, "s3cret")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/", "data:,x"])
def test_only_http_and_https(url: str) -> None:
    with pytest.raises(ValueError, match="only http"):
        post_json(url, BODY, user_agent="t/1", secret="s")


def test_redirect_to_another_host_is_not_followed(receiver: Receiver) -> None:
    # 127.0.0.1 -> localhost, and 127.0.0.1 -> another port: other places, though both are this machine.
    for elsewhere in (receiver.url.replace("127.0.0.1", "localhost"),
                      f"http://127.0.0.1:{receiver.server_port}/moved"):
        redirector = Receiver(redirect=(307, elsewhere))
        try:
            with pytest.raises(RedirectRefused) as caught:
                post_json(redirector.url, BODY, user_agent="t/1", secret="s")
        finally:
            redirector.stop()
        assert "redirect" in public_reason(caught.value) and "localhost" not in public_reason(caught.value)
    assert receiver.hits == []


@pytest.mark.parametrize("code", [301, 302, 303])
def test_redirect_that_would_drop_the_body_is_not_followed(code: int) -> None:
    redirector = Receiver(204, redirect=(code, "/moved"))
    try:
        with pytest.raises(RedirectRefused):
            post_json(redirector.url, BODY, user_agent="t/1", secret="s")
        assert redirector.paths == [Receiver.PATH]  # no GET to /moved
    finally:
        redirector.stop()


def test_same_server_307_is_followed_with_body_and_signature() -> None:
    redirector = Receiver(204, redirect=(307, "/moved"))
    try:
        assert post_json(redirector.url, BODY, user_agent="t/1", secret="s") == 204
        assert redirector.paths == [Receiver.PATH, "/moved"]
        (_, first), (headers, raw) = redirector.hits
        assert first == raw == BODY and verify(headers["X-Devpulse-Signature"], raw, "s")
    finally:
        redirector.stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_public_reasons_name_no_host_nor_exception_text() -> None:
    url = f"http://127.0.0.1:{closed_port()}/x"  # loopback only: the address stands for an internal host
    with pytest.raises(urllib.error.URLError) as refused:
        post_json(url, BODY, user_agent="t/1", secret="s", timeout=2)
    reasons = [
        public_reason(refused.value),
        public_reason(urllib.error.HTTPError("http://10.1.2.3/x", 500, "Internal Server Error at db-7", {}, None)),
        public_reason(pybreaker.CircuitBreakerError("Failures threshold reached, circuit breaker opened")),
        public_reason(TimeoutError("timed out connecting to 10.1.2.3")),
    ]
    assert reasons[1] == "the receiver answered HTTP 500"
    for reason in reasons:
        for secret_bit in ("127.0.0.1", "10.1.2.3", "db-7", "Errno", "refused", "threshold"):
            assert secret_bit not in reason
