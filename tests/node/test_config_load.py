"""Configuration loading: typed values, defaults, relative paths, every error at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.errors import ConfigError
from gateway.node.config import check_files, load_config, parse_duration
from gateway.node.routing import RouteKind

GOOD = """
[node]
party = "fips:0600000"
keys_dir = "keys"

[spool]
database = "spool/gw.db"

[[outbox]]
path = "out/interstate"
service = "interstate"

[[outbox]]
path = "out/hague"

[inbox]
path = "in"

[intake]
ready = "marker"
poll_interval = "500ms"

[listeners.https]
host = "127.0.0.1"
port = 8443
cert = "tls/server.crt"
key = "tls/server.key"
client_ca = "tls/ca.pem"
as4_path = "/edelivery"
max_batch = 16

[[partners]]
party = "fips:4800000"
name = "Texas"
[[partners.transports]]
url = "https://127.0.0.1:9443/v1/messages"
client_cert = "tls/client.crt"
client_key = "tls/client.key"
ca_file = "tls/ca.pem"
[[partners.transports]]
url = "sftp://gw@127.0.0.1:2222/inbox"
key_file = "ssh/id_ed25519"
known_hosts = "ssh/known_hosts"

[[partners]]
party = "fips:1100000"
name = "federal hub"
[[partners.transports]]
url = "file:///srv/hub"

[[routes]]
to = "fips:48"
partner = "fips:4800000"

[[routes]]
to = "default"
partner = "fips:1100000"

[retry]
base = "2s"
factor = 3
max_delay = "10m"
jitter = 0.1
expiry = "2d"

[limits]
max_message_bytes = 2097152
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_good_config_is_typed_and_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.node.party == "fips:0600000"
    assert config.node.keys_dir == tmp_path / "keys"
    assert config.spool.database == tmp_path / "spool/gw.db"
    assert config.spool.payloads == tmp_path / "spool/payloads"
    assert [o.service for o in config.outboxes] == ["interstate", None]
    assert config.outboxes[0].path == tmp_path / "out/interstate"
    assert config.inbox == tmp_path / "in"
    assert config.rejected == tmp_path / "rejected"
    assert config.intake.ready == "marker"
    assert config.intake.poll_interval == 0.5
    assert config.https is not None
    assert config.https.port == 8443
    assert config.https.max_body == 2 * 2097152
    # the default body limit leaves the listener's other settings alone
    assert (config.https.as4_path, config.https.max_batch) == ("/edelivery", 16)
    texas = config.partner("fips:4800000")
    assert [t.scheme for t in texas.transports] == ["https", "sftp"]
    assert texas.transports[1].known_hosts == tmp_path / "ssh/known_hosts"
    assert texas.transports[0].options()["cert"] == tmp_path / "tls/client.crt"
    assert texas.transports[1].options()["key_file"] == tmp_path / "ssh/id_ed25519"
    assert config.retry.base == 2.0
    assert config.retry.max_delay == 600.0
    assert config.retry.expiry == 2 * 86400
    assert config.retry.factor == 3.0
    assert config.breaker.failure_threshold == 5
    kinds = [r.pattern.kind for r in config.routing.rules]
    assert kinds == sorted(kinds, reverse=True)
    assert RouteKind.DEFAULT in kinds
    assert RouteKind.STATE in kinds


def test_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    with pytest.raises(AttributeError):
        config.node.party = "fips:0100000"  # type: ignore[misc]


def test_every_error_is_reported_with_file_and_key(tmp_path: Path) -> None:
    bad = """
    [node]
    party = "fips:06"
    colour = "blue"

    [[outbox]]
    service = "marine"

    [[partners]]
    party = "fips:4800000"
    [[partners.transports]]
    url = "sftp://gw@127.0.0.1/inbox"

    [[partners]]
    party = "fips:4800000"
    [[partners.transports]]
    url = "gopher://x"

    [[routes]]
    to = "fips:48"
    partner = "fips:4800000"
    [[routes]]
    to = "fips:48"
    partner = "fips:9900000"
    [[routes]]
    to = "fips:4"
    partner = "fips:4800000"

    [retry]
    base = "soon"
    jitter = 1.5
    """
    path = write(tmp_path, bad)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    exc = info.value
    assert exc.where == str(path.absolute())
    keys = {p["key"] for p in exc.details["problems"]}
    assert {
        "node.party", "node.colour", "outbox[0].path", "outbox[0].service",
        "partners[0].transports[0].key_file", "partners[0].transports[0].known_hosts",
        "partners[1].party", "partners[1].transports[0].url", "routes[1].partner",
        "routes[2].to", "retry.base", "retry.jitter",
    } <= keys
    assert str(path.absolute()) in str(exc)


def test_ambiguous_routes_are_a_config_error(tmp_path: Path) -> None:
    text = GOOD + """
[[partners]]
party = "fips:3600000"
[[partners.transports]]
url = "file:///srv/ny"

[[routes]]
to = "fips:48"
partner = "fips:3600000"
"""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    problems = info.value.details["problems"]
    assert any("ambiguous" in p["problem"] and p["key"].startswith("routes[") for p in problems)


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[node\nparty=1"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_path_resolution_env_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, GOOD)
    monkeypatch.setenv("GATEWAY_CONFIG", str(path))
    assert load_config().path == path
    monkeypatch.delenv("GATEWAY_CONFIG")
    monkeypatch.chdir(tmp_path)
    assert load_config().path == path


def test_check_files_names_missing_files(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    with pytest.raises(ConfigError) as info:
        check_files(config)
    keys = {p["key"] for p in info.value.details["problems"]}
    assert "listeners.https.cert" in keys
    assert "partners[0].transports[1].known_hosts" in keys
    assert "node.keys_dir" in keys


def test_durations() -> None:
    assert parse_duration(3) == 3.0
    assert parse_duration("250ms") == 0.25
    assert parse_duration("5m") == 300.0
    assert parse_duration("3d") == 3 * 86400
    for bad in ("x", "-1s", True, -2):
        with pytest.raises(ValueError, match=r"duration|negative"):
            parse_duration(bad)


def test_cli_config_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    minimal = tmp_path / "ok.toml"
    minimal.write_text('[node]\nparty = "fips:0600000"\n', encoding="utf-8")
    (tmp_path / "keys").mkdir()
    assert main(["--config", str(minimal), "config", "check"]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[node]\nparty = "nowhere"\n[spool]\ndatabse = "x"\n', encoding="utf-8")
    assert main(["--config", str(bad), "config", "check"]) == 2
    text = capsys.readouterr().err
    assert "ConfigInvalid" in text
    assert "node.party" in text
    assert "spool.databse" in text
    assert str(bad) in text
