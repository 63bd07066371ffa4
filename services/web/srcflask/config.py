"""Settings: read from the environment and checked, all of them, before the app starts.

One schema (`Settings`, pydantic-settings) says each setting's type, bounds and default, so
that a mistyped value (`WRITER_BATCH_SIZE=eight`, `0`, an unknown `SRCFLASK_ENV`, a short
production `SECRET_KEY`) stops the start with one clear line per problem instead of a
traceback at the first request that reads it, hours later. Each environment changes some
defaults (a subclass per environment); the environment's variables still win over them.

`flask_config()` turns the checked settings into the mapping Flask reads, together with
the values that are not settings at all (cookie flags, the Bootstrap switch).
"""
import ipaddress
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from limits import parse_many
from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

WEB_ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("development", "testing", "production")
# Keys that are public (committed in .env.dev, or the test suite's): never good enough for
# production, whatever their length.
PUBLIC_SECRET_KEYS = frozenset({"dev-only-not-secret", "testing-only-secret"})
PRODUCTION_SECRET_KEY_MIN_BYTES = 32
TESTING_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class ConfigurationError(ValueError):
    """The app was asked to start with settings that must not run; one line per problem."""


def _rate_limit(value):
    parse_many(value)  # "10 per minute; 100 per hour": a typo fails at start
    return value


def _networks(value):
    """A comma-separated list of networks ("10.0.0.0/8, 127.0.0.1") that all parse."""
    for part in value.split(","):
        if part.strip():
            ipaddress.ip_network(part.strip(), strict=False)
    return value


RateLimit = Annotated[str, AfterValidator(_rate_limit)]
Networks = Annotated[str, AfterValidator(_networks)]
Seconds = Annotated[float, Field(gt=0, le=86_400)]


