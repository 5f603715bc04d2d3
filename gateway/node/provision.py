"""``gateway init``: lay out a new node in one folder, ready for ``gateway run``.

::

    DIR/gateway.toml            commented configuration (passes ``gateway config check``)
    DIR/keys/                   signing and encryption keys under a node CA (generate_node)
    DIR/tls/ca.crt, ca.key      the node's TLS CA (EC P-256), unless the agency brings its own
    DIR/tls/server.crt, .key    HTTPS server certificate: the names partners connect to
    DIR/tls/client.crt, .key    client certificate presented to partners (mutual TLS)
    DIR/tls/client-ca.pem       CAs whose client certificates the listener accepts: our own
                                TLS CA (for the local health check) and each partner's
    DIR/tls/partners/           partners' TLS CAs (``gateway partner import``)
    DIR/outbox, inbox, rejected, spool

Every folder is 0700 and every private key 0600: only the service account reads them.
Nothing is ever overwritten: a folder that is not empty is refused.
"""

from __future__ import annotations

import logging
import socket
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from gateway.errors import ConfigError, UsageError
from gateway.node.config import load_config
from gateway.node.keystore import generate_node
from gateway.node.tlsca import TlsCa
from gateway.protocol.party import Party

__all__ = ["NODE_FOLDERS", "InitResult", "init_node", "parse_listen", "render_config"]

log = logging.getLogger("gateway.node.provision")

NODE_FOLDERS = ("keys", "tls", "outbox", "inbox", "rejected", "spool")
TLS_DAYS = 825  # the longest server-certificate lifetime browsers ever accepted


@dataclass
class InitResult:
    root: Path
    config: Path
    party: Party
    endpoint: str | None  # what partners post to (None: the agency's own TLS, not set up)
    written: list[Path] = field(default_factory=list)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) into its parts."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen: expected HOST:PORT (e.g. 0.0.0.0:8443), not {text!r}")
    return host, int(port)


def _public_names(listen_host: str, hostnames: list[str]) -> list[str]:
    """The names partners reach us by, first the one advertised in the bundle."""
    names = [h for h in hostnames if h]
    if not names:
        wildcard = listen_host in ("0.0.0.0", "::", "")  # noqa: S104 - comparing, not binding
        names = [socket.getfqdn() if wildcard else listen_host]
    return list(dict.fromkeys([*names, "localhost", "127.0.0.1"]))


#: Commented examples of optional sections, written into a new gateway.toml only when this
#: version's loader knows the section (:func:`supported_sections`). Uncommented, each must
#: load as it is (tests/cli/test_init_cli.py checks that).
OPTIONAL_EXAMPLES: dict[str, tuple[str, ...]] = {
    "store": (
        "# A PostgreSQL store shared by several gateway processes (default: SQLite above):",
        "[store]",
        'url = "postgresql://cse_gateway@db.agency.example/cse"',
    ),
    "console": (
        "# The operator console in the browser (gateway run serves it when present):",
        "[console]",
        'host = "127.0.0.1"                  # another address needs cert and key',
        "port = 8600",
        'accounts = "console/accounts.db"    # gateway operators add ...',
    ),
    "metrics": (
        "# OpenMetrics for Prometheus at /metrics:",
        "[metrics]",
        "enabled = true",
        'host = "127.0.0.1"',
        "port = 9464",
    ),
    "clocks": (
        "# Deadline clocks (on by default); reminders: draft CSENet M transactions to review:",
        "[clocks]",
        'timezone = "America/Chicago"',
        "[clocks.reminders]",
        'folder = "reminders"',
        'partners = ["*"]',
    ),
    "alerts": (
        "# Alerts by e-mail and/or an HTTPS webhook:",
        "[alerts]",
        'interval = "30s"',
        "[alerts.email]",
        'host = "smtp.agency.example.gov"',
        'from = "cse-gateway@agency.example.gov"',
        'to = ["oncall@agency.example.gov"]',
    ),
}


