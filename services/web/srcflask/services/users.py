"""Accounts: who may sign up with which email and password, who may log in, and the
decisions an admin takes on an account.

Sign-up, `flask create-admin` and the admin pages all come through here, so each rule
(email syntax and uniqueness, password strength, allowed status transitions, never
losing the last approved admin) has exactly one implementation. An admin's decision is
audited and the user is notified of it in the same transaction; log-out and the decisions
that change what an account may do end its sessions (User.end_sessions). Functions here flush,
never commit: the caller (a view or a command) commits once.
"""
import functools
import secrets

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload
from werkzeug.security import check_password_hash, generate_password_hash
from zxcvbn import zxcvbn

from ..extensions import db
from ..models import (
    ROLES,
    SELF_SERVICE_ROLES,
    STATUSES,
    ApiToken,
    Autodoc,
    Document,
    Notification,
    NotificationPreference,
    OutboxMessage,
    Retention,
    User,
)
from ..static.data.processeddata.models import AUTODOC_STATUSES
from . import audit, notifications, outbox

PASSWORD_MIN_LENGTH = 10
PASSWORD_MAX_LENGTH = 128
# zxcvbn scores 0 (too guessable) to 4 (very unguessable); 2 is "somewhat guessable:
# protection from unthrottled online attacks", enough behind our log-in rate limit.
PASSWORD_MIN_SCORE = 2
REASON_MAX_LENGTH = 500
SIGNUP_ROLE_MESSAGE = "Choose sponsor or editor."
NAME_MAX_LENGTH = User.name.type.length
NAME_REQUIRED = "Enter your name."
EMAIL_TAKEN = "An account with this email already exists."

# action -> (the statuses it applies to, the status it leads to)
TRANSITIONS = {
    "approve": (("pending",), "approved"),
    "reject": (("pending",), "rejected"),
    "suspend": (("approved",), "suspended"),
    "reinstate": (("suspended", "rejected"), "approved"),
}
PAST_TENSE = {"approve": "approved", "reject": "rejected", "suspend": "suspended", "reinstate": "reinstated"}
# Decisions that end the account's sessions (User.end_sessions): a rejected or suspended
# account's cookies must not come back to life when it is reinstated, nor outlive the
# decision. Approval keeps them: the pending user waiting on the standing page is told that
# a reload is enough once an admin approves.
ENDS_SESSIONS = ("reject", "suspend", "reinstate")
# An admin may still approve or reinstate others, but never lock themself out.
REFUSED_ON_SELF = ("reject", "suspend")
# What an erased account keeps in place of its personal data (erase). The hash names no
# method werkzeug knows, so no password ever matches it.
ERASED_NAME = "Erased user {id}"
ERASED_EMAIL = "erased-{id}@invalid"
UNUSABLE_PASSWORD_HASH = "!erased"


class AccountError(Exception):
    """A change the account rules refuse; its message is written for the person who asked."""


class InvalidAccount(AccountError):
    """The details of a new account break a rule. `errors` maps the field ("name",
    "email", "password", "role") to the message to show next to it."""

    def __init__(self, errors):
        self.errors = errors
        super().__init__(" ".join(errors.values()))


class DecisionRefused(AccountError):
    """An admin's decision the rules do not allow (on themself, on the last approved
    admin, or not a valid move from the account's current status)."""


def normalize_email(email, *, allow_localhost=False):
    """The address as stored (lower-cased, so uniqueness ignores case), or ValueError
    with a message for a person. `allow_localhost` accepts `name@localhost`, which only
    the machine-local first admin of the quick start uses."""
    email = (email or "").strip()
    local, _, domain = email.rpartition("@")
    if allow_localhost and local and domain.lower() == "localhost":
        # email_validator refuses special-use domains outright; check the local part
        # against a stand-in domain instead.
        return normalize_email(f"{local}@example.org").rpartition("@")[0] + "@localhost"
    try:
        return validate_email(email, check_deliverability=False).normalized.lower()
    except EmailNotValidError as error:
        raise ValueError(f"Enter a valid email address. {error}") from None


