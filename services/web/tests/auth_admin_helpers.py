"""Helpers for the auth, admin and create-admin tests."""
import html
from contextlib import contextmanager

from sqlalchemy import event, func, select

from srcflask.extensions import db
from srcflask.models import User


def page_text(response):
    """The page's HTML with entities decoded, to look for messages as a person reads them."""
    return html.unescape(response.get_data(as_text=True))


def user_by_email(app, email):
    """The user row as the database has it now (a fresh session), or None."""
    with app.app_context():
        user = db.session.scalar(select(User).where(func.lower(User.email) == email.lower()))
        if user is not None:
            db.session.expunge(user)
        return user


def fresh(app, user_id):
    with app.app_context():
        user = db.session.get(User, user_id)
        db.session.expunge(user)
        return user


def user_count(app):
    with app.app_context():
        return db.session.scalar(select(func.count(User.id)))


@contextmanager
def counted_queries(app):
    """Collect the SQL statements run inside the block (to check lists run a constant number)."""
    statements = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)