def supported_sections(candidates: list[str]) -> list[str]:
    """Those of ``candidates`` (top-level tables) that this version's configuration
    loader accepts: it reports an unknown table as the key ``NAME``."""
    with tempfile.TemporaryDirectory(prefix="gateway-init-") as scratch:
        file = Path(scratch) / "gateway.toml"
        file.write_text('[node]\nparty = "fips:0100000"\n'
                        + "".join(f"[{name}]\n" for name in candidates), encoding="utf-8")
        try:
            load_config(file)
        except ConfigError as exc:
            unknown = {p.get("key") for p in exc.details.get("problems", [])
                       if p.get("problem") == "unknown key"}
            return [name for name in candidates if name not in unknown]
    return list(candidates)


def _optional_examples(store: str | None) -> list[str]:
    wanted = [name for name in OPTIONAL_EXAMPLES if not (name == "store" and store)]
    lines: list[str] = []
    for name in supported_sections(wanted):
        first, *rest = OPTIONAL_EXAMPLES[name]
        lines += ["", first, *(f"# {line}" for line in rest)]
    return lines


def _toml(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(party: Party, *, listen: tuple[str, int], agency_tls: bool,
                  store: str | None, now: datetime) -> str:
    """The commented ``gateway.toml`` of a new node (paths relative to its folder)."""
    host, port = listen
    listener = [
        "# Partners POST sealed envelopes to https://NAME:PORT/v1/messages (mutual TLS).",
        "[listeners.https]",
        f"{'host = ' + _toml(host):<35} # address to listen on",
        f"port = {port}",
        f"{'cert = ' + _toml('tls/server.crt'):<35} # our server certificate (names "
        "partners use)",
        'key = "tls/server.key"',
        f"{'client_ca = ' + _toml('tls/client-ca.pem'):<35} # accepted client CAs: ours + "
        "each partner's",
    ]
    if agency_tls:
        listener = [
            "# The agency's own TLS certificates (gateway init --agency-tls): put them in",
            "# tls/ (server.crt, server.key, client.crt, client.key; the CAs whose client",
            "# certificates we accept in client-ca.pem), then remove the '# ' below and run",
            "# `gateway config check`.",
            *(f"# {line}" if not line.startswith("#") else line for line in listener),
        ]
    store_lines = ["[store]", f"url = {_toml(store)}", ""] if store else []
    lines = [
        f"# gateway.toml of {party}, written by `gateway init` on {now:%Y-%m-%d}.",
        "# Every key, its default and an example: docs/configuration.md.",
        "# Relative paths are relative to this file's folder.",
        "# Check:  gateway --config gateway.toml config check",
        "# Run:    gateway --config gateway.toml run",
        "",
        "[node]",
        f"party = {_toml(str(party))}",
        'keys_dir = "keys"                   # own keys, trust store, partners\' certificates',
        '# key_passphrase_env = "GATEWAY_KEY_PASSPHRASE"   # if the private keys are encrypted',
        "",
        "[spool]",
        'database = "spool/gateway.db"       # messages, receipts, audit trail (SQLite)',
        "",
        *store_lines,
        "[[outbox]]                          # the case system drops XML documents here",
        'path = "outbox"',
        "",
        "[inbox]                             # delivered documents, exact bytes",
        'path = "inbox"',
        "",
        "[rejected]                          # refused files, each with NAME.error.json",
        'path = "rejected"',
        "",
        "[intake]",
        'ready = "stable"                    # or "marker": take NAME once NAME.ready exists',
        "",
        *listener,
        "",
        "# Defaults, shown for reference (uncomment to change):",
        "# [retry]",
        '# base = "5s"',
        "# factor = 2",
        '# max_delay = "15m"',
        '# expiry = "3d"                      # then the message is failed (dead letter)',
        '# receipt_timeout = "1h"',
        "#",
        "# [security]",
        '# replay_window = "7d"',
        "# cert_warn_days = 30",
        "#",
        "# [audit]",
        '# checkpoint_interval = "1h"',
        '# keep_events = "2557d"              # seven years',
        *_optional_examples(store),
        "",
        "# Partners and their routes are added by `gateway partner import BUNDLE`.",
        "# By hand, for each partner:",
        "# [[partners]]",
        '# party = "fips:4800000"',
        '# name = "Texas OAG"',
        "# [[partners.transports]]",
        '# url = "https://gw.tx.example:8443/v1/messages"',
        '# client_cert = "tls/client.crt"',
        '# client_key = "tls/client.key"',
        '# ca_file = "tls/partners/fips_4800000.crt"   # their TLS CA, pinned',
        "#",
        "# [[routes]]",
        '# to = "fips:48"                     # every Texas agency goes to Texas',
        '# partner = "fips:4800000"',
    ]
    return "\n".join(lines) + "\n"


def _check_empty(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise UsageError("not a folder", where=str(root))
    if root.is_dir():
        found = sorted(p.name for p in root.iterdir())
        if found:
            what = ("a node is already there" if {"gateway.toml", "keys"} & set(found)
                    else f"it holds {', '.join(found[:5])}")
            raise UsageError(f"refusing to overwrite: the folder is not empty ({what}); "
                             "give a new or empty folder", where=str(root))


def _check_text(text: str) -> None:
    """Load the configuration about to be written (from a scratch folder), so a bad value
    (a --store URL this version does not take) stops init before it writes anything."""
    with tempfile.TemporaryDirectory(prefix="gateway-init-") as scratch:
        file = Path(scratch) / "gateway.toml"
        file.write_text(text, encoding="utf-8")
        try:
            load_config(file)
        except ConfigError as exc:
            raise UsageError(f"the configuration would not load: {exc.message}") from None


def _private_dirs(root: Path) -> None:
    """0700 on the node folder and every folder under it (umask-independent)."""
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        directory.chmod(0o700)


def init_node(root: Path, party: Party, *, now: datetime, listen: tuple[str, int],
              hostnames: list[str] | None = None, agency_tls: bool = False,
              store: str | None = None, rsa_bits: int = 3072) -> InitResult:
    """Lay out a new node under ``root`` (see the module docstring); refuses a folder
    that is not empty."""
    _check_empty(root)
    text = render_config(party, listen=listen, agency_tls=agency_tls, store=store, now=now)
    _check_text(text)
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise UsageError(f"cannot create the node folder ({exc.strerror})",
                         where=str(root)) from None
    result = InitResult(root, root / "gateway.toml", party, None)
    for name in NODE_FOLDERS:
        (root / name).mkdir(mode=0o700)
    (root / "tls" / "partners").mkdir(mode=0o700)
    result.written += generate_node(root / "keys", party, now=now, rsa_bits=rsa_bits)
    if not agency_tls:
        names = _public_names(listen[0], list(hostnames or []))
        tls = TlsCa(root / "tls", now, name=f"{party} TLS CA", organization="CSE Gateway",
                    days=TLS_DAYS, stem="ca", keep_key=True)
        result.written += [tls.cert_file, tls.directory / "ca.key"]
        result.written += tls.issue("server", server=True, hosts=names)
        result.written += tls.issue("client", server=False)
        bundle = root / "tls" / "client-ca.pem"
        bundle.write_bytes(tls.cert_file.read_bytes())
        bundle.chmod(0o644)
        result.written.append(bundle)
        host = names[0]
        shown = f"[{host}]" if ":" in host else host
        result.endpoint = f"https://{shown}:{listen[1]}/v1/messages"
    result.config.write_text(text, encoding="utf-8")
    result.config.chmod(0o600)
    result.written.append(result.config)
    _private_dirs(root)
    log.info("initialised node %s in %s", party, root)
    return result
