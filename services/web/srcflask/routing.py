"""URL converters shared by every blueprint."""
from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter

# Row ids are PostgreSQL `integer` (serial) columns.
MAX_ROW_ID = 2**31 - 1


class RowIdConverter(IntegerConverter):
    """`<id:name>`: a row id in a URL, ASCII digits only (werkzeug's `int` takes any
    Unicode digit, so `/documents/٣` would be document 3).

    A number past the column's range cannot name a row: it is answered 404 right away, like
    any unknown id, instead of failing in the database (a 500). Raising NotFound here, rather
    than letting the rule not match, matters where one path has a rule per method: werkzeug
    would otherwise answer 405 from the rules that did not match for another reason. The
    bounds also show up in the API's OpenAPI spec as minimum/maximum."""

    regex = r"[0-9]+"

    def __init__(self, url_map):
        super().__init__(url_map, min=1, max=MAX_ROW_ID)

    def to_python(self, value):
        if len(value) > len(str(MAX_ROW_ID)) or not self.min <= int(value) <= self.max:
            raise NotFound()
        return int(value)
