"""Configuration classes, read from the environment.

Each class is a plain object so that create_app() can take any of them (or a mapping
of overrides in tests). Production refuses to start without its own secrets: a
committed default must never be able to reach a real deployment.
"""
import os
from pathlib import Path

WEB_ROOT = Path(__file__).resolve().parent.parent


def _env_int(name, default):
    return int(os.environ.get(name, default))


class BaseConfig:
    SECRET_KEY = os.environ.get("SECRET_KEY")
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL") or f"sqlite:///{WEB_ROOT / 'instance' / 'srcflask.sqlite3'}"
    # pre_ping: a PostgreSQL restart must not leave dead connections in the pool.
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}

    DOCUMENT_BODY_MAX_CHARS = _env_int("DOCUMENT_BODY_MAX_CHARS", 20_000)
    # The largest legitimate form is one document (body cap, 4 bytes per character at
    # worst, plus title and fields): anything bigger is refused with 413 before parsing.
    MAX_CONTENT_LENGTH = _env_int("MAX_CONTENT_LENGTH", 1024 * 1024)
    # Flask's limit on multipart fields (default 1,000), applied to urlencoded bodies too by
    # srcflask/request.py: the largest form has seven fields, so a body with more is refused
    # with 413 before its fields are parsed.
    MAX_FORM_PARTS = _env_int("MAX_FORM_PARTS", 100)
    PAGE_SIZE = _env_int("PAGE_SIZE", 20)

    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    WTF_CSRF_TIME_LIMIT = None  # the token lives as long as the session

    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    RATELIMIT_HEADERS_ENABLED = True
    LOGIN_RATE_LIMIT = os.environ.get("LOGIN_RATE_LIMIT", "10 per minute")
    SIGNUP_RATE_LIMIT = os.environ.get("SIGNUP_RATE_LIMIT", "20 per hour")
    # Per API token (requests without a valid token: per client address).
    API_RATE_LIMIT = os.environ.get("API_RATE_LIMIT", "120 per minute")

    BOOTSTRAP_SERVE_LOCAL = True  # the app must work offline and under CSP 'self'

    WRITER_MODEL_DIR = os.environ.get("WRITER_MODEL_DIR") or str(
        WEB_ROOT / "srcflask" / "static" / "mlmodels" / "weights" / "gpt2"
    )
    WRITER_MODEL_NAME = os.environ.get("WRITER_MODEL_NAME", "gpt2")
    WRITER_CONTEXT_TOKENS = _env_int("WRITER_CONTEXT_TOKENS", 64)
    WRITER_MAX_NEW_TOKENS = _env_int("WRITER_MAX_NEW_TOKENS", 60)
    WRITER_THREADS = _env_int("WRITER_THREADS", 1)
    WRITER_BATCH_SIZE = _env_int("WRITER_BATCH_SIZE", 8)
    WRITER_LEASE_SECONDS = _env_int("WRITER_LEASE_SECONDS", 120)
    WRITER_MAX_ATTEMPTS = _env_int("WRITER_MAX_ATTEMPTS", 3)
    WRITER_IN_PROCESS = os.environ.get("WRITER_IN_PROCESS", "1") == "1"
    WRITER_POLL_SECONDS = float(os.environ.get("WRITER_POLL_SECONDS", "1"))
    WRITER_MODEL_RETRY_SECONDS = float(os.environ.get("WRITER_MODEL_RETRY_SECONDS", "15"))
    # TensorFlow's thread pools (0: one thread per core) and the niceness of the writer's
    # threads. Pages and the in-process writer share the cores: a positive niceness lets
    # request threads win them while the writer keeps whatever they leave (see
    # bench/RESULTS.md, "Load at scale").
    WRITER_TF_INTRA_THREADS = _env_int("WRITER_TF_INTRA_THREADS", 0)
    WRITER_TF_INTER_THREADS = _env_int("WRITER_TF_INTER_THREADS", 0)
    WRITER_NICE = _env_int("WRITER_NICE", 0)


    # How many proxies (nginx) stand in front and set X-Forwarded-*: client IPs for rate
    # limits and https URLs come from them only when this says they are trusted.
    PROXY_COUNT = _env_int("PROXY_COUNT", 0)

    # "json": one JSON object per log line (production), "text": readable lines.
    LOG_FORMAT = os.environ.get("LOG_FORMAT", "text")
    LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
    # Who may read /metrics: a bearer token, or clients in these networks (comma-separated
    # CIDRs). With neither, /metrics is 404. Development is open by default, production not.
    METRICS_TOKEN = os.environ.get("METRICS_TOKEN") or None
    METRICS_ALLOWED_NETWORKS = os.environ.get("METRICS_ALLOWED_NETWORKS", "")


class DevelopmentConfig(BaseConfig):
    DEBUG = True
    # Development may run without a secret; a fresh random one per process only costs
    # a log-in after a restart.
    SECRET_KEY = BaseConfig.SECRET_KEY or os.urandom(32).hex()
    METRICS_ALLOWED_NETWORKS = os.environ.get("METRICS_ALLOWED_NETWORKS", "0.0.0.0/0, ::/0")


class TestingConfig(BaseConfig):
    TESTING = True
    SECRET_KEY = "testing-only-secret"
    SQLALCHEMY_DATABASE_URI = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    WRITER_IN_PROCESS = False
    RATELIMIT_ENABLED = True
    LOG_FORMAT = "json"
    METRICS_TOKEN = None
    METRICS_ALLOWED_NETWORKS = "0.0.0.0/0, ::/0"


class ProductionConfig(BaseConfig):
    WRITER_NICE = _env_int("WRITER_NICE", 10)
    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_SECURE = True
    PREFERRED_URL_SCHEME = "https"
    LOG_FORMAT = os.environ.get("LOG_FORMAT", "json")


def database_engine_options(uri, options):
    """SQLAlchemy engine options for the database at `uri`: on PostgreSQL, JIT compilation
    off. The app's queries are short OLTP queries for which PostgreSQL's cost estimates
    cross the JIT thresholds on large tables, and compiling took 60-90 ms of each list
    query at 100,000 documents, more than running it (bench/RESULTS.md, "Load at scale")."""
    if uri.startswith("postgresql"):
        return {**options, "connect_args": {**options.get("connect_args", {}), "options": "-c jit=off"}}
    return options


class ConfigurationError(RuntimeError):
    """Raised when the app is asked to start with a configuration that must not run."""


def check_production():
    """Refuse to boot production with a missing secret or the SQLite fallback."""
    missing = [name for name in ("SECRET_KEY", "DATABASE_URL") if not os.environ.get(name)]
    if missing:
        raise ConfigurationError(
            "Production needs its own " + " and ".join(missing)
            + ": set them in the environment (docker compose: in .env.prod.db, see the README's"
            " Production section); refusing to start."
        )


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}
