"""Pagination shared by every list: the configured page size and a sane page number."""
from flask import current_app

from ..extensions import db

# Past this, a page number is a typo or a probe; clamping keeps OFFSET a sane number.
MAX_PAGE = 100_000


def paginate(stmt, page, per_page=None, total=None):
    """db.paginate of `stmt` at `page` (clamped to 1..MAX_PAGE; a page past the end is
    empty, never an error), PAGE_SIZE rows unless `per_page` says otherwise. The total is
    counted by a query over `stmt`, unless the caller already knows it (`total`)."""
    per_page = per_page or current_app.config["PAGE_SIZE"]
    page = min(max(page or 1, 1), MAX_PAGE)
    pagination = db.paginate(stmt, page=page, per_page=per_page, max_per_page=per_page, error_out=False,
                             count=total is None)
    if total is not None:
        pagination.total = total
    return pagination