class Settings(BaseSettings):
    """Every setting read from the environment, with its type, bounds and default."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", validate_default=True)

    SRCFLASK_ENV: Literal["development", "testing", "production"] = "development"
    SECRET_KEY: str | None = None
    # Unset: the embedded SQLite file of the quick start.
    DATABASE_URL: str = f"sqlite:///{WEB_ROOT / 'instance' / 'srcflask.sqlite3'}"
    # PostgreSQL cancels any statement of the web app or the writer (never of migrations)
    # that runs longer, lock waits included: the request answers 503 instead of hanging.
    DATABASE_STATEMENT_TIMEOUT_SECONDS: Seconds = 30.0
    # How long opening a database connection may take before it counts as an outage
    # (libpq's connect_timeout: whole seconds, at least 2).
    DATABASE_CONNECT_TIMEOUT_SECONDS: int = Field(5, ge=2, le=120)

    DOCUMENT_BODY_MAX_CHARS: int = Field(20_000, ge=1, le=1_000_000)
    # The largest legitimate form is one document (body cap, 4 bytes per character at
    # worst, plus title and fields): anything bigger is refused with 413 before parsing.
    MAX_CONTENT_LENGTH: int = Field(1024 * 1024, ge=16 * 1024, le=64 * 1024 * 1024)
    # Flask's limit on multipart fields (default 1,000), applied to urlencoded bodies too by
    # srcflask/request.py: the largest form has seven fields, so a body with more is refused
    # with 413 before its fields are parsed.
    MAX_FORM_PARTS: int = Field(100, ge=10, le=10_000)
    PAGE_SIZE: int = Field(20, ge=1, le=500)
    # How long a log-in lasts without a visit: the session cookie's and the (unused)
    # remember-me cookie's lifetime. Each request renews it; log-out ends it anywhere.
    SESSION_LIFETIME_DAYS: int = Field(14, ge=1, le=365)

    # 1: this deployment is one process on purpose, so production may count in memory://.
    # Declared before RATELIMIT_STORAGE_URI, whose production check reads it.
    RATELIMIT_SINGLE_PROCESS: bool = False
    # Where rate-limit counts live (srcflask/throttle.py): memory:// is per process;
    # redis://host:6379/0 is shared by every worker and replica and survives restarts.
    RATELIMIT_STORAGE_URI: str = Field("memory://", pattern=r"^(memory|redis|rediss)://")
    # Every counter's key starts with this: deployments (or test runs) sharing one Redis
    # never share counts, and `limiter.reset()` deletes only these.
    RATELIMIT_STORAGE_PREFIX: str = Field("srcflask", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # Failed log-ins per client address, and per account (its normalised email) from any
    # address; successful log-ins count against neither.
    LOGIN_RATE_LIMIT: RateLimit = "10 per minute"
    LOGIN_ACCOUNT_RATE_LIMIT: RateLimit = "20 per hour"
    SIGNUP_RATE_LIMIT: RateLimit = "20 per hour"
    # Forgot-password requests per client address, and per email asked about (account or not).
    PASSWORD_RESET_RATE_LIMIT: RateLimit = "10 per hour"
    PASSWORD_RESET_EMAIL_RATE_LIMIT: RateLimit = "5 per hour"
    # How long a password reset link works (it also stops once the password changes).
    PASSWORD_RESET_MAX_AGE_SECONDS: int = Field(3600, ge=60, le=7 * 86_400)
    # How long the link confirming a new email works (it also stops once used or the email changes).
    EMAIL_CHANGE_MAX_AGE_SECONDS: int = Field(86_400, ge=300, le=7 * 86_400)
    # Per user, whichever token and endpoint (requests without a valid token: per address).
    API_RATE_LIMIT: RateLimit = "120 per minute"
    # Live (unrevoked) API tokens an account may hold.
    API_TOKENS_PER_USER: int = Field(10, ge=1, le=1000)
    # Document saves (create and edit) and autodoc regenerations per user, pages and API
    # sharing one allowance each: a person saves at most every few seconds, a careless
    # script in a loop many times a second (each save and regeneration queues GPT-2 work).
    # Saves leave room for bench/load.py's heavy sponsor (100 saves in a minute, all 302).
    SAVE_RATE_LIMIT: RateLimit = "120 per minute; 1200 per hour"
    REGENERATE_RATE_LIMIT: RateLimit = "30 per minute; 300 per hour"
    # Downloads of all of a sponsor's data (each reads everything they hold), pages and API together.
    EXPORT_RATE_LIMIT: RateLimit = "10 per hour"

    WRITER_MODEL_DIR: str = str(WEB_ROOT / "srcflask" / "static" / "mlmodels" / "weights" / "gpt2")
    WRITER_MODEL_NAME: str = Field("gpt2", min_length=1)
    WRITER_CONTEXT_TOKENS: int = Field(64, ge=1, le=1024)
    WRITER_MAX_NEW_TOKENS: int = Field(60, ge=1, le=1024)
    WRITER_THREADS: int = Field(1, ge=1, le=16)
    WRITER_BATCH_SIZE: int = Field(8, ge=1, le=64)
    WRITER_LEASE_SECONDS: int = Field(120, ge=1, le=86_400)
    WRITER_MAX_ATTEMPTS: int = Field(3, ge=1, le=100)
    # 1: the server runs its own writer (under gunicorn: one `flask writer run` process that the
    # master starts, restarts and stops, beside the page workers, srcflask/writer_supervisor.py;
    # under `flask run`: threads of the app process); 0: only `flask writer run` processes
    # elsewhere do (docker-compose.scale.yml).
    WRITER_IN_PROCESS: bool = True
    WRITER_POLL_SECONDS: Seconds = 1.0
    WRITER_MODEL_RETRY_SECONDS: Seconds = 15.0
    # A job's lease stops being extended this long after its claim, so a writer hung inside
    # generate loses the job to another attempt. 600 s is 20x the slowest median batch
    # measured (GPT-2-small, 8 prompts, 2 busy cores: ~30 s; bench/RESULTS.md), room for a
    # failed batch retried one job at a time, and still far from an honest job's time.
    WRITER_JOB_DEADLINE_SECONDS: int = Field(600, ge=10, le=86_400)
    # A writer thread that failed (a corrupt model, out of memory, a bug) tries again after
    # the first, doubling up to the second: quick recovery from a blip, no tight loop.
    WRITER_RESTART_MIN_SECONDS: Seconds = 5.0
    WRITER_RESTART_MAX_SECONDS: Seconds = 300.0
    # TensorFlow's thread pools (0: one thread per core) and the niceness of the writer's
    # threads. Pages and the in-process writer share the cores: a positive niceness lets
    # request threads win them while the writer keeps whatever they leave (see
    # bench/RESULTS.md, "Load at scale").
    WRITER_TF_INTRA_THREADS: int = Field(0, ge=0, le=256)
    WRITER_TF_INTER_THREADS: int = Field(0, ge=0, le=256)
    WRITER_NICE: int = Field(0, ge=0, le=19)
    # XLA's persistent compilation cache: the writer's compiled programs (a few MB per batch
    # size), kept so that a restart loads them instead of compiling them again. Empty: the
    # folder `xla-cache` beside WRITER_MODEL_DIR (on the models volume); "off": no cache. A
    # folder that cannot be written means no cache and one warning, never a failed start.
    WRITER_XLA_CACHE_DIR: str = ""
    # 1: the writer compiles batch size 1 before it writes and its larger sizes while it
    # writes, claiming no more jobs than the largest compiled size meanwhile (the first
    # autodoc after a start comes sooner); 0: every size before it writes.
    WRITER_COMPILE_IN_BACKGROUND: bool = True

    # Training sets (services/trainingsets.py): approved autodocs split by document into a
    # training and a validation side. A fixed seed makes the same reviews give the same
    # split, byte for byte; the minimums refuse a set too small to train on or to measure
    # a model by (a validation side of one document says nothing about a model).
    TRAINING_SET_SEED: int = Field(1234, ge=0, le=2**32 - 1)
    TRAINING_VALIDATION_SHARE: float = Field(0.2, ge=0.05, le=0.5)
    TRAINING_MIN_VALIDATION_DOCUMENTS: int = Field(2, ge=1, le=100_000)
    TRAINING_MIN_TRAIN_DOCUMENTS: int = Field(2, ge=1, le=100_000)
    # Where training-set files are written, once each, read-only (the owner's layout: beside
    # the other processed data, never served).
    TRAINING_DATA_DIR: str = str(WEB_ROOT / "srcflask" / "static" / "data" / "processed_data" / "trainingsets")

    # The trainer (srcflask/trainer.py, `flask model train --queued`). Its niceness leaves the
    # cores to the writer and the pages first: training takes hours anyway, autodocs should not
    # wait for it. 19, below the production writer's 7: niceness only orders processes that
    # share a scheduler group, so the compose files also give the trainer's container a small
    # CPU weight (cpu_shares) against web's. A run's lease is renewed every third of it while
    # training goes on; a trainer that stops renewing it (killed, its machine gone) has its run
    # marked failed by the next claim.
    TRAINER_NICE: int = Field(19, ge=0, le=19)
    TRAINER_LEASE_SECONDS: int = Field(120, ge=1, le=86_400)
    TRAINER_POLL_SECONDS: Seconds = 5.0
    # Where `flask model register` copies a model and `flask writer fetch --model NAME` downloads
    # one (a folder per name): the owner's layout, static/mlmodels/seedmlmodels/, never served. A
    # deployment may point it at a volume, so that the registered folders outlive the container.
    SEED_MODELS_DIR: str = str(WEB_ROOT / "srcflask" / "static" / "mlmodels" / "seedmlmodels")
    # Where retrained models are written (one folder per model, <name>-v<version>): the owner's
    # layout, static/mlmodels/retrainedmodels/, never served.
    RETRAINED_MODELS_DIR: str = str(WEB_ROOT / "srcflask" / "static" / "mlmodels" / "retrainedmodels")
    # A training run's settings when the admin leaves them out. A few epochs with early stopping
    # on the validation loss, and a learning rate small enough not to wreck GPT-2's pretraining on
    # a few hundred pairs (5e-5, the usual rate for fine-tuning it).
    TRAINING_EPOCHS: int = Field(3, ge=1, le=1000)
    TRAINING_BATCH_SIZE: int = Field(8, ge=1, le=256)
    TRAINING_LEARNING_RATE: float = Field(5e-5, gt=0, le=1)
    TRAINING_WEIGHT_DECAY: float = Field(0.01, ge=0, le=1)
    TRAINING_PATIENCE: int = Field(1, ge=0, le=1000)
    TRAINING_SEED: int = Field(42, ge=0, le=2**32 - 1)
    # Prompt + continuation tokens per pair (the writer's 64 + 60 fit in 128).
    TRAINING_MAX_TOKENS: int = Field(128, ge=2, le=4096)
    # Off until the benchmark says the XLA-compiled train step pays for its compilation here.
    TRAINING_JIT_COMPILE: bool = False

    # Shadow drafts (services/shadow_drafts.py): while a candidate model exists, this share of
    # saves also gets a draft from it, written only when no real autodoc waits, for editors'
    # blind comparisons. 0 turns them off.
    SHADOW_SHARE: float = Field(0.25, ge=0, le=1)
    # The promotion gate's comparison rule (services/registry.py), beside the perplexity rule:
    # at least this many blind comparisons of the candidate against the active model (0: the
    # rule is off), and the lower end of the 95 % Wilson interval of its win rate (ties count
    # half) above this.
    PROMOTION_MIN_COMPARISONS: int = Field(0, ge=0, le=100_000)
    PROMOTION_MIN_WIN_LOWER_BOUND: float = Field(0.5, ge=0, le=1)
    # How long a review page's blind comparison form stays valid (services/comparisons.py): a
    # page left open over a weekend still works; an older one is reloaded, with a new order.
    BLIND_CHOICE_MAX_AGE_SECONDS: int = Field(7 * 86_400, ge=60, le=30 * 86_400)

    # Backups (services/backups.py, `flask backup ...`): where each backup's folder is written,
    # and how many of the newest `flask backup create` keeps (it prunes the older ones).
    BACKUP_DIR: str = str(WEB_ROOT / "instance" / "backups")
    BACKUP_KEEP: int = Field(7, ge=1, le=10_000)
    # How long a migration waits for a table lock before it gives up (PostgreSQL's lock_timeout,
    # migrations/env.py): an ALTER TABLE queued behind a long query would otherwise block every
    # request behind it while it waits. A whole number with ms, s or min.
    MIGRATION_LOCK_TIMEOUT: str = Field("5s", pattern=r"^[1-9][0-9]*(ms|s|min)$")

    # The site's address as people reach it, for the links in emails (no request to take it from).
    SITE_URL: str = Field("http://localhost:5000", pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$")
    # Email (services/outbox.py): "log" writes each message to the log (no mail server
    # needed), "smtp" sends through MAIL_SERVER, "locmem" keeps them in memory (tests).
    MAIL_BACKEND: Literal["log", "smtp", "locmem"] = "log"
    MAIL_SERVER: str = Field("localhost", min_length=1)
    MAIL_PORT: int = Field(25, ge=1, le=65_535)
    # STARTTLS on a plain port (587), or TLS from the first byte (465): one or the other.
    MAIL_USE_TLS: bool = False
    MAIL_USE_SSL: bool = False
    MAIL_USERNAME: str | None = None
    MAIL_PASSWORD: str | None = None
    MAIL_DEFAULT_SENDER: str = Field("srcflask <no-reply@localhost>", min_length=3)
    # How long one SMTP conversation may take before the attempt counts as failed.
    MAIL_TIMEOUT_SECONDS: Seconds = 30.0
    # 1: the app process runs the mail sender beside the writer; 0: only `flask mail send` does.
    MAIL_IN_PROCESS: bool = True
    MAIL_POLL_SECONDS: Seconds = 2.0
    # A claimed message is another sender's after this long (a sender killed mid-send).
    MAIL_LEASE_SECONDS: int = Field(120, ge=1, le=86_400)
    # Waits between failed attempts double from the first to the second; after the last
    # attempt the message is marked failed (the defaults keep trying for about two days).
    MAIL_RETRY_MIN_SECONDS: Seconds = 30.0
    MAIL_RETRY_MAX_SECONDS: Seconds = 3600.0
    MAIL_MAX_ATTEMPTS: int = Field(50, ge=1, le=1000)
    # A sent email holds someone's address and a link: kept this long for questions about
    # it, then deleted by a mail round (unsent ones are never deleted).
    MAIL_SENT_KEEP_DAYS: int = Field(30, ge=1, le=3650)
    # The hour (UTC, 0-23) from which each day's digest of notifications goes out to the
    # people who chose one (services/notifications.py): one hour for everyone, so a
    # digest arrives at a predictable time instead of drifting with each sender's rounds.
    DIGEST_HOUR_UTC: int = Field(7, ge=0, le=23)

    @field_validator("MAIL_LEASE_SECONDS")
    @classmethod
    def _lease_outlasts_a_send(cls, lease, info):
        # A send is a few SMTP steps of up to MAIL_TIMEOUT_SECONDS each after the lease is
        # renewed; a lease that ran out first would let another sender send it again.
        timeout = info.data.get("MAIL_TIMEOUT_SECONDS")
        if timeout is not None and lease < 4 * timeout:
            raise ValueError(f"must be at least 4 x MAIL_TIMEOUT_SECONDS ({4 * timeout:g}), or a slow send could "
                             "outlast its lease and be sent twice")
        return lease

    @field_validator("MAIL_USE_SSL")
    @classmethod
    def _one_kind_of_tls(cls, use_ssl, info):
        if use_ssl and info.data.get("MAIL_USE_TLS"):
            raise ValueError("MAIL_USE_TLS (STARTTLS, port 587) and MAIL_USE_SSL (TLS, port 465) exclude each other")
        return use_ssl

    # How many proxies (nginx) stand in front and set X-Forwarded-*: client IPs for rate
    # limits and https URLs come from them only when this says they are trusted.
    PROXY_COUNT: int = Field(0, ge=0, le=10)

    # gunicorn (gunicorn.conf.py reads them through this schema, and has the reasons).
    GUNICORN_BIND: str = Field("0.0.0.0:5000", min_length=1)
    GUNICORN_WORKERS: int = Field(1, ge=1, le=32)
    GUNICORN_THREADS: int = Field(8, ge=1, le=256)
    GUNICORN_TIMEOUT: int = Field(60, ge=1, le=3600)
    FORWARDED_ALLOW_IPS: str = "127.0.0.1"

    # "json": one JSON object per log line (production), "text": readable lines.
    LOG_FORMAT: Literal["json", "text"] = "text"
    LOG_LEVEL: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                         BeforeValidator(lambda level: level.upper() if isinstance(level, str) else level)] = "INFO"
    # Who may read /metrics: a bearer token, or clients in these networks (comma-separated
    # CIDRs). With neither, /metrics is 404. Development is open by default, production not.
    METRICS_TOKEN: str | None = None
    METRICS_ALLOWED_NETWORKS: Networks = ""
    # A `flask writer run` process serves no pages: its own metrics (jobs, generation times,
    # its writer's state) are on this port, for Prometheus to scrape (0: none).
    WRITER_METRICS_PORT: int = Field(0, ge=0, le=65_535)

    # Writers woken and pages told at once through PostgreSQL's LISTEN/NOTIFY
    # (services/queue_signals.py). 0: writers and pages poll only, as without it; for a
    # connection pooler in transaction mode (PgBouncer), where LISTEN does not work.
    QUEUE_WAKEUPS: bool = True
    # Live status on the pages (server-sent events, srcflask/main/events.py). Each open stream
    # holds one of the process's request threads (GUNICORN_THREADS) for as long as it lasts, so
    # at most this many are open per process; unset: half of GUNICORN_THREADS, so the other
    # half always serves pages. A page refused a stream (503) polls instead. 0: every page polls.
    SSE_MAX_STREAMS: int | None = Field(None, ge=0, le=256)
    # A stream ends after this long and the browser opens a new one (and refreshes its autodocs
    # once): below gunicorn's graceful_timeout (30 s), so a stopping worker is never held longer
    # by a stream than by a page, and below nginx's proxy_read_timeout for the route.
    SSE_STREAM_SECONDS: float = Field(25.0, gt=0, le=600)
    # A comment line sent on a quiet stream this often, so that proxies keep the connection. A
    # page that was closed is noticed within a quarter of a second under gunicorn and `flask
    # run` (the stream watches its socket); elsewhere at the next keep-alive.
    SSE_KEEPALIVE_SECONDS: float = Field(5.0, gt=0, le=300)


class DevelopmentSettings(Settings):
    METRICS_ALLOWED_NETWORKS: Networks = "0.0.0.0/0, ::/0"


class TestingSettings(Settings):
    LOG_FORMAT: Literal["json", "text"] = "json"
    METRICS_ALLOWED_NETWORKS: Networks = "0.0.0.0/0, ::/0"
    # The writer's claims then hold as many jobs whatever the timing of a compilation in the
    # background (tests/test_writer_coldstart.py tests that one in processes of its own).
    WRITER_COMPILE_IN_BACKGROUND: bool = False
    # The suite's tests of concurrent saves save hundreds of times a minute as one user:
    # tests/test_throttle.py sets the writing limits it checks.
    SAVE_RATE_LIMIT: RateLimit = "100000 per minute"
    REGENERATE_RATE_LIMIT: RateLimit = "100000 per minute"
    # Saves get shadow drafts at random: off, so that every test's rows are the same each run;
    # the tests of shadow drafts set the share they check (tests/test_shadow_drafts.py).
    SHADOW_SHARE: float = Field(0.0, ge=0, le=1)
    # The browser tests walk many pages of one process in a few seconds, and a page left is
    # noticed at its stream's next keep-alive: streams are not what they test (the cap's tests
    # set their own).
    SSE_MAX_STREAMS: int = Field(64, ge=0, le=256)
    # Each test process counts under a prefix of its own, so runs sharing a Redis never
    # share (or reset) each other's counts.
    RATELIMIT_STORAGE_PREFIX: str = Field(default_factory=lambda: f"srcflask-test-{secrets.token_hex(6)}")


class ProductionSettings(Settings):
    """Production refuses a missing, short or public SECRET_KEY and the SQLite fallback: a
    committed default must never be able to reach a real deployment."""

    DATABASE_URL: str | None = None
    MAIL_BACKEND: Literal["log", "smtp", "locmem"] = "smtp"
    # The writer process's niceness against the pages: 7 keeps its 20 autodocs a minute while
    # eight connections load the pages (10 gave 13 a minute, pages no faster within the noise:
    # bench/load.py, 2026-12-04 20:59 UTC, README "Pages while the writer works").
    WRITER_NICE: int = Field(7, ge=0, le=19)
    LOG_FORMAT: Literal["json", "text"] = "json"

    @field_validator("SECRET_KEY")
    @classmethod
    def _own_secret_key(cls, key):
        if not key:
            raise ValueError(f"not set; production needs its own secret of at least {PRODUCTION_SECRET_KEY_MIN_BYTES} "
                             "random bytes (see the README's Production section)")
        if key in PUBLIC_SECRET_KEYS:
            raise ValueError("this is a published development key; production needs its own secret")
        if len(key.encode()) < PRODUCTION_SECRET_KEY_MIN_BYTES:
            raise ValueError(f"got {len(key.encode())} bytes; production needs at least {PRODUCTION_SECRET_KEY_MIN_BYTES} "
                             "(python3 -c 'import secrets; print(secrets.token_hex(32))')")
        return key

    @field_validator("RATELIMIT_STORAGE_URI")
    @classmethod
    def _shared_counts(cls, uri, info):
        if uri.startswith("memory://") and not info.data.get("RATELIMIT_SINGLE_PROCESS"):
            raise ValueError("memory:// counts per process, so rate limits multiply with workers and replicas and "
                             "reset on restart; use redis://redis:6379/0 (docker-compose.prod.yml), or set "
                             "RATELIMIT_SINGLE_PROCESS=1 if this deployment is one process on purpose")
        return uri

    @field_validator("DATABASE_URL")
    @classmethod
    def _own_database(cls, url):
        if not url:
            raise ValueError("not set; production needs its PostgreSQL database")
        return url


# MAIL_BACKEND's values as Flask-Mailman's backends ("log": srcflask/mailer.py's).
MAIL_BACKENDS = {"log": "srcflask.mailer.LogEmailBackend", "smtp": "smtp", "locmem": "locmem"}
SETTINGS_OF = {"development": DevelopmentSettings, "testing": TestingSettings, "production": ProductionSettings}
# Testing is the same wherever the suite runs: these never come from the environment.
FIXED_IN_TESTING = {
    "SECRET_KEY": "testing-only-secret",
    "WRITER_IN_PROCESS": False,
    "METRICS_TOKEN": None,
    "MAIL_IN_PROCESS": False,
}


def load_settings(env_name=None, **overrides):
    """The checked settings of environment `env_name` (default: SRCFLASK_ENV, else
    development), `overrides` winning over the environment's variables; raises
    ConfigurationError with one line per problem."""
    env_name = env_name or os.environ.get("SRCFLASK_ENV") or "development"
    if env_name not in SETTINGS_OF:
        raise ConfigurationError(f"SRCFLASK_ENV: got {env_name!r}; expected one of {', '.join(ENVIRONMENTS)}")
    if env_name == "testing":
        overrides = {"DATABASE_URL": os.environ.get("TEST_DATABASE_URL", TESTING_DATABASE_URL),
                     **FIXED_IN_TESTING, **overrides}
    try:
        return SETTINGS_OF[env_name](**overrides, SRCFLASK_ENV=env_name)
    except ValidationError as invalid:
        raise ConfigurationError("\n".join(_problem(error) for error in invalid.errors())) from None


def _problem(error):
    """One line for one invalid setting: its name, what it got, what it accepts. A secret's
    value is never repeated."""
    name = str(error["loc"][0])
    secret = any(word in name for word in ("SECRET", "TOKEN", "PASSWORD"))
    got = "" if secret or error["input"] in (None, "") else f"got {error['input']!r}; "
    return f"{name}: {got}{_accepts(name, error)}"


def _accepts(name, error):
    """What the setting takes, in words: from its bounds when it has them, else the
    validator's own message."""
    if error["type"] == "value_error":  # a validator of ours: its own words
        return error["msg"].removeprefix("Value error, ")
    field = Settings.model_fields.get(name)
    bounds = {key: getattr(item, key) for item in (field.metadata if field else ())
              for key in ("ge", "gt", "le") if getattr(item, key, None) is not None}
    if field is not None and field.annotation is int and {"ge", "le"} <= bounds.keys():
        return f"expected a whole number from {bounds['ge']} to {bounds['le']}"
    if field is not None and field.annotation is float and {"gt", "le"} <= bounds.keys():
        return f"expected a number of seconds above {bounds['gt']:g} and at most {bounds['le']:g}"
    if field is not None and field.annotation is bool:
        return "expected 1 or 0 (or true / false)"
    return error["msg"].removeprefix("Value error, ").replace("Input should be", "expected")


