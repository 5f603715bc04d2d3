"""What the metrics endpoint costs: the HTTPS pipeline burst (two real ``gateway run``
daemons, see bench/pipeline.py) with ``[metrics]`` off, then on with both nodes scraped
every second while the messages flow (Prometheus scrapes every 15 s by default, so this
is 15 times the usual load). The figure that matters is the CPU per message of both
daemons together (user + system, from /proc): it hardly moves when other work shares the
machine, unlike msg/s. Runs alternate off/on (two pairs, one with --quick) and the ratio
is on / off of the totals; within 1.05 is the target.

``python -m bench metrics`` (``--quick`` for a smaller run), from the repository root.
"""

from __future__ import annotations

import sys
import threading
import time
import urllib.request
from pathlib import Path

from bench import Row

N_FULL, N_QUICK = 1000, 300


def main(quick: bool = False) -> list[Row]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.pipeline import _run
    from tests.support.gwnodes import PRODUCT_KEYS, free_port

    n = N_QUICK if quick else N_FULL
    pairs = 1 if quick else 2
    cpu = {"off": 0.0, "on": 0.0}
    rate = {"off": 0.0, "on": 0.0}
    scrapes: list[float] = []
    for _ in range(pairs):
        for mode in ("off", "on"):
            ports = {"a": free_port(), "b": free_port()}

            def extra(name: str, mode: str = mode, ports: dict[str, int] = ports) -> str:
                if mode == "off":
                    return ""
                return f"\n[metrics]\nenabled = true\nport = {ports[name]}\n"

            def scrape(stop: threading.Event, ports: dict[str, int] = ports) -> None:
                while not stop.wait(1.0):
                    for port in ports.values():
                        t0 = time.perf_counter()
                        try:
                            with urllib.request.urlopen(
                                    f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                                r.read()
                        except OSError:
                            continue  # not listening yet
                        scrapes.append(time.perf_counter() - t0)

            result = _run("https", n, None, None, PRODUCT_KEYS, extra=extra,
                          during=scrape if mode == "on" else None)
            msgs, _, _, (cpu_a, cpu_b) = result
            cpu[mode] += (cpu_a + cpu_b) / pairs
            rate[mode] += msgs / pairs
    ratio = cpu["on"] / cpu["off"]
    scrapes.sort()
    return [
        Row("metrics", f"https burst {n}: CPU per message, metrics off", cpu["off"], "ms",
            f"A + B, mean of {pairs} run(s)"),
        Row("metrics", f"https burst {n}: CPU per message, metrics on", cpu["on"], "ms",
            "both nodes scraped every 1 s"),
        Row("metrics", "cost per message, on / off", ratio, "x",
            "target <= 1.05 " + ("(met)" if ratio <= 1.05 else "(NOT met)")),
        Row("metrics", f"https burst {n}: sustained, metrics off", rate["off"], "msg/s"),
        Row("metrics", f"https burst {n}: sustained, metrics on", rate["on"], "msg/s",
            f"ratio {rate['on'] / rate['off']:.3f}"),
        Row("metrics", "scrape time p50 (while messages flow)",
            scrapes[len(scrapes) // 2] * 1000 if scrapes else float("nan"), "ms",
            f"{len(scrapes)} scrapes"),
    ]


if __name__ == "__main__":
    from bench import format_rows

    print(format_rows(main(quick="--quick" in sys.argv)))
