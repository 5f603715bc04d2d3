"""Open the store a configuration names: SQLite at ``spool.database`` (one node) or the
PostgreSQL database at ``store.url`` (several nodes sharing one queue)."""

from __future__ import annotations

import hashlib
import socket

from gateway.node.config import Config
from gateway.node.nodekeys import NodeKeys
from gateway.store.postgres import PostgresSpool, redact_url
from gateway.store.sealing import Sealer
from gateway.store.sqlite import SqliteSpool

__all__ = ["AnySpool", "node_name", "open_spool", "sealer_for", "store_where"]

AnySpool = SqliteSpool | PostgresSpool


def node_name(config: Config) -> str:
    """This node's name in leases: ``store.node``, else the host name and a digest of the
    configuration file's path (two daemons on one host differ; a restart keeps it)."""
    if config.store.node:
        return config.store.node
    digest = hashlib.sha256(str(config.path.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


def open_spool(config: Config, *, create: bool = True) -> AnySpool:
    """The configured store. ``create``: make (or migrate) the schema when missing; the
    CLI's read-only commands pass False so a typo in the URL is not a new empty store."""
    if config.store.url is None:
        return SqliteSpool(config.spool.database)
    return PostgresSpool(config.store.url, holder=node_name(config), lease=config.store.lease,
                         create=create)


def store_where(config: Config) -> str:
    """Where the store is, for messages (never a password)."""
    if config.store.url is None:
        return str(config.spool.database)
    return redact_url(config.store.url)


def sealer_for(keys: NodeKeys) -> Sealer:
    """Payload sealing to this node's encryption key; the earlier keys kept in
    ``KEYS/decrypt/`` still open what was sealed under them."""
    identity = keys.identity
    return Sealer((identity.encryption_key, identity.encryption_cert), identity.decryption)