def set_new_password(user, password):
    """Give `user` a new password if it passes sign-up's strength rules (the account's own
    name, email and organization count as guessable); InvalidAccount({"password": ...})
    otherwise. The new hash ends the account's sessions (User.password_hash)."""
    problem = password_problem(password, user_inputs=(user.name, user.email, user.organization))
    if problem:
        raise InvalidAccount({"password": problem})
    user.set_password(password)
    db.session.flush()


def password_problem(password, user_inputs=()):
    """Why `password` is refused (too short, too long, too guessable), or None.
    `user_inputs` (name, email...) count as guessable words."""
    if len(password) < PASSWORD_MIN_LENGTH:
        return f"Use at least {PASSWORD_MIN_LENGTH} characters."
    if len(password) > PASSWORD_MAX_LENGTH:
        return f"Use at most {PASSWORD_MAX_LENGTH} characters."
    words = [word for value in user_inputs if value for word in (value, *value.replace("@", " ").split())]
    result = zxcvbn(password, user_inputs=words, max_length=PASSWORD_MAX_LENGTH)
    if result["score"] >= PASSWORD_MIN_SCORE:
        return None
    feedback = result["feedback"]
    advice = [feedback["warning"], *feedback["suggestions"]]
    return " ".join(["This password is too easy to guess.", *(text for text in advice if text)])


def email_taken(email):
    """True when an account already uses `email`, whatever its case."""
    return db.session.scalar(select(exists().where(func.lower(User.email) == email.lower())))


def name_problem(name):
    """Why `name` is refused as an account's name (empty, too long), or None: sign-up's
    rule, which the account page applies to a new name too."""
    if not name.strip():
        return NAME_REQUIRED
    if len(name) > NAME_MAX_LENGTH:
        return f"Use at most {NAME_MAX_LENGTH} characters."
    return None


def check_new_account(*, name, email, password, organization="", allow_localhost=False):
    """The normalized email of a new account, or InvalidAccount listing every problem
    with the name, the email and the password at once."""
    errors = {}
    if name_error := name_problem(name):
        errors["name"] = name_error
    try:
        email = normalize_email(email, allow_localhost=allow_localhost)
    except ValueError as error:
        errors["email"] = str(error)
    else:
        if email_taken(email):
            errors["email"] = EMAIL_TAKEN
    problem = password_problem(password, user_inputs=(name, email, organization))
    if problem:
        errors["password"] = problem
    if errors:
        raise InvalidAccount(errors)
    return email


def register_user(*, name, email, password, role, organization=""):
    """A new self-service account (sponsor or editor), pending an admin's approval."""
    if role not in SELF_SERVICE_ROLES:
        raise InvalidAccount({"role": SIGNUP_ROLE_MESSAGE})
    email = check_new_account(name=name, email=email, password=password, organization=organization)
    return _insert(User(name=name, email=email, role=role, status="pending", organization=organization), password)


def create_admin(*, name, email, password):
    """An approved admin, as `flask create-admin` makes the first one."""
    email = check_new_account(name=name, email=email, password=password, allow_localhost=True)
    return _insert(User(name=name, email=email, role="admin", status="approved", organization=""), password)


def _insert(user, password):
    user.set_password(password)
    try:
        # A savepoint: the unique index on lower(email) settles a race between two
        # sign-ups with the same email, and the caller's transaction stays usable.
        with db.session.begin_nested():
            db.session.add(user)
    except IntegrityError:
        raise InvalidAccount({"email": EMAIL_TAKEN}) from None
    return user


def users_query(*, q="", role="", status=""):
    """Every account, by name, filtered by a search in name, email and organization and by
    role and status, with who decided on each: the admin's user list and the API's."""
    query = select(User).options(joinedload(User.decided_by)).order_by(func.lower(User.name), User.id)
    if q:
        query = query.where(or_(*(column.icontains(q, autoescape=True)
                                  for column in (User.name, User.email, User.organization))))
    if role:
        query = query.where(User.role == role)
    if status:
        query = query.where(User.status == status)
    return query


