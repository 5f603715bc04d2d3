"""Requests and responses as plain values, so every page can be tested in process
without a socket (:meth:`gateway.console.pages.Console.handle`), and the security
headers every response carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlencode

__all__ = ["COOKIE", "SECURITY_HEADERS", "Request", "Response", "redirect"]

#: The session cookie. ``__Host-``: the browser keeps it only if Secure, set by this host,
#: with Path=/ and no Domain, so no other host or path can plant or read it.
COOKIE = "__Host-gwconsole"

#: No script at all, styles only from our own file, no framing, forms post only here.
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CSP),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),  # "no-referrer" makes Chromium send Origin: null
    ("Cache-Control", "no-store"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)
    form: dict[str, list[str]] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    client: str = "127.0.0.1"
    origin: str | None = None  # the Origin header, when the browser sent one
    host: str | None = None  # the Host header
    certificate_name: str | None = None  # CN of a verified TLS client certificate
    tls: bool = False

    @classmethod
    def parse(cls, method: str, target: str, *, body: bytes = b"", cookie_header: str = "",
              **kw: object) -> Request:
        path, _, qs = target.partition("?")
        cookies: dict[str, str] = {}
        if cookie_header:
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(cookie_header)
            except Exception:
                jar = SimpleCookie()
            cookies = {k: m.value for k, m in jar.items()}
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=200) if body else {}
        return cls(method, path, parse_qs(qs, max_num_fields=200), form, cookies,
                   **kw)  # type: ignore[arg-type]

    def arg(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[0].strip() if values else default

    def args(self, name: str) -> list[str]:
        return [v for v in self.query.get(name, []) if v]

    def field(self, name: str) -> str | None:
        values = self.form.get(name)
        return values[0] if values else None

    def link(self, **changes: str | int | None) -> str:
        """This page's URL with some query parameters changed (None removes one)."""
        params = {k: list(v) for k, v in self.query.items()}
        for k, v in changes.items():
            if v is None:
                params.pop(k, None)
            else:
                params[k] = [str(v)]
        qs = urlencode([(k, x) for k, vs in params.items() for x in vs])
        return self.path + ("?" + qs if qs else "")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    def all_headers(self) -> list[tuple[str, str]]:
        return [("Content-Type", self.content_type), *SECURITY_HEADERS, *self.headers]


def redirect(location: str, *, status: int = 303) -> Response:
    return Response(status, b"", headers=[("Location", location)])
