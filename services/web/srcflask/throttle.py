"""Rate limits: what each one counts, against whom, and where the counts live.

Flask-Limiter counts (with the `limits` library, and redis-py when the storage is Redis);
this module says what is counted, so that every view declares its limits the same way:

- **Log-ins** count *failed* attempts only, twice: per client address (LOGIN_RATE_LIMIT)
  and per account, from any address (LOGIN_ACCOUNT_RATE_LIMIT, keyed by the email as
  services.users normalises it, hashed: no email is written to the storage). A log-in
  that succeeds counts against neither, so the next person behind the same address (an
  office's NAT) keeps the whole allowance. While a limit is spent even the right password
  is refused: the refusal must not tell a guesser which guess was right.
- **Password reset requests** (the forgot-password form) count every request, twice: per
  client address (PASSWORD_RESET_RATE_LIMIT) and per email asked about, from any address
  (PASSWORD_RESET_EMAIL_RATE_LIMIT, hashed like the log-in's), whether or not an account
  uses it: a refusal must not tell anyone which emails have accounts, and nobody can fill a
  person's inbox with links.
- **The current password** asked for on the account page (to set a new password or ask
  for a new email): *refused* submissions count per account (LOGIN_ACCOUNT_RATE_LIMIT, one
  allowance for those forms together), as failed log-ins do: someone holding another's open
  session cannot guess their password there faster than at the log-in form.
- **The API** has one allowance per user (API_RATE_LIMIT), whichever of their tokens and
  endpoints a request uses: more tokens buy no more requests.
- **Writing** has one allowance per user for document saves, created or edited
  (SAVE_RATE_LIMIT), and one for autodoc regenerations (REGENERATE_RATE_LIMIT), each
  shared by the pages and the API. A refused save's page shows what was sent (errors.py).
- **Downloads of all one's data** (a sponsor's export, a query over everything they hold)
  have one allowance per user (EXPORT_RATE_LIMIT), shared by the page and the API.

Where the counts live is RATELIMIT_STORAGE_URI. memory:// is this process's own, so the
limits multiply with gunicorn workers and web replicas and start again on a restart:
production refuses it unless RATELIMIT_SINGLE_PROCESS says the deployment is one process
on purpose (config.py). redis:// is shared by every process, under RATELIMIT_STORAGE_PREFIX.

When Redis does not answer (within a second), each process falls back to counting in its
own memory (Flask-Limiter's in-memory fallback), logs "Rate limit storage unreachable"
(logger flask-limiter) and reports srcflask_ratelimit_storage_up 0 on /metrics; it tries
Redis again, with backoff, and returns to it once it answers. Chosen over answering 503,
which would turn a Redis restart into an outage of log-ins and saves, and over letting
everything through: during the outage a guesser still meets the limits, multiplied at
most by the number of processes.

A limit is checked before the request and counted after it: requests arriving at the same
instant may pass a limit by a few, never by more than the number arriving together.
"""
import hashlib
import math
import time

from flask import current_app, g, request
from flask_login import current_user

from .extensions import limiter
from .services.users import email_key

SAVES_REFUSED = ("Too many saves from this account in a short time (pages and API together): "
                 "wait a minute, then send it again.")
REGENERATIONS_REFUSED = ("Too many regenerations from this account in a short time (pages and API together): "
                         "wait a minute, then ask again.")
RESET_REQUESTS_REFUSED = ("Too many password reset requests for this address or this email in a short time: "
                          "wait an hour, then ask again.")
EXPORTS_REFUSED = ("Too many downloads of all your data in a short time (pages and API together): "
                   "wait an hour, then download it again.")
PASSWORD_CHECKS_REFUSED = ("Too many refused attempts to change this account's password or email in a short time: "
                           "wait an hour, then try again.")
WRITE_METHODS = ["POST", "PUT"]


def _setting(name):
    """The limit as configured when the request comes (tests and operators may change it)."""
    return lambda: current_app.config[name]


def account_key(user):
    """The key of everything counted per user."""
    return f"account:{user.id}"


