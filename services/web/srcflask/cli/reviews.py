"""`flask reviews recount`: check, and mend, the kept counts of autodocs awaiting review.

Each document keeps how many of its written autodocs wait for a verdict
(Retention.awaiting_review), so that an editor's backlog costs one index read. The services
keep it in the transactions that change it; rows edited by hand in SQL (or restored from an
older backup) are what this command is for.
"""
import click
from flask.cli import AppGroup

from ..extensions import db
from ..services import reviews as review_service

IDS_SHOWN = 20  # documents named in the report; the rest are counted

reviews = AppGroup("reviews", help="Editors' reviews: the kept counts of autodocs awaiting review.")


@reviews.command("recount")
def recount():
    """Recount every document's autodocs awaiting review; say which counts were wrong."""
    mended = review_service.recount_awaiting_reviews()
    db.session.commit()
    if not mended:
        click.echo("Every document's count of autodocs awaiting review was right.")
        return
    shown = ", ".join(str(document_id) for document_id in sorted(mended)[:IDS_SHOWN])
    more = f" and {len(mended) - IDS_SHOWN} more" if len(mended) > IDS_SHOWN else ""
    click.echo(f"Mended the count of {len(mended)} document{'s' if len(mended) != 1 else ''}: {shown}{more}.")
