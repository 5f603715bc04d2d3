"""No personal value of the synthetic documents appears in any console page.

Synthetic interstate transactions (names, SSNs, addresses, dates of birth) and an invalid
one go through a real node (intake, validation, sealing, sending to a partner that
refuses: retrying, then failed), then every page the console has, each message's detail,
the CSV export and the audit list are fetched as an operator and searched for every
personal value of those documents."""

from __future__ import annotations

import re
import time
from pathlib import Path

from lxml import etree

from gateway.console import totp
from gateway.console.web import COOKIE, Request
from gateway.demo.samples import interstate_transaction
from gateway.node.config import load_config
from gateway.node.daemon import Gateway
from tests.console.conftest import Setup
from tests.support.privacy import values_in
from transports.memory import MemoryNetwork

PERSONAL = {"SSN", "Last", "First", "Middle", "FamilyName", "GivenName", "Line", "Line1",
            "Line2", "City", "Zip", "ZipCode", "PostalCode", "Email", "Phone", "HomePhone",
            "DateOfBirth", "BirthDate"}


def test_no_personal_value_in_any_page(setup: Setup, repo_root: Path) -> None:
    node_dir = setup.ctx.config.path.parent
    outbox = setup.ctx.config.outboxes[0].path
    outbox.mkdir(parents=True, exist_ok=True)
    documents = [interstate_transaction("0600000", "4800000", seed=s) for s in range(3)]
    documents.append((repo_root / "tests/samples/invalid/"
                      "interstate-transaction.ssn-area-666.xml").read_bytes())
    personal: set[str] = set()
    for i, data in enumerate(documents):
        personal |= values_in(etree.fromstring(data), PERSONAL)
        (outbox / f"case-{i}.xml").write_bytes(data)
        (outbox / f"case-{i}.xml.ready").write_bytes(b"")
    assert len(personal) > 20  # names, SSNs, addresses, dates of birth
    assert any(re.fullmatch(r"987-?65-?432[0-9]", v) for v in personal)
    net = MemoryNetwork()
    net.fail_next("ops-b", 1000)
    gw = Gateway(load_config(node_dir / "gateway.toml"),
                 transport_options={"memory": {"network": net}})
    try:
        gw.scan()
        gw.send_all()
    finally:
        gw.stop()

    # the console's time is the gateway's (real) time: the clocks the requests started
    # are open then, so the Clocks page lists them
    setup.clock.now = time.time()
    app = setup.app()
    name = "olga"
    step = totp.step_of(setup.clock.now)
    resp = app.handle(Request("POST", "/login", form={
        "name": [name], "password": [setup.secrets[name][0]],
        "code": [totp.code_at(setup.secrets[name][1], step)]}))
    assert resp.status == 303
    token = dict(resp.headers)["Set-Cookie"].split(";")[0].split("=", 1)[1]

    def page(path: str) -> str:
        got = app.handle(Request.parse("GET", path, cookie_header=f"{COOKIE}={token}"))
        assert got.status == 200, (path, got.body[:200])
        return got.body.decode()

    paths = ["/", "/messages?per=200", "/messages.csv", "/partners", "/certificates",
             "/audit", "/audit?page=2", "/clocks", "/clocks?all=1"]
    listing = page("/messages?per=200")
    ids = sorted(set(re.findall(r'href="/messages/(\d+)"', listing)), key=int)
    assert len(ids) >= 11  # the fixed ones and the new ones
    paths += [f"/messages/{i}" for i in ids]
    seen = 0
    for path in paths:
        html = page(path)
        leaked = sorted(v for v in personal if v in html)
        assert not leaked, f"{path} shows personal values: {len(leaked)}"
        seen += 1
    assert "rejected" in listing  # the invalid document is listed (its codes, not values)
    assert "ENF-R-" in page("/clocks")  # the requests' clocks are listed (keys and codes)
    assert seen == len(paths)
