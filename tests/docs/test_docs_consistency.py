"""The docs cannot drift from the code unnoticed.

- Every ``gateway ...`` command line shown in a code block of README.md or docs/*.md parses
  with the real parser (``gateway.cli.build_parser()``); optional parts written
  ``[--flag VALUE]`` must parse both left out and given. Commands named inline
  (```gateway audit verify``` in prose) must name real commands and options.
- Every configuration key in docs/configuration.md (its TOML examples and the dotted
  names it mentions) is accepted by the loader (``gateway.node.config.load_config`` reports
  unknown keys), and every key the loader accepts is documented there.
- Every relative link between the docs points at a file that exists.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import build_parser
from gateway.errors import ConfigError
from gateway.node.config import load_config

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CONFIG_DOC = REPO / "docs" / "configuration.md"
FENCE = re.compile(r"^```([A-Za-z0-9_-]*)\s*\n(.*?)^```", re.S | re.M)
PROMPT = re.compile(r"^(?:\$\s+)?(?:\S*/)?(?:\.venv/bin/)?gateway(?=\s)")


# --- command lines -------------------------------------------------------------------------


def code_blocks(text: str) -> Iterator[tuple[str, str, int]]:
    """(info string, body, line number of the body's first line) of each fenced block."""
    for match in FENCE.finditer(text):
        yield match.group(1), match.group(2), text.count("\n", 0, match.start(2)) + 1


def command_lines(path: Path) -> Iterator[tuple[str, str]]:
    """("FILE:LINE", command text after ``gateway``) for each gateway command in a shell
    code block; backslash continuations joined."""
    text = path.read_text(encoding="utf-8")
    for info, body, first in code_blocks(text):
        if info not in ("", "sh", "bash", "shell", "console"):
            continue
        lines = body.splitlines()
        i = 0
        while i < len(lines):
            start = i
            line = lines[i]
            while line.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line.rstrip()[:-1] + " " + lines[i].strip()
            i += 1
            match = PROMPT.match(line.strip())
            if match:
                yield f"{path.relative_to(REPO)}:{first + start}", line.strip()[match.end():]


def variants(command: str) -> list[list[str]]:
    """The argv variants to try, reading usage-synopsis notation: optional ``[...]`` parts
    left out, then given (``[-a X | -b Y]``: each alternative in turn); ``X...`` (may
    repeat) once. Shell operators end the gateway command; ``#`` starts a comment."""
    command = re.sub(r"(?<=\S)\.\.\.(?=\s|$)|(?<=\s)\.\.\.(?=\s|$)", "", command)
    groups = re.findall(r"\[([^\[\]]*)\]", command)
    widest = max([len(g.split(" | ")) for g in groups] or [1])
    choices: list[int | None] = [None, *range(widest)]
    results = []
    for choice in choices:
        def pick(m: re.Match[str], k: int | None = choice) -> str:
            if k is None:
                return ""
            alternatives = m.group(1).split(" | ")
            return alternatives[min(k, len(alternatives) - 1)]

        text = re.sub(r"\[([^\[\]]*)\]", pick, command)
        tokens = shlex.split(text, comments=True)
        for stop in ("|", "||", "&&", ";", "&", ">", "2>"):
            if stop in tokens:
                tokens = tokens[:tokens.index(stop)]
        results.append(tokens)
    return results


PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*")


def _relax(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Let option values written as placeholders (``--since T``, ``--keep-days DAYS``) or
    as alternatives (``--format text|json``, each of which must be a valid choice) pass
    type conversion; literal values are still converted and checked."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _relax(sub)
            continue
        original, choices = action.type, action.choices

        def convert(text: str, original: Any = original, choices: Any = choices) -> Any:
            if PLACEHOLDER.fullmatch(text):
                return text if choices is None else next(iter(choices))
            if "|" in text and choices is not None:
                bad = [a for a in text.split("|") if a not in choices]
                if bad:
                    raise argparse.ArgumentTypeError(f"invalid choice(s) {bad}")
                return text.split("|", maxsplit=1)[0]
            return original(text) if callable(original) else text

        action.type = convert
    return parser


def parse(argv: list[str]) -> str | None:
    """None when ``argv`` parses, else argparse's message."""
    parser = _relax(build_parser())
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code:
            return stderr.getvalue().strip().splitlines()[-1]
    return None


ALL_COMMANDS = [(where, cmd) for doc in DOCS for where, cmd in command_lines(doc)]


def test_the_docs_show_commands() -> None:
    shown = {cmd.split()[0] for _, cmd in ALL_COMMANDS if cmd.split()}
    assert len(ALL_COMMANDS) >= 15
    assert {"demo", "audit", "validate", "keys"} <= shown | {
        a.split()[1] for _, a in ALL_COMMANDS if a.startswith("--config") and len(a.split()) > 2}


@pytest.mark.parametrize(("where", "command"), ALL_COMMANDS,
                         ids=[w for w, _ in ALL_COMMANDS])
def test_every_command_line_in_the_docs_parses(where: str, command: str) -> None:
    for argv in variants(command):
        problem = parse(argv)
        assert problem is None, f"{where}: `gateway {command}`: {problem}"


INLINE = re.compile(r"(?<!`)`(?:\.venv/bin/)?gateway ([^`\n]+)`")


def inline_commands() -> Iterator[tuple[str, str]]:
    for doc in DOCS:
        text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), doc.read_text("utf-8"))
        for match in INLINE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            yield f"{doc.relative_to(REPO)}:{line}", match.group(1)


