"""packaging/Containerfile, read (no container engine here to build it): a non-root user,
the node folder as a volume, and a HEALTHCHECK and entry point the real CLI accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gateway.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
TEXT = (REPO / "packaging" / "Containerfile").read_text()


def instruction(name: str) -> str:
    joined = re.sub(r"\\\n\s*", " ", TEXT)
    found = [line.split(None, 1)[1] for line in joined.splitlines()
             if line.split(None, 1)[:1] == [name]]
    assert len(found) >= 1, name
    return found[-1]


def test_runs_as_a_non_root_user_with_the_node_as_a_volume() -> None:
    assert instruction("USER").split(":")[0] not in ("0", "root")
    assert json.loads(instruction("VOLUME")) == ["/node"]
    assert "GATEWAY_CONFIG=/node/gateway.toml" in instruction("ENV")
    assert instruction("FROM").endswith("-slim")


def test_healthcheck_and_command_are_real_gateway_commands() -> None:
    health = instruction("HEALTHCHECK")
    argv = json.loads(health.split("CMD", 1)[1].strip())
    assert argv[0] == "gateway"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "health"
    assert json.loads(instruction("ENTRYPOINT")) == ["gateway"]
    assert build_parser().parse_args(json.loads(instruction("CMD"))).command == "run"
