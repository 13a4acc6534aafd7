"""A Flask test client that keeps the launch handle (``ctx``) of its last launch, so tests
about other things can say ``client.get("/report")`` as a browser tab of that launch would.

Tests of the handle itself (one patient per tab, stale handles) pass ``ctx`` explicitly
or use a plain client (``auto_ctx = False``).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from flask.testing import FlaskClient

LAUNCHED_ROUTES = ("/report", "/api/report", "/task", "/source/", "/smart-style.css", "/attest", "/letter")


class LaunchClient(FlaskClient):
    ctx: str | None = None
    auto_ctx = True

    def open(self, *args, **kwargs):  # noqa: A003 - FlaskClient's name
        if args and isinstance(args[0], str) and self.auto_ctx and self.ctx:
            path = args[0]
            query = kwargs.get("query_string")
            named = "ctx=" in path or (isinstance(query, dict) and "ctx" in query)
            if path.startswith(LAUNCHED_ROUTES) and not named:
                if isinstance(query, dict):
                    kwargs["query_string"] = {**query, "ctx": self.ctx}
                else:
                    path += ("&" if "?" in path else "?") + f"ctx={self.ctx}"
                    args = (path, *args[1:])
        resp = super().open(*args, **kwargs)
        handle = handle_of(resp.headers.get("Location", ""))
        if handle:
            self.ctx = handle
        return resp


def handle_of(url: str) -> str | None:
    """The ``ctx`` of a URL (a redirect to the report), if any."""
    values = parse_qs(urlsplit(url).query).get("ctx")
    return values[0] if values else None


def ctx_in(html: bytes | str) -> str | None:
    text = html.decode() if isinstance(html, bytes) else html
    m = re.search(r'name="ctx" value="([^"]+)"', text)
    return m.group(1) if m else None
