"""DRF's JSON parser with its error message in the reader's language.

DRF's own parser reports malformed JSON as the untranslated "JSON parse error - ...";
this one says where the error is (line and column) through gettext, so a Chinese
reader's client gets a Chinese detail like every other error.
"""

from __future__ import annotations

import json

from django.utils.translation import gettext as _
from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except ParseError as error:
            cause = error.__context__
            if isinstance(cause, json.JSONDecodeError):
                raise ParseError(
                    _("JSON parse error at line %(line)s, column %(column)s: %(reason)s")
                    % {"line": cause.lineno, "column": cause.colno, "reason": cause.msg}
                ) from cause
            raise ParseError(
                _("JSON parse error: %(reason)s") % {"reason": cause or error.detail}
            ) from cause