def approved_admin_exists():
    return db.session.scalar(select(exists().where(User.role == "admin", User.status == "approved")))


def generate_password():
    """A random password for `create-admin --generate-password` (about 190 bits)."""
    return secrets.token_urlsafe(24)


@functools.cache
def _dummy_hash():
    return generate_password_hash(secrets.token_urlsafe(16))


def email_key(email):
    """The email as log-in looks it up (and the log-in limit counts it): without surrounding
    spaces, any case."""
    return (email or "").strip().lower()


def user_with_email(email):
    """The account `email` names as a person types it (any case, spaces around), or None."""
    return db.session.scalar(select(User).where(func.lower(User.email) == email_key(email)))


def authenticate(email, password):
    """The user with this email and password, or None. An unknown email still costs
    one password hash check, so response times do not reveal which emails have accounts."""
    user = user_with_email(email)
    if user is None:
        check_password_hash(_dummy_hash(), password)
        return None
    return user if user.check_password(password) else None


def record_login(user):
    user.last_login_at = func.now()


def record_logout(user):
    """Log-out ends every session of the account, on every device: a copy of the cookie
    taken before it opens nothing afterwards."""
    user.end_sessions()


def get_user_for_update(user_id):
    """The user, locked until commit, so that two admins' decisions on one account are
    taken one after the other; None when there is no such user."""
    return db.session.get(User, user_id, with_for_update=True)


def decide(user, action, *, by, reason=None):
    """Move `user` along one allowed transition ("approve", "reject", "suspend",
    "reinstate"), recording when, by whom and why."""
    allowed_from, status = TRANSITIONS[action]
    _refuse_if_erased(user)
    if user.id == by.id and action in REFUSED_ON_SELF:
        raise DecisionRefused(f"You cannot {action} your own account.")
    if user.status not in allowed_from:
        raise DecisionRefused(
            f"{user.name} is {user.status}: only {' or '.join(allowed_from)} accounts can be {PAST_TENSE[action]}."
        )
    if status != "approved" and _is_last_approved_admin(user):
        raise DecisionRefused(f"{user.name} is the last approved admin and cannot be {PAST_TENSE[action]}.")
    previous = user.status
    user.status = status
    user.decided_at = func.now()
    user.decided_by_id = by.id
    user.decision_reason = (reason or "").strip() or None
    if action in ENDS_SESSIONS:
        user.end_sessions()
    db.session.flush()
    audit.record(by, f"user.{action}", "user", user.id, name=user.name, email=user.email,
                 from_status=previous, status=status, reason=user.decision_reason)
    notifications.account_decided(user, action, user.decision_reason)
    outbox.queue_email(user.email, f"account_{PAST_TENSE[action]}", name=user.name, reason=user.decision_reason,
                       link=outbox.site_link("main.index" if action == "reject" else "auth.login"))


def change_role(user, role, *, by):
    """Give `user` another role. Refused for one's own account, for the last approved
    admin, and while the user still holds documents in the role they would leave."""
    if role not in ROLES:
        raise DecisionRefused("Choose sponsor, editor or admin.")
    _refuse_if_erased(user)
    if user.id == by.id:
        raise DecisionRefused("You cannot change your own role.")
    if user.role == role:
        raise DecisionRefused(f"{user.name} is already {_with_article(role)}.")
    if _is_last_approved_admin(user):
        raise DecisionRefused(f"{user.name} is the last approved admin and must stay an admin.")
    held = _documents_held(user)
    if held:
        raise DecisionRefused(
            f"{user.name} is still the {user.role} of {held} document{'s' if held != 1 else ''}, "
            "so their role cannot change."
        )
    previous = user.role
    user.role = role
    # What the sessions opened under the old role may do is not the new role's business.
    user.end_sessions()
    db.session.flush()
    audit.record(by, "user.change_role", "user", user.id, name=user.name, email=user.email,
                 from_role=previous, role=role)


