"""The operator console: server-rendered pages in the browser over the service layer.

Started by ``gateway console`` or, when ``[console]`` is configured, by ``gateway run``.
The standard library's HTTP server (with :mod:`ssl` for TLS) serves Jinja2 templates;
there is no JavaScript at all. Every page calls :mod:`gateway.service` (the functions the
CLI calls) and shows identifiers, digests, codes and states, never a document's content.

- :mod:`.totp`: RFC 6238 one-time codes.
- :mod:`.accounts`: operator accounts (roles, argon2id passwords, TOTP, lockout).
- :mod:`.sessions`: server-side sessions, timeouts, CSRF tokens, login rate limits.
- :mod:`.pages`: what each page shows and does.
- :mod:`.server`: the HTTP(S) server, routing, security headers, start and stop.
"""
