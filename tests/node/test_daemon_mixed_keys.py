"""RSA and EC partners in one deployment, through the real daemon (validation, sealing,
receipts, spool) on the in-memory transport: an RSA node seals to its EC partner with ECDH
and to its RSA partner with RSA-OAEP, and each answers with a signed receipt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.demo.samples import interstate_transaction
from gateway.node.config import load_config
from gateway.node.daemon import Gateway
from gateway.protocol.envelope import parse_envelope
from gateway.store.states import Direction, State
from tests.support.gwnodes import EC_KEYS, TEST_KEYS, NodeSpec, PartnerSpec, write_config
from transports.memory import MemoryNetwork, http_responder

RSA_NODE, EC_NODE, RSA_PARTNER = "fips:0600000", "fips:4800000", "fips:3600000"


@pytest.fixture
def network(tmp_path: Path) -> Iterator[tuple[dict[str, NodeSpec], dict[str, Gateway]]]:
    specs = {
        "a": NodeSpec("a", RSA_NODE, tmp_path / "a", key_profile=TEST_KEYS),
        "b": NodeSpec("b", EC_NODE, tmp_path / "b", key_profile=EC_KEYS),
        "c": NodeSpec("c", RSA_PARTNER, tmp_path / "c", key_profile=TEST_KEYS),
    }
    for name, spec in specs.items():
        spec.partners = [PartnerSpec(other.party, [(f"memory://{key}-https", {})])
                         for key, other in specs.items() if key != name]
    memory = MemoryNetwork()
    nodes: dict[str, Gateway] = {}
    try:
        for name, spec in specs.items():
            config = load_config(write_config(spec, tmp_path / "cache", list(specs.values())))
            gw = Gateway(config, transport_options={"memory": {"network": memory}})
            memory.serve(f"{name}-https", http_responder(gw.handle_https))
            nodes[name] = gw
        yield specs, nodes
    finally:
        for gw in nodes.values():
            gw.stop()


def _drop(spec: NodeSpec, name: str, data: bytes) -> None:
    spec.outbox.mkdir(parents=True, exist_ok=True)
    (spec.outbox / name).write_bytes(data)
    (spec.outbox / f"{name}.ready").write_bytes(b"")


def _recipient_info_kind(gw: Gateway, message_id: int) -> str:
    from asn1crypto import cms as acms

    envelope = gw.spool.payload(message_id, "envelope")
    assert envelope is not None
    [info] = acms.ContentInfo.load(parse_envelope(envelope).payload_der)["content"][
        "recipient_infos"]
    return str(info.name)


def test_rsa_node_with_an_ec_partner_and_an_rsa_partner(
        network: tuple[dict[str, NodeSpec], dict[str, Gateway]]) -> None:
    specs, nodes = network
    to_b = interstate_transaction("0600000", "4800000", seed=1)
    to_c = interstate_transaction("0600000", "3600000", seed=2)
    back = interstate_transaction("4800000", "0600000", seed=3)
    _drop(specs["a"], "to-b.xml", to_b)
    _drop(specs["a"], "to-c.xml", to_c)
    _drop(specs["b"], "back.xml", back)
    assert nodes["a"].scan() == 2
    assert nodes["b"].scan() == 1
    for gw in (nodes["a"], nodes["b"]):
        gw.send_all(timeout=20)
    sent = {m.to_party: m for m in nodes["a"].spool.select(direction=Direction.OUT)}
    assert {p: m.state for p, m in sent.items()} == {EC_NODE: State.DELIVERED,
                                                    RSA_PARTNER: State.DELIVERED}
    assert _recipient_info_kind(nodes["a"], sent[EC_NODE].id) == "kari"
    assert _recipient_info_kind(nodes["a"], sent[RSA_PARTNER].id) == "ktri"
    [from_b] = nodes["b"].spool.select(direction=Direction.OUT)
    assert from_b.state is State.DELIVERED
    assert _recipient_info_kind(nodes["b"], from_b.id) == "ktri"
    assert [p.read_bytes() for p in specs["b"].inbox.iterdir()] == [to_b]
    assert [p.read_bytes() for p in specs["c"].inbox.iterdir()] == [to_c]
    assert [p.read_bytes() for p in specs["a"].inbox.iterdir()] == [back]
