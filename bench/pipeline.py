"""End-to-end pipeline throughput and latency: two real ``gateway run`` daemons (node A and
node B) on this machine, A's outbox to B's inbox, until every receipt is back at A.

- burst: N (default 2,000) realistic ~10 KB interstate transactions dropped at once;
  messages/s sustained (first drop to last receipt) and p50/p99 drop-to-receipt latency,
  over HTTPS (mutual TLS) and over SFTP (OpenSSH sshd, receipts back by SFTP);
- CPU: each daemon's user + system CPU time per message (from /proc), and the ceiling it
  implies on this machine (cores x 1 s / CPU per message of both nodes together): unlike
  msg/s it hardly moves when other work shares the machine;
- keys: the product default (``gateway keys generate``: RSA-3072 for both keys), once
  with ECDSA P-256 signing keys (``--sign-algorithm ecdsa-p256``), and once with every
  key on P-256 (``--curve p256``: ECDSA signatures, ECDH key agreement), which saves all
  four RSA private-key operations per message;
- send lanes: A keeps ``limits.send_workers`` sends to B in flight (8, the product's
  default); the P-256 and RSA-3072 bursts run once more with 32;
- batches: the P-256 and RSA-3072 HTTPS bursts and paced runs once more with both nodes'
  partner transports set to ``batch = 16`` (up to 16 envelopes per request), and the
  ratios batched / one per request from the same run;
- repeats: the four headline bursts (HTTPS, RSA-3072 and P-256, one envelope per request
  and batches of 16, 8 lanes) run three times,
  interleaved with the other cases, and their rows come from the run with the median CPU
  per message (every run's figure is in the note);
- paced: 100 messages/s offered over HTTPS for a while, RSA-3072 and P-256: p50/p99;
- the limit: seal + open per second in one process with the same keys and documents, and
  the ratio pipeline msg/s / (2 x that rate): how much of two cores' pure seal+open
  capacity the two daemons reach; and the same loop's CPU per message when the process
  sleeps 10 ms after each message (as the daemons' processes wait between messages),
  against the loop without sleeping;
- ratios P-256 / RSA-3072 for msg/s and CPU per message, from the same run.

``python -m bench pipeline`` (``--quick`` for a smaller run). Uses the test helpers in
``tests/support`` (key directories, TLS PKI, sshd), so run it from the repository root.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import Row, commit_groups

N_FULL, N_QUICK = 2000, 300
PACED_RATE = 100.0
PACED_SECONDS_FULL, PACED_SECONDS_QUICK = 15.0, 5.0
#: runs of the two headline HTTPS bursts (RSA-3072, P-256) in a full run
REPEATS = 3
#: the idle time after each message in the "seal+open with idle" yardstick (s)
IDLE_GAP = 0.010
#: concurrent sends per partner (the product's default); the "32 lanes" case raises it
SEND_WORKERS = 8
#: envelopes per HTTPS request in the "batches" cases (the partner transports' ``batch``)
BATCH = 16
SETTINGS = """
[retry]
base = "500ms"
max_delay = "5s"
expiry = "1h"
[limits]
send_workers = 8
""" + "".join(f"{key} = {int(os.environ[var])}\n" for key, var in (
    ("intake_workers", "BENCH_INTAKE_WORKERS"), ("receive_workers", "BENCH_RECEIVE_WORKERS"))
    if os.environ.get(var)) + """[schedule]
