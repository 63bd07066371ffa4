"""The app's request class: form bodies are checked before they are parsed."""
from urllib.parse import unquote_to_bytes

from flask import Request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

URLENCODED = "application/x-www-form-urlencoded"


class SiteRequest(Request):
    """Refuses form bodies no browser sends, before anything reads them.

    werkzeug decodes form values leniently (invalid UTF-8 becomes U+FFFD, so a mangled text
    would be saved as if it were what the person wrote) and limits the number of fields of
    multipart bodies only (MAX_FORM_PARTS); a urlencoded body of a megabyte can carry a
    hundred thousand fields, each one parsed and kept. Here a urlencoded body must decode as
    UTF-8 (else 400) and carry at most MAX_FORM_PARTS fields (else 413), like a multipart
    one. The raw body is kept, so werkzeug then parses that same copy."""

    def _load_form_data(self):
        if "form" not in self.__dict__ and self.mimetype == URLENCODED:
            check_urlencoded(self.get_data(cache=True, parse_form_data=False), self.max_form_parts)
        super()._load_form_data()


def check_urlencoded(body, max_fields):
    """Raise 413 for too many fields and 400 for a name or value that is not UTF-8 text."""
    if not body:
        return
    pairs = body.split(b"&")
    if max_fields is not None and len(pairs) > max_fields:
        raise RequestEntityTooLarge(f"A form may have at most {max_fields} fields.")
    for pair in pairs:
        for part in pair.split(b"=", 1):
            try:
                unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest("The form's text is not valid UTF-8.") from None