INLINE_COMMANDS = list(inline_commands())


@pytest.mark.parametrize(("where", "command"), INLINE_COMMANDS,
                         ids=[w for w, _ in INLINE_COMMANDS])
def test_every_command_named_inline_exists(where: str, command: str) -> None:
    """Prose may name a command without its required arguments, nothing else."""
    for argv in variants(command):
        problem = parse(argv)
        if problem is not None and "arguments are required" not in problem:
            pytest.fail(f"{where}: `gateway {command}`: {problem}")


def test_the_parser_check_can_fail() -> None:
    assert parse(["audit", "verfiy"]) is not None
    assert parse(["demo", "--no-such-option"]) is not None
    assert parse(["demo", "--json", "--dir", "x"]) is None
    assert parse(["audit", "list", "--since", "yesterday"]) is not None
    assert parse(["audit", "show", "M", "--format", "text|xml"]) is not None
    assert parse(["audit", "list", "--since", "T", "--format", "text|json"]) is None
    assert variants("keys generate --party P --out D [--csr]  # note") == [
        ["keys", "generate", "--party", "P", "--out", "D"],
        ["keys", "generate", "--party", "P", "--out", "D", "--csr"]]
    assert variants("audit prune [--keep-days N | --before T] [--yes]") == [
        ["audit", "prune"], ["audit", "prune", "--keep-days", "N", "--yes"],
        ["audit", "prune", "--before", "T", "--yes"]]
    assert variants("audit list [--code C]...") == [["audit", "list"],
                                                     ["audit", "list", "--code", "C"]]


# --- configuration keys ----------------------------------------------------------------


def _where(node: ast.expr, assigned: dict[str, list[str]]) -> list[str] | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
    elif isinstance(node, ast.JoinedStr):
        text = "".join(v.value for v in node.values
                       if isinstance(v, ast.Constant) and isinstance(v.value, str))
    elif isinstance(node, ast.Name):
        return assigned.get(node.id)
    elif isinstance(node, ast.Tuple):  # for name in ("inbox", "rejected")
        found = [_where(e, assigned) for e in node.elts]
        return None if any(f is None for f in found) else [w for f in found if f for w in f]
    else:
        return None
    return [re.sub(r"\[[^\]]*\]", "", text)]


def loader_keys() -> set[str]:
    """Dotted keys the loader accepts, read from gateway/node/config.py and the section
    modules beside it (``*_config.py``, e.g. console_config.py): each
    ``r.known(table, where, {keys})`` call, ``where`` resolved from its literal or the
    latest assignment before the call; ``_transport`` serves both transport tables."""
    keys: set[str] = set()
    for file in sorted((REPO / "gateway" / "node").glob("*config.py")):
        keys |= _known_keys(ast.parse(file.read_text(encoding="utf-8")))
    return keys


def _known_keys(tree: ast.Module) -> set[str]:
    sets: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Set):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    sets[target.id] = {ast.literal_eval(e) for e in node.value.elts}
    keys: set[str] = set()
    for func in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
        events = sorted((n for n in ast.walk(func)
                         if isinstance(n, ast.Assign | ast.Call | ast.For)),
                        key=lambda n: (n.lineno, n.col_offset))
        assigned: dict[str, list[str]] = {}
        for node in events:
            pairs: list[tuple[ast.expr, ast.expr]] = []
            if isinstance(node, ast.Assign):
                pairs = [(t, node.value) for t in node.targets]
            elif isinstance(node, ast.For):
                pairs = [(node.target, node.iter)]
            for target, value in pairs:
                if isinstance(target, ast.Name):
                    where = _where(value, {})
                    if where is not None:
                        assigned[target.id] = where
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            if not (isinstance(f, ast.Attribute) and f.attr == "known" and len(node.args) == 3):
                continue
            names_node = node.args[2]
            if isinstance(names_node, ast.Set):
                names = {ast.literal_eval(e) for e in names_node.elts}
            elif isinstance(names_node, ast.Name):
                names = sets[names_node.id]
            else:
                continue
            prefixes = _where(node.args[1], assigned)
            if func.name == "_transport":
                prefixes = ["partners.transports", "partners.pull"]
            assert prefixes is not None, f"config.py:{node.lineno}: cannot resolve `where`"
            for prefix in prefixes:
                keys |= {f"{prefix}.{n}" if prefix else n for n in names}
    return keys


