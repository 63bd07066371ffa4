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


def write_autodocs(continuation="written text", model_id=None):
    """Let the writer's queue write every queued autodoc the way the writer does (claim,
    then complete), and return their ids. `continuation` is the text, or a function of
    the job that gives it; `model_id` the registered model recorded as their writer."""
    from srcflask.services import autodoc_queue

    jobs = autodoc_queue.claim_jobs("tests", 1000, 60, 3)
    for job in jobs:
        text = continuation(job) if callable(continuation) else continuation
        autodoc_queue.complete_job(job, job.body, text, {"model": "tiny-gpt2", "settings": {"num_beams": 1}},
                                   model_id=model_id)
    return [job.autodoc_id for job in jobs]


def approve_documents(count, model_id=None):
    """`count` committed documents (one sponsor, one editor) whose written autodocs the
    editor approved: what a training set is made of. Writes every queued autodoc."""
    from srcflask.services import reviews
    from srcflask.static.data.processeddata.models import Autodoc

    sponsor, editor = make_user("sponsor"), make_user("editor")
    for number in range(count):
        make_document(sponsor, editor, title=f"Approved document {number}",
                      body=f"The committee reviewed the budget of project {number} and approved it.")
    for autodoc_id in write_autodocs(lambda job: f" The results of study {job.autodoc_id} support it.", model_id):
        reviews.give_verdict(db.session.get(Autodoc, autodoc_id), editor, "approve", "")
    db.session.commit()


def make_registry(model_dir, admin):
    """A model registry as an admin's work leaves it, registered from the GPT-2 folder
    `model_dir` (tests/tinygpt2.py) by `admin`: v1 (the first, active, then retired by the
    promotion of v2), v2 active, v3 a candidate trained on a training set of four approved
    documents, and a run queued from v2 on that set. The set's file goes to
    TRAINING_DATA_DIR: point it at a temporary folder. Returns the committed rows by name."""
    from srcflask.services import registry, training, trainingsets

    first = registry.register_folder(model_dir, kind="seed", name="tiny", created_by=admin)
    second = registry.register_folder(model_dir, kind="retrained", name="tiny", parent=first, created_by=admin)
    registry.promote(second.id, admin, reason="Set up by the tests.", override=True)
    db.session.commit()
    approve_documents(4, model_id=second.id)
    training_set = trainingsets.build(created_by=admin)
    candidate = registry.register_folder(model_dir, kind="retrained", name="tiny", parent=second, created_by=admin,
                                         training_set=training_set)
    run = training.request_run(second.id, training_set.id, {"epochs": 1}, admin)
    db.session.commit()
    return {"retired": first, "active": second, "candidate": candidate, "training_set": training_set, "run": run}


def make_shadow_pair(autodoc_id, baseline_id, candidate_id, continuation=" The candidate's own words.", **fields):
    """A blind comparison's pair as the writers leave it: the written autodoc `autodoc_id`
    recorded as written by the model `baseline_id`, and a written shadow draft of it by the
    candidate `candidate_id` (`fields`: more ShadowDraft columns, such as an id). Committed;
    returns the draft."""
    from sqlalchemy import func

    from srcflask.models import ShadowDraft
    from srcflask.static.data.processeddata.models import Autodoc

    autodoc = db.session.get(Autodoc, autodoc_id)
    autodoc.model_id = baseline_id
    draft = ShadowDraft(autodoc_id=autodoc_id, model_id=candidate_id, status="done", prompt=autodoc.prompt,
                        continuation=continuation, attempts=1, finished_at=func.now(), **fields)
    db.session.add(draft)
    db.session.commit()
    return draft
