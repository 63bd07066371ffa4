"""The app's request class: each request's id, and form bodies checked before they are parsed."""
import re
import uuid
from functools import cached_property
from urllib.parse import unquote_to_bytes

from flask import Request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, MultipartDecoder, NeedData

URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
NOT_UTF8 = "The form's text is not valid UTF-8."
REQUEST_ID_HEADER = "X-Request-ID"
# An id from the proxy is kept only if it is this: long enough not to collide, short and
# plain enough that it cannot bloat or forge a log line (nginx's $request_id is 32 hex
# digits; services/nginx/nginx.conf applies the same rule to a client's id).
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")


class SiteRequest(Request):
    """Refuses form bodies no browser sends, before anything reads them, whatever their
    encoding.

    werkzeug decodes form values leniently (invalid UTF-8 becomes U+FFFD, so a mangled text
    would be saved as if it were what the person wrote) and limits the number of fields of
    multipart bodies only (MAX_FORM_PARTS); a urlencoded body of a megabyte can carry a
    hundred thousand fields, each one parsed and kept. Here every field name and text value
    of a urlencoded or multipart body must be UTF-8 (else 400), and a body may carry at
    most MAX_FORM_PARTS fields (else 413). The raw body (at most MAX_CONTENT_LENGTH) is kept,
    so werkzeug then parses that same copy.

    `id` names the request in every log line it causes, in its X-Request-ID response
    header and on its error page, so a person can quote it and an operator find it."""

    @cached_property
    def id(self):
        """The proxy's X-Request-ID when it is sane (SANE_REQUEST_ID), else a new one (uuid4
        hex): nginx makes one per request, so the same id is in its access log and ours."""
        offered = self.headers.get(REQUEST_ID_HEADER, "")
        return offered if SANE_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex

    def _load_form_data(self):
        if "form" not in self.__dict__:
            if self.mimetype == URLENCODED:
                check_urlencoded(self.get_data(cache=True, parse_form_data=False), self.max_form_parts)
            elif self.mimetype == MULTIPART and self.mimetype_params.get("boundary"):
                check_multipart(self.get_data(cache=True, parse_form_data=False),
                                self.mimetype_params["boundary"].encode("latin-1"), self.max_form_parts)
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
                raise BadRequest(NOT_UTF8) from None


def check_multipart(body, boundary, max_fields):
    """Raise 413 for too many parts and 400 for a part's headers (its name) or a text
    part's value that is not UTF-8, read with werkzeug's own multipart decoder. Uploaded
    files' contents are not text and are not checked. A body the decoder cannot make sense
    of is left to werkzeug's parser, which reads it as an empty form."""
    decoder = MultipartDecoder(boundary, max_parts=max_fields)
    decoder.receive_data(body)
    decoder.receive_data(None)
    text = None  # the value of the text part being read; None in a file part
    try:
        while not isinstance(event := decoder.next_event(), (Epilogue, NeedData)):
            if isinstance(event, Field):  # its headers, the name among them, decoded as UTF-8
                charset = parse_options_header(event.headers.get("content-type"))[1].get("charset", "utf-8")
                if charset.lower() not in ("utf-8", "utf8"):
                    raise BadRequest(NOT_UTF8)
                text = bytearray()
            elif isinstance(event, Data) and text is not None:
                text += event.data
                if not event.more_data:
                    text.decode("utf-8")
            elif not isinstance(event, Data):  # a file part, or the preamble
                text = None
    except UnicodeDecodeError:
        raise BadRequest(NOT_UTF8) from None
    except RequestEntityTooLarge:
        raise RequestEntityTooLarge(f"A form may have at most {max_fields} fields.") from None
    except ValueError:
        return