def _login_failed(response):
    """The log-in form answered with itself (200: a wrong email or password, or a form not
    filled in) instead of redirecting a person it logged in."""
    return response.status_code == 200


def _hashed_email_key(prefix):
    """The key counting per email the form carries: normalised as log-in looks it up, hashed
    so that no email is written to the storage."""
    # CSRFProtect has parsed the form before the limiter runs: a body it cannot read never
    # gets here.
    email = email_key(request.form.get("email"))
    return f"{prefix}:" + hashlib.sha256(email.encode()).hexdigest()


def _login_account_key():
    return _hashed_email_key("login-account")


def login_attempts(view):
    """The log-in view's limits: failed attempts per address and per account."""
    per_address = limiter.limit(_setting("LOGIN_RATE_LIMIT"), methods=["POST"], deduct_when=_login_failed)
    per_account = limiter.limit(_setting("LOGIN_ACCOUNT_RATE_LIMIT"), key_func=_login_account_key,
                                methods=["POST"], deduct_when=_login_failed)
    return per_address(per_account(view))


def reset_requests(view):
    """The forgot-password view's limits: every request, per address and per email."""
    per_address = limiter.limit(_setting("PASSWORD_RESET_RATE_LIMIT"), methods=["POST"],
                                error_message=RESET_REQUESTS_REFUSED)
    per_email = limiter.limit(_setting("PASSWORD_RESET_EMAIL_RATE_LIMIT"),
                              key_func=lambda: _hashed_email_key("reset-email"), methods=["POST"],
                              error_message=RESET_REQUESTS_REFUSED)
    return per_address(per_email(view))


def current_password_checks(view):
    """Limit a view that asks the logged-in user for their current password: wrong current
    passwords (the view calls current_password_refused) per account, shared by every such
    view. Other refusals (a weak new password, a taken email) are no guesses and cost nothing."""
    return limiter.shared_limit(_setting("LOGIN_ACCOUNT_RATE_LIMIT"), "current-password",
                                key_func=lambda: account_key(current_user), methods=["POST"],
                                deduct_when=lambda response: g.get("current_password_refused", False),
                                error_message=PASSWORD_CHECKS_REFUSED)(view)


def current_password_refused():
    """Count this request against current_password_checks' allowance."""
    g.current_password_refused = True


def _per_account(setting, scope, message, account, methods=WRITE_METHODS):
    # override_defaults=False: on the API the blueprint's own limit (API_RATE_LIMIT) applies too.
    return limiter.shared_limit(_setting(setting), scope, key_func=lambda: account_key(account()),
                                methods=methods, override_defaults=False, error_message=message)


def saves(account=lambda: current_user):
    """Limit a view that saves a document to SAVE_RATE_LIMIT per user; `account` gives the
    user (the page's logged-in user by default; the API passes its token's owner)."""
    return _per_account("SAVE_RATE_LIMIT", "document-saves", SAVES_REFUSED, account)


def regenerations(account=lambda: current_user):
    """Limit a view that queues a regeneration to REGENERATE_RATE_LIMIT per user."""
    return _per_account("REGENERATE_RATE_LIMIT", "regenerations", REGENERATIONS_REFUSED, account)


def exports(account=lambda: current_user):
    """Limit a view that streams a sponsor's whole data to EXPORT_RATE_LIMIT per user."""
    return _per_account("EXPORT_RATE_LIMIT", "exports", EXPORTS_REFUSED, account, methods=["GET"])


def retry_after():
    """Seconds until the limit this request broke lets it through again (at least 1, at most
    the limit's window): the 429's Retry-After. Flask-Limiter's reset_at rounds the reset up
    by a whole second, which would tell someone who spent a minute's allowance at once to wait
    61 s; the window's start is never in the future, so the wait is never longer than it."""
    current = limiter.current_limit
    return max(1, min(current.limit.get_expiry(), math.ceil(current.reset_at - time.time())))


def storage_up():
    """Whether the counts' storage answers now (memory:// always does)."""
    return limiter.storage.check()
