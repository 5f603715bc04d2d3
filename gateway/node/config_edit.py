"""Edit ``gateway.toml`` by program without losing what a person wrote in it.

``gateway partner import`` adds a ``[[partners]]`` table and its ``[[routes]]``. The file
is an operator's document: comments, key order, blank lines and commented-out examples
must survive. tomlkit parses TOML into a document that keeps all of that and writes it
back byte for byte except where it was changed (the standard library's ``tomllib`` only
reads). The result is always loaded again by :func:`~gateway.node.config.load_config`
before it replaces the file, so an edit can never leave a configuration that does not load.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT, Table

from gateway.errors import ConfigError
from gateway.node.config import Config, check_files, load_config

__all__ = ["add_partner", "commit_config", "discard_config", "stage_config"]


def _aot(doc: tomlkit.TOMLDocument, key: str, where: str) -> AoT:
    if key not in doc:
        aot = tomlkit.aot()
        doc.add(tomlkit.nl())
        doc.append(key, aot)
        return aot
    found = doc[key]
    if not isinstance(found, AoT):
        raise ConfigError(f"{key} is not written as [[{key}]] tables; add the partner by "
                          "hand", where=where)
    return found


def _table(values: Mapping[str, Any], comment: str | None = None) -> Table:
    table = tomlkit.table()
    for key, value in values.items():
        table.add(key, value)
    if comment:
        table.comment(comment)
    return table


def add_partner(text: str, partner: Mapping[str, Any],
                transports: Sequence[Mapping[str, Any]],
                routes: Sequence[str], *, where: str, comment: str | None = None) -> str:
    """``text`` with one more ``[[partners]]`` (its ``[[partners.transports]]`` in order)
    and a ``[[routes]]`` table per pattern in ``routes`` pointing to it. Everything else,
    comments included, is kept as it was."""
    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise ConfigError(f"not valid TOML: {exc}", where=where) from None
    table = _table(partner, comment)
    aot = tomlkit.aot()
    for transport in transports:
        aot.append(_table(transport))
    table.append("transports", aot)
    _aot(doc, "partners", where).append(table)
    if routes:
        route_aot = _aot(doc, "routes", where)
        for pattern in routes:
            route_aot.append(_table({"to": pattern, "partner": partner["party"]}))
    return tomlkit.dumps(doc)


def stage_config(path: Path, text: str) -> tuple[Path, Config]:
    """Write ``text`` beside ``path`` (as ``.NAME.new``, with ``path``'s mode) and check it
    as the configuration would be (it loads, and the files it names exist). Returns the
    staged file, to be put in place with :func:`commit_config` or removed with
    :func:`discard_config`; raises :class:`ConfigError` (staging nothing) when it does not
    check."""
    tmp = path.with_name(f".{path.name}.new")
    mode = path.stat().st_mode & 0o777
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            config = load_config(tmp)
            check_files(config)
        except ConfigError as exc:
            raise ConfigError(f"the edited configuration would not check: {exc.message}",
                              where=str(path), details=exc.details) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, config


def commit_config(staged: Path, path: Path) -> None:
    """Put a staged configuration in place (atomic rename, directory synced)."""
    os.replace(staged, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def discard_config(staged: Path) -> None:
    staged.unlink(missing_ok=True)