def toml_keys(value: Any, prefix: str = "") -> set[str]:
    found: set[str] = set()
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, dict):
            continue
        for key, sub in item.items():
            path = f"{prefix}.{key}" if prefix else key
            found.add(path)
            if isinstance(sub, dict) or (isinstance(sub, list) and sub
                                         and all(isinstance(s, dict) for s in sub)):
                found |= toml_keys(sub, path)
    return found


def config_doc() -> str:
    assert CONFIG_DOC.exists(), ("docs/configuration.md is missing: the configuration "
                                 "reference (every key, default, example) must exist")
    return CONFIG_DOC.read_text(encoding="utf-8")


def doc_toml_blocks(text: str) -> list[tuple[int, dict[str, Any]]]:
    blocks = []
    for info, body, line in code_blocks(text):
        if info == "toml":
            try:
                blocks.append((line, tomllib.loads(body)))
            except tomllib.TOMLDecodeError as exc:
                pytest.fail(f"docs/configuration.md:{line}: TOML example does not parse: {exc}")
    return blocks


def test_loader_keys_are_read_from_the_code() -> None:
    keys = loader_keys()
    for expected in ("node.party", "spool.database", "outbox.path", "listeners.https.port",
                     "partners.party", "partners.transports.url", "partners.pull.known_hosts",
                     "routes.to", "retry.base", "schedule.outbox_scan", "intake.ready"):
        assert expected in keys
    assert len(keys) >= 50


def unknown_keys(text: str, tmp_path: Path) -> list[str]:
    """Keys a configuration doc shows (TOML examples, dotted names in backticks) that the
    loader does not accept, each with where it is."""
    blocks = doc_toml_blocks(text)
    known = loader_keys()
    found: list[str] = []
    for line, doc in blocks:
        found += [f"line {line}: {k}" for k in sorted(toml_keys(doc)) if k not in known
                  and not any(k2.startswith(k + ".") for k2 in known)]
        # and the real loader agrees (other problems, e.g. missing files, do not matter here)
        file = tmp_path / f"example-{line}.toml"
        file.write_text(tomllib_dump(doc), encoding="utf-8")
        try:
            load_config(file)
        except ConfigError as exc:
            found += [f"line {line}: loader: {p['key']}" for p in
                      exc.details.get("problems", []) if p["problem"] == "unknown key"]
    sections = {k.split(".")[0] for k in known}
    for match in re.finditer(r"`([a-z_]+(?:\.[a-z_]+)+)`", text):
        name = match.group(1)
        if name.split(".")[0] in sections and not name.endswith((".toml", ".md", ".py")) \
                and name not in known and not any(k.startswith(name + ".") for k in known):
            found.append(f"`{name}`")
    return found


def undocumented_keys(text: str) -> list[str]:
    """Keys the loader accepts that a configuration doc neither shows in an example nor
    names (as `section.key`, or `key` in a page that shows `[section]`)."""
    in_examples = set().union(set(), *(toml_keys(doc) for _, doc in doc_toml_blocks(text)))
    missing = []
    for key in sorted(loader_keys()):
        section, _, leaf = key.rpartition(".")
        documented = (key in in_examples or f"`{key}`" in text
                      or (f"`{leaf}`" in text and section and (
                          f"[{section}]" in text or f"[[{section}]]" in text)))
        if not documented:
            missing.append(key)
    return missing


def test_the_key_checks_can_fail(tmp_path: Path) -> None:
    text = ("Keys: `retry.base`, `retry.bogus`.\n\n```toml\n[node]\nparty = \"fips:0600000\"\n"
            "colour = \"red\"\n[[partners]]\nparty = \"iso3166:NL\"\n"
            "[[partners.transports]]\nurl = \"file:///x\"\nproxy = \"y\"\n```\n")
    assert unknown_keys(text, tmp_path) == [
        "line 4: node.colour", "line 4: partners.transports.proxy",
        "line 4: loader: node.colour", "line 4: loader: partners[0].transports[0].proxy",
        "`retry.bogus`"]
    missing = undocumented_keys(text)
    assert "retry.base" not in missing
    assert "node.party" not in missing
    assert "partners.transports.url" not in missing
    assert {"spool.database", "listeners.https.port", "partners.pull.url"} <= set(missing)


