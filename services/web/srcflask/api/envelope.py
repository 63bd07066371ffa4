"""The envelope every list of the API answers in: the page's items, where it stands, and
links to its neighbours that keep the query's filters (one shape for documents, reviews,
users, models, training sets and runs)."""
from flask import url_for


def page_envelope(pagination, endpoint, **args):
    """A page of a list in the API's envelope, with links that keep the query's filters."""

    def link(number):
        return url_for(endpoint, **{**args, "page": number})

    last = max(pagination.pages, 1)
    return {
        "items": pagination.items,
        "page": pagination.page,
        "per_page": pagination.per_page,
        "pages": pagination.pages,
        "total": pagination.total,
        "links": {
            "self": link(pagination.page),
            "first": link(1),
            "last": link(last),
            "prev": link(pagination.page - 1) if pagination.page > 1 else None,
            "next": link(pagination.page + 1) if pagination.page < last else None,
        },
    }
