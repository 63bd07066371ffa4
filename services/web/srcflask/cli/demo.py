"""`flask seed-demo`: demo sponsors, editors and documents to try the app with.

Documents go through services.documents like any save, so they have revisions and queued
autodocs for the writer. Running it again adds nothing twice: accounts are found by
email and documents by (sponsor, title). Each run sets one fresh random password on all
demo accounts and prints it; there is no default password to leak.
"""
import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from ..extensions import db
from ..models import Document, Retention, User
from ..services.documents import create_document, update_document
from ..services.users import generate_password

DEMO_DOMAIN = "demo.srcflask.test"  # .test is reserved: these addresses can never reach anyone

EDITORS = [
    ("editor1", "Grace Hopper", "Harbour Editorial"),
    ("editor2", "Tim Berners-Lee", "Harbour Editorial"),
    ("editor3", "Karen Spärck Jones", "Northfield Review"),
]

# Per sponsor: (title, first body, revised body or None).
SPONSORS = [
    (
        ("sponsor1", "Ada Lovelace", "Analytical Engines Ltd"),
        [
            (
                "Quarterly report: engine room",
                "The engine ran for 212 hours this quarter.\nTwo gears were replaced.",
                "The engine ran for 212 hours this quarter.\nTwo gears were replaced, and a third "
                "was reground.\n\nNext quarter we plan a longer test.",
            ),
            ("Notes on the punched cards", "Cards wear out at the edges first. We should store them flat.", None),
            ("Meeting minutes, 3 March", "", None),
        ],
    ),
    (
        ("sponsor2", "Alan Turing", "Bletchley Computing"),
        [
            (
                "Proposal: a thinking machine",
                "Can machines think? We propose a simple game to find out.",
                "Can machines think? We propose a simple imitation game to find out, "
                "played by a person, a machine and a judge.",
            ),
            ("Budget for the new valves", "Three hundred valves, of which fifty are spares.", None),
        ],
    ),
    (
        ("sponsor3", "Hedy Lamarr", "Frequency Hopping Inc."),
        [
            ("Field test plan", "Week one: bench tests.\nWeek two: outdoor range.\nWeek three: report.", None),
            (
                "Patent summary",
                "A method of changing frequencies in step between sender and receiver.",
                "A method of changing frequencies in step between sender and receiver, so that a "
                "listener on any one frequency hears only fragments.",
            ),
        ],
    ),
]


def _demo_user(login, name, organization, role, password_hash):
    """The demo account, created or brought back to approved with the new password."""
    email = f"{login}@{DEMO_DOMAIN}"
    user = db.session.scalar(select(User).where(func.lower(User.email) == email))
    if user is None:
        user = User(email=email, name=name, organization=organization, role=role)
        db.session.add(user)
    elif user.role != role:
        raise click.ClickException(f"{email} exists as {user.role}, not {role}; change or remove it first.")
    # A demo account someone suspended would break the demo (and the documents given to it).
    user.status = "approved"
    user.password_hash = password_hash
    db.session.flush()
    return user


@click.command("seed-demo")
@click.option("--in-production", is_flag=True, help="Allow running with SRCFLASK_ENV=production.")
@with_appcontext
def seed_demo(in_production):
    """Create (or refresh) demo sponsors and editors, with documents, revisions and queued autodocs."""
    if current_app.config["SRCFLASK_ENV"] == "production" and not in_production:
        raise click.ClickException("seed-demo adds accounts with a shared password; pass --in-production to really do it.")
    password = generate_password()
    # All demo accounts share this one password, so one scrypt hash (the slow part) serves them all.
    password_hash = generate_password_hash(password)
    editors = [_demo_user(login, name, org, "editor", password_hash) for login, name, org in EDITORS]
    sponsors = []
    created = 0
    for number, ((login, name, org), documents) in enumerate(SPONSORS):
        sponsor = _demo_user(login, name, org, "sponsor", password_hash)
        sponsors.append(sponsor)
        existing = set(db.session.scalars(
            select(Document.title).join(Retention).where(Retention.sponsor_id == sponsor.id)
        ))
        for index, (title, body, revised) in enumerate(documents):
            if title in existing:
                continue
            editor = editors[(number + index) % len(editors)]
            document = create_document(sponsor, editor.id, title, body)
            if revised:
                update_document(document, document.version, title, revised, sponsor)
            created += 1
    db.session.commit()

    click.echo(f"Demo data ready: {created} new document{'s' if created != 1 else ''}.")
    click.echo("Accounts (all approved):")
    for user in sponsors + editors:
        click.echo(f"  {user.role:<8} {user.email:<32} {user.name}")
    click.echo(f"Password for every demo account (new on each run): {password}")