def test_every_configuration_example_elsewhere_in_the_docs_is_accepted(tmp_path: Path) -> None:
    sections = {k.split(".")[0] for k in loader_keys()}
    checked = 0
    for doc in DOCS:
        if doc == CONFIG_DOC:
            continue
        for info, body, line in code_blocks(doc.read_text(encoding="utf-8")):
            if info != "toml" or not set(tomllib.loads(body)) <= sections:
                continue
            checked += 1
            block = f"```toml\n{body}```\n"
            assert unknown_keys(block, tmp_path) == [], f"{doc.relative_to(REPO)}:{line}"
    assert checked >= 1  # the README shows a node's configuration


def test_every_key_in_the_configuration_doc_is_accepted(tmp_path: Path) -> None:
    text = config_doc()
    assert doc_toml_blocks(text), "docs/configuration.md has no ```toml example"
    assert unknown_keys(text, tmp_path) == [], "keys docs/configuration.md shows but the " \
        "loader does not accept"


def test_every_accepted_key_is_documented() -> None:
    assert undocumented_keys(config_doc()) == [], (
        "keys the loader accepts but docs/configuration.md does not explain")


def tomllib_dump(doc: dict[str, Any]) -> str:
    """A minimal TOML writer (tables, arrays of tables, scalars, arrays of scalars) for
    re-loading the doc's examples through ``load_config``."""
    lines: list[str] = []

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    def table(d: dict[str, Any], name: str, array: bool) -> None:
        if name:
            lines.append(f"[[{name}]]" if array else f"[{name}]")
        subs = []
        for k, v in d.items():
            if isinstance(v, dict):
                subs.append((k, v, False))
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                subs.extend((k, x, True) for x in v)
            else:
                lines.append(f"{k} = {scalar(v)}")
        for k, v, is_array in subs:
            table(v, f"{name}.{k}" if name else k, is_array)

    table(doc, "", False)
    return "\n".join(lines) + "\n"


# --- links -----------------------------------------------------------------------------------


LINK = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)")


def anchors(doc: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file (code blocks left out)."""
    text = FENCE.sub("", doc.read_text(encoding="utf-8"))
    return {re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", text, re.M)}


def test_relative_links_between_docs_resolve() -> None:
    broken = []
    for doc in DOCS:
        for match in LINK.finditer(doc.read_text(encoding="utf-8")):
            target, anchor = match.group(1), match.group(2)
            if "://" in target or target.startswith("mailto:"):
                continue
            path = (doc.parent / target) if target else doc
            if not path.exists():
                broken.append(f"{doc.relative_to(REPO)} -> {target}")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{doc.relative_to(REPO)} -> {target}#{anchor}")
    assert broken == []


def test_anchor_check_can_fail() -> None:
    assert "a-five-minute-tour" in anchors(REPO / "README.md")
    assert "registering-a-schema-set-operators" in anchors(REPO / "docs" / "schemas.md")
    assert "no-such-heading" not in anchors(REPO / "README.md")


def subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
                ) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((*prefix, name))
                found += subcommands(sub, (*prefix, name))
    return found


def leading_words(argv: list[str]) -> list[str]:
    """The command words of an argv: global options (``--config FILE``, ``-v``) skipped,
    up to the first option or argument of the command."""
    while argv and argv[0].startswith("-"):
        argv = argv[2:] if argv[0] == "--config" else argv[1:]
    words = []
    for token in argv:
        if token.startswith("-"):
            break
        words.append(token)
    return words


def test_every_command_is_shown_somewhere_in_the_docs() -> None:
    """The other direction: no command exists that no page shows being used."""
    shown = [leading_words(variants(cmd)[-1]) for _, cmd in ALL_COMMANDS + INLINE_COMMANDS]
    commands = subcommands(build_parser())
    assert ("audit", "prune") in commands
    assert leading_words(["--config", "g.toml", "-v", "route", "explain", "f.xml"])[:2] == [
        "route", "explain"]
    missing = [" ".join(c) for c in commands
               if not any(tuple(argv[:len(c)]) == c for argv in shown)]
    assert missing == [], "commands no page of the docs shows"


def test_protocol_doc_says_what_unreadable_input_gets() -> None:
    """docs/protocol.md used to imply that every envelope, readable or not, gets a signed
    Rejected receipt; the code answers unreadable input with a bare 400 (see
    tests/node/test_daemon_pipeline.py::test_unreadable_input_gets_a_bare_400_and_is_recorded)."""
    text = " ".join((REPO / "docs" / "protocol.md").read_text(encoding="utf-8").split())
    assert "Input that is not a readable envelope gets no receipt." in text
    assert "bare `400` (`413` when too large) and an empty body" in text
    assert "absent** when the envelope's header could not be read" not in text