def erase(user, *, by, reason):
    """Erase `user`'s personal data at their request, as the admin `by`, for `reason`
    (required: the audit log says why an account lost its data).

    The row stays, so everything that refers to it keeps its ids: their documents (with their
    organisation, unless they were archived too), revisions, verdicts and the append-only
    audit log (older rows keep what they recorded; this one records no name or email). The
    name, email and organisation become placeholders, the password an unusable hash, the
    account suspended (no log-in, no editor choice, no reset link that could reach anyone);
    their API tokens, inbox, email choices and waiting emails are deleted. Refused for one's own account,
    the last approved admin, and an account erased already."""
    reason = (reason or "").strip()
    if not reason:
        raise DecisionRefused("Say why the account is erased: a reason is required.")
    if len(reason) > REASON_MAX_LENGTH:
        raise DecisionRefused(f"Use at most {REASON_MAX_LENGTH} characters for the reason.")
    _refuse_if_erased(user)
    if user.id == by.id:
        raise DecisionRefused("You cannot erase your own account.")
    if _is_last_approved_admin(user):
        raise DecisionRefused(f"{user.name} is the last approved admin and cannot be erased.")
    previous_email = user.email
    user.name = ERASED_NAME.format(id=user.id)
    user.email = ERASED_EMAIL.format(id=user.id)
    user.organization = ""
    # Setting the hash ends every session and remember-me cookie (models.User).
    user.password_hash = UNUSABLE_PASSWORD_HASH
    user.status = "suspended"
    user.decided_at = func.now()
    user.decided_by_id = by.id
    user.decision_reason = None
    user.erased_at = func.now()
    db.session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
    db.session.execute(delete(Notification).where(Notification.user_id == user.id))
    db.session.execute(delete(NotificationPreference).where(NotificationPreference.user_id == user.id))
    db.session.execute(delete(OutboxMessage).where(func.lower(OutboxMessage.recipient) == previous_email.lower()))
    db.session.flush()
    audit.record(by, "user.erase", "user", user.id, reason=reason)


def _refuse_if_erased(user):
    if user.erased_at is not None:
        raise DecisionRefused(f"{user.name} was erased: nothing more can be decided on it.")


def _with_article(role):
    return ("an " if role[0] in "aeiou" else "a ") + role


def _is_last_approved_admin(user):
    """True when `user` is an approved admin and no other approved admin exists.

    The other approved admins' rows are locked until commit, so two admins suspending
    or demoting each other at the same moment cannot both succeed: the second waits and
    then sees the first's change (or PostgreSQL aborts it as a deadlock, changing nothing).
    """
    if not (user.role == "admin" and user.status == "approved"):
        return False
    others = select(User.id).where(User.role == "admin", User.status == "approved", User.id != user.id)
    return not db.session.scalars(others.with_for_update()).first()


def _documents_held(user):
    column = {"sponsor": Retention.sponsor_id, "editor": Retention.editor_id}.get(user.role)
    if column is None:
        return 0
    return db.session.scalar(select(func.count()).where(column == user.id))


def overview():
    """The admin dashboard's numbers, in three grouped queries whatever the data size:
    users by (role, status), documents, and autodocs by status."""
    users = {(role, status): 0 for role in ROLES for status in STATUSES}
    rows = db.session.execute(select(User.role, User.status, func.count()).group_by(User.role, User.status))
    users.update({(role, status): count for role, status, count in rows})
    autodocs = dict.fromkeys(AUTODOC_STATUSES, 0)
    autodocs.update(db.session.execute(select(Autodoc.status, func.count()).group_by(Autodoc.status)).all())
    return {
        "users": users,
        "users_by_role": {role: sum(users[role, status] for status in STATUSES) for role in ROLES},
        "users_by_status": {status: sum(users[role, status] for role in ROLES) for status in STATUSES},
        "users_total": sum(users.values()),
        "pending": sum(users[role, "pending"] for role in ROLES),
        "documents": db.session.scalar(select(func.count(Document.id))),
        "autodocs": autodocs,
    }