def flask_config(settings, instance_path):
    """The mapping Flask reads: the settings under Flask's names, plus the fixed values."""
    values = settings.model_dump(exclude={"DATABASE_URL"})
    env_name = settings.SRCFLASK_ENV
    if env_name == "development" and not values["SECRET_KEY"]:
        values["SECRET_KEY"] = development_secret_key(Path(instance_path))
    secure = env_name == "production"
    values.update(
        SQLALCHEMY_DATABASE_URI=settings.DATABASE_URL,
        SQLALCHEMY_ENGINE_OPTIONS=database_engine_options(settings),
        TESTING=env_name == "testing",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=secure,
        PERMANENT_SESSION_LIFETIME=timedelta(days=settings.SESSION_LIFETIME_DAYS),
        REMEMBER_COOKIE_DURATION=timedelta(days=settings.SESSION_LIFETIME_DAYS),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        # Off: Flask-Limiter would put its own Retry-After on every limited response, a 503's
        # included; a 429 gets its Retry-After from errors.py (throttle.retry_after).
        RATELIMIT_HEADERS_ENABLED=False,
        # Keys under this deployment's prefix; a Redis that does not answer within a second
        # counts as down (srcflask/throttle.py says what happens then).
        RATELIMIT_STORAGE_OPTIONS={"key_prefix": settings.RATELIMIT_STORAGE_PREFIX,
                                   "socket_connect_timeout": 1, "socket_timeout": 1},
        BOOTSTRAP_SERVE_LOCAL=True,  # the app must work offline and under CSP 'self'
        # Flask-Mailman's names: its backend path and its timeout.
        MAIL_BACKEND=MAIL_BACKENDS[settings.MAIL_BACKEND],
        MAIL_TIMEOUT=settings.MAIL_TIMEOUT_SECONDS,
    )
    if secure:
        values["PREFERRED_URL_SCHEME"] = "https"
    return values


