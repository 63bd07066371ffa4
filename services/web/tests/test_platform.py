"""What every page shares: headers, error pages, the static route, request limits, config."""
import pytest

from srcflask import create_app
from srcflask.config import ConfigurationError


def test_security_headers_on_every_page(client):
    response = client.get("/")
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_session_cookie_is_httponly_and_samesite(client):
    response = client.get("/auth/login")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_production_cookies_are_secure(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "x" * 32)
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    monkeypatch.setenv("RATELIMIT_SINGLE_PROCESS", "1")
    app = create_app("production")
    assert app.config["SESSION_COOKIE_SECURE"] and app.config["REMEMBER_COOKIE_SECURE"]


@pytest.mark.parametrize("missing", ["SECRET_KEY", "DATABASE_URL"])
def test_production_refuses_to_start_without_its_own_secrets(monkeypatch, missing):
    monkeypatch.setenv("SECRET_KEY", "x" * 32)
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    monkeypatch.delenv(missing)
    with pytest.raises(ConfigurationError, match=missing):
        create_app("production")


@pytest.mark.parametrize("path", [
    "/static/src/features/doctokenization.py",
    "/static/src/evaluation/autodocwriter.py",
    "/static/mlmodels/seedmlmodels/headmodel.py",
    "/static/data/processeddata/models.py",
    "/static/../srcflask/config.py",
    "/static/assets/css/app.css",
])
def test_code_under_static_is_never_served(client, path):
    assert client.get(path).status_code == 404


def test_public_assets_are_served(client):
    response = client.get("/static/css/app.css")
    assert response.status_code == 200
    assert "text/css" in response.headers["Content-Type"]


def test_bootstrap_is_served_locally(client):
    page = client.get("/").get_data(as_text=True)
    assert "cdn.jsdelivr.net" not in page
    assert client.get("/bootstrap/static/css/bootstrap.min.css").status_code == 200


def test_not_found_page_is_in_the_layout(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "There is nothing here" in page and 'class="navbar' in page


def test_oversized_request_gets_413_page(client):
    response = client.post("/auth/login", {"email": "a@example.org", "password": "x" * (10 * 1024 * 1024)})
    assert response.status_code == 413
    assert "too large" in response.get_data(as_text=True)


def test_unexpected_error_gets_500_page_without_traceback(database_url):
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    page = response.get_data(as_text=True)
    assert "Something went wrong" in page
    assert "secret internals" not in page and "Traceback" not in page


def test_index_for_visitors_links_to_signup_and_login(client):
    page = client.get("/").get_data(as_text=True)
    assert 'href="/auth/signup"' in page and 'href="/auth/login"' in page
