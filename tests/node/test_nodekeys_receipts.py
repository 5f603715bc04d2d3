"""The daemon's receipt check remembers a partner's signer per key snapshot
(``NodeKeys.signers``): a key reload (``gateway run`` on SIGHUP) makes a new snapshot that
remembers nothing, so a registration removed from the key directory takes effect at the
reload, as it did before the signer checks were remembered."""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.errors import SecurityError
from gateway.node.config import load_config
from gateway.node.nodekeys import load_node_keys
from gateway.protocol.envelope import Header
from gateway.protocol.party import Party
from gateway.protocol.receipts import build_receipt
from gateway.store.spool import Message
from gateway.store.states import Direction, State
from tests.support.arrivals import A, B, specs


def test_a_key_reload_forgets_the_receipt_signers(tmp_path: Path, key_cache: Path) -> None:
    a, (b,) = specs(tmp_path, key_cache, "b")
    config_b = load_config(b.config_path)
    keys_a, keys_b = load_node_keys(load_config(a.config_path)), load_node_keys(config_b)
    now = datetime.now(UTC).replace(microsecond=0)
    header = Header.new(from_party=Party.parse(B), to_party=Party.parse(A),
                        service="interstate", action="InterstateTransaction", created=now)
    digest = hashlib.sha256(b"the envelope B sent").hexdigest()
    receipt = build_receipt(for_header=header, envelope_digest=digest, status="Delivered",
                            errors=[], received=now, node=keys_a.identity, now=now)
    message = Message(7, header.message_id, Direction.OUT, State.SENT, None, None, A,
                      "https", B, A, "interstate", "InterstateTransaction", None, None, None,
                      digest, 1, 0.0, 0.0, None, None, None, None)
    assert keys_b.signers.trust is keys_b.trust
    assert keys_b.signers.directory is keys_b.directory
    for _ in range(2):  # the second time from what the first remembered
        assert keys_b.check_receipt(receipt, message=message, now=now).delivered
    assert len(keys_b.signers._passed) == 1
    # A unregistered at B (its CA stays trusted), then the keys reloaded
    shutil.rmtree(config_b.node.keys_dir / "partners" / Party.parse(A).dirname)
    reloaded = load_node_keys(config_b)
    assert reloaded.signers is not keys_b.signers
    with pytest.raises(SecurityError) as got:
        reloaded.check_receipt(receipt, message=message, now=now)
    assert got.value.details["cause"] == "SignerNotRegistered"