def development_secret_key(instance_dir):
    """Development's SECRET_KEY when none is set: generated once and kept in
    `instance/secret_key` (readable by its owner only), so that a restart of the quick start
    does not log everyone out."""
    path = instance_dir / "secret_key"
    if not path.exists():
        instance_dir.mkdir(parents=True, exist_ok=True)
        # Written aside, then linked into place: two processes starting together keep one key,
        # and neither can read a half-written file.
        draft = instance_dir / f".secret_key.{os.getpid()}"
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


def database_engine_options(settings):
    """SQLAlchemy engine options for the database of `settings`. pre_ping: a PostgreSQL
    restart must not leave dead connections in the pool. On PostgreSQL, every connection
    starts with:
    - JIT compilation off. The app's queries are short OLTP queries for which PostgreSQL's
      cost estimates cross the JIT thresholds on large tables, and compiling took 60-90 ms
      of each list query at 100,000 documents, more than running it (bench/RESULTS.md,
      "Load at scale").
    - statement_timeout: no query or lock wait holds a request thread (or the writer)
      forever. It is the session's default, so migrations/env.py lifts it for `flask db
      upgrade` alone.
    - connect_timeout: an unreachable server fails the request as an outage in seconds."""
    options = {"pool_pre_ping": True}
    if settings.DATABASE_URL.startswith("postgresql"):
        timeout_ms = max(1, round(settings.DATABASE_STATEMENT_TIMEOUT_SECONDS * 1000))
        options["connect_args"] = {"options": f"-c jit=off -c statement_timeout={timeout_ms}",
                                   "connect_timeout": settings.DATABASE_CONNECT_TIMEOUT_SECONDS}
    return options
