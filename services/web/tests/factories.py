"""Factories: rows made the way the app makes them, with sensible defaults."""
import functools
import itertools

from werkzeug.security import generate_password_hash

from srcflask.extensions import db
from srcflask.models import User

DEFAULT_PASSWORD = "correct horse battery staple 42"
_sequence = itertools.count(1)


def make_user(role="sponsor", status="approved", email=None, name=None, password=DEFAULT_PASSWORD,
              organization="Acme Research"):
    """A committed user. Password hashing is the real one (scrypt)."""
    number = next(_sequence)
    user = User(
        name=name or f"{role.title()} {number}",
        email=email or f"{role}{number}@example.org",
        role=role,
        status=status,
        organization=organization,
    )
    # scrypt costs ~50 ms a hash: hash the shared default once per test session.
    user.password_hash = _default_hash() if password == DEFAULT_PASSWORD else generate_password_hash(password)
    db.session.add(user)
    db.session.commit()
    return user


@functools.cache
def _default_hash():
    return generate_password_hash(DEFAULT_PASSWORD)


def make_document(sponsor, editor, title="A document", body="Its body."):
    """A committed document, made the way the app makes one (retention, first revision,
    queued autodoc). `sponsor` and `editor` are users (attached or not)."""
    from srcflask.services.documents import create_document

    document = create_document(sponsor, editor.id, title, body)
    db.session.commit()
    return document


def write_autodocs(continuation="written text"):
    """Let the writer's queue write every queued autodoc the way the writer does (claim,
    then complete), and return their ids. `continuation` is the text, or a function of
    the job that gives it."""
    from srcflask.services import autodoc_queue

    jobs = autodoc_queue.claim_jobs("tests", 1000, 60, 3)
    for job in jobs:
        text = continuation(job) if callable(continuation) else continuation
        autodoc_queue.complete_job(job, job.body, text, {"model": "tiny-gpt2", "settings": {"num_beams": 1}})
    return [job.autodoc_id for job in jobs]
