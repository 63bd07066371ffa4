"""Which requests are the API's: by path, since a URL under the prefix that matches no
route (a 404, a 405) has no blueprint to tell. Imports nothing of the app, so the site's
error and session hooks can ask it without importing the API."""
from flask import request

PREFIX = "/api/v1"


def is_api_request():
    return request.path == PREFIX or request.path.startswith(PREFIX + "/")
