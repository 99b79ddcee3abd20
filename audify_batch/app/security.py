"""Who may talk to the review desk: Host header, token, same-origin writes, bounded bodies.

On a loopback address (the default) anyone on this machine may read, so the desk checks what a
web page elsewhere could abuse: the ``Host`` header must name this machine (a DNS-rebound name is
refused) and every write carries the ``X-Audify`` header (which a cross-site form cannot send and a
cross-site script cannot send without a CORS preflight the desk never answers) and, where the
browser says, an ``Origin`` of this same host. On any other address every request needs the
token printed at start: ``?token=`` once (it becomes an HttpOnly, SameSite=Strict cookie) or an
``Authorization: Bearer`` header.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlencode, urlsplit

from fastapi import Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse
from pydantic import BaseModel, ValidationError

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
HOST_HEADER_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
TOKEN_COOKIE = "audify_token"
TOKEN_PARAM = "token"
WRITE_HEADER = "x-audify"
MAX_BODY_BYTES = 16 * 1024
# Pages load only what the desk serves: no CDN, no other site (the run report inlines its script).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
REPORT_SCRIPT_POLICY = "script-src 'self' 'unsafe-inline'"

Handler = Callable[[Request], Awaitable[Response]]
Body = TypeVar("Body", bound=BaseModel)


class BodyTooLargeError(Exception):
    """A request body over the limit (answered 413 before it is parsed)."""


def is_loopback(host: str) -> bool:
    return host.strip("[]").lower() in LOOPBACK_HOSTS


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Guard:
    """The checks for one server: ``token`` None means a loopback bind (Host header checks instead)."""

    token: str | None = None
    host_names: frozenset[str] = field(default_factory=lambda: HOST_HEADER_NAMES)

    @classmethod
    def for_host(cls, host: str, token: str | None = None) -> Guard:
        """Loopback: no token; any other address: ``token`` (a new one when not given)."""
        return cls(None) if is_loopback(host) else cls(token or new_token())

    def host_ok(self, request: Request) -> bool:
        """The Host header names this machine (loopback binds only; a token covers the others)."""
        if self.token is not None:
            return True
        host = request.headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name.lower() in self.host_names

    def token_given(self, request: Request) -> str | None:
        """Which valid token the request carries: 'cookie', 'bearer', 'query', or None."""
        expected = (self.token or "").encode()
        bearer = request.headers.get("authorization", "")
        candidates = {
            "cookie": request.cookies.get(TOKEN_COOKIE, ""),
            "bearer": bearer[7:] if bearer.lower().startswith("bearer ") else "",
            "query": request.query_params.get(TOKEN_PARAM, ""),
        }
        for kind, value in candidates.items():
            if value and secrets.compare_digest(value.encode(), expected):
                return kind
        return None

    def same_origin_write(self, request: Request) -> bool:
        """A write from a page of this desk: the custom header, and a same-host Origin if any."""
        if request.headers.get(WRITE_HEADER) != "1":
            return False
        origin = request.headers.get("origin")
        if origin is None:
            return True
        return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()

    async def check(self, request: Request, call_next: Handler) -> Response:
        """The middleware: refuse what fails a check, else answer with the security headers."""
        if not self.host_ok(request):
            return PlainTextResponse("unknown Host header (the desk answers to localhost only)", 400)
        given = self.token_given(request) if self.token is not None else "none"
        if given is None:
            return PlainTextResponse("a token is needed: open the URL audify serve printed", 401)
        if request.method not in ("GET", "HEAD") and not self.same_origin_write(request):
            return PlainTextResponse("writes come from the desk's own pages (X-Audify header)", 403)
        if given == "query" and request.method == "GET":
            response: Response = RedirectResponse(_without_token(request), status_code=303)
        else:
            response = await call_next(request)
        if given == "query" and self.token is not None:
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
        _add_headers(request, response)
        return response


def _without_token(request: Request) -> str:
    params = [(k, v) for k, v in request.query_params.multi_items() if k != TOKEN_PARAM]
    return request.url.path + (f"?{urlencode(params)}" if params else "")


def _add_headers(request: Request, response: Response) -> None:
    policy = CONTENT_SECURITY_POLICY
    if request.url.path == "/report":
        policy = policy.replace("script-src 'self'", REPORT_SCRIPT_POLICY)
    response.headers.setdefault("Content-Security-Policy", policy)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused (``BodyTooLargeError``) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BodyTooLargeError(f"request body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, kind: type[Body]) -> Body | Response:
    """The request's JSON body as ``kind``, or the error response (413, 422) to answer instead."""
    try:
        body = await read_body(request)
    except BodyTooLargeError as error:
        return JSONResponse({"detail": str(error)}, 413)
    try:
        return kind.model_validate_json(body)
    except ValidationError as error:
        problems = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in error.errors()]
        return JSONResponse({"detail": problems}, 422)
