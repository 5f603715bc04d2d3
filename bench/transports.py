"""Transport throughput over loopback, each against an independent reference client
measured in the same run:

- SFTP small files (1 KB, 10 KB), each uploaded under a temporary name and renamed into
  place, over one kept connection: ours (paramiko) vs OpenSSH's ``sftp -b`` doing the
  same ``put`` + ``rename`` pairs (its connection set-up, measured with an empty batch,
  is subtracted).
- SFTP one large file (50 MB; 10 MB with --quick): MB/s, ours vs ``sftp -b``.
- HTTPS POSTs of 10 KB bodies with keep-alive and mutual TLS to our server: ours vs
  ``curl`` sending the same requests over one connection (one ``curl`` run for N
  requests, minus a one-request run); and the CPU time per request of our server (its
  process, from /proc) and of our client (this process), the per-request cost of the
  HTTP handling on each side (issue 18); and the same 10 KB bodies sent 16 to a request
  (``send_batch``, multipart/mixed, issue 18): messages/s and CPU per message on each
  side, as a ratio to the single POSTs of the same run.

The machine is shared, so each figure is the best of several interleaved rounds.
Target (issue 4): our small-file rate at least 70% of OpenSSH's.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import Row
from tests.support.pki import TestPki, TlsFiles
from tests.support.sshd import SshServer
from transports import open_transport
from transports.https_client import HttpsTransport

BENCH = "transports"


def _run(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_cpu(command: list[str]) -> tuple[float, float]:
    """Wall time and the CPU time of the command and its children (sftp + its ssh)."""
    cpu = _children_cpu()
    wall = _run(command)
    return wall, _children_cpu() - cpu


def _ours_small(
    server: SshServer, folder: Path, data: bytes, count: int
) -> tuple[float, float]:
    """Files/s and client CPU ms per file (our process: caller and paramiko's thread)."""
    folder.mkdir()
    t = open_transport(server.url(folder), **server.client_options())
    try:
        t.send("warm-up", data)  # connect outside the timing, as for sftp -b below
        cpu = time.process_time()
        started = time.perf_counter()
        for i in range(count):
            t.send(f"f{i:06d}.xml", data)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    finally:
        t.close()
    if len(os.listdir(folder)) != count + 1:
        raise RuntimeError(f"expected {count + 1} files in {folder}")
    shutil.rmtree(folder)
    return count / elapsed, cpu / count * 1000


def _openssh_small(
    server: SshServer, work: Path, folder: Path, data: bytes, count: int
) -> tuple[float, float]:
    """Files/s and client CPU ms per file (sftp and the ssh it runs)."""
    folder.mkdir()
    source = work / "source.bin"
    source.write_bytes(data)
    empty = work / "empty.batch"
    empty.write_text(f"cd {folder}\n")
    batch = work / "small.batch"
    with batch.open("w") as f:
        f.write(f"cd {folder}\n")
        for i in range(count):
            f.write(f"put {source} .f{i:06d}.xml.part\nrename .f{i:06d}.xml.part f{i:06d}.xml\n")
    setup, setup_cpu = _run_cpu(server.sftp_command(empty))
    total, total_cpu = _run_cpu(server.sftp_command(batch))
    if len(os.listdir(folder)) != count:
        raise RuntimeError(f"sftp -b left {len(os.listdir(folder))} files, not {count}")
    shutil.rmtree(folder)
    return count / max(total - setup, 1e-9), max(total_cpu - setup_cpu, 0.0) / count * 1000


def _ours_large(server: SshServer, folder: Path, data: bytes) -> float:
    folder.mkdir()
    t = open_transport(server.url(folder), **server.client_options())
    try:
        t.send("warm-up", b"x")
        started = time.perf_counter()
        t.send("large.bin", data)
        elapsed = time.perf_counter() - started
    finally:
        t.close()
    if (folder / "large.bin").stat().st_size != len(data):
        raise RuntimeError("large file incomplete")
    shutil.rmtree(folder)
    return len(data) / elapsed / 1e6


def _openssh_large(server: SshServer, work: Path, folder: Path, data: bytes) -> float:
    folder.mkdir()
    source = work / "large.bin"
    if not source.exists() or source.stat().st_size != len(data):
        source.write_bytes(data)
    empty = work / "empty.batch"
    empty.write_text(f"cd {folder}\n")
    batch = work / "large.batch"
    batch.write_text(
        f"cd {folder}\nput {source} .large.bin.part\nrename .large.bin.part large.bin\n"
    )
    setup = _run(server.sftp_command(empty))
    total = _run(server.sftp_command(batch))
    if (folder / "large.bin").stat().st_size != len(data):
        raise RuntimeError("sftp -b large file incomplete")
    shutil.rmtree(folder)
    return len(data) / max(total - setup, 1e-9) / 1e6


def _sftp_rows(work: Path, quick: bool) -> list[Row]:
    rounds = 2 if quick else 5
    count = 200 if quick else 1000
    large = (10 if quick else 50) * 1024 * 1024
    rows: list[Row] = []
    with SshServer(work / "root", work / "sshd") as server:
        for size in (1024, 10 * 1024):
            data = os.urandom(size)
            ours = theirs = 0.0
            ours_cpu = theirs_cpu = float("inf")
            for r in range(rounds):
                rate, cpu = _ours_small(server, server.root_dir / f"ours-{size}-{r}", data,
                                        count)
                ours, ours_cpu = max(ours, rate), min(ours_cpu, cpu)
                rate, cpu = _openssh_small(server, work, server.root_dir / f"openssh-{size}-{r}",
                                           data, count)
                theirs, theirs_cpu = max(theirs, rate), min(theirs_cpu, cpu)
            label = f"{size // 1024} KB"
            rows.append(Row(BENCH, f"sftp upload+rename {label}: transports (paramiko)", ours,
                            "files/s", f"{ours / theirs:.0%} of OpenSSH sftp -b (target >= 70%)"))
            rows.append(Row(BENCH, f"sftp upload+rename {label}: OpenSSH sftp -b", theirs,
                            "files/s", f"{count} files, best of {rounds}"))
            rows.append(Row(BENCH, f"sftp client CPU per {label} file: transports", ours_cpu,
                            "ms", "process CPU, both threads"))
            rows.append(Row(BENCH, f"sftp client CPU per {label} file: OpenSSH sftp+ssh",
                            theirs_cpu, "ms", "child CPU"))
        data = os.urandom(large)
        ours = theirs = 0.0
        for r in range(2 if quick else 3):
            ours = max(ours, _ours_large(server, server.root_dir / f"ours-large-{r}", data))
            theirs = max(theirs, _openssh_large(
                server, work, server.root_dir / f"openssh-large-{r}", data))
        label = f"{large // (1024 * 1024)} MB file"
        rows.append(Row(BENCH, f"sftp {label}: transports (paramiko)", ours, "MB/s",
                        f"{ours / theirs:.0%} of OpenSSH sftp -b"))
        rows.append(Row(BENCH, f"sftp {label}: OpenSSH sftp -b", theirs, "MB/s",
                        f"best of {2 if quick else 3}"))
        # connection set-up, which the reused connection saves on every send
        folder = server.root_dir / "connect"
        folder.mkdir()
        samples = []
        for i in range(5):
            started = time.perf_counter()
            t = open_transport(server.url(folder), **server.client_options())
            t.send(f"c{i}", b"x")
            samples.append(time.perf_counter() - started)
            t.close()
        rows.append(Row(BENCH, "sftp connect + auth + first 1 byte send", min(samples) * 1000,
                        "ms", "paid once per kept connection"))
    return rows


def _https_rows(work: Path, quick: bool) -> list[Row]:
    curl = shutil.which("curl")
    if curl is None:
        raise RuntimeError("curl is needed for the HTTPS reference figure")
    rounds = 2 if quick else 3
    count = 300 if quick else 2000
    pki = TestPki(work / "pki")
    server_tls = pki.server()
    client_tls = pki.client("bench-client")
    receipt = b"<Receipt>" + b"r" * 1000 + b"</Receipt>"
    body = os.urandom(10 * 1024)
    body_file = work / "body.bin"
    body_file.write_bytes(body)
    # The server runs in its own process, so our client and curl meet the same server
    # and ours does not share a GIL with it.
    server_code = (
        "import sys\n"
        "from transports.https_server import HttpsServer\n"
        f"answer = {receipt!r}\n"
        "s = HttpsServer('127.0.0.1', 0, cert=sys.argv[1], key=sys.argv[2],"
        " client_ca=sys.argv[3], handler=lambda body, peer: (200, answer),"
        " batch_handler=lambda parts, peer: [(200, answer)] * len(parts),"
        " max_body=1024 * 1024).start()\n"
        "print(s.url, flush=True)\n"
        "sys.stdin.read()\n"
        "s.stop()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", server_code, str(server_tls.cert), str(server_tls.key),
         str(pki.ca.cert)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) as process:
        assert process.stdout is not None
        assert process.stdin is not None
        url = process.stdout.readline().strip()
        if not url.startswith("https://"):
            raise RuntimeError("the benchmark's HTTPS server did not start")
        try:
            ours, theirs, server_ms, client_ms = _https_measure(
                url, work, client_tls, pki, body, body_file, receipt, curl, count, rounds,
                process.pid)
            batched, batch_server_ms, batch_client_ms = _https_batch_measure(
                url, client_tls, pki, body, receipt, count, rounds, process.pid)
        finally:
            process.stdin.close()
            process.wait(10)
    return [
        Row(BENCH, "https POST 10 KB keep-alive mTLS: transports (http.client)", ours,
            "requests/s", f"{ours / theirs:.0%} of curl"),
        Row(BENCH, "https POST 10 KB keep-alive mTLS: curl", theirs, "requests/s",
            f"{count} requests, best of {rounds}; server: transports.https_server"),
        Row(BENCH, "https POST 10 KB keep-alive mTLS: server CPU per request",
            server_ms * 1000, "us", "transports.https_server's process, lowest of the rounds"),
        Row(BENCH, "https POST 10 KB keep-alive mTLS: client CPU per request",
            client_ms * 1000, "us", "transports.https_client (this process), lowest of the "
            "rounds"),
        Row(BENCH, f"https batch of {BATCH} x 10 KB keep-alive mTLS: transports", batched,
            "messages/s", f"{batched / ours:.1f}x the single POSTs"),
        Row(BENCH, "https batch: server CPU per message", batch_server_ms * 1000, "us",
            f"{batch_server_ms / server_ms:.0%} of a single POST's"),
        Row(BENCH, "https batch: client CPU per message", batch_client_ms * 1000, "us",
            f"{batch_client_ms / client_ms:.0%} of a single POST's"),
    ]


BATCH = 16


def _https_batch_measure(  # noqa: PLR0917 - one call site
    url: str, client_tls: TlsFiles, pki: TestPki, body: bytes, receipt: bytes, count: int,
    rounds: int, server_pid: int,
) -> tuple[float, float, float]:
    """Messages/s and server/client CPU ms per message, ``count`` bodies sent
    :data:`BATCH` to a request with ``send_batch`` (best of ``rounds``)."""
    rate = 0.0
    server_ms = client_ms = float("inf")
    batches = max(1, count // BATCH)
    for _ in range(rounds):
        t = open_transport(url, cert=client_tls.cert, key=client_tls.key, ca=pki.ca.cert)
        assert isinstance(t, HttpsTransport)
        try:
            t.send_batch([("warm-up", body)])
            server_cpu = _process_cpu(server_pid)
            client_cpu = time.process_time()
            started = time.perf_counter()
            for i in range(batches):
                items = [(f"m{i}-{j}", body) for j in range(BATCH)]
                if t.send_batch(items) != [(200, receipt)] * BATCH:
                    raise RuntimeError("wrong answer")
            sent = batches * BATCH
            rate = max(rate, sent / (time.perf_counter() - started))
            client_ms = min(client_ms, (time.process_time() - client_cpu) / sent * 1000)
            server_ms = min(server_ms, (_process_cpu(server_pid) - server_cpu) / sent * 1000)
        finally:
            t.close()
    return rate, server_ms, client_ms


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _https_measure(  # noqa: PLR0917 - one call site
    url: str, work: Path, client_tls: TlsFiles, pki: TestPki, body: bytes, body_file: Path,
    receipt: bytes, curl: str, count: int, rounds: int, server_pid: int,
) -> tuple[float, float, float, float]:
    tls = ["--cert", str(client_tls.cert), "--key", str(client_tls.key),
           "--cacert", str(pki.ca.cert)]

    def curl_run(n: int) -> float:
        config = work / f"curl-{n}.cfg"
        config.write_text(f'url = "{url}"\noutput = "/dev/null"\n' * n)
        return _run([curl, "-sS", "--fail", "--data-binary", f"@{body_file}",
                     "-H", "Content-Type: application/octet-stream", *tls, "--config",
                     str(config)])

    ours = theirs = 0.0
    server_ms = client_ms = float("inf")
    for _ in range(rounds):
        t = open_transport(url, cert=client_tls.cert, key=client_tls.key, ca=pki.ca.cert)
        try:
            t.send("warm-up", body)
            server_cpu = _process_cpu(server_pid)
            client_cpu = time.process_time()
            started = time.perf_counter()
            for i in range(count):
                if t.send(f"m{i}", body) != receipt:
                    raise RuntimeError("wrong answer")
            ours = max(ours, count / (time.perf_counter() - started))
            client_ms = min(client_ms, (time.process_time() - client_cpu) / count * 1000)
            server_ms = min(server_ms,
                            (_process_cpu(server_pid) - server_cpu) / count * 1000)
        finally:
            t.close()
        one = curl_run(1)
        many = curl_run(count + 1)
        theirs = max(theirs, count / max(many - one, 1e-9))
    return ours, theirs, server_ms, client_ms


def main(quick: bool = False) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-transports-") as tmp:
        work = Path(tmp)
        return _sftp_rows(work, quick) + _https_rows(work, quick)


if __name__ == "__main__":
    from bench import format_rows

    print(format_rows(main()))
