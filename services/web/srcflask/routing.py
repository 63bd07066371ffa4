"""URL converters shared by every blueprint."""
from werkzeug.routing import IntegerConverter

# Row ids are PostgreSQL `integer` (serial) columns.
MAX_ROW_ID = 2**31 - 1


class RowIdConverter(IntegerConverter):
    """`<id:name>`: a row id in a URL. werkzeug's `int` takes any number of digits, and a
    number past the column's range would reach the database and fail there (a 500); such a
    URL cannot name a row, so it simply does not match (404), like any other unknown id.
    The bounds also show up in the API's OpenAPI spec as minimum/maximum."""

    def __init__(self, url_map):
        super().__init__(url_map, min=1, max=MAX_ROW_ID)
