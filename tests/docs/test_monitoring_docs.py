"""docs/monitoring/ cannot drift from the metrics the collector exposes: every `cse_`
name the README's table, the Prometheus rules and the dashboard use is one the collector
serves, and every metric it serves is in the README's table."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from gateway.node.metrics import CertInfo, StoreCollector
from gateway.store.sqlite import SqliteSpool

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "docs" / "monitoring"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
            "gauge": ("",)}


def served(tmp_path: Path) -> tuple[set[str], set[str]]:
    """(family names, sample names) the collector serves for an empty store."""
    spool = SqliteSpool(tmp_path / "gateway.db")
    try:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StoreCollector(spool, party="fips:0600000", certificates=lambda: [
            CertInfo("sign", "fips:0600000", "ab" * 8, 2e9)]))
        text = generate_latest(registry).decode()
    finally:
        spool.close()
    families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    samples = {name + suffix for name, kind in families.items() for suffix in SUFFIXES[kind]}
    return set(families), samples


def names_in(path: Path) -> set[str]:
    return set(re.findall(r"\bcse_[a-z_]+[a-z]", path.read_text(encoding="utf-8")))


def test_every_metric_named_in_the_monitoring_docs_is_served(tmp_path: Path) -> None:
    families, samples = served(tmp_path)
    assert len(families) >= 14
    for name in ("README.md", "prometheus-rules.yml", "dashboard.md"):
        used = names_in(MONITORING / name) - {"cse_gateway"}  # the job's name
        assert used, name
        unknown = sorted(n for n in used if n not in samples and n not in families)
        assert unknown == [], f"docs/monitoring/{name} names metrics nobody serves"


def test_every_served_metric_is_in_the_readme_table(tmp_path: Path) -> None:
    families, samples = served(tmp_path)
    table = set(re.findall(r"^\| `(cse_[a-z_]+)` \|", (MONITORING / "README.md").read_text(
        encoding="utf-8"), re.M))
    missing = sorted(f for f in families
                     if f not in table and not any(s in table for s in samples
                                                   if s.startswith(f)))
    assert missing == []


def test_the_rules_file_has_the_built_in_rules() -> None:
    text = (MONITORING / "prometheus-rules.yml").read_text(encoding="utf-8")
    for rule in ("message_failed", "breaker_open", "oldest_pending", "certificate_expiry",
                 "audit_verify", "login_failures"):
        assert f"built-in rule: {rule}" in text
    assert all(line == line.rstrip() and "\t" not in line for line in text.splitlines())
