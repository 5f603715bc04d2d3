"""The pipeline on the PostgreSQL store next to SQLite, in the same run: real ``gateway
run`` daemons, HTTPS with mutual TLS, a burst of N ~10 KB interstate transactions dropped
into the senders' outbox, until every receipt is back.

- ``sqlite, 1 sender``: the baseline (the store every node had before);
- ``postgresql, 1 sender``: the same node on a PostgreSQL store (a throw-away local
  cluster, as the tests start it);
- ``postgresql, 2 senders``: two nodes of the same party sharing that store and one
  outbox folder.

For each: messages/s sustained (first drop to last receipt), CPU per message of the
sending node(s) and of the PostgreSQL server (user + system from /proc, less what the same
processes spend idle per second, measured just before: the schedulers' polling), and the
ratio to the SQLite baseline. All nodes and the database share this machine's cores, so the
two-sender figure shows what sharing costs, not what a second machine would add.

``python -m bench store`` (``--quick`` for a smaller run); run from the repository root.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from bench import Row, commit_groups

N_FULL, N_QUICK = 1000, 300
IDLE_SECONDS = 3.0
SETTINGS = """
[retry]
base = "500ms"
max_delay = "5s"
expiry = "1h"
[limits]
send_workers = 8
[schedule]
outbox_scan = "100ms"
retry_scan = "200ms"
"""


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _postgres_cpu(data: Path) -> float:
    """CPU seconds of the cluster's postmaster and its children (live ones)."""
    try:
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    total = _cpu_seconds(postmaster)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == postmaster:
                total += _cpu_seconds(int(entry.name))
    # children that exited meanwhile are counted in the postmaster's cutime/cstime
    try:
        fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        pass
    return total


def _run(root: Path, url: str | None, senders: int, n: int, cluster_data: Path | None
         ) -> tuple[float, float, float, float]:
    """(messages/s, sender CPU ms per message, PostgreSQL CPU ms per message, the
    senders' spool transactions per commit (group commit; from the line each spool logs
    when it closes))."""
    from tests.support.gwnodes import PRODUCT_KEYS, wait_until
    from tests.support.hanet import Network, documents

    net = Network(root, root / "keycache", url or "", senders, settings=SETTINGS,
                  keys=PRODUCT_KEYS)
    if url is None:  # the SQLite baseline: the sender keeps its own spool
        for spec in net.senders:
            text = spec.config_path.read_text()
            spec.config_path.write_text(text.split("[store]")[0])
    docs = documents(n)
    try:
        for daemon in net.daemons.values():
            daemon.start()
        pids = [net.daemons[s.name].process.pid for s in net.senders  # type: ignore[union-attr]
                if net.daemons[s.name].process is not None]
        # what the nodes and the database spend idle (schedulers polling), per second, so
        # the figures below are the work of the messages, not the polling of the run
        idle0 = sum(_cpu_seconds(p) for p in pids)
        pg_idle0 = _postgres_cpu(cluster_data) if cluster_data else 0.0
        time.sleep(IDLE_SECONDS)
        cpu0 = sum(_cpu_seconds(p) for p in pids)
        pg0 = _postgres_cpu(cluster_data) if cluster_data else 0.0
        idle, pg_idle = (cpu0 - idle0) / IDLE_SECONDS, (pg0 - pg_idle0) / IDLE_SECONDS
        start = time.time()
        net.drop(docs)
        wait_until(lambda: _done(net, url, n), 900, "every receipt", 0.5)
        span = time.time() - start
        cpu = (sum(_cpu_seconds(p) for p in pids) - cpu0 - idle * span) * 1000 / n
        pg = ((_postgres_cpu(cluster_data) - pg0 - pg_idle * span) * 1000 / n
              if cluster_data else 0.0)
    finally:
        net.stop()
    txns = commits = 0
    for spec in net.senders:
        found = commit_groups(net.daemons[spec.name].log.read_text(errors="replace"))
        if found:
            txns, commits = txns + found[0], commits + found[1]
    return n / span, cpu, pg, (txns / commits if commits else float("nan"))


def _done(net, url: str | None, n: int) -> bool:  # type: ignore[no-untyped-def]
    if url is not None:
        return net.settled(n)
    from gateway.node.config import load_config
    from gateway.store.sqlite import SqliteSpool
    from gateway.store.states import Direction, State

    spool = SqliteSpool(load_config(net.senders[0].config_path).spool.database)
    try:
        return len(spool.select(states=[State.DELIVERED], direction=Direction.OUT,
                                limit=1_000_000)) >= n
    finally:
        spool.close()


def main(quick: bool = False) -> list[Row]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.support.postgres import running_cluster

    n = N_QUICK if quick else N_FULL
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp, \
            running_cluster(durable=True) as cluster:
        base = Path(tmp)
        results = {
            "sqlite, 1 sender": _run(base / "s1", None, 1, n, None),
            "postgresql, 1 sender": _run(base / "p1", cluster.new_schema(), 1, n,
                                         cluster.data),
            "postgresql, 2 senders": _run(base / "p2", cluster.new_schema(), 2, n,
                                          cluster.data),
        }
    rate0, cpu0, _, _ = results["sqlite, 1 sender"]
    for label, (rate, cpu, pg, grouped) in results.items():
        rows += [
            Row("store", f"{label}: sustained", rate, "msg/s",
                f"{rate / rate0:.2f}x sqlite; burst {n}, https"),
            Row("store", f"{label}: sender CPU per message", cpu, "ms",
                f"{cpu / cpu0:.2f}x sqlite; all senders, user + system, less idle"),
            Row("store", f"{label}: spool transactions per commit", grouped, "x",
                "group commit; 1.00 = every transaction committed alone"),
        ]
        if pg:
            rows.append(Row("store", f"{label}: PostgreSQL CPU per message", pg, "ms",
                            "server processes, user + system, less idle"))
    return rows


if __name__ == "__main__":
    from bench import format_rows

    print(format_rows(main(quick="--quick" in sys.argv)))
