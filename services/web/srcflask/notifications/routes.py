"""The notification list, marking read (POST), and the counts every page's navigation
shows (the bell's unread count, an editor's reviews waiting)."""
from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from ..extensions import db
from ..services import notifications, reviews
from ..services.pages import paginate
from . import bp


@bp.app_template_global()
def navigation_counts():
    """{"unread": n, "to_review": n or None} for the logged-in, approved user: one query,
    run once per page however many times the layout asks."""
    if "navigation_counts" not in g:
        columns = [notifications.unread_count(current_user).label("unread")]
        if current_user.role == "editor":
            columns.append(reviews.awaiting_review_count(current_user).label("to_review"))
        row = db.session.execute(select(*columns)).one()
        g.navigation_counts = {"unread": row.unread, "to_review": getattr(row, "to_review", None)}
    return g.navigation_counts


bp.add_app_template_filter(notifications.badge, "badge")


@bp.get("/")
def index():
    page = paginate(notifications.inbox_query(current_user), request.args.get("page", 1, type=int))
    items = [(notification, notifications.link(notification)) for notification in page.items]
    return render_template("notifications/index.html", page=page, items=items)


@bp.post("/<id:notification_id>/read")
def mark_read(notification_id):
    if not notifications.mark_read(current_user, notification_id):
        abort(404)
    db.session.commit()
    return redirect(url_for(".index"))


@bp.post("/read-all")
def mark_all_read():
    count = notifications.mark_all_read(current_user)
    db.session.commit()
    flash(f"{count} notification{'s' if count != 1 else ''} marked read." if count else "Nothing was unread.", "info")
    return redirect(url_for(".index"))
