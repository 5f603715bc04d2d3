"""The demo's pieces without running daemons: its documents, and the network it writes
(keys, registrations, configurations that load, routes that go where the README says)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.demo.network import CA, HUB, NL, TX, DemoNetwork
from gateway.demo.tour import default_directory, plan
from gateway.documents.describe import describe
from gateway.documents.validate import validate_bytes
from gateway.documents.xmlsafe import parse_xml
from gateway.errors import UsageError
from gateway.node.config import check_files, load_config
from gateway.node.keystore import Keystore
from gateway.node.routing import decide
from gateway.protocol.party import Party

PARTIES = {"ca": CA, "hub": HUB, "tx": TX, "nl": NL}


def test_valid_documents_validate_and_are_addressed_as_planned() -> None:
    planned = plan()
    assert [p.valid for p in planned].count(False) == 1
    for p in planned:
        report = validate_bytes(p.data, source=p.file)
        if not p.valid:
            continue
        assert report.valid, (p.file, report.issues)
        info = describe(parse_xml(p.data))
        assert (info.sender, info.destination) == (PARTIES[p.sender], PARTIES[p.recipient])
    # answers are dropped only after what they answer has arrived
    keys = [p.key for p in planned]
    for p in planned:
        if p.after is not None:
            assert keys.index(p.after) < keys.index(p.key)


def test_the_invalid_document_fails_for_exactly_its_two_planted_errors() -> None:
    [bad] = [p for p in plan() if not p.valid]
    report = validate_bytes(bad.data, source=bad.file)
    assert not report.valid
    assert sorted(i.code for i in report.issues) == ["Rule.FunctionActionReason", "SchemaPattern"]
    assert any(i.path.endswith("/SSN") for i in report.issues)


def test_documents_are_synthetic() -> None:
    for p in plan():
        for ssn in re.findall(rb"<SSN>([0-9]{9})</SSN>", p.data):
            assert ssn.startswith(b"98765432") or (not p.valid and ssn.startswith(b"666"))


def test_default_directory_is_new_and_git_ignored() -> None:
    path = default_directory()
    assert path.parent == Path.cwd()
    assert re.fullmatch(r"demo-[0-9]{8}-[0-9]{6}", path.name)
    ignore = (Path(__file__).resolve().parents[2] / ".gitignore").read_text()
    assert "demo-*/" in ignore.splitlines()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> DemoNetwork:
    messages: list[str] = []
    net = DemoNetwork(tmp_path_factory.mktemp("demo") / "net", progress=messages.append,
                      use_sshd=False)
    net.build()
    net.stop()  # nothing started: a no-op, and must stay safe to call
    assert any("FELL BACK" in m for m in messages)
    return net


def test_fallback_is_said_and_recorded(built: DemoNetwork) -> None:
    assert built.fallback is not None
    assert "file://" in built.fallback
    assert {(k.src, k.dst, k.kind) for k in built.links if k.kind != "https"} == {
        (HUB, TX, "file"), (TX, HUB, "file")}


def test_every_configuration_loads_and_names_existing_files(built: DemoNetwork) -> None:
    for node in built.nodes.values():
        config = load_config(node.config_path)
        check_files(config)
        assert config.node.party == node.party
        assert (config.https is not None) == (node.name in ("ca", "hub", "nl"))


def test_routes_go_where_the_readme_says(built: DemoNetwork) -> None:
    tables = {name: load_config(n.config_path).routing for name, n in built.nodes.items()}
    assert decide(tables["ca"], TX).partner == HUB  # states reach each other via the hub
    assert decide(tables["tx"], CA).partner == HUB
    assert decide(tables["ca"], NL).partner == NL  # the Central Authority directly
    assert decide(tables["hub"], TX).partner == TX
    assert decide(tables["hub"], CA).partner == CA
    assert decide(tables["nl"], CA).partner == CA


def test_each_node_registers_exactly_whom_it_must_read(built: DemoNetwork) -> None:
    registered = {name: {str(p) for p in Keystore(n.keys).partners()}
                  for name, n in built.nodes.items()}
    assert registered == {"ca": {TX, NL}, "hub": set(), "tx": {CA}, "nl": {CA}}
    for node in built.nodes.values():
        assert Keystore(node.keys).identity(Party.parse(node.party)).party == Party.parse(
            node.party)
        assert Keystore(node.keys).insecure_key_files() == []


def test_refuses_a_folder_that_is_not_empty(built: DemoNetwork) -> None:
    with pytest.raises(UsageError, match="not empty"):
        DemoNetwork(built.dir).build()


def test_the_answers_answer_their_requests_for_the_deadline_clocks() -> None:
    """The demo's answers repeat the references of what they answer, so `gateway clocks
    --all` (README tour) shows them answered at California."""
    from datetime import UTC, datetime, timedelta

    from gateway.documents.deadlines import (
        compute,
        facts_from_tree,
        observation_from_detail,
        observe,
        shipped_rules,
    )

    t0 = datetime(2026, 11, 20, 12, tzinfo=UTC)
    observations = []
    for i, p in enumerate(q for q in plan() if q.valid):
        facts = facts_from_tree(parse_xml(p.data))
        assert facts is not None
        outbound = p.sender == "ca"
        partner = PARTIES[p.recipient if outbound else p.sender]
        for code, detail in observe(facts, shipped_rules(), outbound=outbound):
            obs = observation_from_detail(
                code, t0 + timedelta(minutes=i), detail, message_id=p.key,
                from_party=CA if outbound else partner, to_party=partner if outbound else CA)
            assert obs is not None
            observations.append(obs)
    result = compute(observations, shipped_rules(), now=t0 + timedelta(days=1), tz=UTC)
    status = {c.rule.name: c.status(t0 + timedelta(days=1)) for c in result.clocks}
    assert status == {"cfr-303.7b4-status-csi": "answered",
                      "hague-12.3-acknowledge": "answered", "hague-12.3-status": "open"}
