"""The dashboard's login, session cookie, CSRF and permissions, through the Flask test client (the browser tests
in tests/browser/ drive the same pages in Chromium)."""

from __future__ import annotations

import re

import pytest

from tests.support.factories import auth


def csrf_from(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field in the form"
    return found.group(1)


def login(client, token: str):
    page = client.get("/login")
    return client.post("/login", data={"token": token, "csrf_token": csrf_from(page.get_data(as_text=True))})


@pytest.fixture
def admin_token(make_token) -> str:
    return make_token(None, admin=True)


def test_root_redirects_to_the_dashboard_and_the_dashboard_to_login(client):
    assert client.get("/").headers["Location"].endswith("/dashboard")
    response = client.get("/dashboard")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_login_sets_a_signed_httponly_lax_cookie_without_the_token(client, token):
    response = login(client, token)
    assert response.status_code == 302 and response.headers["Location"].endswith("/dashboard")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert token not in cookie
    page = client.get("/dashboard")
    assert page.status_code == 200 and "dev-1" in page.get_data(as_text=True)
    assert token not in page.get_data(as_text=True)


def test_login_without_the_csrf_token_is_refused(client, token):
    response = client.post("/login", data={"token": token})
    assert response.status_code == 400 and "csrf_token" in response.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302


def test_a_wrong_token_is_refused_naming_the_field(client):
    response = login(client, "not-a-token")
    assert response.status_code == 401 and "token: unknown, revoked or expired" in response.get_data(as_text=True)


def test_a_developer_token_is_refused_on_operator_pages_and_other_developers(client, token):
    login(client, token)
    assert client.get("/operator").status_code == 403
    page = client.get("/dashboard")
    forged = client.post("/operator/breakers/database/reset", data={"csrf_token": csrf_from(page.get_data(True))})
    assert forged.status_code == 403
    assert client.get("/dashboard?developer=dev-2").status_code == 403
    assert client.get("/batches?developer=dev-2").status_code == 403


def test_an_admin_sees_the_operator_view_and_picks_a_developer(client, admin_token, make_token):
    make_token("dev-7")
    login(client, admin_token)
    operator = client.get("/operator")
    assert operator.status_code == 200 and "Processing lag" in operator.get_data(as_text=True)
    picker = client.get("/dashboard").get_data(as_text=True)
    assert "dev-7" in picker
    assert client.get("/dashboard?developer=dev-7").status_code == 200


def test_the_session_reads_the_api_but_never_writes_through_it(client, token):
    """GET endpoints (the page's EventSource) accept the session; a POST needs the token itself (no CSRF)."""
    login(client, token)
    assert client.get("/api/developers/dev-1/alerts").status_code == 200
    ack = client.post("/api/developers/dev-1/alerts/00000000-0000-0000-0000-000000000000/ack")
    assert ack.status_code == 401


def test_page_forms_refuse_a_missing_csrf_token(client, token):
    login(client, token)
    response = client.post("/dashboard/settings", data={"timezone": "Europe/Berlin", "idle_timeout_seconds": "300"})
    assert response.status_code == 400
    settings = client.get("/api/developers/dev-1/settings", headers=auth(token)).get_json()
    assert settings["timezone"] == "UTC"


def test_settings_form_saves_through_the_settings_api_rules(client, token):
    page = login(client, token) and client.get("/dashboard")
    csrf = csrf_from(page.get_data(as_text=True))
    bad = client.post("/dashboard/settings", data={"timezone": "Mars/Base", "idle_timeout_seconds": "300",
                                                   "csrf_token": csrf}, follow_redirects=True)
    assert "unknown time zone" in bad.get_data(as_text=True)
    client.post("/dashboard/settings", data={"timezone": "Europe/Berlin", "idle_timeout_seconds": "600",
                                             "csrf_token": csrf})
    settings = client.get("/api/developers/dev-1/settings", headers=auth(token)).get_json()
    assert (settings["timezone"], settings["idle_timeout_seconds"]) == ("Europe/Berlin", 600)


def test_logout_ends_the_session(client, token):
    page = login(client, token) and client.get("/dashboard")
    response = client.post("/logout", data={"csrf_token": csrf_from(page.get_data(as_text=True))})
    assert response.status_code == 302
    assert client.get("/dashboard").status_code == 302
    assert client.get("/api/developers/dev-1/alerts").status_code == 401


def test_login_next_never_leaves_the_site(client, token):
    page = client.get("/login?next=//evil.example/")
    response = client.post("/login", data={"token": token, "next": "//evil.example/",
                                           "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert response.headers["Location"].endswith("/dashboard")


def test_a_login_link_works_once_and_expires(client, token, clean_db):
    from datetime import UTC, datetime, timedelta

    from models.login_links import create_login_link
    from models.tokens import hash_token

    with clean_db.transaction() as s:
        fresh = create_login_link(s, hash_token(token), datetime.now(UTC))
        old = create_login_link(s, hash_token(token), datetime.now(UTC) - timedelta(minutes=11))
    page = client.get(f"/login/link/{fresh}")
    assert page.status_code == 200 and client.get("/dashboard").status_code == 302  # GET alone logs nobody in
    csrf = csrf_from(page.get_data(as_text=True))
    assert client.post(f"/login/link/{fresh}", data={"csrf_token": csrf}).status_code == 302
    assert client.get("/dashboard").status_code == 200
    csrf = csrf_from(client.get(f"/login/link/{fresh}").get_data(as_text=True))
    again = client.post(f"/login/link/{fresh}", data={"csrf_token": csrf})
    assert again.status_code == 401 and "link: unknown, already used or expired" in again.get_data(as_text=True)
    csrf = csrf_from(client.get(f"/login/link/{old}").get_data(as_text=True))
    assert client.post(f"/login/link/{old}", data={"csrf_token": csrf}).status_code == 401
