"""Default rendering of registry errors: the spec's JSON error document."""

from __future__ import annotations

import json

from flask import Response

from cargohold import hookimpl
from cargohold.errors import error_body


@hookimpl(trylast=True)
def cargohold_error_response(error, request):
    body = b"" if request.method == "HEAD" else json.dumps(error_body([error])).encode()
    resp = Response(body, status=error.status, content_type="application/json")
    if request.method == "HEAD":
        resp.headers["Content-Length"] = str(len(json.dumps(error_body([error]))))
    for name, value in error.headers.items():
        resp.headers[name] = value
    return resp