outbox_scan = "100ms"
retry_scan = "200ms"
sftp_pull = "100ms"
"""


def _document(i: int) -> bytes:
    from gateway.demo.samples import interstate_transaction

    return interstate_transaction("0600000", "4800000", participants=8, orders=5,
                                  collections=5, information_lines=5, seed=i)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _delivered(spec) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """source file name -> epoch time its receipt was stored (delivered)."""
    from gateway.node.config import load_config
    from gateway.store.sqlite import SqliteSpool
    from gateway.store.states import Direction, State

    spool = SqliteSpool(load_config(spec.config_path).spool.database)
    try:
        return {m.source or "": m.updated_at
                for m in spool.select(states=[State.DELIVERED], direction=Direction.OUT,
                                      limit=1_000_000)}
    finally:
        spool.close()


def _settings(send_workers: int) -> str:
    return SETTINGS.replace(f"send_workers = {SEND_WORKERS}\n",
                            f"send_workers = {send_workers}\n")


def _nodes(root: Path, transport: str, keys, extra=lambda name: "",  # type: ignore[no-untyped-def]
           send_workers: int = SEND_WORKERS, *, batch: int = 1):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.support.gwnodes import (
        NodeSpec,
        PartnerSpec,
        free_port,
        https_node,
        https_to,
        write_config,
    )
    from tests.support.pki import TestPki

    settings = _settings(send_workers)
    a = NodeSpec("a", "fips:0600000", root / "a", extra=settings + extra("a"))
    b = NodeSpec("b", "fips:4800000", root / "b", extra=settings + extra("b"))
    server = None
    if transport == "https":
        pki = TestPki(root / "pki")
        ports = {"a": free_port(), "b": free_port()}
        a = https_node("a", a.party, root, pki, ports["a"], extra=settings + extra("a"))
        b = https_node("b", b.party, root, pki, ports["b"], extra=settings + extra("b"))
        sizes = {"batch": batch} if batch > 1 else {}
        a_url, a_opts = https_to(pki, "a", ports["b"])
        b_url, b_opts = https_to(pki, "b", ports["a"])
        a.partners = [PartnerSpec(b.party, [(a_url, {**a_opts, **sizes})])]
        b.partners = [PartnerSpec(a.party, [(b_url, {**b_opts, **sizes})])]
    else:
        from tests.support.sshd import SshServer

        sroot = root / "sftp"
        a_in, b_in = sroot / "a-in", sroot / "b-in"
        for d in (a_in, b_in):
            d.mkdir(parents=True)
        server = SshServer(sroot, root / "sshd").start()
        opts = {"key_file": str(server.client_key), "known_hosts": str(server.known_hosts)}
        a.inbound_folders, b.inbound_folders = [a_in], [b_in]
        a.partners = [PartnerSpec(b.party, [(server.url(b_in), opts)])]
        b.partners = [PartnerSpec(a.party, [(server.url(a_in), opts)])]
    try:
        for spec in (a, b):
            write_config(spec, root / "keycache", [a, b], keys=keys)
    except BaseException:
        if server is not None:  # never leave an sshd behind
            server.stop()
        raise
    return a, b, server


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state is [0], ppid [1])."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and everything it started, so far: its
    own, its waited-for children's (cutime, cstime) and that of every live descendant
    (the intake worker processes: they live as long as the daemon, so cutime never sees
    them)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue  # ended meanwhile
    ticks, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = _stat(current)
        except OSError:
            continue
        ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
        todo.extend(parents.get(current, ()))
    return ticks / os.sysconf("SC_CLK_TCK")


def _workers_ready(daemon) -> bool:  # type: ignore[no-untyped-def]
    """Whether the daemon's intake and receive workers have started (their start-up is a
    one-time cost, not counted per message), or it has none."""
    from gateway.node.config import load_config

    limits = load_config(daemon.spec.config_path).limits
    text = daemon.log.read_text(errors="replace")
    return all(count <= 0 or f"{kind} workers ready" in text for kind, count in (
        ("intake", limits.intake_workers), ("receive", limits.receive_workers)))


def _run(transport: str, n: int, rate: float | None, seconds: float | None, keys, *,
         extra=lambda name: "", during=None, groups: dict[str, float] | None = None,
         send_workers: int = SEND_WORKERS, batch: int = 1,
         ) -> tuple[float, list[float], int, tuple[float, float]]:  # type: ignore[no-untyped-def]
    """Returns (messages/s, latencies, delivered count, (A, B) CPU ms per message).
    ``send_workers``: A's concurrent sends to B (``limits.send_workers``); ``batch``: the
    most envelopes per HTTPS request (the partner transports' ``batch``);
    ``extra(node name)``: more configuration for that node; ``during(stop)``: run in a
    thread while the messages flow (e.g. a scraper) until the event ``stop`` is set;
    ``groups``: filled with each node's spool transactions per commit (group commit, from
    the line its spool logs when it closes)."""
    import threading

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.support.gwnodes import Daemon, wait_until

    # Start from written-back metadata. On ext4 without a journal (this bench's usual
    # host), creating a file skips every inode freed less than 5 s ago, or 305 s while
    # its inode table block is still dirty: after the previous run's clean-up (thousands
    # of deleted files) each file B delivered cost about 0.25 ms more of kernel CPU
    # (docs/benchmarks.md, "The previous run's deleted files"). The deletions of this
    # run's own (A's outbox files) still count, as they would in service.
    os.sync()
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        a, b, server = _nodes(Path(tmp), transport, keys, extra, send_workers, batch=batch)
        daemons: list[Daemon] = []
        stop = threading.Event()
        helper = None
        try:
            for spec in (a, b):
                daemon = Daemon(spec)
                daemons.append(daemon)
                daemon.start()
            for daemon in daemons:
                wait_until(lambda d=daemon: _workers_ready(d), 60, "the worker processes")
            a.outbox.mkdir(parents=True, exist_ok=True)
            count = n if rate is None else int(rate * (seconds or 0))
            docs = [_document(i % 50) for i in range(50)]
            dropped: dict[str, float] = {}
            pids = [d.process.pid for d in daemons if d.process is not None]
            cpu_before = [_cpu_seconds(pid) for pid in pids]
            if during is not None:
                helper = threading.Thread(target=during, args=(stop,), daemon=True)
                helper.start()
            start = time.time()
            for i in range(count):
                if rate is not None:
                    delay = start + i / rate - time.time()
                    if delay > 0:
                        time.sleep(delay)
                name = f"b{i:06}.xml"
                (a.outbox / name).write_bytes(docs[i % len(docs)])
                (a.outbox / f"{name}.ready").write_bytes(b"")
                dropped[name] = time.time()
            wait_until(lambda: len(_delivered(a)) >= count, 600, "every receipt", 0.5)
            cpu = [(_cpu_seconds(pid) - before) * 1000 / count
                   for pid, before in zip(pids, cpu_before, strict=True)]
            done = _delivered(a)
        finally:
            stop.set()
            if helper is not None:
                helper.join(10)
            for d in daemons:
                d.terminate()
                found = commit_groups(d.log.read_text(errors="replace"))
                if groups is not None and found:
                    groups[d.spec.name] = found[0] / found[1]
            if server is not None:
                server.stop()
    latencies = [done[name] - t for name, t in dropped.items() if name in done]
    span = max(done.values()) - min(dropped.values())
    return count / span, latencies, len(done), (cpu[0], cpu[1])


def nodes_file_system(folder: str | None = None) -> str:
    """What the nodes' folders (under ``folder``, by default the temporary directory that
    ``TMPDIR`` chooses) are on: the file system's type and, for ext4, whether it has a
    journal. Without one, ext4 looks through the inodes freed in the last half minute every
    time it creates a file, which costs the receiving node about 0.5 ms per message here
    (docs/benchmarks.md, "Where issue 18 stands, 2026-12-06")."""
    path = os.path.realpath(folder or tempfile.gettempdir())
    point, kind, device = "", "", ""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                where = fields[1].replace("\\040", " ")
                inside = path == where or path.startswith(where.rstrip("/") + "/")
                if inside and len(where) >= len(point):
                    point, kind, device = where, fields[2], fields[0]
    except OSError:
        return "an unknown file system"
    if kind != "ext4":
        return kind or "an unknown file system"
    name = os.path.basename(os.path.realpath(device))
    journal = os.path.isdir(f"/proc/fs/jbd2/{name}-8")
    return f"ext4 {'with' if journal else 'without'} a journal"


def _burst_rows(label: str, n: int, result: tuple[float, list[float], int,  # type: ignore[no-untyped-def]
                                                  tuple[float, float]], keys,
                groups: dict[str, float] | None = None) -> list[Row]:
    rate, lat, done, (cpu_a, cpu_b) = result
    cores = os.cpu_count() or 1
    where = f"user + system; folders on {nodes_file_system()}"
    grouped = [Row("pipeline", f"{label} burst {n}: spool transactions per commit, node {k}",
                   v, "x", "group commit; 1.00 = every transaction committed alone")
               for k, v in sorted((groups or {}).items())]
    return [
        *grouped,
        Row("pipeline", f"{label} burst {n}: sustained", rate, "msg/s",
            f"{done}/{n} receipts; {keys.label}"),
        Row("pipeline", f"{label} burst {n}: p50 drop-to-receipt", statistics.median(lat), "s"),
        Row("pipeline", f"{label} burst {n}: p99 drop-to-receipt", _percentile(lat, 0.99), "s"),
        Row("pipeline", f"{label} burst {n}: CPU per message, node A", cpu_a, "ms", where),
        Row("pipeline", f"{label} burst {n}: CPU per message, node B", cpu_b, "ms", where),
        Row("pipeline", f"{label} burst {n}: CPU ceiling ({cores} cores)",
            cores * 1000 / (cpu_a + cpu_b), "msg/s", "cores x 1 s / (A + B) CPU per message"),
    ]


def _seal_open_rate(quick: bool, keys, idle: float = 0.0  # type: ignore[no-untyped-def]
                    ) -> tuple[float, float]:
    """(seal+open per second of wall time, per second of this process's CPU time): the
    second hardly moves when other work shares the machine. ``idle``: seconds this
    process sleeps after each message (the wall rate then counts only the work)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from gateway.node.keystore import Keystore
    from gateway.protocol.envelope import Header
    from gateway.protocol.party import Party
    from gateway.protocol.seal import open_envelope, seal
    from tests.support.gwnodes import generate_keys, register

    with tempfile.TemporaryDirectory(prefix="bench-seal-") as tmp:
        a_keys = generate_keys(Path(tmp), "fips:0600000", keys)
        b_keys = generate_keys(Path(tmp), "fips:4800000", keys)
        register(a_keys, b_keys, "fips:4800000")
        register(b_keys, a_keys, "fips:0600000")
        a, b = Keystore(a_keys), Keystore(b_keys)
        ida, idb = a.identity(), b.identity()
        now = datetime.now(UTC)
        cert = a.encryption_certificate_for(Party.parse("fips:4800000"), now)
        trust, directory = b.trust(), b
        doc = _document(1)
        n = 100 if quick else 400
        wall = cpu = 0.0
        for _ in range(n):
            t0, c0 = time.perf_counter(), time.process_time()
            header = Header.new(from_party=ida.party, to_party=idb.party,
                                service="interstate", action="InterstateTransaction",
                                created=now)
            env = seal(doc, header, sender=ida, recipient_cert=cert)
            open_envelope(env, node=idb, trust=trust, directory=directory, now=now)
            wall += time.perf_counter() - t0
            cpu += time.process_time() - c0
            if idle:
                time.sleep(idle)
        return n / wall, n / cpu


def _paced_rows(label: str, quick: bool, keys, batch: int = 1  # type: ignore[no-untyped-def]
                ) -> list[Row]:
    seconds = PACED_SECONDS_QUICK if quick else PACED_SECONDS_FULL
    _, lat, done, _ = _run("https", 0, PACED_RATE, seconds, keys, batch=batch)
    return [
        Row("pipeline", f"{label} paced {PACED_RATE:.0f}/s: p50 drop-to-receipt",
            statistics.median(lat), "s", f"{done} msgs; {keys.label}"),
        Row("pipeline", f"{label} paced {PACED_RATE:.0f}/s: p99 drop-to-receipt",
            _percentile(lat, 0.99), "s", "target < 1 s"),
    ]


def main(quick: bool = False) -> list[Row]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.support.gwnodes import PRODUCT_KEYS, KeyProfile

    ecdsa = KeyProfile(rsa_bits=PRODUCT_KEYS.rsa_bits, sign_algorithm="ecdsa-p256")
    p256 = KeyProfile(curve="p256")
    n = N_QUICK if quick else N_FULL
    rows: list[Row] = []
    batched = {"RSA-3072": f"https, batches of {BATCH}", "P-256": f"https p256, batches of {BATCH}"}
    cases = (("https", "https", PRODUCT_KEYS, SEND_WORKERS, 1),
             ("https p256", "https", p256, SEND_WORKERS, 1),
             # several envelopes per request (the partners' transports set batch)
             (batched["RSA-3072"], "https", PRODUCT_KEYS, SEND_WORKERS, BATCH),
             (batched["P-256"], "https", p256, SEND_WORKERS, BATCH),
             ("https ecdsa-sign", "https", ecdsa, SEND_WORKERS, 1),
             ("sftp", "sftp", PRODUCT_KEYS, SEND_WORKERS, 1),
             # a high-volume partner link may keep more sends in flight
             ("https p256, 32 send lanes", "https", p256, 32, 1),
             ("https, 32 send lanes", "https", PRODUCT_KEYS, 32, 1))
    headline = ("https", "https p256", *batched.values())
    # the headline bursts run REPEATS times, interleaved with the others, and report
    # their median run: one run of this bench moves by up to 2.4 ms per message
    order = [case for rep in range(1 if quick else REPEATS) for case in cases
             if rep == 0 or case[0] in headline]
    tries: dict[str, list[tuple[tuple[float, list[float], int, tuple[float, float]],
                                dict[str, float]]]] = {}
    for label, transport, keys, lanes, batch in order:
        groups: dict[str, float] = {}
        result = _run(transport, n, None, None, keys, groups=groups, send_workers=lanes,
                      batch=batch)
        tries.setdefault(label, []).append((result, groups))
    runs = {}
    for label, _, keys, _, _ in cases:
        ranked = sorted(tries[label], key=lambda t: sum(t[0][3]))
        runs[label], groups = ranked[len(ranked) // 2]
        rows += _burst_rows(label, n, runs[label], keys, groups)
        if len(ranked) > 1:
            rows += [
                Row("pipeline", f"{label} burst {n}: CPU per message, A + B, median of "
                    f"{len(ranked)}", sum(runs[label][3]), "ms", "runs: " + ", ".join(
                        f"{sum(t[0][3]):.2f}" for t in tries[label])),
                Row("pipeline", f"{label} burst {n}: sustained, run of the median CPU",
                    runs[label][0], "msg/s", "runs: " + ", ".join(
                        f"{t[0][0]:.1f}" for t in tries[label])),
            ]
    rsa_run, ec_run = runs["https"], runs["https p256"]
    rows += _paced_rows("https", quick, PRODUCT_KEYS)
    rows += _paced_rows("https p256", quick, p256)
    rows += _paced_rows(batched["RSA-3072"], quick, PRODUCT_KEYS, BATCH)
    rows += _paced_rows(batched["P-256"], quick, p256, BATCH)
    limit = {"RSA-3072": _seal_open_rate(quick, PRODUCT_KEYS),
             "P-256": _seal_open_rate(quick, p256)}
    ecdsa_limit = _seal_open_rate(quick, ecdsa)
    for case, (wall, cpu), keys in (("seal+open (one process, the limit)",
                                     limit["RSA-3072"], PRODUCT_KEYS),
                                    ("seal+open, ECDSA signing (one process)", ecdsa_limit,
                                     ecdsa),
                                    ("seal+open, P-256 (one process)", limit["P-256"], p256)):
        rows += [Row("pipeline", case, wall, "msg/s", keys.label),
                 Row("pipeline", f"{case}: per CPU second", cpu, "msg/s",
                     f"{1000 / cpu:.2f} ms CPU each")]
    # the same loop sleeping after each message, as the daemons' processes do between
    # messages: on this machine a process's caches and predictors go cold while it sleeps
    # and the same work then costs more CPU (see docs/benchmarks.md)
    for suite, keys in (("RSA-3072", PRODUCT_KEYS), ("P-256", p256)):
        _, cold = _seal_open_rate(quick, keys, idle=IDLE_GAP)
        rows += [Row("pipeline", f"seal+open, {suite}, {IDLE_GAP * 1000:.0f} ms idle after "
                     "each (one process): CPU per message", 1000 / cold, "ms",
                     f"{limit[suite][1] / cold:.2f}x the CPU of the loop without idle")]
    for suite, form, (rate, _, _, (cpu_a, cpu_b)) in (
            ("RSA-3072", "https", rsa_run), ("P-256", "https", ec_run),
            ("RSA-3072", f"https batches of {BATCH}", runs[batched["RSA-3072"]]),
            ("P-256", f"https batches of {BATCH}", runs[batched["P-256"]])):
        wall, cpu = limit[suite]
        rows += [
            Row("pipeline", f"{form} burst {n} {suite}: pipeline / (2 x seal+open)",
                rate / (2 * wall), "x", "msg/s over twice the one-process rate, wall clock"),
            Row("pipeline", f"{form} burst {n} {suite}: same, by CPU time",
                1000 / cpu / (cpu_a + cpu_b), "x",
                "seal+open CPU / pipeline CPU per message (load-independent)"),
            Row("pipeline", f"{form} burst {n} {suite}: CPU per message, A + B",
                cpu_a + cpu_b, "ms", f"target {'5' if suite == 'P-256' else '8'} ms"),
        ]
    for suite in ("RSA-3072", "P-256"):
        one, many = (ec_run, runs[batched["P-256"]]) if suite == "P-256" else (
            rsa_run, runs[batched["RSA-3072"]])
        rows += [
            Row("pipeline", f"https burst {n} {suite}: batches of {BATCH} / one per request, "
                "msg/s", many[0] / one[0], "x", "same run"),
            Row("pipeline", f"https burst {n} {suite}: batches of {BATCH} / one per request, "
                "CPU per message", sum(many[3]) / sum(one[3]), "x", "same run"),
        ]
    rows += [
        Row("pipeline", f"https burst {n}: msg/s P-256 / RSA-3072", ec_run[0] / rsa_run[0],
            "x", "same run"),
        Row("pipeline", f"https burst {n}: CPU per message P-256 / RSA-3072",
            sum(ec_run[3]) / sum(rsa_run[3]), "x", "same run"),
    ]
    return rows


if __name__ == "__main__":
    from bench import format_rows

    print(format_rows(main(quick="--quick" in sys.argv)))
