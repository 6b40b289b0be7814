"""The app's own response headers: no other site may frame it (clickjacking: a page elsewhere shows the
app in an invisible frame and steers the user's clicks onto Delete or Train)."""
from __future__ import annotations

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response

# Both: CSP frame-ancestors for current browsers, X-Frame-Options for older ones.
HEADERS = {"Content-Security-Policy": "frame-ancestors 'self'", "X-Frame-Options": "SAMEORIGIN",
           "X-Content-Type-Options": "nosniff"}


class NoFraming(BaseHTTPMiddleware):
    """Adds HEADERS to every HTTP response of the app's server (pages, static files, /_stcore/*)."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers.update(HEADERS)
        return response
